#include "admintoken.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "config.h"
#include "cryptoutil.h"
#include "log.h"
#include "timeutil.h"
#include "xmalloc.h"

#define TOKENS_RECHECK_US 1000000
#define TOKEN_MAX 512

static const char *const role_names[] = {"none", "auditor", "operator", "admin", "meter"};

struct admintoken_store {
    char *path;
    admintoken_t *tokens;
    size_t n;
    struct stat st;     /* of the file the tokens came from */
    int64_t checked_us; /* last look at the file */
};

static admintoken_role_t role_parse(const char *s)
{
    for (int r = ROLE_AUDITOR; r <= ROLE_METER; r++)
        if (strcmp(s, role_names[r]) == 0)
            return (admintoken_role_t)r;
    return ROLE_NONE;
}

static bool hex_byte(const char *p, uint8_t *out)
{
    unsigned v = 0;
    for (int i = 0; i < 2; i++) {
        char ch = p[i];
        v <<= 4;
        if (ch >= '0' && ch <= '9')
            v |= (unsigned)(ch - '0');
        else if (ch >= 'a' && ch <= 'f')
            v |= (unsigned)(ch - 'a' + 10);
        else if (ch >= 'A' && ch <= 'F')
            v |= (unsigned)(ch - 'A' + 10);
        else
            return false;
    }
    *out = (uint8_t)v;
    return true;
}

/* Parse the tokens file text; -1 with the first problem in err. */
static int tokens_parse(char *text, admintoken_t **out, size_t *nout, char *err, size_t errlen)
{
    admintoken_t *v = NULL;
    size_t n = 0;
    int lineno = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        char *f[4] = {0};
        int nf = 0;
        char *fs = NULL;
        for (char *tok = strtok_r(line, " \t\r", &fs); tok; tok = strtok_r(NULL, " \t\r", &fs)) {
            if (nf == 0 && tok[0] == '#')
                break;
            if (nf < 4)
                f[nf] = tok;
            nf++;
        }
        if (nf == 0)
            continue;
        admintoken_t t = {0};
        bool name_ok = nf == 3 && strlen(f[0]) < sizeof t.name;
        for (const char *p = name_ok ? f[0] : ""; *p; p++)
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= '0' && *p <= '9') || strchr("._@-", *p)))
                name_ok = false;
        if (!name_ok) {
            snprintf(err, errlen,
                     "line %d: expected \"name role sha256hex\" (name: letters, "
                     "digits, . _ @ -)",
                     lineno);
            goto fail;
        }
        snprintf(t.name, sizeof t.name, "%s", f[0]);
        t.role = role_parse(f[1]);
        if (t.role == ROLE_NONE) {
            snprintf(err, errlen, "line %d: role must be auditor, operator, admin or meter", lineno);
            goto fail;
        }
        bool hash_ok = strlen(f[2]) == 64;
        for (int i = 0; hash_ok && i < 32; i++)
            hash_ok = hex_byte(f[2] + 2 * i, &t.hash[i]);
        if (!hash_ok) {
            snprintf(err, errlen, "line %d: the third field must be 64 hex digits (SHA-256)",
                     lineno);
            goto fail;
        }
        for (size_t i = 0; i < n; i++)
            if (strcmp(v[i].name, t.name) == 0) {
                snprintf(err, errlen, "line %d: token name %s appears twice", lineno, t.name);
                goto fail;
            }
        v = xrealloc(v, (n + 1) * sizeof *v);
        v[n++] = t;
    }
    *out = v;
    *nout = n;
    return 0;
fail:
    free(v);
    return -1;
}

static int tokens_load(admintoken_store_t *self)
{
    struct stat st;
    if (stat(self->path, &st) != 0) {
        log_error(NULL, "admin tokens file %s: cannot stat", self->path);
        return -1;
    }
    char *text = config_read_file(self->path, NULL);
    if (!text) {
        log_error(NULL, "admin tokens file %s: cannot read", self->path);
        return -1;
    }
    admintoken_t *v = NULL;
    size_t n = 0;
    char err[200];
    int rc = tokens_parse(text, &v, &n, err, sizeof err);
    xfree_secret(text, strlen(text));
    if (rc != 0) {
        log_error(NULL, "admin tokens file %s: %s", self->path, err);
        return -1;
    }
    if (n == 0)
        log_warn(NULL, "admin tokens file %s holds no token: every call gets 401", self->path);
    free(self->tokens);
    self->tokens = v;
    self->n = n;
    self->st = st;
    return 0;
}

/* Revocation must not depend on the file staying good: a file that is gone, unreadable or no
 * longer parses leaves no token valid (fail closed) until a good one is back. */
static void tokens_drop(admintoken_store_t *self, const struct stat *st)
{
    if (self->n)
        log_error(NULL,
                  "admin tokens file %s is unusable: every token is refused until it is "
                  "fixed",
                  self->path);
    free(self->tokens);
    self->tokens = NULL;
    self->n = 0;
    if (st)
        self->st = *st;
    else
        memset(&self->st, 0, sizeof self->st);
}

void admintoken_store_refresh(admintoken_store_t *self)
{
    int64_t now = time_mono_us();
    if (now - self->checked_us < TOKENS_RECHECK_US)
        return;
    self->checked_us = now;
    struct stat st;
    if (stat(self->path, &st) != 0) {
        if (self->n || self->st.st_ino) {
            log_error(NULL, "admin tokens file %s: %s", self->path, strerror(errno));
            tokens_drop(self, NULL);
        }
        return;
    }
    if (st.st_ino == self->st.st_ino && st.st_size == self->st.st_size &&
        st.st_mtim.tv_sec == self->st.st_mtim.tv_sec &&
        st.st_mtim.tv_nsec == self->st.st_mtim.tv_nsec)
        return;
    if (tokens_load(self) == 0)
        log_info(NULL, "admin tokens file reloaded: %zu token(s)", self->n);
    else
        tokens_drop(self, &st); /* the same broken file is not read again every second */
}

const admintoken_t *admintoken_store_find(const admintoken_store_t *self, const char *authorization,
                                          const char **why)
{
    const char *h = authorization;
    if (!h) {
        *why = "missing bearer token";
        return NULL;
    }
    if (strncasecmp(h, "Bearer ", 7) != 0) {
        *why = "malformed Authorization header (expected: Bearer <token>)";
        return NULL;
    }
    const char *tok = h + 7;
    while (*tok == ' ')
        tok++;
    return admintoken_store_find_token(self, tok, why);
}

const admintoken_t *admintoken_store_find_token(const admintoken_store_t *self, const char *tok,
                                                const char **why)
{
    size_t len = tok ? strlen(tok) : 0;
    if (len == 0 || len > TOKEN_MAX || strpbrk(tok, " \t")) {
        *why = "malformed bearer token";
        return NULL;
    }
    uint8_t hash[32];
    sha256(tok, len, hash);
    const admintoken_t *found = admintoken_store_find_hash(self, hash);
    if (!found)
        *why = "unknown token";
    return found;
}

const admintoken_t *admintoken_store_find_hash(const admintoken_store_t *self,
                                               const uint8_t hash[32])
{
    const admintoken_t *found = NULL;
    for (size_t i = 0; i < self->n; i++)
        if (bytes_equal(hash, self->tokens[i].hash, 32))
            found = &self->tokens[i];
    return found;
}

admintoken_store_t *admintoken_store_new(const char *path)
{
    admintoken_store_t *self = xcalloc(1, sizeof *self);
    self->path = xstrdup(path);
    if (tokens_load(self) != 0) {
        admintoken_store_destroy(&self);
        return NULL;
    }
    self->checked_us = time_mono_us();
    return self;
}

void admintoken_store_destroy(admintoken_store_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    admintoken_store_t *self = *self_p;
    free(self->tokens);
    free(self->path);
    free(self);
    *self_p = NULL;
}

size_t admintoken_store_count(const admintoken_store_t *self)
{
    return self->n;
}

const char *admintoken_role_name(admintoken_role_t role)
{
    return role >= ROLE_NONE && role <= ROLE_METER ? role_names[role] : "none";
}
