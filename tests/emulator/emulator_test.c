/* The emulator's own smoke test, and through it common/httpc and tests/support: start the real
 * binary with a fresh certificate on a free port, then call it as the services and the
 * integration tests will (signed Query Order, usage push, webhooks, the control API). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "canonjson.h"
#include "sigv2.h"
#include "httpc.h"
#include "kclient.h"
#include "randutil.h"
#include "sdksign.h"
#include "timeutil.h"
#include "usagesign.h"
#include "xmalloc.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define AK "AKSMOKETEST00000001"
#define SK "Sk-smoke-0123456789abcdefXYZ"
#define BASIC_KEY "Basic-smoke-0123456789abcdef"
#define KIT_KEY "Kit-smoke-0123456789abcdef"
#define QUERY_PATH "/api/mkp-openapi-public/global/v1/order/query"
#define USAGE_PATH "/api/mkp-openapi-public/global/v1/isv/usage-data"

extern char **environ;

static pid_t emulator_pid;
static char host[64]; /* "127.0.0.1:<port>", what goes in the Host header */
static char base[96]; /* "https://127.0.0.1:<port>" */
static char ca_file[512];

static void run_or_fail(const char *cmd)
{
    int rc = system(cmd);
    if (rc != 0) {
        fprintf(stderr, "command failed (%d): %s\n", rc, cmd);
        exit(1);
    }
}

static int start_emulator(void **state)
{
    const char *dir = KOOISV_TEST_WORKDIR "/smoke";
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", dir, dir);
    run_or_fail(cmd);
    snprintf(ca_file, sizeof ca_file, "%s/cert.pem", dir);
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
             "-subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost "
             "-keyout '%s/key.pem' -out '%s/cert.pem' 2>/dev/null",
             dir, dir);
    run_or_fail(cmd);

    char port_file[512];
    snprintf(port_file, sizeof port_file, "%s/port", dir);
    char *key_file = xasprintf("%s/key.pem", dir);
    setenv("KOOISV_EMULATOR_LISTEN", "127.0.0.1:0", 1);
    setenv("KOOISV_TLS_CERT_FILE", ca_file, 1);
    setenv("KOOISV_TLS_KEY_FILE", key_file, 1);
    setenv("KOOISV_EMULATOR_PORT_FILE", port_file, 1);
    setenv("KOOISV_MARKETPLACE_AK", AK, 1);
    setenv("KOOISV_MARKETPLACE_SK", SK, 1);
    setenv("KOOISV_BASIC_KEY", BASIC_KEY, 1);
    setenv("KOOISV_LOG_LEVEL", "warn", 1);
    free(key_file);
    char *argv[] = {KOOISV_EMULATOR_BIN, NULL};
    if (posix_spawn(&emulator_pid, KOOISV_EMULATOR_BIN, NULL, NULL, argv, environ) != 0) {
        fprintf(stderr, "cannot start %s\n", KOOISV_EMULATOR_BIN);
        return -1;
    }
    unsigned port = 0;
    for (int i = 0; i < 200 && !port; i++) {
        FILE *f = fopen(port_file, "r");
        if (f) {
            if (fscanf(f, "%u", &port) != 1)
                port = 0;
            fclose(f);
        }
        if (!port)
            usleep(25000);
    }
    if (!port) {
        fprintf(stderr, "emulator did not report its port\n");
        return -1;
    }
    snprintf(host, sizeof host, "127.0.0.1:%u", port);
    snprintf(base, sizeof base, "https://%s", host);

    /* A suite env of our own, so tests/support is exercised against this emulator. */
    char env_file[512];
    snprintf(env_file, sizeof env_file, "%s/suite.env", dir);
    FILE *f = fopen(env_file, "w");
    if (!f)
        return -1;
    /* The "gateway" and the admin API are webhook receivers: they record what kclient sends. */
    fprintf(f,
            "# smoke\nKOOISV_EMULATOR_URL=%s/\nKOOISV_CA_FILE=%s\nKOOISV_BASIC_KEY='%s'\n"
            "export KOOISV_KIT_KEY=%s\nKOOISV_URL=%s/_emulator/webhook/gw\n"
            "KOOISV_ADMIN_URL=%s/_emulator/webhook/admin/\n",
            base, ca_file, BASIC_KEY, KIT_KEY, base, base);
    fclose(f);
    setenv("KOOISV_SUITE_ENV", env_file, 1);
    return suite_env_load();
}

static int stop_emulator(void **state)
{
    if (emulator_pid <= 0)
        return 0;
    kill(emulator_pid, SIGTERM);
    int status = 0;
    waitpid(emulator_pid, &status, 0);
    /* A clean exit also means no sanitizer report in sanitizer builds. */
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "emulator exit status %d\n", status);
        return -1;
    }
    return 0;
}

/* Signed Query Order with explicit keys and date; returns httpc's rc. */
static int query_order_as(const char *sk, const char *date, const char *order_id,
                          const char *line_id, int timeout_ms, httpc_response_t *r)
{
    char *query = line_id ? xasprintf("orderId=%s&orderLineId=%s", order_id, line_id)
                          : xasprintf("orderId=%s", order_id);
    char now[17];
    sdksign_date_now(now);
    if (!date)
        date = now;
    sdksign_request_t req = {
        .method = "GET", .host = host, .path = QUERY_PATH, .query = query, .sdk_date = date};
    char *auth = sdksign_authorization(AK, sk, &req);
    char *h_auth = xasprintf("Authorization: %s", auth);
    char *h_date = xasprintf("X-Sdk-Date: %s", date);
    const char *headers[] = {h_auth, h_date, "Content-Type: application/json;charset=UTF-8", NULL};
    char *url = xasprintf("%s%s?%s", base, QUERY_PATH, query);
    httpc_options_t opt = {.ca_file = ca_file, .verify_peer = 1, .timeout_ms = timeout_ms};
    int rc = httpc_request("GET", url, headers, NULL, 0, &opt, r);
    free(url);
    free(h_auth);
    free(h_date);
    free(auth);
    free(query);
    return rc;
}

static int query_order(const char *order_id, const char *line_id, httpc_response_t *r)
{
    return query_order_as(SK, NULL, order_id, line_id, 5000, r);
}

static json_t *body_json(const httpc_response_t *r)
{
    json_t *v = json_loadb(r->body, r->body_len, 0, NULL);
    assert_non_null(v);
    return v;
}

static const char *jstr(const json_t *v, const char *path)
{
    /* "a.b.0.c": objects by key, arrays by index. */
    char *copy = xstrdup(path);
    const json_t *cur = v;
    for (char *save = NULL, *tok = strtok_r(copy, ".", &save); tok && cur;
         tok = strtok_r(NULL, ".", &save))
        cur = json_is_array(cur) ? json_array_get(cur, strtoul(tok, NULL, 10))
                                 : json_object_get(cur, tok);
    free(copy);
    return json_string_value(cur);
}

static void emu_call(const char *method, const char *path, const char *body, int want_status,
                     kresp_t *out)
{
    int rc = kc_emulator(method, path, body, out);
    if (rc != 0 || out->status != want_status)
        fail_msg("%s %s: rc=%d status=%d error=%s body=%s", method, path, rc, out->status,
                 out->error, out->body ? out->body : "");
}

static void reset(void)
{
    kresp_t r;
    emu_call("POST", "/_emulator/reset", NULL, 200, &r);
    kresp_free(&r);
}

/* GET url (no headers) with opt: it is answered, with status. */
static void assert_get_status(const char *url, const httpc_options_t *opt, int status)
{
    httpc_response_t h;
    assert_int_equal(httpc_request("GET", url, NULL, NULL, 0, opt, &h), 0);
    assert_int_equal(h.status, status);
    httpc_response_free(&h);
}

/* ---- Query Order --------------------------------------------------------------------------- */

static void test_health_and_tls(void **state)
{
    kresp_t r;
    emu_call("GET", "/_emulator/health", NULL, 200, &r);
    assert_string_equal(jstr(r.json, "status"), "ok");
    kresp_free(&r);

    /* Without our CA the certificate must be refused; with verification off it is accepted. */
    httpc_response_t h;
    char *url = xasprintf("%s/_emulator/health", base);
    httpc_options_t strict = {.ca_file = NULL, .verify_peer = 1, .timeout_ms = 3000};
    assert_int_equal(httpc_request("GET", url, NULL, NULL, 0, &strict, &h), -1);
    assert_non_null(strstr(h.error, "verify"));
    httpc_response_free(&h);
    httpc_options_t lax = {.verify_peer = 0, .timeout_ms = 3000};
    assert_get_status(url, &lax, 200);
    free(url);

    /* By DNS name as well as by IP address (SAN DNS:localhost). */
    char *other = xasprintf("https://localhost:%s/_emulator/health", strchr(host, ':') + 1);
    httpc_options_t opt = {.ca_file = ca_file, .verify_peer = 1, .timeout_ms = 3000};
    assert_get_status(other, &opt, 200);
    free(other);
}

/* GET url with opt; answered 200; whether its TLS session was resumed. */
static bool get_resumed(const char *url, const httpc_options_t *opt)
{
    httpc_response_t h;
    assert_int_equal(httpc_request("GET", url, NULL, NULL, 0, opt, &h), 0);
    assert_int_equal(h.status, 200);
    bool resumed = h.tls_resumed == 1;
    httpc_response_free(&h);
    return resumed;
}

/* httpc resumes the TLS session of its last request to the same name and port, made under the
 * same trust settings, and never offers one across names or trust settings: a session made
 * without verification must not let a verifying request skip its certificate check. */
static void test_tls_resumption(void **state)
{
    const char *port = strchr(host, ':') + 1;
    char *by_ip = xasprintf("https://127.0.0.1:%s/_emulator/health", port);
    char *by_name = xasprintf("https://localhost:%s/_emulator/health", port);
    httpc_options_t opt = {.ca_file = ca_file, .verify_peer = 1, .timeout_ms = 3000};
    (void)get_resumed(by_ip, &opt); /* an earlier test may have left a session */
    assert_true(get_resumed(by_ip, &opt));
    assert_true(get_resumed(by_ip, &opt));

    /* Another trust setting (the same CA in another file) has no session yet; and a session
     * is offered only to the name it was verified for, not to another name of the server. */
    char *ca_copy = xasprintf("%s.copy", ca_file);
    char *cp = xasprintf("cp '%s' '%s'", ca_file, ca_copy);
    run_or_fail(cp);
    httpc_options_t opt2 = {.ca_file = ca_copy, .verify_peer = 1, .timeout_ms = 3000};
    assert_false(get_resumed(by_ip, &opt2));
    assert_true(get_resumed(by_ip, &opt2));
    assert_false(get_resumed(by_name, &opt2));
    assert_true(get_resumed(by_name, &opt2));

    /* Unverified sessions stay with unverified requests: after one, a verifying request whose
     * CA does not vouch for the server still fails its certificate check. */
    httpc_options_t lax = {.verify_peer = 0, .timeout_ms = 3000};
    (void)get_resumed(by_ip, &lax);
    assert_true(get_resumed(by_ip, &lax));
    httpc_options_t strict = {.ca_file = NULL, .verify_peer = 1, .timeout_ms = 3000};
    httpc_response_t h;
    assert_int_equal(httpc_request("GET", by_ip, NULL, NULL, 0, &strict, &h), -1);
    assert_non_null(strstr(h.error, "verify"));
    httpc_response_free(&h);
    /* And the verified session is still there for its own setting. */
    assert_true(get_resumed(by_ip, &opt));

    unlink(ca_copy);
    free(cp);
    free(ca_copy);
    free(by_name);
    free(by_ip);
}

/* GET the emulator's health with opt; answered 200. The client port the emulator saw (which
 * tells connections apart), and whether httpc said it reused a kept connection. */
static long health_port(const char *url, const httpc_options_t *opt, bool *reused)
{
    httpc_response_t h;
    assert_int_equal(httpc_request("GET", url, NULL, NULL, 0, opt, &h), 0);
    assert_int_equal(h.status, 200);
    json_t *j = json_loadb(h.body, h.body_len, 0, NULL);
    assert_non_null(j);
    long port = (long)json_integer_value(json_object_get(j, "peer_port"));
    assert_true(port > 0);
    json_decref(j);
    *reused = h.reused == 1;
    httpc_response_free(&h);
    return port;
}

/* httpc's kept-alive TLS connections: reused for the same name, port and trust setting (the
 * emulator sees the same client port), never across names or trust settings (a connection
 * verified under one setting, or not verified at all, must not carry a request of another),
 * and not after 4 s idle. */
static void test_keep_alive(void **state)
{
    const char *port = strchr(host, ':') + 1;
    char *by_ip = xasprintf("https://127.0.0.1:%s/_emulator/health", port);
    char *by_name = xasprintf("https://localhost:%s/_emulator/health", port);
    httpc_options_t keep = {.ca_file = ca_file, .verify_peer = 1, .timeout_ms = 3000,
                            .keep_alive = 1};
    bool reused;
    long first = health_port(by_ip, &keep, &reused);
    assert_int_equal(health_port(by_ip, &keep, &reused), first);
    assert_true(reused);
    assert_int_equal(health_port(by_ip, &keep, &reused), first);
    assert_true(reused);

    /* Without keep_alive: a connection of its own; the kept one is still there after it. */
    httpc_options_t once = keep;
    once.keep_alive = 0;
    assert_int_not_equal(health_port(by_ip, &once, &reused), first);
    assert_false(reused);
    assert_int_equal(health_port(by_ip, &keep, &reused), first);

    /* Another name of the same server, another CA file: connections of their own. */
    long named = health_port(by_name, &keep, &reused);
    assert_int_not_equal(named, first);
    assert_int_equal(health_port(by_name, &keep, &reused), named);
    assert_true(reused);
    char *ca_copy = xasprintf("%s.keep", ca_file);
    char *cp = xasprintf("cp '%s' '%s'", ca_file, ca_copy);
    run_or_fail(cp);
    httpc_options_t other = keep;
    other.ca_file = ca_copy;
    long copied = health_port(by_ip, &other, &reused);
    assert_false(reused);
    assert_true(copied != first && copied != named);

    /* An unverified connection is kept for unverified requests only: a verifying request whose
     * CA does not vouch for the server still fails its certificate check. */
    httpc_options_t lax = {.verify_peer = 0, .timeout_ms = 3000, .keep_alive = 1};
    long unverified = health_port(by_ip, &lax, &reused);
    assert_int_equal(health_port(by_ip, &lax, &reused), unverified);
    assert_true(reused);
    httpc_options_t strict = {.ca_file = NULL, .verify_peer = 1, .timeout_ms = 3000,
                              .keep_alive = 1};
    httpc_response_t h;
    assert_int_equal(httpc_request("GET", by_ip, NULL, NULL, 0, &strict, &h), -1);
    assert_non_null(strstr(h.error, "verify"));
    httpc_response_free(&h);

    /* Idle 4 s or more: closed, not reused. */
    assert_int_equal(health_port(by_ip, &keep, &reused), first);
    usleep(4200 * 1000);
    assert_int_not_equal(health_port(by_ip, &keep, &reused), first);
    assert_false(reused);

    unlink(ca_copy);
    free(cp);
    free(ca_copy);
    free(by_name);
    free(by_ip);
}

static void test_mock_orders(void **state)
{
    static const char *const ids[] = {
        "MOCKPERIODYEARNEW",    "MOCKONETIMENEW",     "MOCKONDEMAND",
        "MOCKONDEMANDPKG",      "MOCKPERIODDAYTRIAL", "MOCKMONTYTRIALTOFORMAL",
        "MOCKMONTYUNSUBSCRIBE", "MOCKMONTYRENEW",     "MOCKMONTYCHANGE"};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        char *line = xasprintf("%s-000001", ids[i]);
        httpc_response_t r;
        assert_int_equal(query_order(ids[i], line, &r), 0);
        assert_int_equal(r.status, 200);
        json_t *v = body_json(&r);
        assert_string_equal(jstr(v, "resultCode"), "MKT.0000");
        assert_string_equal(jstr(v, "orderInfo.orderId"), ids[i]);
        assert_string_equal(jstr(v, "orderInfo.orderLine.0.orderLineId"), line);
        assert_non_null(jstr(v, "orderInfo.orderLine.0.chargingMode"));
        assert_non_null(jstr(v, "orderInfo.orderLine.0.productInfo.0.productId"));
        assert_non_null(httpc_header(&r, "content-type"));
        json_decref(v);
        httpc_response_free(&r);
        free(line);
    }
}

static void test_cs_order_is_stable(void **state)
{
    char *id = kc_uid("CS");
    httpc_response_t a, b;
    assert_int_equal(query_order(id, NULL, &a), 0);
    assert_int_equal(query_order(id, NULL, &b), 0);
    json_t *v = body_json(&a);
    assert_string_equal(jstr(v, "resultCode"), "MKT.0000");
    assert_string_equal(jstr(v, "orderInfo.orderLine.0.periodType"), "year");
    assert_string_equal(jstr(v, "orderInfo.orderLine.0.chargingMode"), "PERIOD");
    assert_int_equal(strlen(jstr(v, "orderInfo.orderLine.0.expireTime")), 14);
    assert_string_equal(a.body, b.body);
    json_decref(v);
    httpc_response_free(&a);
    httpc_response_free(&b);

    /* A line that is not in the order. */
    assert_int_equal(query_order(id, "NOSUCHLINE", &a), 0);
    v = body_json(&a);
    assert_string_equal(jstr(v, "resultCode"), "MKT.0100");
    json_decref(v);
    httpc_response_free(&a);
    free(id);
}

static void test_unknown_order(void **state)
{
    httpc_response_t r;
    assert_int_equal(query_order("NOSUCHORDER", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    json_t *v = body_json(&r);
    assert_string_equal(jstr(v, "resultCode"), "MKT.0100");
    json_decref(v);
    httpc_response_free(&r);
}

static void test_bad_signatures(void **state)
{
    httpc_response_t r;
    assert_int_equal(
        query_order_as("Sk-wrong-0123456789abcdef", NULL, "MOCKONDEMAND", NULL, 5000, &r), 0);
    assert_int_equal(r.status, 401);
    json_t *v = body_json(&r);
    assert_string_equal(jstr(v, "resultCode"), "MKT.0102");
    json_decref(v);
    httpc_response_free(&r);

    /* A correct signature over a date 20 minutes old. */
    time_t old = time(NULL) - 20 * 60;
    struct tm tm;
    gmtime_r(&old, &tm);
    char date[17];
    strftime(date, sizeof date, "%Y%m%dT%H%M%SZ", &tm);
    assert_int_equal(query_order_as(SK, date, "MOCKONDEMAND", NULL, 5000, &r), 0);
    assert_int_equal(r.status, 401);
    httpc_response_free(&r);

    /* No Authorization at all. */
    char *url = xasprintf("%s%s?orderId=MOCKONDEMAND", base, QUERY_PATH);
    httpc_options_t opt = {.ca_file = ca_file, .verify_peer = 1, .timeout_ms = 3000};
    assert_get_status(url, &opt, 401);
    free(url);
}

static void test_registered_order(void **state)
{
    char *id = kc_uid("T");
    char *body = xasprintf("{\"orderInfo\":{\"orderId\":\"%s\",\"orderType\":\"NEW\","
                           "\"orderLine\":[{\"chargingMode\":\"ON_DEMAND\"},{}]}}",
                           id);
    kresp_t k;
    emu_call("POST", "/_emulator/orders", body, 200, &k);
    kresp_free(&k);
    char *line2 = xasprintf("%s-000002", id);
    httpc_response_t r;
    assert_int_equal(query_order(id, line2, &r), 0);
    json_t *v = body_json(&r);
    assert_string_equal(jstr(v, "resultCode"), "MKT.0000");
    assert_int_equal(json_array_size(json_object_get(json_object_get(v, "orderInfo"), "orderLine")),
                     1);
    assert_string_equal(jstr(v, "orderInfo.orderLine.0.orderLineId"), line2);
    assert_string_equal(jstr(v, "orderInfo.orderLine.0.chargingMode"), "PERIOD");
    json_decref(v);
    httpc_response_free(&r);

    emu_call("POST", "/_emulator/orders", "{\"orderLine\":[]}", 400, &k);
    kresp_free(&k);

    /* answerFor: asked for id2, answered with another order's id and line, never narrowed */
    char *id2 = kc_uid("T");
    char *wrong = xasprintf("{\"answerFor\":\"%s\",\"orderInfo\":{\"orderId\":\"OTHER\","
                            "\"orderLine\":[{\"orderLineId\":\"OTHER-9\"}]}}",
                            id2);
    emu_call("POST", "/_emulator/orders", wrong, 200, &k);
    assert_string_equal(jstr(k.json, "orderId"), id2);
    kresp_free(&k);
    char *line_asked = xasprintf("%s-000001", id2);
    assert_int_equal(query_order(id2, line_asked, &r), 0);
    v = body_json(&r);
    assert_string_equal(jstr(v, "resultCode"), "MKT.0000");
    assert_string_equal(jstr(v, "orderInfo.orderId"), "OTHER");
    assert_string_equal(jstr(v, "orderInfo.orderLine.0.orderLineId"), "OTHER-9");
    json_decref(v);
    httpc_response_free(&r);
    emu_call("POST", "/_emulator/orders", "{\"answerFor\":\"\",\"orderInfo\":{}}", 400, &k);
    kresp_free(&k);
    emu_call("POST", "/_emulator/orders", "{\"answerFor\":\"X\",\"orderId\":\"X\"}", 400, &k);
    kresp_free(&k);
    free(line_asked);
    free(wrong);
    free(id2);
    free(line2);
    free(body);
    free(id);
}

/* ---- faults and the call log --------------------------------------------------------------- */

static long calls_count(const char *key)
{
    char *path = xasprintf("/_emulator/calls?path=%s", key);
    kresp_t r;
    emu_call("GET", path, NULL, 200, &r);
    long n = (long)json_integer_value(json_object_get(r.json, "count"));
    kresp_free(&r);
    free(path);
    return n;
}

/* POST fault (JSON) to the emulator's fault control: it answers want_status. */
static void set_fault(const char *fault, int want_status)
{
    kresp_t k;
    emu_call("POST", "/_emulator/faults", fault, want_status, &k);
    kresp_free(&k);
}

/* Query order id (signed with the right key): it is answered with resultCode code. */
static void assert_query_result(const char *id, const char *code)
{
    httpc_response_t r;
    assert_int_equal(query_order(id, NULL, &r), 0);
    json_t *v = body_json(&r);
    assert_string_equal(jstr(v, "resultCode"), code);
    json_decref(v);
    httpc_response_free(&r);
}

static void test_faults(void **state)
{
    reset();
    kresp_t k;
    httpc_response_t r;

    set_fault("{\"path\":\"order/query\",\"mode\":\"error\",\"count\":1}", 200);
    assert_query_result("MOCKONDEMAND", "MKT.0999");
    assert_query_result("MOCKONDEMAND", "MKT.0000"); /* count was 1: healed */

    set_fault("{\"path\":\"order/query\",\"mode\":\"http500\",\"count\":1}", 200);
    assert_int_equal(query_order("MOCKONDEMAND", NULL, &r), 0);
    assert_int_equal(r.status, 500);
    httpc_response_free(&r);

    set_fault("{\"path\":\"order/query\",\"mode\":\"drop\"}", 200);
    assert_int_equal(query_order("MOCKONDEMAND", NULL, &r), -1);
    assert_int_equal(r.status, 0);
    assert_true(r.error[0]);
    httpc_response_free(&r);

    /* Slower than the client waits: a timeout; then slow but within the client's patience. */
    set_fault("{\"path\":\"order/query\",\"mode\":\"slow\",\"count\":2,\"delay_ms\":1200}", 200);
    int64_t t0 = time_mono_us();
    assert_int_equal(query_order_as(SK, NULL, "MOCKONDEMAND", NULL, 300, &r), -1);
    assert_non_null(strstr(r.error, "timeout"));
    assert_true(time_mono_us() - t0 < 1000000);
    httpc_response_free(&r);
    t0 = time_mono_us();
    assert_int_equal(query_order_as(SK, NULL, "MOCKONDEMAND", NULL, 5000, &r), 0);
    assert_true(time_mono_us() - t0 >= 1100000);
    assert_int_equal(r.status, 200);
    httpc_response_free(&r);

    /* count -1: until cleared with count 0. */
    set_fault("{\"path\":\"order/query\",\"mode\":\"error\",\"count\":-1,\"code\":\"MKT.0250\"}",
              200);
    for (int i = 0; i < 3; i++)
        assert_query_result("MOCKONDEMAND", "MKT.0250");
    set_fault("{\"path\":\"order/query\",\"mode\":\"error\",\"count\":0}", 200);
    set_fault("{\"path\":\"order/query\",\"mode\":\"sometimes\"}", 400);
    set_fault("{\"path\":\"order/query\",\"mode\":\"error\",\"match\":7}", 400);

    /* A fault that names one order leaves the others alone and waits for its own. */
    set_fault("{\"path\":\"order/query\",\"mode\":\"error\",\"match\":\"MOCKONETIMENEW\"}", 200);
    assert_query_result("MOCKONDEMAND", "MKT.0000");
    assert_query_result("MOCKONETIMENEW", "MKT.0999");

    assert_int_equal(calls_count("order/query"), 11);
    emu_call("GET", "/_emulator/calls?path=order/query&limit=1", NULL, 200, &k);
    json_t *last = json_array_get(json_object_get(k.json, "calls"), 0);
    assert_string_equal(jstr(last, "method"), "GET");
    assert_non_null(jstr(last, "headers.authorization"));
    assert_non_null(strstr(jstr(last, "query"), "orderId=MOCKONETIMENEW"));
    kresp_free(&k);

    reset();
    assert_int_equal(calls_count("order/query"), 0);
}

/* ---- usage push ---------------------------------------------------------------------------- */

static void utc_compact(int64_t ms, char out[17])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

static json_t *record(const char *instance, int64_t begin_ms, const char *value)
{
    char rec[17], b[17], e[17];
    utc_compact(begin_ms + 3600 * 1000 + 60000, rec);
    utc_compact(begin_ms, b);
    utc_compact(begin_ms + 3600 * 1000, e);
    char sn[33];
    rand_alnum(sn, 32);
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "instance_id", instance, "record_time", rec,
                     "begin_time", b, "end_time", e, "usage_value", value, "metering_sn", sn);
}

/* POST records (stolen) as a usage push; nonce NULL = fresh; key NULL = the right one. */
static json_t *push(json_t *records, const char *nonce, const char *key, int *status)
{
    json_t *body = json_pack("{s:o}", "usage_records", records);
    char *canon = canonjson_dump(body);
    char ts[24], fresh[33];
    snprintf(ts, sizeof ts, "%lld", (long long)time_now_ms());
    rand_alnum(fresh, 32);
    if (!nonce)
        nonce = fresh;
    char *sig = usagesign_signature(key ? key : BASIC_KEY, ts, nonce, canon);
    char *h_ts = xasprintf("ts: %s", ts), *h_nonce = xasprintf("nonce: %s", nonce);
    char *h_sig = xasprintf("signature: %s", sig);
    const char *headers[] = {h_ts, h_nonce, h_sig, "Content-Type: application/json", NULL};
    char *url = xasprintf("%s%s", base, USAGE_PATH);
    httpc_options_t opt = {.ca_file = ca_file, .verify_peer = 1, .timeout_ms = 5000};
    httpc_response_t r;
    assert_int_equal(httpc_request("POST", url, headers, canon, strlen(canon), &opt, &r), 0);
    *status = r.status;
    json_t *v = body_json(&r);
    httpc_response_free(&r);
    free(url);
    free(h_ts);
    free(h_nonce);
    free(h_sig);
    free(sig);
    free(canon);
    json_decref(body);
    return v;
}

static void expect_push(json_t *records, const char *nonce, const char *key, int want_status,
                        const char *want_code)
{
    int status;
    json_t *v = push(records, nonce, key, &status);
    if (status != want_status || strcmp(jstr(v, "error_code"), want_code) != 0)
        fail_msg("usage push: want %d %s, got %d %s (%s)", want_status, want_code, status,
                 jstr(v, "error_code"), jstr(v, "error_msg"));
    json_decref(v);
}

static long usage_count(void)
{
    kresp_t r;
    emu_call("GET", "/_emulator/usage", NULL, 200, &r);
    long n = (long)json_integer_value(json_object_get(r.json, "count"));
    kresp_free(&r);
    return n;
}

static void test_usage_push(void **state)
{
    reset();
    int64_t hour = (time_now_ms() / 3600000 - 2) * 3600000;
    json_t *two = json_pack("[o, o]", record("INST-A", hour, "1.5"), record("INST-B", hour, "2"));
    expect_push(json_deep_copy(two), NULL, NULL, 200, "MKT.0000");
    assert_int_equal(usage_count(), 2);
    /* The same instance and period again (new metering_sn): accepted, ignored. */
    json_object_set_new(json_array_get(two, 0), "metering_sn", json_string("another-sn"));
    expect_push(json_deep_copy(two), NULL, NULL, 200, "MKT.0000");
    assert_int_equal(usage_count(), 2);

    char nonce[33];
    rand_alnum(nonce, 32);
    expect_push(json_pack("[o]", record("INST-C", hour, "3")), nonce, NULL, 200, "MKT.0000");
    expect_push(json_pack("[o]", record("INST-D", hour, "3")), nonce, NULL, 401, "MKT.0102");
    expect_push(json_pack("[o]", record("INST-D", hour, "3")), NULL, "Wrong-key-0123456789abc", 401,
                "MKT.0102");
    expect_push(json_pack("[o]", record("INST-D", hour, "0")), NULL, NULL, 400, "MKT.9002");
    expect_push(json_pack("[o]", record("INST-D", hour, "1.23456")), NULL, NULL, 400, "MKT.9002");
    expect_push(json_pack("[o]", record("INST-D", hour, "-1")), NULL, NULL, 400, "MKT.9002");
    expect_push(json_pack("[o]", record("INST-D", hour - 22LL * 24 * 3600000, "1")), NULL, NULL,
                400, "MKT.9004");
    json_t *no_sn = record("INST-D", hour, "1");
    json_object_del(no_sn, "metering_sn");
    expect_push(json_pack("[o]", no_sn), NULL, NULL, 400, "MKT.0101");
    json_t *bad_time = record("INST-D", hour, "1");
    json_object_set_new(bad_time, "begin_time", json_string("2024-01-01 00:00:00"));
    expect_push(json_pack("[o]", bad_time), NULL, NULL, 400, "MKT.0101");
    expect_push(json_array(), NULL, NULL, 400, "MKT.0100");
    json_t *many = json_array();
    for (int i = 0; i < 1001; i++)
        json_array_append_new(many, record("INST-E", hour - (int64_t)i * 3600000, "1"));
    expect_push(many, NULL, NULL, 400, "MKT.9003");
    /* A refused batch stores nothing, even its good records. */
    expect_push(json_pack("[o, o]", record("INST-F", hour, "1"), record("INST-F", hour, "0")), NULL,
                NULL, 400, "MKT.9002");
    assert_int_equal(usage_count(), 3);

    /* Known instances: others are MKT.9001. */
    kresp_t k;
    emu_call("POST", "/_emulator/usage/instances", "{\"instances\":[\"INST-G\"]}", 200, &k);
    kresp_free(&k);
    expect_push(json_pack("[o]", record("INST-H", hour, "1")), NULL, NULL, 400, "MKT.9001");
    expect_push(json_pack("[o]", record("INST-G", hour, "1")), NULL, NULL, 200, "MKT.0000");

    emu_call("GET", "/_emulator/usage?instance_id=INST-A", NULL, 200, &k);
    assert_int_equal(json_integer_value(json_object_get(k.json, "count")), 1);
    assert_string_equal(jstr(k.json, "records.0.usage_value"), "1.5");
    kresp_free(&k);
    json_decref(two);
}

/* ---- webhooks -------------------------------------------------------------------------------- */

static void test_webhooks(void **state)
{
    reset();
    kresp_t k;
    /* The receiver is what a service calls: plain POST, default provisioning answer. */
    char *url = xasprintf("%s/_emulator/webhook/provision", base);
    httpc_options_t opt = {.ca_file = ca_file, .verify_peer = 1, .timeout_ms = 3000};
    const char *headers[] = {"Content-Type: application/json", "X-Test: 1", NULL};
    const char *event = "{\"event\":\"provision\",\"instanceId\":\"INST-1\"}";
    httpc_response_t r;
    assert_int_equal(httpc_request("POST", url, headers, event, strlen(event), &opt, &r), 0);
    assert_int_equal(r.status, 200);
    json_t *v = body_json(&r);
    assert_non_null(strstr(jstr(v, "frontEndUrl"), "INST-1"));
    assert_non_null(jstr(v, "adminUrl"));
    assert_non_null(jstr(v, "userName"));
    assert_true(strlen(jstr(v, "password")) >= 12);
    assert_non_null(jstr(v, "memo"));
    json_decref(v);
    httpc_response_free(&r);

    emu_call("GET", "/_emulator/webhook/provision", NULL, 200, &k);
    assert_int_equal(json_integer_value(json_object_get(k.json, "count")), 1);
    assert_string_equal(jstr(k.json, "calls.0.body"), event);
    assert_string_equal(jstr(k.json, "calls.0.headers.x-test"), "1");
    kresp_free(&k);

    /* Configured answer, then a fault on top of it. */
    emu_call("POST", "/_emulator/webhooks/provision", "{\"status\":503,\"body\":{\"busy\":true}}",
             200, &k);
    kresp_free(&k);
    assert_int_equal(httpc_request("POST", url, headers, event, strlen(event), &opt, &r), 0);
    assert_int_equal(r.status, 503);
    httpc_response_free(&r);
    set_fault("{\"path\":\"webhook/provision\",\"mode\":\"error\"}", 200);
    assert_int_equal(httpc_request("POST", url, headers, event, strlen(event), &opt, &r), 0);
    v = body_json(&r);
    assert_string_equal(jstr(v, "resultCode"), "000005");
    json_decref(v);
    httpc_response_free(&r);
    free(url);

    /* Any other name records and says success. */
    emu_call("POST", "/_emulator/webhook/events", "{\"x\":1}", 200, &k);
    assert_string_equal(k.code, "000000");
    kresp_free(&k);
    emu_call("GET", "/_emulator/calls", NULL, 200, &k);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(k.json, "paths"), "webhook/events")), 1);
    kresp_free(&k);
    emu_call("GET", "/_emulator/nonsense", NULL, 404, &k);
    kresp_free(&k);
}

/* ---- concurrency: httpc from several threads at once ---------------------------------------- */

static void *hammer(void *arg)
{
    long ok = 0;
    for (int i = 0; i < 10; i++) {
        httpc_response_t r;
        if (query_order("MOCKPERIODYEARNEW", NULL, &r) == 0 && r.status == 200 &&
            strstr(r.body, "MKT.0000"))
            ok++;
        httpc_response_free(&r);
    }
    return (void *)ok;
}

static void test_concurrent_clients(void **state)
{
    pthread_t t[8];
    for (int i = 0; i < 8; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hammer, NULL), 0);
    long total = 0;
    for (int i = 0; i < 8; i++) {
        void *ok;
        pthread_join(t[i], &ok);
        total += (long)ok;
    }
    assert_int_equal(total, 80);
}

/* ---- tests/support odds and ends ------------------------------------------------------------- */

static void test_support_helpers(void **state)
{
    char *a = kc_uid("CS"), *b = kc_uid("CS");
    assert_int_equal(strlen(a), 18);
    assert_true(strncmp(a, "CS", 2) == 0);
    assert_string_not_equal(a, b);
    free(a);
    free(b);
    assert_string_equal(suite_get("KOOISV_BASIC_KEY"), BASIC_KEY); /* quotes stripped */
    assert_null(suite_get("KOOISV_NO_SUCH_SETTING"));

    kresp_t r;
    assert_int_equal(kc_raw("GET", "/_emulator/health", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(r.request_id);
    kresp_free(&r);
    kresp_free(&r); /* twice is harmless */
}

/* Parameter name=value out of a raw query string. Caller frees. */
static char *query_value(const char *query, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = query; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL)
        if (strncmp(p, name, n) == 0 && p[n] == '=')
            return xstrndup(p + n + 1, strcspn(p + n + 1, "&"));
    return NULL;
}

/* The last call recorded by webhook name (a JSON object the caller decrefs). */
static json_t *last_call(const char *name)
{
    char *path = xasprintf("/_emulator/webhook/%s?limit=1", name);
    kresp_t r;
    emu_call("GET", path, NULL, 200, &r);
    json_t *call = json_incref(json_array_get(json_object_get(r.json, "calls"), 0));
    assert_non_null(call);
    kresp_free(&r);
    free(path);
    return call;
}

static sigv2_result_t verify_recorded(sigv2_kind_t kind, const char *key, const char *ts,
                                      const char *nonce, const char *sig, const char *body)
{
    json_t *v = canonjson_parse(body, strlen(body), NULL);
    char *canon = v ? canonjson_dump(v) : NULL;
    sigv2_check_t c = {.kind = kind,
                       .key = key,
                       .timestamp = ts,
                       .nonce = nonce,
                       .signature = sig,
                       .canonical = canon,
                       .canonical_len = canon ? strlen(canon) : 0,
                       .raw = body,
                       .raw_len = strlen(body),
                       .now_ms = time_now_ms()};
    sigv2_result_t res = sigv2_verify(&c);
    free(canon);
    json_decref(v);
    return res;
}

static void test_kclient_signing(void **state)
{
    reset();
    kresp_t r;
    emu_call("POST", "/_emulator/webhooks/gw",
             "{\"body\":{\"resultCode\":\"000000\",\"resultMsg\":\"ok\"},\"body_sign\":true}", 200,
             &r);
    kresp_free(&r);

    /* Keys out of order and a nested object: the signature covers the canonical form. */
    const char *body =
        "{\"orderId\":\"CS1\",\"activity\":\"newInstance\",\"n\":{\"b\":1,\"a\":null}}";
    assert_int_equal(kc_basic(body, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.code, "000000");
    assert_int_equal(r.body_sign_ok, 1);
    assert_non_null(r.request_id);
    kresp_free(&r);
    json_t *call = last_call("gw");
    const char *query = jstr(call, "query");
    char *ts = query_value(query, "timestamp"), *nonce = query_value(query, "nonce");
    char *sig = query_value(query, "signature");
    assert_non_null(ts);
    assert_int_equal(strlen(nonce), 32);
    assert_int_equal(strlen(sig), 64);
    assert_string_equal(jstr(call, "body"), body);
    assert_string_equal(jstr(call, "headers.content-type"), "application/json;charset=UTF-8");
    assert_int_equal(verify_recorded(SIGV2_BASIC, BASIC_KEY, ts, nonce, sig, body), SIGV2_OK);
    assert_int_not_equal(verify_recorded(SIGV2_BASIC, KIT_KEY, ts, nonce, sig, body), SIGV2_OK);
    free(ts);
    free(nonce);
    free(sig);
    json_decref(call);

    /* Crafted: no signature, no timestamp, a nonce that needs escaping. */
    assert_int_equal(kc_basic_ex(body, NULL, "a b&c", "", &r), 0);
    kresp_free(&r);
    call = last_call("gw");
    assert_string_equal(jstr(call, "query"), "nonce=a%20b%26c");
    json_decref(call);
    assert_int_equal(kc_basic_ex(body, "123", "n1", "DEADBEEF", &r), 0);
    kresp_free(&r);
    call = last_call("gw");
    assert_string_equal(jstr(call, "query"), "signature=DEADBEEF&timestamp=123&nonce=n1");
    json_decref(call);

    /* An unsigned answer does not verify. */
    emu_call("POST", "/_emulator/webhooks/gw", "{}", 200, &r);
    kresp_free(&r);
    assert_int_equal(kc_basic(body, &r), 0);
    assert_int_equal(r.body_sign_ok, 0);
    kresp_free(&r);

    /* Kit: sub-path and x- headers with the kit key. */
    const char *kit_body = "{\"tenantId\":\"t1\",\"flag\":1,\"instanceId\":\"\"}";
    assert_int_equal(kc_kit("tenantSync", kit_body, &r), 0);
    assert_int_equal(r.status, 200);
    kresp_free(&r);
    call = last_call("gw/produceAPI/v2/tenantSync");
    assert_int_equal(verify_recorded(SIGV2_KIT, KIT_KEY, jstr(call, "headers.x-timestamp"),
                                     jstr(call, "headers.x-nonce"), jstr(call, "headers.x-sign"),
                                     kit_body),
                     SIGV2_OK);
    json_decref(call);
    assert_int_equal(kc_kit_ex("tenantSync", kit_body, "1", NULL, "", &r), 0);
    kresp_free(&r);
    call = last_call("gw/produceAPI/v2/tenantSync");
    assert_string_equal(jstr(call, "headers.x-timestamp"), "1");
    assert_null(jstr(call, "headers.x-nonce"));
    assert_null(jstr(call, "headers.x-sign"));
    json_decref(call);

    /* Admin: bearer token and path appended to the admin URL. */
    assert_int_equal(kc_admin("POST", "/v1/instances?limit=5", "tok-123", "{}", &r), 0);
    assert_int_equal(r.status, 200);
    kresp_free(&r);
    call = last_call("admin/v1/instances");
    assert_string_equal(jstr(call, "headers.authorization"), "Bearer tok-123");
    assert_string_equal(jstr(call, "query"), "limit=5");
    json_decref(call);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_health_and_tls),
        cmocka_unit_test(test_tls_resumption),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_mock_orders),
        cmocka_unit_test(test_cs_order_is_stable),
        cmocka_unit_test(test_unknown_order),
        cmocka_unit_test(test_bad_signatures),
        cmocka_unit_test(test_registered_order),
        cmocka_unit_test(test_faults),
        cmocka_unit_test(test_usage_push),
        cmocka_unit_test(test_webhooks),
        cmocka_unit_test(test_concurrent_clients),
        cmocka_unit_test(test_support_helpers),
        cmocka_unit_test(test_kclient_signing),
    };
    return cmocka_run_group_tests(tests, start_emulator, stop_emulator);
}
