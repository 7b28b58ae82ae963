/* kclient: the integration tests' client. Requests go through common/httpc (real TLS,
 * verified against the suite's CA), signatures through the same modules the gateway checks
 * with, so a test exercises the wire exactly as the marketplace would. */
#include "kclient.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "bodysign.h"
#include "config.h"
#include "httpc.h"
#include "mktcall.h"
#include "sortid.h"
#include "timeutil.h"
#include "xmalloc.h"
#include "zmqauth.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef KOOISV_BUILD_DIR
#error "KOOISV_BUILD_DIR must be defined by the build"
#endif
#ifndef KOOISV_SOURCE_DIR
#error "KOOISV_SOURCE_DIR must be defined by the build"
#endif

#define KC_TIMEOUT_MS 10000 /* the suite answers within 4 s; leave room for sanitizer builds */

extern char **environ;

/* ---- suite env --------------------------------------------------------------------------- */

typedef struct {
    char *name;
    char *value;
} env_pair_t;

static pthread_mutex_t env_lock = PTHREAD_MUTEX_INITIALIZER;
static env_pair_t *env_pairs;
static size_t env_n;
static int env_rc = -1;

/* Read the file into env_pairs; sets env_rc = 0 on success. Called under env_lock. */
static void env_load_file(void)
{
    const char *override = getenv("KOOISV_SUITE_ENV");
    char *path = override && *override ? xstrdup(override)
                                       : xasprintf("%s/suite/suite.env", KOOISV_BUILD_DIR);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "kclient: cannot read suite env %s: %s\n", path, strerror(errno));
        free(path);
        return;
    }
    char line[8192];
    size_t cap = 0;
    for (int lineno = 1; fgets(line, sizeof line, f); lineno++) {
        char *name, *value;
        int kind = config_env_line(line, &name, &value);
        if (kind < 0)
            fprintf(stderr, "kclient: %s line %d: not NAME=VALUE as a shell reads it\n", path,
                    lineno);
        if (kind <= 0)
            continue;
        if (env_n == cap) {
            cap = cap ? cap * 2 : 32;
            env_pairs = xrealloc(env_pairs, cap * sizeof *env_pairs);
        }
        env_pairs[env_n].name = xstrdup(name);
        env_pairs[env_n].value = xstrdup(value);
        env_n++;
    }
    fclose(f);
    free(path);
    env_rc = 0;
}

int suite_env_load(void)
{
    /* A missing file is retried on the next call (the suite may start later); a loaded one is
     * never reloaded, so the pointers suite_get hands out stay valid. */
    pthread_mutex_lock(&env_lock);
    if (env_rc != 0)
        env_load_file();
    int rc = env_rc;
    pthread_mutex_unlock(&env_lock);
    return rc;
}

const char *suite_get(const char *name)
{
    suite_env_load();
    const char *found = NULL;
    pthread_mutex_lock(&env_lock);
    /* Later lines win, as when the file is sourced by a shell. */
    for (size_t i = env_n; i > 0 && !found; i--)
        if (strcmp(env_pairs[i - 1].name, name) == 0)
            found = env_pairs[i - 1].value;
    pthread_mutex_unlock(&env_lock);
    return found ? found : getenv(name);
}

/* A required setting; a missing one is a broken suite, reported where the test sees it. */
static const char *need(const char *name, kresp_t *out)
{
    const char *v = suite_get(name);
    if ((!v || !*v) && out)
        snprintf(out->error, sizeof out->error, "suite setting %s is missing", name);
    return v && *v ? v : NULL;
}

/* ---- responses ----------------------------------------------------------------------------- */

void kresp_free(kresp_t *r)
{
    if (!r)
        return;
    free(r->body);
    json_decref(r->json);
    free(r->request_id);
    if (r->headers) {
        for (size_t i = 0; r->headers[i]; i++)
            free(r->headers[i]);
        free(r->headers);
    }
    memset(r, 0, sizeof *r);
}

const char *kresp_header(const kresp_t *r, const char *name)
{
    httpc_response_t view = {.headers = r ? r->headers : NULL};
    return httpc_header(&view, name);
}

void kresp_parse(kresp_t *out)
{
    out->json = json_loadb(out->body, out->len, 0, NULL);
    if (json_is_object(out->json)) {
        out->code = json_string_value(json_object_get(out->json, "resultCode"));
        if (!out->code)
            out->code = json_string_value(json_object_get(out->json, "error_code"));
    }
    const char *rid = kresp_header(out, "X-Request-Id");
    out->request_id = rid ? xstrdup(rid) : NULL;
}

typedef enum { SIGN_NONE, SIGN_BASIC, SIGN_KIT } sign_check_t;

/* One request through httpc; fills out (always) and checks Body-Sign per check. */
static int kc_send(const char *method, const char *url, const char *const *headers,
                   const char *body, size_t len, sign_check_t check, kresp_t *out)
{
    httpc_options_t opt = {
        .ca_file = suite_get("KOOISV_CA_FILE"), .verify_peer = 1, .timeout_ms = KC_TIMEOUT_MS};
    if (opt.ca_file && !*opt.ca_file)
        opt.ca_file = NULL;
    httpc_response_t r;
    int rc = httpc_request(method, url, headers, body, len, &opt, &r);
    out->status = r.status;
    out->body = r.body ? r.body : xstrdup("");
    out->len = r.body ? r.body_len : 0;
    out->headers = r.headers ? r.headers : xcalloc(1, sizeof(char *));
    snprintf(out->error, sizeof out->error, "%s", r.error);
    if (rc != 0)
        return -1;
    kresp_parse(out);
    const char *sig = kresp_header(out, "Body-Sign");
    if (sig && check != SIGN_NONE) {
        /* Kit answers are checked against the kit key and, failing that, the basic key: the
         * spec only says "the seller key" and the two interface families have one each. */
        const char *kit = suite_get("KOOISV_KIT_KEY");
        const char *basic = suite_get("KOOISV_BASIC_KEY");
        if (check == SIGN_KIT && kit && bodysign_verify(kit, out->body, out->len, sig))
            out->body_sign_ok = 1;
        else if (basic && bodysign_verify(basic, out->body, out->len, sig))
            out->body_sign_ok = 1;
    }
    return 0;
}

/* scheme://host:port of url (no path). Caller frees. */
static char *origin_of(const char *url)
{
    const char *p = strstr(url, "://");
    if (!p)
        return xstrdup(url);
    const char *slash = strchr(p + 3, '/');
    return slash ? xstrndup(url, (size_t)(slash - url)) : xstrdup(url);
}

/* Trailing '/' removed. Caller frees. */
static char *strip_slash(const char *s)
{
    size_t n = strlen(s);
    while (n > 0 && s[n - 1] == '/')
        n--;
    return xstrndup(s, n);
}

static __thread int tl_gateway = 1;

void kc_use_gateway(int which)
{
    tl_gateway = which == 2 ? 2 : 1;
}

static const char *gateway_url(kresp_t *out)
{
    return need(tl_gateway == 2 ? "KOOISV_GATEWAY2_URL" : "KOOISV_URL", out);
}

/* The signed request for kind (basic when kit_name is NULL) to this thread's gateway, with
 * the key named by key_var; NULL with out->error set when the suite lacks either. */
static mktcall_t *signed_call(const char *key_var, const char *kit_name, const char *body,
                              const char *ts, const char *nonce, const char *signature,
                              kresp_t *out)
{
    const char *key = need(key_var, out);
    const char *url = gateway_url(out);
    if (!key || !url)
        return NULL;
    mktcall_spec_t spec = {.url = url,
                           .kit_name = kit_name,
                           .key = key,
                           .body = body,
                           .timestamp = ts,
                           .nonce = nonce,
                           .signature = signature};
    return mktcall_new(&spec);
}

static int send_signed(mktcall_t *call, sign_check_t check, kresp_t *out)
{
    if (!call)
        return -1;
    int rc = kc_send("POST", call->url, (const char *const *)call->headers, call->body,
                     call->body_len, check, out);
    mktcall_destroy(&call);
    return rc;
}

/* ---- marketplace calls ------------------------------------------------------------------- */

char *kc_basic_query(const char *body)
{
    const char *key = suite_get("KOOISV_BASIC_KEY");
    if (!key)
        return NULL;
    char ts[24], nonce[33];
    mktcall_fresh(ts, nonce);
    mktcall_spec_t spec = {.url = "", .key = key, .body = body, .timestamp = ts, .nonce = nonce};
    mktcall_t *call = mktcall_new(&spec);
    char *q = xstrdup(mktcall_query(call));
    mktcall_destroy(&call);
    return q;
}

int kc_basic_ex(const char *body, const char *ts, const char *nonce, const char *signature,
                kresp_t *out)
{
    memset(out, 0, sizeof *out);
    return send_signed(signed_call("KOOISV_BASIC_KEY", NULL, body, ts, nonce, signature, out),
                       SIGN_BASIC, out);
}

int kc_basic(const char *body, kresp_t *out)
{
    char ts[24], nonce[33];
    mktcall_fresh(ts, nonce);
    return kc_basic_ex(body, ts, nonce, NULL, out);
}

int kc_kit_ex(const char *name, const char *body, const char *ts, const char *nonce,
              const char *sign, kresp_t *out)
{
    memset(out, 0, sizeof *out);
    return send_signed(signed_call("KOOISV_KIT_KEY", name, body, ts, nonce, sign, out), SIGN_KIT,
                       out);
}

int kc_kit(const char *name, const char *body, kresp_t *out)
{
    char ts[24], nonce[33];
    mktcall_fresh(ts, nonce);
    return kc_kit_ex(name, body, ts, nonce, NULL, out);
}

int kc_raw(const char *method, const char *path, const char *const *headers, const char *body,
           size_t len, kresp_t *out)
{
    memset(out, 0, sizeof *out);
    char *url;
    if (strncmp(path, "http", 4) == 0) {
        url = xstrdup(path);
    } else {
        const char *base = gateway_url(out);
        if (!base)
            return -1;
        char *origin = origin_of(base);
        url = xasprintf("%s%s", origin, path);
        free(origin);
    }
    int rc = kc_send(method, url, headers, body, body ? len : 0, SIGN_BASIC, out);
    free(url);
    return rc;
}

/* An unsigned JSON call: method to the suite setting base_var + path, with the header auth
 * (may be NULL) added. */
static int send_unsigned(const char *base_var, const char *method, const char *path,
                         const char *auth, const char *body, kresp_t *out)
{
    memset(out, 0, sizeof *out);
    const char *base = need(base_var, out);
    if (!base)
        return -1;
    char *stripped = strip_slash(base);
    char *url = xasprintf("%s%s", stripped, path);
    const char *headers[3] = {"Content-Type: application/json", auth, NULL};
    int rc = kc_send(method, url, headers, body, body ? strlen(body) : 0, SIGN_NONE, out);
    free(url);
    free(stripped);
    return rc;
}

int kc_admin(const char *method, const char *path_and_query, const char *token, const char *body,
             kresp_t *out)
{
    char *auth = token ? xasprintf("Authorization: Bearer %s", token) : NULL;
    int rc = send_unsigned("KOOISV_ADMIN_URL", method, path_and_query, auth, body, out);
    if (auth)
        xfree_secret(auth, strlen(auth));
    return rc;
}

int kc_emulator(const char *method, const char *path, const char *body, kresp_t *out)
{
    return send_unsigned("KOOISV_EMULATOR_URL", method, path, NULL, body, out);
}

/* ---- PostgreSQL ----------------------------------------------------------------------------- */

static pthread_key_t pg_key;
static pthread_once_t pg_once = PTHREAD_ONCE_INIT;

static void pg_close(void *conn)
{
    PQfinish(conn);
}

static void pg_key_init(void)
{
    pthread_key_create(&pg_key, pg_close);
}

PGconn *kc_pg(void)
{
    pthread_once(&pg_once, pg_key_init);
    PGconn *conn = pthread_getspecific(pg_key);
    if (conn && PQstatus(conn) == CONNECTION_OK)
        return conn;
    if (conn) {
        PQreset(conn); /* the suite may have restarted PostgreSQL */
        if (PQstatus(conn) == CONNECTION_OK)
            return conn;
        PQfinish(conn);
        pthread_setspecific(pg_key, NULL);
    }
    const char *dsn = suite_get("KOOISV_PG_SUPER_DSN");
    if (!dsn || !*dsn) {
        fprintf(stderr, "kclient: KOOISV_PG_SUPER_DSN is not set\n");
        return NULL;
    }
    conn = PQconnectdb(dsn);
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "kclient: cannot connect to PostgreSQL: %s", PQerrorMessage(conn));
        PQfinish(conn);
        return NULL;
    }
    pthread_setspecific(pg_key, conn);
    return conn;
}

static PGresult *run(const char *sql, int nparams, const char *const *params, ExecStatusType want)
{
    PGconn *conn = kc_pg();
    if (!conn)
        return NULL;
    PGresult *res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st != want && !(want == PGRES_COMMAND_OK && st == PGRES_TUPLES_OK)) {
        fprintf(stderr, "kclient: SQL failed: %s  in: %s\n", PQresultErrorMessage(res), sql);
        PQclear(res);
        return NULL;
    }
    return res;
}

char *kc_sql_value(const char *sql, int nparams, const char *const *params)
{
    PGresult *res = run(sql, nparams, params, PGRES_TUPLES_OK);
    char *v = NULL;
    if (res && PQntuples(res) > 0 && PQnfields(res) > 0 && !PQgetisnull(res, 0, 0))
        v = xstrdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    return v;
}

long kc_sql_count(const char *sql, int nparams, const char *const *params)
{
    PGresult *res = run(sql, nparams, params, PGRES_TUPLES_OK);
    long n = res ? PQntuples(res) : -1;
    PQclear(res);
    return n;
}

long kc_sql_exec(const char *sql, int nparams, const char *const *params)
{
    PGresult *res = run(sql, nparams, params, PGRES_COMMAND_OK);
    if (!res)
        return -1;
    const char *t = PQcmdTuples(res);
    long n = t && *t ? strtol(t, NULL, 10) : 0;
    PQclear(res);
    return n;
}

/* ---- processes, ids, waiting ------------------------------------------------------------ */

int kc_suite(const char *verb, const char *svc)
{
    const char *script = suite_get("KOOISV_SUITE_SH");
    char *fallback = xasprintf("%s/tests/harness/suite.sh", KOOISV_SOURCE_DIR);
    if (!script || !*script)
        script = fallback;
    const char *build = suite_get("KOOISV_BUILD_DIR");
    if (!build || !*build)
        build = KOOISV_BUILD_DIR;
    char *argv[] = {"bash", (char *)script, (char *)verb, (char *)build, (char *)svc, NULL};
    pid_t pid;
    /* posix_spawn, not system(): no shell parses the arguments, and it is safe with threads. */
    int err = posix_spawnp(&pid, "bash", NULL, NULL, argv, environ);
    free(fallback);
    if (err != 0) {
        fprintf(stderr, "kclient: cannot run suite.sh: %s\n", strerror(err));
        return -1;
    }
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* A deleted temporary file holding text (NULL: empty), positioned at its start; -1 on error. */
static int temp_fd(const char *text)
{
    char tmpl[] = "/tmp/kclient-XXXXXX";
    int fd = mkstemp(tmpl);
    if (fd < 0)
        return -1;
    unlink(tmpl);
    size_t len = text ? strlen(text) : 0;
    if ((len && write(fd, text, len) != (ssize_t)len) || lseek(fd, 0, SEEK_SET) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* The whole content of fd from its start. Caller frees. */
static char *fd_slurp(int fd)
{
    lseek(fd, 0, SEEK_SET);
    size_t cap = 4096, len = 0;
    char *buf = xmalloc(cap);
    ssize_t got;
    while ((got = read(fd, buf + len, cap - len - 1)) > 0)
        if ((len += (size_t)got) == cap - 1)
            buf = xrealloc(buf, cap *= 2);
    buf[len] = '\0';
    return buf;
}

int kc_ctl_err(char **out, char **err, const char *stdin_text, const char *const *args)
{
    if (out)
        *out = NULL;
    if (err)
        *err = NULL;
    char *bin = xasprintf("%s/gateway/kooisvctl", suite_get("KOOISV_BUILD_DIR"));
    char *envf = xasprintf("%s/suite.env", suite_get("KOOISV_SUITE_DIR"));
    const char *argv[40] = {bin, "--env-file", envf};
    int n = 3;
    for (int i = 0; args[i] && n < 39; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    int in = temp_fd(stdin_text), outfd = temp_fd(NULL), errfd = err ? temp_fd(NULL) : -1, rc = -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in, 0);
    posix_spawn_file_actions_adddup2(&fa, outfd, 1);
    if (errfd >= 0)
        posix_spawn_file_actions_adddup2(&fa, errfd, 2);
    pid_t pid;
    if (in >= 0 && outfd >= 0 && (!err || errfd >= 0) &&
        posix_spawn(&pid, bin, &fa, NULL, (char *const *)argv, environ) == 0) {
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
        rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        if (out)
            *out = fd_slurp(outfd);
        if (err)
            *err = fd_slurp(errfd);
    }
    posix_spawn_file_actions_destroy(&fa);
    if (in >= 0)
        close(in);
    if (outfd >= 0)
        close(outfd);
    if (errfd >= 0)
        close(errfd);
    free(bin);
    free(envf);
    return rc;
}

int kc_ctl(char **out, const char *stdin_text, const char *const *args)
{
    return kc_ctl_err(out, NULL, stdin_text, args);
}

char *kc_uid(const char *prefix)
{
    char id[17];
    sortid_make(id);
    return xasprintf("%s%s", prefix ? prefix : "", id);
}

bool kc_wait(int timeout_ms, int interval_ms, bool (*done)(void *arg), void *arg)
{
    int64_t until = time_mono_us() + (int64_t)timeout_ms * 1000;
    if (interval_ms <= 0)
        interval_ms = 50;
    for (;;) {
        if (done(arg))
            return true;
        if (time_mono_us() >= until)
            return done(arg);
        struct timespec ts = {interval_ms / 1000, (long)(interval_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

typedef struct {
    long long (*count)(const void *arg);
    const void *arg;
    long long n;
} count_wait_t;

static bool count_reached(void *arg)
{
    count_wait_t *w = arg;
    return w->count(w->arg) >= w->n;
}

bool kc_wait_count(int timeout_ms, long long (*count)(const void *arg), const void *arg,
                   long long n)
{
    count_wait_t w = {count, arg, n};
    return kc_wait(timeout_ms, 100, count_reached, &w);
}

void kc_envfile_save(kc_envfile_t *self, const char *proc)
{
    self->path = xasprintf("%s/env/%s.env", suite_get("KOOISV_SUITE_DIR"), proc);
    self->saved = config_read_file(self->path, NULL);
}

void kc_envfile_write(const kc_envfile_t *self, const char *extra)
{
    char *dir = xasprintf("%s/env", suite_get("KOOISV_SUITE_DIR"));
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        fail_msg("mkdir %s: %s", dir, strerror(errno));
    free(dir);
    FILE *f = fopen(self->path, "w");
    if (!f)
        fail_msg("cannot write %s", self->path);
    fprintf(f, "%s\n%s", self->saved ? self->saved : "", extra);
    fclose(f);
}

void kc_envfile_restore(kc_envfile_t *self)
{
    if (!self->path)
        return;
    if (self->saved) {
        FILE *f = fopen(self->path, "w");
        if (f) {
            fputs(self->saved, f);
            fclose(f);
        }
    } else {
        unlink(self->path);
    }
    free(self->path);
    free(self->saved);
    self->path = self->saved = NULL;
}

/* ---------------------------------------------------------------- ZeroMQ as the gateway */

static char rpc_setup_why[160];
static int rpc_setup_rc = -1;

static void rpc_setup(void)
{
    const char *path = suite_get("KOOISV_CURVE_SECRET_KEY_FILE");
    char *key = path ? config_read_file(path, NULL) : NULL;
    if (!key) {
        snprintf(rpc_setup_why, sizeof rpc_setup_why,
                 "the suite env names no readable KOOISV_CURVE_SECRET_KEY_FILE");
        return;
    }
    key[strcspn(key, "\r\n")] = '\0';
    rpc_setup_rc = zmqauth_setup(key, NULL, NULL, rpc_setup_why, sizeof rpc_setup_why);
    free(key);
}

rpc_client_t *kc_rpc_client(const char *svc)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, rpc_setup);
    if (rpc_setup_rc != 0)
        fail_msg("CURVE set-up: %s", rpc_setup_why);
    char name[64], upper[16];
    size_t i = 0;
    for (; svc[i] && i < sizeof upper - 1; i++)
        upper[i] = (char)(svc[i] >= 'a' && svc[i] <= 'z' ? svc[i] - 32 : svc[i]);
    upper[i] = '\0';
    snprintf(name, sizeof name, "KOOISV_%s_ENDPOINTS", upper);
    const char *ep = suite_get(name);
    snprintf(name, sizeof name, "KOOISV_%s_SERVER_KEY", upper);
    const char *key = suite_get(name);
    if (!ep || !key)
        fail_msg("the suite env has no endpoints or server key for %s", svc);
    rpc_client_t *c = rpc_client_new(ep, key);
    if (!c)
        fail_msg("cannot make a client of %s", svc);
    return c;
}

double kc_metric(const char *series)
{
    kresp_t r;
    char *url = xasprintf("%s/metrics", suite_get("KOOISV_METRICS_URL"));
    double v = -1;
    size_t n = strlen(series);
    if (kc_raw("GET", url, NULL, NULL, 0, &r) == 0 && r.status == 200 && r.body) {
        for (const char *line = r.body; line && *line; line = strchr(line, '\n')) {
            if (*line == '\n')
                line++;
            if (strncmp(line, series, n) == 0 && line[n] == ' ') {
                v = strtod(line + n + 1, NULL);
                break;
            }
        }
    }
    kresp_free(&r);
    free(url);
    return v;
}

int kc_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
                       getsockname(fd, (struct sockaddr *)&a, &len) == 0
                   ? ntohs(a.sin_port)
                   : -1;
    close(fd);
    return port;
}

pid_t kc_spawn_replica(const char *svc)
{
    const char *suite = suite_get("KOOISV_SUITE_DIR");
    char *pidfile = xasprintf("%s/run/%s.pid", suite ? suite : ".", svc);
    char *pid = config_read_file(pidfile, NULL);
    free(pidfile);
    if (!pid) {
        fprintf(stderr, "kc_spawn_replica: no pid file of %s\n", svc);
        return -1;
    }
    char *environ_path = xasprintf("/proc/%ld/environ", strtol(pid, NULL, 10));
    free(pid);
    size_t len = 0;
    char *env = config_read_file(environ_path, &len);
    free(environ_path);
    if (!env) {
        fprintf(stderr, "kc_spawn_replica: cannot read the environment of %s\n", svc);
        return -1;
    }
    char *envp[256];
    int n = 0;
    for (size_t off = 0; off < len && n < 250; off += strlen(env + off) + 1)
        if (strncmp(env + off, "KOOISV_BIND=", 12) != 0)
            envp[n++] = env + off;
    /* A port taken from the process id collided with the suite's own ports now and then
     * ("Address already in use": billing_export test_two_replicas, 8 December). */
    int port = kc_free_port();
    if (port < 0) {
        fprintf(stderr, "kc_spawn_replica: no free port\n");
        free(env);
        return -1;
    }
    char bind[64];
    snprintf(bind, sizeof bind, "KOOISV_BIND=tcp://127.0.0.1:%d", port);
    envp[n++] = bind;
    envp[n] = NULL;
    char *bin = xasprintf("%s/services/%s/kooisv-%s", suite_get("KOOISV_BUILD_DIR"), svc, svc);
    char *log = xasprintf("%s/logs/%s2.log", suite ? suite : ".", svc);
    pid_t child = fork();
    if (child == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        execve(bin, (char *const[]){bin, NULL}, envp);
        _exit(127);
    }
    free(bin);
    free(log);
    free(env);
    return child;
}
