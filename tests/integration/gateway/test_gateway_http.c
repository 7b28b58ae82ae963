/* The gateway through real HTTPS.
 *
 *   test_gateway_http standalone   starts its own world: stand-in services (fakesvc: audit,
 *                                  order, tenant, app) and a kooisv-gateway with short limits,
 *                                  so it can slow services down, read what they received and
 *                                  test connection limits and timeouts.
 *   test_gateway_http suite        runs against the `suite` fixture (real services, two
 *                                  gateways); the standalone-only cases are skipped.
 *
 * Every answer is checked for a valid Body-Sign (kclient does it; kit answers against the kit
 * key here). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <ctype.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "bodysign.h"
#include "cryptoutil.h"
#include "httpc.h"
#include "kclient.h"
#include "randutil.h"
#include "sigv2.h"
#include "timeutil.h"
#include "xmalloc.h"

static bool standalone;

/* ================================================================== standalone world */

#define DEADLINE_MS 1500
#define MAX_CONNECTIONS 16
#define HEADER_TIMEOUT_S 2

static struct {
    char dir[512];
    char basic_key[33], kit_key[33];
    int port, metrics_port, admin_port;
    int svc_port[4];
    pid_t svc_pid[4];
    pid_t gateway_pid;
    char gateway_pub[41], services_pub[41]; /* CURVE: the stand-ins share one key pair */
} world;

static const char *const svc_names[4] = {"audit", "order", "tenant", "app"};
enum { FAKE_AUDIT = 0, FAKE_ORDER, FAKE_TENANT, FAKE_APP };

static char *path_in(const char *name)
{
    return xasprintf("%s/%s", world.dir, name);
}

static pid_t spawn(const char *bin, char *const envp[], const char *logname)
{
    char *logpath = path_in(logname);
    pid_t pid = fork();
    if (pid == 0) {
        FILE *f = fopen(logpath, "a");
        if (f) {
            dup2(fileno(f), 1);
            dup2(fileno(f), 2);
        }
        char *argv[] = {(char *)bin, NULL};
        execve(bin, argv, envp);
        _exit(127);
    }
    free(logpath);
    return pid;
}

/* A few variables a child needs from our own environment (sanitizer settings). */
static int env_inherit(char **env, int n)
{
    const char *keep[] = {"PATH", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", NULL};
    for (int i = 0; keep[i]; i++)
        if (getenv(keep[i]))
            env[n++] = xasprintf("%s=%s", keep[i], getenv(keep[i]));
    return n;
}

static void fake_start(int i)
{
    char *env[16];
    int n = 0;
    env[n++] = xasprintf("FAKESVC_NAME=%s", svc_names[i]);
    env[n++] = xasprintf("FAKESVC_BIND=tcp://127.0.0.1:%d", world.svc_port[i]);
    env[n++] = xasprintf("FAKESVC_LOG=%s/%s.log", world.dir, svc_names[i]);
    env[n++] = xasprintf("FAKESVC_CONTROL=%s/%s.control", world.dir, svc_names[i]);
    env[n++] = xstrdup("KOOISV_LOG_LEVEL=warn");
    env[n++] = xasprintf("KOOISV_CURVE_SECRET_KEY_FILE=%s/curve-services.key", world.dir);
    env[n++] = xasprintf("KOOISV_CURVE_CLIENTS=%s", world.gateway_pub);
    n = env_inherit(env, n);
    env[n] = NULL;
    char logname[64];
    snprintf(logname, sizeof logname, "%s.stderr", svc_names[i]);
    world.svc_pid[i] = spawn(FAKESVC_BIN, env, logname);
    for (int k = 0; k < n; k++)
        free(env[k]);
}

static void fake_stop(int i)
{
    if (world.svc_pid[i] <= 0)
        return;
    kill(world.svc_pid[i], SIGTERM);
    waitpid(world.svc_pid[i], NULL, 0);
    world.svc_pid[i] = 0;
}

static void fake_control(int i, const char *text)
{
    char *p = xasprintf("%s/%s.control", world.dir, svc_names[i]);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    free(p);
}

static void gateway_start(void)
{
    char *env[48];
    int n = 0;
    env[n++] = xasprintf("KOOISV_LISTEN=127.0.0.1:%d", world.port);
    env[n++] = xasprintf("KOOISV_METRICS_LISTEN=127.0.0.1:%d", world.metrics_port);
    env[n++] = xasprintf("KOOISV_ADMIN_LISTEN=127.0.0.1:%d", world.admin_port);
    env[n++] = xasprintf("KOOISV_ADMIN_TOKENS_FILE=%s/admin-tokens", world.dir);
    env[n++] = xasprintf("KOOISV_TLS_CERT_FILE=%s/cert.pem", world.dir);
    env[n++] = xasprintf("KOOISV_TLS_KEY_FILE=%s/key.pem", world.dir);
    env[n++] = xasprintf("KOOISV_BASIC_KEY_FILE=%s/basic-key", world.dir);
    env[n++] = xasprintf("KOOISV_KIT_KEY_FILE=%s/kit-key", world.dir);
    env[n++] = xasprintf("KOOISV_AUDIT_ENDPOINTS=tcp://127.0.0.1:%d", world.svc_port[FAKE_AUDIT]);
    env[n++] = xasprintf("KOOISV_ORDER_ENDPOINTS=tcp://127.0.0.1:%d", world.svc_port[FAKE_ORDER]);
    env[n++] = xasprintf("KOOISV_TENANT_ENDPOINTS=tcp://127.0.0.1:%d", world.svc_port[FAKE_TENANT]);
    env[n++] = xasprintf("KOOISV_APP_ENDPOINTS=tcp://127.0.0.1:%d", world.svc_port[FAKE_APP]);
    env[n++] = xstrdup("KOOISV_BILLING_ENDPOINTS=");
    env[n++] = xasprintf("KOOISV_CURVE_SECRET_KEY_FILE=%s/curve-gateway.key", world.dir);
    for (int i = 0; i < 4; i++) {
        char upper[16];
        for (size_t k = 0; k <= strlen(svc_names[i]); k++)
            upper[k] = (char)toupper((unsigned char)svc_names[i][k]);
        env[n++] = xasprintf("KOOISV_%s_SERVER_KEY=%s", upper, world.services_pub);
    }
    env[n++] = xasprintf("KOOISV_REQUEST_DEADLINE_MS=%d", DEADLINE_MS);
    env[n++] = xasprintf("KOOISV_MAX_CONNECTIONS=%d", MAX_CONNECTIONS);
    env[n++] = xasprintf("KOOISV_HEADER_TIMEOUT_S=%d", HEADER_TIMEOUT_S);
    env[n++] = xstrdup("KOOISV_IDLE_TIMEOUT_S=5");
    env[n++] = xstrdup("KOOISV_GATEWAY_THREADS=2");
    env[n++] = xstrdup("KOOISV_MAX_BODY_BYTES=65536");
    env[n++] = xstrdup("KOOISV_TRUSTED_PROXIES=127.0.0.1");
    env[n++] = xstrdup("KOOISV_LOG_LEVEL=debug");
    n = env_inherit(env, n);
    env[n] = NULL;
    world.gateway_pid = spawn(GATEWAY_BIN, env, "gateway.log");
    for (int k = 0; k < n; k++)
        free(env[k]);
}

static void write_file(const char *name, const char *text, mode_t mode)
{
    char *p = path_in(name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    chmod(p, mode);
    free(p);
}

static char *metrics_get(const char *path, int *status)
{
    char *url = xasprintf("%s%s", suite_get("KOOISV_METRICS_URL"), path);
    httpc_options_t opt = {.timeout_ms = 2000};
    httpc_response_t r;
    int rc = httpc_request("GET", url, NULL, NULL, 0, &opt, &r);
    free(url);
    *status = rc == 0 ? r.status : 0;
    char *body = xstrdup(rc == 0 && r.body ? r.body : "");
    httpc_response_free(&r);
    return body;
}

/* Until /healthz says every stand-in has a connected replica (or timeout). */
static bool gateway_ready(int timeout_ms)
{
    int64_t end = time_mono_us() + (int64_t)timeout_ms * 1000;
    while (time_mono_us() < end) {
        int status;
        char *body = metrics_get("/healthz", &status);
        bool ok = status == 200 && strstr(body, "service audit up") &&
                  strstr(body, "service order up") && strstr(body, "service tenant up") &&
                  strstr(body, "service app up");
        free(body);
        if (ok)
            return true;
        usleep(50000);
    }
    return false;
}

static int world_setup(void **state)
{
    snprintf(world.dir, sizeof world.dir, "%s/gateway-standalone", TEST_WORK_DIR);
    char *cmd = xasprintf("rm -rf '%s' && mkdir -p '%s'", world.dir, world.dir);
    if (system(cmd) != 0)
        return -1;
    free(cmd);
    cmd = xasprintf("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
                    "-keyout '%s/key.pem' -out '%s/cert.pem' -days 2 -subj /CN=127.0.0.1 "
                    "-addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1",
                    world.dir, world.dir);
    int rc = system(cmd);
    free(cmd);
    if (rc != 0) {
        fprintf(stderr, "cannot make a test certificate with openssl\n");
        return -1;
    }
    rand_alnum(world.basic_key, 32);
    rand_alnum(world.kit_key, 32);
    write_file("basic-key", world.basic_key, 0600);
    write_file("kit-key", world.kit_key, 0600);
    write_file("admin-tokens", "", 0600);
    char secret[41];
    if (zmq_curve_keypair(world.gateway_pub, secret) != 0)
        return -1;
    write_file("curve-gateway.key", secret, 0600);
    if (zmq_curve_keypair(world.services_pub, secret) != 0)
        return -1;
    write_file("curve-services.key", secret, 0600);
    world.port = kc_free_port();
    world.metrics_port = kc_free_port();
    world.admin_port = kc_free_port();
    for (int i = 0; i < 4; i++)
        world.svc_port[i] = kc_free_port();
    char env[2048];
    snprintf(env, sizeof env,
             "KOOISV_URL=https://127.0.0.1:%d/produce\nKOOISV_BASIC_KEY=%s\nKOOISV_KIT_KEY=%s\n"
             "KOOISV_CA_FILE=%s/cert.pem\nKOOISV_METRICS_URL=http://127.0.0.1:%d\n",
             world.port, world.basic_key, world.kit_key, world.dir, world.metrics_port);
    write_file("suite.env", env, 0600);
    char *envpath = path_in("suite.env");
    setenv("KOOISV_SUITE_ENV", envpath, 1);
    free(envpath);
    for (int i = 0; i < 4; i++)
        fake_start(i);
    gateway_start();
    if (!gateway_ready(10000)) {
        fprintf(stderr, "standalone gateway did not become ready (see %s/gateway.log)\n",
                world.dir);
        return -1;
    }
    return 0;
}

static int world_teardown(void **state)
{
    int status = -1;
    if (world.gateway_pid > 0) {
        /* A graceful stop: SIGTERM, exit 0, in time. */
        int64_t t0 = time_mono_us();
        kill(world.gateway_pid, SIGTERM);
        waitpid(world.gateway_pid, &status, 0);
        int64_t ms = (time_mono_us() - t0) / 1000;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || ms > 8000) {
            fprintf(stderr, "gateway did not stop cleanly (status %d, %lld ms)\n", status,
                    (long long)ms);
            status = -1;
        } else {
            status = 0;
        }
    }
    for (int i = 0; i < 4; i++)
        fake_stop(i);
    return status == 0 ? 0 : -1;
}

/* True when some line of the stand-in's log holds every needle (polls up to ms). */
static bool fake_log_has(int svc, int ms, const char *a, const char *b, const char *c)
{
    char *p = xasprintf("%s/%s.log", world.dir, svc_names[svc]);
    int64_t end = time_mono_us() + (int64_t)ms * 1000;
    bool found = false;
    do {
        FILE *f = fopen(p, "r");
        char line[4096];
        while (f && !found && fgets(line, sizeof line, f))
            found = (!a || strstr(line, a)) && (!b || strstr(line, b)) && (!c || strstr(line, c));
        if (f)
            fclose(f);
        if (!found && ms > 0)
            usleep(20000);
    } while (!found && time_mono_us() < end);
    free(p);
    return found;
}

/* Lines of the stand-in's log holding both needles. */
static int fake_log_count(int svc, const char *a, const char *b)
{
    char *p = xasprintf("%s/%s.log", world.dir, svc_names[svc]);
    FILE *f = fopen(p, "r");
    char line[4096];
    int n = 0;
    while (f && fgets(line, sizeof line, f))
        n += strstr(line, a) && strstr(line, b);
    if (f)
        fclose(f);
    free(p);
    return n;
}

/* Fail with the needles when no line of the stand-in's log holds them all. */
static void expect_logged(int svc, int ms, const char *a, const char *b, const char *c)
{
    if (!fake_log_has(svc, ms, a, b, c))
        fail_msg("%s.log has no line with \"%s\" \"%s\" \"%s\"", svc_names[svc], a ? a : "",
                 b ? b : "", c ? c : "");
}

static bool file_contains(const char *path, const char *needle)
{
    size_t len = 0;
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char *buf = NULL;
    size_t cap = 0;
    ssize_t got;
    bool found = false;
    while (!found && (got = getline(&buf, &cap, f)) >= 0) {
        len += (size_t)got;
        found = strstr(buf, needle) != NULL;
    }
    free(buf);
    fclose(f);
    return found;
}

/* ================================================================== helpers */

#define SKIP_UNLESS_STANDALONE()                                                                   \
    do {                                                                                           \
        if (!standalone)                                                                           \
            skip();                                                                                \
    } while (0)

static void expect_code(const kresp_t *r, const char *code)
{
    if (r->status != 200 || !r->code || strcmp(r->code, code) != 0)
        fail_msg("wanted HTTP 200 resultCode %s, got HTTP %d body %s (%s)", code, r->status,
                 r->body ? r->body : "", r->error);
    if (!r->body_sign_ok)
        fail_msg("answer %s has no valid Body-Sign", r->body);
}

/* Send body as a basic call (kc_basic_ex arguments); fail unless it answers code, signed. */
static void basic_expect(const char *body, const char *ts, const char *nonce, const char *signature,
                         const char *code)
{
    kresp_t r;
    kc_basic_ex(body, ts, nonce, signature, &r);
    expect_code(&r, code);
    kresp_free(&r);
}

/* method on path with body (NULL: none) answered HTTP status want. */
static void raw_status(const char *method, const char *path, const char *body, int want)
{
    kresp_t r;
    kc_raw(method, path, NULL, body, body ? strlen(body) : 0, &r);
    assert_int_equal(r.status, want);
    kresp_free(&r);
}

/* basic_expect for a refusal, which (standalone) the audit service records with its code and
 * also (NULL: anything). */
static void basic_refused(const char *body, const char *ts, const char *nonce,
                          const char *signature, const char *code, const char *also)
{
    kresp_t r;
    kc_basic_ex(body, ts, nonce, signature, &r);
    expect_code(&r, code);
    if (standalone) {
        char reject[32];
        snprintf(reject, sizeof reject, "reject=%s", code);
        expect_logged(FAKE_AUDIT, 2000, r.request_id, reject, also);
    }
    kresp_free(&r);
}

/* Send body as kit call name (kc_kit_ex arguments); fail unless it answers code, signed. */
static void kit_expect(const char *name, const char *body, const char *ts, const char *nonce,
                       const char *sign, const char *code)
{
    kresp_t r;
    kc_kit_ex(name, body, ts, nonce, sign, &r);
    expect_code(&r, code);
    kresp_free(&r);
}

static const char *result_msg(const kresp_t *r)
{
    const char *m = json_string_value(json_object_get(r->json, "resultMsg"));
    return m ? m : "";
}

static char *new_instance_body(char **order_out)
{
    char *order = kc_uid("CSGW");
    char *business = kc_uid("B");
    char *body = xasprintf("{\"activity\":\"newInstance\",\"orderId\":\"%s\",\"orderLineId\":"
                           "\"%s-000001\",\"businessId\":\"%s\",\"testFlag\":\"1\"}",
                           order, order, business);
    free(business);
    if (order_out)
        *order_out = order;
    else
        free(order);
    return body;
}

static void now_ts(char ts[24], int64_t offset_ms)
{
    snprintf(ts, 24, "%lld", (long long)(time_now_ms() + offset_ms));
}

static void upper(char *s)
{
    for (; *s; s++)
        if (*s >= 'a' && *s <= 'f')
            *s = (char)(*s - 'a' + 'A');
}

/* A TLS connection to the gateway made with ctx (taking the caller's reference), offering
 * session resume when not NULL; NULL when the connection or the handshake fails. */
static SSL *tls_connect(SSL_CTX *ctx, SSL_SESSION *resume, int port, int *fd_out)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL *ssl = SSL_new(ctx);
    SSL_CTX_free(ctx); /* the SSL keeps its own reference */
    if (resume)
        SSL_set_session(ssl, resume);
    SSL_set_fd(ssl, fd);
    if (SSL_connect(ssl) != 1) {
        ERR_clear_error();
        SSL_free(ssl);
        close(fd);
        return NULL;
    }
    *fd_out = fd;
    return ssl;
}

/* A raw TLS connection to the gateway (own client, for what an HTTP client would hide). */
static SSL *tls_open(int port, int min_version, int max_version, int *fd_out)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx, min_version);
    SSL_CTX_set_max_proto_version(ctx, max_version);
    SSL_CTX_set_security_level(ctx, 0); /* allow the old versions we want to see refused */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    return tls_connect(ctx, NULL, port, fd_out);
}

static void tls_close(SSL *ssl, int fd)
{
    if (!ssl)
        return;
    SSL_free(ssl);
    close(fd);
}

/* Read until the peer closes or n bytes; returns bytes read. */
static size_t tls_read_all(SSL *ssl, char *buf, size_t n)
{
    size_t got = 0;
    while (got + 1 < n) {
        int r = SSL_read(ssl, buf + got, (int)(n - 1 - got));
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    buf[got] = '\0';
    ERR_clear_error();
    return got;
}

static int gateway_port(void)
{
    const char *url = suite_get("KOOISV_URL");
    const char *p = strrchr(url, ':');
    return p ? atoi(p + 1) : -1;
}

/* ================================================================== tests */

static void test_good_call(void **state)
{
    char *order = NULL;
    char *body = new_instance_body(&order);
    kresp_t r;
    assert_int_equal(kc_basic(body, &r), 0);
    expect_code(&r, "000000");
    const char *instance = json_string_value(json_object_get(r.json, "instanceId"));
    assert_non_null(instance);
    assert_true(*instance);
    assert_non_null(r.request_id);
    assert_int_equal(strlen(r.request_id), 36);
    const char *ct = kresp_header(&r, "Content-Type");
    assert_non_null(ct);
    assert_string_equal(ct, "application/json;charset=UTF-8");
    /* Exactly {"resultCode","resultMsg","instanceId"} in that order. */
    assert_true(strncmp(r.body, "{\"resultCode\":\"000000\",\"resultMsg\":", 35) == 0);
    if (standalone) {
        /* Recorded before it ran (intent with nonce, resources, caller key id, source), then
         * its outcome; the order service got the validated body with a deadline. */
        expect_logged(FAKE_AUDIT, 2000, r.request_id, "audit intent ", "event=newInstance");
        char res[128];
        snprintf(res, sizeof res, "res=order:%s,order_line:%s-000001", order, order);
        expect_logged(FAKE_AUDIT, 0, r.request_id, res, "src=127.0.0.1");
        expect_logged(FAKE_AUDIT, 0, r.request_id, "caller=basic:", "test=1");
        expect_logged(FAKE_AUDIT, 0, r.request_id, "reject= ", NULL);
        expect_logged(FAKE_AUDIT, 2000, r.request_id, "audit outcome", "code=000000 http=200");
        /* The outcome went in a batch (AuditOutcomeBatch), the request's own id inside. */
        expect_logged(FAKE_AUDIT, 0, "audit batch rid=outcomes:", r.request_id, NULL);
        expect_logged(FAKE_ORDER, 0, r.request_id, "order newInstance", NULL);
        assert_false(fake_log_has(FAKE_ORDER, 0, r.request_id, "deadline=0 ", NULL));
    }
    kresp_free(&r);
    free(body);
    free(order);
}

static void test_query_answer(void **state)
{
    SKIP_UNLESS_STANDALONE();
    kresp_t r;
    kc_basic("{\"activity\":\"queryInstance\",\"instanceId\":\"i-1,i-2\"}", &r);
    expect_code(&r, "000000");
    /* Raw UTF-8 and no "\/" in the signed bytes. */
    assert_non_null(strstr(r.body, "\"frontEndUrl\":\"https://app.example.com/\xe7\xa4\xba/i-1\""));
    assert_non_null(strstr(r.body, "\"encryptType\":\"1\""));
    json_t *info = json_object_get(r.json, "info");
    assert_int_equal(json_array_size(info), 2);
    kresp_free(&r);
}

static void test_signature_forms(void **state)
{
    const char *body = "{\"activity\":\"queryInstance\",\"instanceId\":\"gw-none-1\"}";
    char ts[24], nonce[33], sig[65];
    kresp_t r;

    /* Upper-case hex is the same signature. */
    now_ts(ts, 0);
    rand_alnum(nonce, 32);
    sigv2_sign(SIGV2_BASIC, suite_get("KOOISV_BASIC_KEY"), nonce, ts, body, strlen(body), sig);
    upper(sig);
    kc_basic_ex(body, ts, nonce, sig, &r);
    assert_int_equal(r.status, 200);
    assert_string_not_equal(r.code, "000001");
    assert_string_not_equal(r.code, "000002");
    assert_true(r.body_sign_ok);
    kresp_free(&r);

    /* A body with spaces signed over its exact raw bytes (the raw-body fallback). */
    const char *spaced = "{ \"instanceId\" : \"gw-none-2\", \"activity\" : \"queryInstance\" }";
    now_ts(ts, 0);
    rand_alnum(nonce, 32);
    sigv2_sign(SIGV2_BASIC, suite_get("KOOISV_BASIC_KEY"), nonce, ts, spaced, strlen(spaced), sig);
    kc_basic_ex(spaced, ts, nonce, sig, &r);
    assert_int_equal(r.status, 200);
    assert_string_not_equal(r.code, "000001");
    assert_string_not_equal(r.code, "000002");
    kresp_free(&r);

    /* The same body signed over its canonical form (kclient's default). */
    now_ts(ts, 0);
    rand_alnum(nonce, 32);
    kc_basic_ex(spaced, ts, nonce, NULL, &r);
    assert_string_not_equal(r.code, "000001");
    kresp_free(&r);
}

static void test_signature_failures(void **state)
{
    char *body = new_instance_body(NULL);
    char ts[24], nonce[33], sig[65];
    kresp_t r;
    const char *key = suite_get("KOOISV_BASIC_KEY");

    now_ts(ts, 0);
    rand_alnum(nonce, 32);
    basic_refused(body, ts, nonce,
                  "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", "000001",
                  nonce);

    /* Signed with another key. */
    now_ts(ts, 0);
    rand_alnum(nonce, 32);
    sigv2_sign(SIGV2_BASIC, "Another-Key-1234567890", nonce, ts, body, strlen(body), sig);
    basic_expect(body, ts, nonce, sig, "000001");

    /* A signature of a different body. */
    sigv2_sign(SIGV2_BASIC, key, nonce, ts, "{}", 2, sig);
    basic_expect(body, ts, nonce, sig, "000001");

    /* Missing signature: 000001; missing timestamp or nonce: 000002. */
    rand_alnum(nonce, 32);
    basic_expect(body, ts, nonce, "", "000001");
    basic_expect(body, NULL, nonce, NULL, "000002");
    basic_expect(body, ts, NULL, NULL, "000002");
    basic_expect(body, "yesterday", nonce, NULL, "000002");

    /* Outside the 60 s window on either side, correctly signed: 000002. */
    now_ts(ts, -61000);
    rand_alnum(nonce, 32);
    basic_refused(body, ts, nonce, NULL, "000002", NULL);
    now_ts(ts, 61000);
    rand_alnum(nonce, 32);
    basic_expect(body, ts, nonce, NULL, "000002");
    /* Just inside the window: fine. */
    now_ts(ts, -50000);
    rand_alnum(nonce, 32);
    basic_expect(body, ts, nonce, NULL, "000000");

    /* Kit: bad x-sign, missing x-timestamp, signed with the basic key. */
    const char *kit = "{\"instanceId\":\"\",\"orderId\":\"\",\"tenantId\":\"t-gw-bad\","
                      "\"tenantCode\":\"c\",\"name\":\"n\",\"domainName\":\"d.example.com\","
                      "\"flag\":1,\"testFlag\":1,\"timeStamp\":\"20240101120000000\"}";
    now_ts(ts, 0);
    rand_alnum(nonce, 32);
    kc_kit_ex("tenantSync", kit, ts, nonce, "deadbeef", &r);
    expect_code(&r, "000001");
    assert_true(
        bodysign_verify(suite_get("KOOISV_KIT_KEY"), r.body, r.len, kresp_header(&r, "Body-Sign")));
    kresp_free(&r);
    kit_expect("tenantSync", kit, NULL, nonce, NULL, "000002");
    rand_alnum(nonce, 32);
    sigv2_sign(SIGV2_KIT, key, nonce, ts, kit, strlen(kit), sig);
    kit_expect("tenantSync", kit, ts, nonce, sig, "000001");
    free(body);
}

static void test_replay(void **state)
{
    char *body = new_instance_body(NULL);
    char ts[24], nonce[33];
    now_ts(ts, 0);
    rand_alnum(nonce, 32);
    kresp_t r;
    basic_expect(body, ts, nonce, NULL, "000000");
    kc_basic_ex(body, ts, nonce, NULL, &r);
    expect_code(&r, "000001");
    assert_string_equal(result_msg(&r), "replayed nonce");
    kresp_free(&r);
    /* Across gateway replicas: the nonce store is shared. */
    if (suite_get("KOOISV_GATEWAY2_URL")) {
        kc_use_gateway(2);
        basic_expect(body, ts, nonce, NULL, "000001");
        kc_use_gateway(1);
    }
    /* A nonce first seen on a rejected call (bad signature) stays usable. */
    char *body2 = new_instance_body(NULL);
    rand_alnum(nonce, 32);
    now_ts(ts, 0);
    basic_expect(body2, ts, nonce, "ab", "000001");
    basic_expect(body2, ts, nonce, NULL, "000000");
    free(body2);
    free(body);
}

/* Correctly signed (over the raw bytes when not JSON) but invalid: 000002 naming the problem. */
static void expect_invalid(const char *body, size_t len, const char *needle)
{
    char ts[24], nonce[33], sig[65];
    now_ts(ts, 0);
    rand_alnum(nonce, 32);
    sigv2_sign(SIGV2_BASIC, suite_get("KOOISV_BASIC_KEY"), nonce, ts, body, len, sig);
    char *copy = xstrndup(body, len);
    kresp_t r;
    kc_basic_ex(copy, ts, nonce, sig, &r);
    expect_code(&r, "000002");
    if (!strstr(result_msg(&r), needle))
        fail_msg("body %s: resultMsg \"%s\" does not name \"%s\"", copy, result_msg(&r), needle);
    kresp_free(&r);
    free(copy);
}

/* Bodies that are refused 000002, each with the part of resultMsg that names why. */
static const char *const bad_bodies[][2] = {
    {"{\"activity\":\"newInstance\",", "not valid JSON"},
    {"{\"activity\":\"newInstance\",\"orderId\":\"a\xff\xfe\"}", "not valid JSON"},
    {"[1,2]", "must be a JSON object"},
    {"\"text\"", "must be a JSON object"},
    {"", "not valid JSON"},
    {"{\"activity\":\"newInstance\",\"orderId\":5,\"orderLineId\":\"l\",\"businessId\":\"b\"}",
     "orderId"},
    {"{\"activity\":\"newInstance\",\"orderId\":\"o\",\"orderLineId\":\"l\"}", "businessId"},
    {"{\"activity\":\"doSomething\"}", "unknown activity"},
    {"{\"instanceId\":\"x\"}", "activity is missing"},
    {"{\"activity\":\"updateInstanceStatus\",\"instanceId\":\"i\",\"status\":\"PAUSE\"}", "status"},
    {"{\"activity\":\"refreshInstance\",\"scene\":\"RENEWAL\",\"orderId\":\"o\","
     "\"orderLineId\":\"l\",\"instanceId\":\"i\",\"expireTime\":\"20230230000000\"}",
     "expireTime"},
    {"{\"activity\":\"newInstance\",\"orderId\":\"o\",\"orderId\":\"p\",\"orderLineId\":\"l\","
     "\"businessId\":\"b\"}",
     "not valid JSON"}, /* duplicate keys are ambiguous */
};

static void test_bad_bodies(void **state)
{
    for (size_t i = 0; i < sizeof bad_bodies / sizeof bad_bodies[0]; i++)
        expect_invalid(bad_bodies[i][0], strlen(bad_bodies[i][0]), bad_bodies[i][1]);
    char *ids = xstrdup("x0");
    for (int i = 1; i <= 100; i++) {
        char *n = xasprintf("%s,x%d", ids, i);
        free(ids);
        ids = n;
    }
    char *many = xasprintf("{\"activity\":\"queryInstance\",\"instanceId\":\"%s\"}", ids);
    expect_invalid(many, strlen(many), "more than 100");
    free(many);
    free(ids);

    /* Kit bodies are validated too (field named). */
    char ts[24], nonce[33];
    now_ts(ts, 0);
    rand_alnum(nonce, 32);
    kresp_t r;
    kc_kit_ex("tenantSync", "{\"tenantId\":7,\"flag\":1,\"tenantCode\":\"c\",\"name\":\"n\"}", ts,
              nonce, NULL, &r);
    expect_code(&r, "000002");
    assert_non_null(strstr(result_msg(&r), "tenantId"));
    kresp_free(&r);
}

static void test_http_errors(void **state)
{
    kresp_t r;
    kc_raw("POST", "/nothing-here", NULL, "{}", 2, &r);
    assert_int_equal(r.status, 404);
    assert_true(r.body_sign_ok);
    kresp_free(&r);
    raw_status("POST", "/produce/", "{}", 404);
    raw_status("POST", "/produce/produceAPI/v2/deleteTenant", "{}", 404);
    kc_raw("GET", "/produce", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 405);
    assert_true(r.body_sign_ok);
    const char *allow = kresp_header(&r, "Allow");
    assert_non_null(allow);
    assert_string_equal(allow, "POST");
    kresp_free(&r);
    raw_status("PUT", "/produce", "{}", 405);
    raw_status("DELETE", "/produce/produceAPI/v2/tenantSync", NULL, 405);
}

static void test_oversized_body(void **state)
{
    /* 413 as soon as the headers announce too much: the body is never read. */
    int fd;
    SSL *ssl = tls_open(gateway_port(), TLS1_2_VERSION, TLS1_3_VERSION, &fd);
    assert_non_null(ssl);
    const char *head = "POST /produce?signature=x&timestamp=1&nonce=n HTTP/1.1\r\n"
                       "Host: 127.0.0.1\r\nContent-Type: application/json\r\n"
                       "Content-Length: 50000000\r\n\r\n{\"activity\":";
    assert_true(SSL_write(ssl, head, (int)strlen(head)) > 0);
    char buf[4096];
    int64_t t0 = time_mono_us();
    tls_read_all(ssl, buf, sizeof buf);
    assert_true(strncmp(buf, "HTTP/1.1 413", 12) == 0);
    assert_true(time_mono_us() - t0 < 3000000);
    tls_close(ssl, fd);
}

static void test_kit_call(void **state)
{
    char *tenant = kc_uid("TGW");
    char *body = xasprintf("{\"instanceId\":\"\",\"orderId\":\"\",\"tenantId\":\"%s\","
                           "\"tenantCode\":\"code-%s\",\"name\":\"gw test\",\"domainName\":"
                           "\"gw.example.com\",\"flag\":1,\"testFlag\":1,"
                           "\"timeStamp\":\"20240101120000000\"}",
                           tenant, tenant);
    kresp_t r;
    kc_kit("tenantSync", body, &r);
    expect_code(&r, "000000");
    /* Kit answers are signed with the kit key. */
    assert_true(
        bodysign_verify(suite_get("KOOISV_KIT_KEY"), r.body, r.len, kresp_header(&r, "Body-Sign")));
    if (standalone) {
        expect_logged(FAKE_AUDIT, 2000, r.request_id, "event=tenantSync", "caller=kit:");
        char res[96];
        snprintf(res, sizeof res, "tenant:%s", tenant);
        expect_logged(FAKE_AUDIT, 0, r.request_id, res, NULL);
        expect_logged(FAKE_TENANT, 2000, r.request_id, "tenant tenantSync", NULL);
    }
    kresp_free(&r);
    free(body);
    free(tenant);
}

static void test_metrics_health(void **state)
{
    kresp_t r;
    kc_basic("{\"activity\":\"releaseInstance\",\"instanceId\":\"gw-metrics\"}", &r);
    kresp_free(&r);
    int status;
    char *text = metrics_get("/healthz", &status);
    assert_int_equal(status, 200);
    assert_true(strncmp(text, "ok\n", 3) == 0);
    assert_non_null(strstr(text, "service order up"));
    assert_non_null(strstr(text, "service audit up"));
    free(text);
    text = metrics_get("/metrics", &status);
    assert_int_equal(status, 200);
    assert_non_null(
        strstr(text, "kooisv_requests_total{activity=\"releaseInstance\",result_code="));
    assert_non_null(strstr(text, "kooisv_request_duration_seconds_bucket{activity="));
    assert_non_null(strstr(text, "kooisv_requests_in_flight "));
    assert_non_null(strstr(text, "kooisv_connections "));
    assert_non_null(strstr(text, "kooisv_service_connections{service=\"order\"}"));
    free(text);
    text = metrics_get("/other", &status);
    assert_int_equal(status, 404);
    free(text);
}

typedef struct {
    int status;
    int64_t done_us; /* monotonic time the answer was read */
} scrape_t;

static void *scrape_thread(void *arg)
{
    scrape_t *sc = arg;
    char *text = metrics_get("/metrics", &sc->status);
    sc->done_us = time_mono_us();
    free(text);
    return NULL;
}

/* The probes never wait behind a scrape: with the order stand-in too slow to answer the
 * metrics request (a second's budget), /livez, /healthz and /readyz asked while the scrape
 * waits are answered before it. (Before the scrape had a thread of its own, they were queued
 * behind it on the listener's one thread.) */
static void test_probes_not_behind_scrape(void **state)
{
    SKIP_UNLESS_STANDALONE();
    fake_control(FAKE_ORDER, "delay_ms=1500\n");
    scrape_t sc = {0};
    pthread_t t;
    pthread_create(&t, NULL, scrape_thread, &sc);
    usleep(200 * 1000); /* the scrape is waiting for order by now */
    const char *probes[] = {"/livez", "/healthz", "/readyz"};
    int64_t probes_done = 0;
    int statuses[3];
    for (int i = 0; i < 3; i++) {
        char *text = metrics_get(probes[i], &statuses[i]);
        free(text);
    }
    probes_done = time_mono_us();
    pthread_join(t, NULL);
    fake_control(FAKE_ORDER, "");
    assert_int_equal(statuses[0], 200);
    assert_int_not_equal(statuses[1], 0); /* answered (200 or 503 by the stand-ins' state) */
    assert_int_not_equal(statuses[2], 0);
    assert_int_equal(sc.status, 200);
    assert_true(probes_done < sc.done_us);
    /* Let the stand-in's delayed worker finish before the next test. */
    usleep(1500 * 1000);
}

/* Send a fresh newInstance (its order id in *order_out when not NULL; caller frees), its answer
 * in r (caller frees); returns how long the answer took in ms. */
static int64_t timed_new_instance_call(kresp_t *r, char **order_out)
{
    char *body = new_instance_body(order_out);
    int64_t t0 = time_mono_us();
    kc_basic(body, r);
    int64_t ms = (time_mono_us() - t0) / 1000;
    free(body);
    return ms;
}

static bool order_answers(void *arg)
{
    char *body = new_instance_body(NULL);
    kresp_t r;
    kc_basic(body, &r);
    bool ok = r.code && strcmp(r.code, "000000") == 0;
    kresp_free(&r);
    free(body);
    return ok;
}

static void test_service_down(void **state)
{
    if (standalone)
        fake_stop(FAKE_ORDER);
    else
        assert_int_equal(kc_suite("stop-svc", "order"), 0);
    kresp_t r;
    int64_t ms = timed_new_instance_call(&r, NULL);
    /* The suite's order service back before any check, so that a failed one leaves no later
     * test (or test program) without it. */
    if (!standalone)
        assert_int_equal(kc_suite("start-svc", "order"), 0);
    expect_code(&r, "000005");
    assert_true(ms < 4000);
    if (standalone) {
        assert_true(ms < 1000); /* no replica connected: immediate */
        expect_logged(FAKE_AUDIT, 2000, r.request_id, "code=000005", NULL);
    }
    kresp_free(&r);
    if (standalone)
        fake_start(FAKE_ORDER);
    assert_true(kc_wait(15000, 100, order_answers, NULL));
}

/* A newInstance sent while the order stand-in behaves as control says; answers code, and
 * returns how long the answer took in ms. */
static int64_t timed_new_instance(const char *control, const char *code)
{
    fake_control(FAKE_ORDER, control);
    kresp_t r;
    int64_t ms = timed_new_instance_call(&r, NULL);
    fake_control(FAKE_ORDER, "");
    expect_code(&r, code);
    kresp_free(&r);
    return ms;
}

static void test_service_slow(void **state)
{
    SKIP_UNLESS_STANDALONE();
    int64_t ms = timed_new_instance("delay_ms=5000\n", "000005");
    assert_true(ms >= DEADLINE_MS - 300);
    assert_true(ms < DEADLINE_MS + 700);
}

static void test_resend(void **state)
{
    SKIP_UNLESS_STANDALONE();
    /* The first copy of every call stalls; the gateway's resend at half the remaining time
     * reaches another worker and is answered. */
    int64_t ms = timed_new_instance("stall_first_ms=3000\n", "000000");
    assert_true(ms < DEADLINE_MS);
    assert_true(ms >= DEADLINE_MS / 4);
}

static void test_resend_prefers_success(void **state)
{
    SKIP_UNLESS_STANDALONE();
    /* The first copy is slow but succeeds inside the deadline; the resent copy fails at once.
     * The failure must not win the race. */
    timed_new_instance("stall_first_ms=1000\nfail_copies=1\n", "000000");
}

static void test_no_resend_of_state_changes(void **state)
{
    SKIP_UNLESS_STANDALONE();
    /* A status change is never sent twice: a late first copy could land after a later change.
     * The first copy stalls past the deadline, so the call fails, and the service saw it once. */
    fake_control(FAKE_ORDER, "stall_first_ms=2500\n");
    const char *body = "{\"activity\":\"updateInstanceStatus\",\"instanceId\":\"gw-once\","
                       "\"status\":\"FREEZE\"}";
    kresp_t r;
    kc_basic(body, &r);
    expect_code(&r, "000005");
    char *rid = xstrdup(r.request_id);
    kresp_free(&r);
    usleep(3000 * 1000); /* the stalled copy ends */
    fake_control(FAKE_ORDER, "");
    assert_int_equal(fake_log_count(FAKE_ORDER, rid, "updateInstanceStatus "), 1);
    free(rid);
}

static void test_audit_down(void **state)
{
    SKIP_UNLESS_STANDALONE();
    fake_stop(FAKE_AUDIT);
    char *order = NULL;
    kresp_t r;
    int64_t ms = timed_new_instance_call(&r, &order);
    expect_code(&r, "000005");
    assert_true(ms < 1000);
    char *rid = xstrdup(r.request_id);
    kresp_free(&r);
    /* Not executed. */
    assert_false(fake_log_has(FAKE_ORDER, 300, rid, NULL, NULL));
    /* When the audit service is back the gateway's queue stores the call and its outcome. */
    fake_start(FAKE_AUDIT);
    expect_logged(FAKE_AUDIT, 15000, rid, "audit intent", "reject=000005");
    expect_logged(FAKE_AUDIT, 15000, rid, "audit outcome", "code=000005");
    int status;
    char *text = NULL;
    for (int i = 0; i < 100; i++) {
        free(text);
        text = metrics_get("/metrics", &status);
        if (strstr(text, "kooisv_audit_retry_queue 0\n"))
            break;
        usleep(50000);
    }
    assert_non_null(strstr(text, "kooisv_audit_retry_queue 0\n"));
    free(text);
    assert_true(gateway_ready(5000));
    free(rid);
    free(order);
}

/* The audit service restarts: a call that arrives while the gateway's links to it are still
 * reconnecting (in their back-off since it went away) waits for a link, and is served, instead
 * of being answered 000005 (a retry's worth of delay for the marketplace). */
static void test_audit_restart(void **state)
{
    SKIP_UNLESS_STANDALONE();
    fake_stop(FAKE_AUDIT);
    usleep(1500 * 1000); /* every link has noticed, and backs off between attempts */
    fake_start(FAKE_AUDIT);
    for (int i = 0; i < 3; i++) {
        char *order = NULL;
        kresp_t r;
        int64_t ms = timed_new_instance_call(&r, &order);
        expect_code(&r, "000000");
        assert_true(ms < 2000);
        kresp_free(&r);
        free(order);
    }
}

static void test_audit_without_batches(void **state)
{
    /* An audit service from before outcome batches (a rolling upgrade) refuses them whole:
     * every outcome is then sent alone and stored, none lost. */
    SKIP_UNLESS_STANDALONE();
    fake_control(FAKE_AUDIT, "no_batches=1\n");
    char *rids[3];
    for (int i = 0; i < 3; i++) {
        char *order = NULL;
        kresp_t r;
        timed_new_instance_call(&r, &order);
        expect_code(&r, "000000");
        rids[i] = xstrdup(r.request_id);
        kresp_free(&r);
        free(order);
    }
    for (int i = 0; i < 3; i++) {
        expect_logged(FAKE_AUDIT, 5000, rids[i], "audit outcome", "code=000000 http=200");
        assert_false(fake_log_has(FAKE_AUDIT, 0, "audit batch", rids[i], NULL));
        free(rids[i]);
    }
    fake_control(FAKE_AUDIT, "");
}

static void test_forwarded_for(void **state)
{
    SKIP_UNLESS_STANDALONE();
    /* The standalone gateway trusts 127.0.0.1 as a proxy. */
    const char *body = "{\"activity\":\"releaseInstance\",\"instanceId\":\"gw-xff\"}";
    char ts[24], nonce[33], sig[65];
    now_ts(ts, 0);
    rand_alnum(nonce, 32);
    sigv2_sign(SIGV2_BASIC, suite_get("KOOISV_BASIC_KEY"), nonce, ts, body, strlen(body), sig);
    char *path = xasprintf("/produce?signature=%s&timestamp=%s&nonce=%s", sig, ts, nonce);
    const char *headers[] = {"Content-Type: application/json",
                             "X-Forwarded-For: 6.6.6.6, 203.0.113.7", NULL};
    kresp_t r;
    kc_raw("POST", path, headers, body, strlen(body), &r);
    expect_code(&r, "000000");
    expect_logged(FAKE_AUDIT, 2000, r.request_id, "audit intent", "src=203.0.113.7 ");
    kresp_free(&r);
    free(path);

    /* A client's own X-Forwarded-For line, then the one the proxy appended (HAProxy's option
     * forwardfor adds a line of its own): the lines are one list in order, so the proxy's
     * address for the client wins, not the client's claim. */
    now_ts(ts, 0);
    rand_alnum(nonce, 32);
    sigv2_sign(SIGV2_BASIC, suite_get("KOOISV_BASIC_KEY"), nonce, ts, body, strlen(body), sig);
    path = xasprintf("/produce?signature=%s&timestamp=%s&nonce=%s", sig, ts, nonce);
    const char *two_lines[] = {"Content-Type: application/json", "X-Forwarded-For: 6.6.6.6",
                               "X-Forwarded-For: 203.0.113.8", NULL};
    kc_raw("POST", path, two_lines, body, strlen(body), &r);
    expect_code(&r, "000000");
    expect_logged(FAKE_AUDIT, 2000, r.request_id, "audit intent", "src=203.0.113.8 ");
    kresp_free(&r);
    free(path);
}

/* HTTP status of an admin call with token (the standalone gateway's admin API). */
static int admin_status(const char *token)
{
    char *url = xasprintf("https://127.0.0.1:%d/v1/audit?limit=1", world.admin_port);
    char *auth = xasprintf("Authorization: Bearer %s", token);
    const char *headers[] = {auth, NULL};
    kresp_t r;
    kc_raw("GET", url, headers, NULL, 0, &r);
    int status = r.status;
    kresp_free(&r);
    free(auth);
    free(url);
    return status;
}

/* Until the admin API answers token with a status that is (want_401) or is not 401. */
static bool admin_wait_401(const char *token, bool want_401)
{
    for (int i = 0; i < 60; i++) {
        if ((admin_status(token) == 401) == want_401)
            return true;
        usleep(100000);
    }
    return false;
}

static void test_token_revocation(void **state)
{
    SKIP_UNLESS_STANDALONE();
    /* Revoking a token must not depend on the tokens file staying well-formed: a file that no
     * longer parses, or is gone, leaves no token valid (fail closed), until it is fixed. */
    const char *token = "revocation-test-token-0123456789abcdef";
    uint8_t digest[32];
    char hex[65], line[200];
    sha256(token, strlen(token), digest);
    hex_encode(digest, 32, hex);
    snprintf(line, sizeof line, "ops auditor %s\n", hex);
    write_file("admin-tokens", line, 0600);
    assert_true(admin_wait_401(token, false));
    write_file("admin-tokens", "this line does not parse\n", 0600);
    assert_true(admin_wait_401(token, true));
    write_file("admin-tokens", line, 0600);
    assert_true(admin_wait_401(token, false));
    char *p = path_in("admin-tokens");
    unlink(p);
    assert_true(admin_wait_401(token, true));
    write_file("admin-tokens", "", 0600);
    free(p);
}

static void test_tls_versions(void **state)
{
    int fd;
    SSL *ssl = tls_open(gateway_port(), TLS1_2_VERSION, TLS1_2_VERSION, &fd);
    assert_non_null(ssl);
    assert_int_equal(SSL_version(ssl), TLS1_2_VERSION);
    tls_close(ssl, fd);
    ssl = tls_open(gateway_port(), TLS1_3_VERSION, TLS1_3_VERSION, &fd);
    assert_non_null(ssl);
    tls_close(ssl, fd);
    ssl = tls_open(gateway_port(), TLS1_VERSION, TLS1_1_VERSION, &fd);
    assert_null(ssl);
}

/* TLS 1.3 session tickets: the client's count of tickets received, and the last one. */
static int tickets_seen;
static SSL_SESSION *ticket_kept;

static int on_ticket(SSL *ssl, SSL_SESSION *sess)
{
    (void)ssl;
    tickets_seen++;
    if (ticket_kept)
        SSL_SESSION_free(ticket_kept);
    /* A copy: OpenSSL marks the connection's own session not resumable when the gateway closes
     * without close_notify. */
    ticket_kept = SSL_SESSION_dup(sess);
    return 0;
}

/* One TLS 1.3 exchange (GET /produce, then the gateway's close) offering resume; whether the
 * handshake resumed it. */
static bool tls13_exchange(SSL_SESSION *resume)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, on_ticket);
    int fd;
    SSL *ssl = tls_connect(ctx, resume, gateway_port(), &fd);
    assert_non_null(ssl);
    const char *req = "GET /produce HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    assert_true(SSL_write(ssl, req, (int)strlen(req)) > 0);
    char buf[4096];
    tls_read_all(ssl, buf, sizeof buf); /* tickets come before the answer; read to the close */
    bool resumed = SSL_session_reused(ssl) == 1;
    tls_close(ssl, fd);
    return resumed;
}

/* The gateway sends one TLS 1.3 ticket per handshake (not OpenSSL's default two), and a client
 * resumes with it. */
static void test_tls_tickets(void **state)
{
    tickets_seen = 0;
    assert_false(tls13_exchange(NULL));
    assert_int_equal(tickets_seen, 1);
    assert_non_null(ticket_kept);
    SSL_SESSION *first = ticket_kept;
    ticket_kept = NULL;
    tickets_seen = 0;
    assert_true(tls13_exchange(first));
    assert_int_equal(tickets_seen, 1); /* a resumed handshake gets a fresh one */
    SSL_SESSION_free(first);
    SSL_SESSION_free(ticket_kept);
    ticket_kept = NULL;
}

/* Until the gateway has seen every earlier connection close (closes are asynchronous). */
static void wait_no_connections(void)
{
    for (int i = 0; i < 100; i++) {
        int st;
        char *m = metrics_get("/metrics", &st);
        bool idle = strstr(m, "\nkooisv_connections 0\n") != NULL;
        free(m);
        if (idle)
            return;
        usleep(50000);
    }
}

static void test_connection_limit(void **state)
{
    SKIP_UNLESS_STANDALONE();
    SSL *held[MAX_CONNECTIONS];
    int fds[MAX_CONNECTIONS];
    wait_no_connections();
    int opened = 0;
    for (int i = 0; i < MAX_CONNECTIONS; i++) {
        held[i] = tls_open(world.port, TLS1_2_VERSION, TLS1_3_VERSION, &fds[i]);
        opened += held[i] != NULL;
    }
    int fd;
    SSL *extra = tls_open(world.port, TLS1_2_VERSION, TLS1_3_VERSION, &fd);
    bool refused = extra == NULL; /* refused in the handshake */
    tls_close(extra, fd);
    int status;
    char *text = metrics_get("/metrics", &status);
    bool counted = strstr(text, "\nkooisv_connections 16\n") != NULL;
    free(text);
    tls_close(held[0], fds[0]);
    extra = NULL;
    for (int i = 0; i < 50 && !extra; i++) {
        usleep(20000);
        extra = tls_open(world.port, TLS1_2_VERSION, TLS1_3_VERSION, &fd);
    }
    bool reopened = extra != NULL;
    tls_close(extra, fd);
    for (int i = 1; i < MAX_CONNECTIONS; i++)
        tls_close(held[i], fds[i]);
    wait_no_connections();
    assert_int_equal(opened, MAX_CONNECTIONS);
    assert_true(refused);
    assert_true(counted);
    assert_true(reopened);
}

static void test_header_timeout(void **state)
{
    SKIP_UNLESS_STANDALONE();
    /* A request that never completes is cut after KOOISV_HEADER_TIMEOUT_S. */
    wait_no_connections();
    int fd;
    SSL *ssl = tls_open(world.port, TLS1_2_VERSION, TLS1_3_VERSION, &fd);
    assert_non_null(ssl);
    const char *part = "POST /produce HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
    SSL_write(ssl, part, (int)strlen(part));
    int64_t t0 = time_mono_us();
    char buf[256];
    tls_read_all(ssl, buf, sizeof buf);
    int64_t ms = (time_mono_us() - t0) / 1000;
    assert_true(ms >= HEADER_TIMEOUT_S * 1000 - 200);
    assert_true(ms < HEADER_TIMEOUT_S * 1000 + 1500);
    tls_close(ssl, fd);

    /* A TCP connection that never starts TLS is cut as well. */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)world.port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {6, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    t0 = time_mono_us();
    ssize_t got = recv(fd, buf, sizeof buf, 0);
    ms = (time_mono_us() - t0) / 1000;
    assert_true(got <= 0);
    assert_true(ms < HEADER_TIMEOUT_S * 1000 + 1500);
    close(fd);
}

/* Read one HTTP response (headers and Content-Length body) from ssl into buf. */
static size_t read_response(SSL *ssl, char *buf, size_t n)
{
    size_t got = 0;
    while (got + 1 < n) {
        buf[got] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (end) {
            const char *cl = strcasestr(buf, "Content-Length:");
            size_t body = cl ? (size_t)strtoul(cl + 15, NULL, 10) : 0;
            if (got >= (size_t)(end + 4 - buf) + body)
                break;
        }
        int r = SSL_read(ssl, buf + got, (int)(n - 1 - got));
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    buf[got] = '\0';
    return got;
}

static void test_keep_alive(void **state)
{
    /* Several requests on one connection, each answered. */
    int fd;
    SSL *ssl = tls_open(gateway_port(), TLS1_2_VERSION, TLS1_3_VERSION, &fd);
    assert_non_null(ssl);
    bool ok = true;
    for (int i = 0; i < 3 && ok; i++) {
        const char *req = "GET /produce HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
        SSL_write(ssl, req, (int)strlen(req));
        char buf[4096];
        read_response(ssl, buf, sizeof buf);
        ok = strncmp(buf, "HTTP/1.1 405", 12) == 0;
    }
    tls_close(ssl, fd);
    assert_true(ok);
}

static void test_no_secrets_logged(void **state)
{
    SKIP_UNLESS_STANDALONE();
    char *log = path_in("gateway.log");
    assert_false(file_contains(log, world.basic_key));
    assert_false(file_contains(log, world.kit_key));
    assert_true(file_contains(log, "msg=\"request\""));
    free(log);
}

static void *held_call(void *arg)
{
    char *body = new_instance_body(NULL);
    kc_basic(body, arg);
    free(body);
    return NULL;
}

/* Graceful stop: SIGTERM while a call is being served. The listener closes at once (a new
 * connection is refused), the call it holds is answered 000000, a keep-alive connection that was
 * idle meanwhile still gets its next call answered after that (the gateway keeps connections for
 * up to 2 s, instead of cutting them once nothing is in flight), and the process exits 0; then
 * the gateway is started again for the rest of the tests. */
/* True when every gateway socket (two worker threads and the admin API) is connected to the
 * order stand-in again (after test_service_down restarted it). */
static bool order_connected(void *arg)
{
    (void)arg;
    int status;
    char *text = metrics_get("/metrics", &status);
    bool ok = strstr(text, "kooisv_service_connections{service=\"order\"} 3\n") != NULL;
    free(text);
    return ok;
}

static void test_graceful_stop(void **state)
{
    SKIP_UNLESS_STANDALONE();
    assert_true(kc_wait(15000, 100, order_connected, NULL));
    fake_control(FAKE_ORDER, "delay_ms=1000\n");
    /* A keep-alive connection, used once before the stop and idle across it. */
    const char *get = "GET /produce HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    char buf[4096];
    int idle_fd;
    SSL *idle = tls_open(gateway_port(), TLS1_2_VERSION, TLS1_3_VERSION, &idle_fd);
    assert_non_null(idle);
    SSL_write(idle, get, (int)strlen(get));
    read_response(idle, buf, sizeof buf);
    assert_memory_equal(buf, "HTTP/1.1 405", 12);
    kresp_t held, late;
    pthread_t t;
    pthread_create(&t, NULL, held_call, &held);
    usleep(400 * 1000);
    int64_t t0 = time_mono_us();
    kill(world.gateway_pid, SIGTERM);
    usleep(250 * 1000);
    char *body = new_instance_body(NULL);
    kc_basic(body, &late);
    free(body);
    assert_int_equal(late.status, 0);
    kresp_free(&late);
    pthread_join(t, NULL);
    /* Nothing is in flight any more: the idle connection's next call is still answered. */
    usleep(300 * 1000);
    SSL_write(idle, get, (int)strlen(get));
    buf[0] = '\0';
    read_response(idle, buf, sizeof buf);
    tls_close(idle, idle_fd);
    fake_control(FAKE_ORDER, "");
    expect_code(&held, "000000");
    kresp_free(&held);
    assert_memory_equal(buf, "HTTP/1.1 405", 12);
    int status = -1;
    waitpid(world.gateway_pid, &status, 0);
    int64_t ms = (time_mono_us() - t0) / 1000;
    world.gateway_pid = -1;
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_true(ms < DEADLINE_MS + 3000);
    gateway_start();
    assert_true(gateway_ready(10000));
}

int main(int argc, char **argv)
{
    standalone = argc > 1 && strcmp(argv[1], "standalone") == 0;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_call),
        cmocka_unit_test(test_audit_without_batches),
        cmocka_unit_test(test_query_answer),
        cmocka_unit_test(test_signature_forms),
        cmocka_unit_test(test_signature_failures),
        cmocka_unit_test(test_replay),
        cmocka_unit_test(test_bad_bodies),
        cmocka_unit_test(test_http_errors),
        cmocka_unit_test(test_oversized_body),
        cmocka_unit_test(test_kit_call),
        cmocka_unit_test(test_metrics_health),
        cmocka_unit_test(test_probes_not_behind_scrape),
        cmocka_unit_test(test_tls_versions),
        cmocka_unit_test(test_tls_tickets),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_forwarded_for),
        cmocka_unit_test(test_token_revocation),
        cmocka_unit_test(test_service_slow),
        cmocka_unit_test(test_resend),
        cmocka_unit_test(test_resend_prefers_success),
        cmocka_unit_test(test_no_resend_of_state_changes),
        cmocka_unit_test(test_connection_limit),
        cmocka_unit_test(test_header_timeout),
        cmocka_unit_test(test_audit_down),
        cmocka_unit_test(test_audit_restart),
        cmocka_unit_test(test_service_down),
        cmocka_unit_test(test_no_secrets_logged),
        cmocka_unit_test(test_graceful_stop),
    };
    if (standalone)
        return cmocka_run_group_tests_name("gateway_standalone", tests, world_setup,
                                           world_teardown);
    return cmocka_run_group_tests_name("gateway_suite", tests, NULL, NULL);
}
