#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "xmalloc.h"

typedef struct {
    const config_var_t *var;
    char *value;
} config_entry_t;

static config_entry_t *entries;
static size_t entries_n;
static const char *config_prog = "kooisv";

static void usage(const char *prog, const char *summary, const config_var_t *vars, size_t n)
{
    printf("Usage: %s [--help] [--version]\n\n%s\n\nEnvironment:\n", prog, summary);
    for (size_t i = 0; i < n; i++) {
        const config_var_t *v = &vars[i];
        if (v->flags & CONFIG_SECRET)
            printf("  %s (or %s_FILE)\n      ", v->name, v->name);
        else
            printf("  %s\n      ", v->name);
        printf("%s", v->help);
        if (v->flags & CONFIG_REQUIRED)
            printf(" [required]");
        else if (v->def && !(v->flags & CONFIG_SECRET))
            printf(" [default: %s]", v->def);
        printf("\n");
    }
}

char *config_read_file(const char *path, size_t *len_out)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = xmalloc(cap);
    size_t got;
    while ((got = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (cap - len - 1 == 0) {
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        xfree_secret(buf, cap);
        errno = EIO;
        return NULL;
    }
    buf[len] = '\0';
    if (len_out)
        *len_out = len;
    return buf;
}

int config_env_line(char *line, char **name, char **value)
{
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ' ||
                     line[n - 1] == '\t'))
        line[--n] = '\0';
    while (*line == ' ' || *line == '\t')
        line++;
    if (!*line || *line == '#')
        return 0;
    if (strncmp(line, "export ", 7) == 0)
        for (line += 7; *line == ' ';)
            line++;
    char *eq = strchr(line, '=');
    if (!eq || eq == line)
        return -1;
    *eq = '\0';
    for (char *c = line; *c; c++)
        if (!(isalnum((unsigned char)*c) || *c == '_'))
            return -1;
    /* Unquote into the same buffer: the result is never longer than the source. */
    char *in = eq + 1, *out = eq + 1;
    while (*in) {
        if (*in == '\'') {
            char *end = strchr(in + 1, '\'');
            if (!end)
                return -1;
            memmove(out, in + 1, (size_t)(end - in - 1));
            out += end - in - 1;
            in = end + 1;
        } else if (*in == '"') {
            for (in++; *in && *in != '"'; in++) {
                if (*in == '\\' && in[1] && strchr("\\\"$`", in[1]))
                    in++;
                *out++ = *in;
            }
            if (*in != '"')
                return -1;
            in++;
        } else if (*in == '\\' && in[1]) {
            *out++ = in[1];
            in += 2;
        } else if (*in == ' ' || *in == '\t') {
            return -1;
        } else {
            *out++ = *in++;
        }
    }
    *out = '\0';
    *name = line;
    *value = eq + 1;
    return 1;
}

void config_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *what = NULL;
    if (vasprintf(&what, fmt, ap) < 0)
        what = NULL;
    va_end(ap);
    /* One write, so that the line is never split by another thread's. */
    fprintf(stderr, "%s: %s\n", config_prog, what ? what : fmt);
    free(what);
    exit(2);
}

static char *load_secret_file(const config_var_t *v, const char *path)
{
    char *text = config_read_file(path, NULL);
    if (!text) {
        config_die("%s: cannot read %s_FILE (%s): %s", v->name, v->name, path, strerror(errno));
    }
    size_t n = strlen(text);
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r'))
        text[--n] = '\0';
    return text;
}

void config_load(const char *prog, const char *summary, const config_var_t *vars, size_t n,
                 int argc, char **argv)
{
    config_prog = prog;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(prog, summary, vars, n);
            exit(0);
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("%s %s\n", prog, KOOISV_VERSION);
            exit(0);
        }
        config_die("unknown argument '%s' (try --help)", argv[i]);
    }
    entries = xcalloc(n, sizeof *entries);
    entries_n = n;
    for (size_t i = 0; i < n; i++) {
        const config_var_t *v = &vars[i];
        entries[i].var = v;
        const char *env = getenv(v->name);
        char *value = NULL;
        if (v->flags & CONFIG_SECRET) {
            char file_var[256];
            snprintf(file_var, sizeof file_var, "%s_FILE", v->name);
            const char *path = getenv(file_var);
            if (path && *path && env && *env)
                config_die("%s: set either the variable or its _FILE twin, not both", v->name);
            if (path && *path)
                value = load_secret_file(v, path);
        }
        if (!value && env)
            value = xstrdup(env);
        if (!value && v->def)
            value = xstrdup(v->def);
        if ((!value || !*value) && (v->flags & CONFIG_REQUIRED))
            config_die("%s: required%s", v->name,
                       (v->flags & CONFIG_SECRET) ? " (set it or its _FILE twin)" : "");
        if (value && *value && (v->flags & CONFIG_KEY)) {
            const char *why = NULL;
            if (!config_key_is_strong(value, &why))
                config_die("%s: %s", v->name, why);
        }
        entries[i].value = value ? value : xstrdup("");
    }
}

const char *config_get(const char *name)
{
    for (size_t i = 0; i < entries_n; i++)
        if (strcmp(entries[i].var->name, name) == 0)
            return entries[i].value;
    fprintf(stderr, "%s: internal error: %s is not in the configuration table\n", config_prog,
            name);
    abort();
}

long config_get_long(const char *name, long min, long max)
{
    const char *s = config_get(name);
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || !*s || *end || v < min || v > max) {
        config_die("%s: must be a whole number from %ld to %ld", name, min, max);
    }
    return v;
}

bool config_get_bool(const char *name)
{
    const char *s = config_get(name);
    return strcasecmp(s, "1") == 0 || strcasecmp(s, "true") == 0 || strcasecmp(s, "yes") == 0 ||
           strcasecmp(s, "on") == 0;
}

static int char_classes(const char *s)
{
    int lower = 0, upper = 0, digit = 0, other = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (islower(*p))
            lower = 1;
        else if (isupper(*p))
            upper = 1;
        else if (isdigit(*p))
            digit = 1;
        else
            other = 1;
    }
    return lower + upper + digit + other;
}

static bool is_placeholder(const char *s)
{
    static const char *weak[] = {"changeme", "change-me", "password", "secret", "example",
                                 "placeholder", "default", "0123456789", "1234567890",
                                 "abcdefghij", "qwerty", "letmein", NULL};
    char lower[256];
    size_t n = strlen(s);
    if (n >= sizeof lower)
        return false;
    for (size_t i = 0; i <= n; i++)
        lower[i] = (char)tolower((unsigned char)s[i]);
    for (int i = 0; weak[i]; i++)
        if (strstr(lower, weak[i]) && strlen(weak[i]) * 2 >= n)
            return true;
    /* A single repeated character is never a key. */
    for (size_t i = 1; i < n; i++)
        if (s[i] != s[0])
            return false;
    return true;
}

bool config_key_is_strong(const char *value, const char **why)
{
    const char *dummy;
    if (!why)
        why = &dummy;
    if (strlen(value) < 16) {
        *why = "too short (a key needs at least 16 characters)";
        return false;
    }
    if (char_classes(value) < 2) {
        *why = "too weak (a key needs at least two character classes)";
        return false;
    }
    if (is_placeholder(value)) {
        *why = "a placeholder, not a key";
        return false;
    }
    return true;
}

bool config_password_is_strong(const char *password, const char *account, const char **why)
{
    const char *dummy;
    if (!why)
        why = &dummy;
    if (strlen(password) < 8) {
        *why = "too short (at least 8 characters)";
        return false;
    }
    if (char_classes(password) < 2) {
        *why = "too weak (at least two character classes)";
        return false;
    }
    if (account && strcasecmp(password, account) == 0) {
        *why = "equal to the account name";
        return false;
    }
    return true;
}
