/* PROXY protocol v2 against the suite (gateway/proxyproto.h). The suite's second gateway trusts
 * 127.0.0.1/32 as its load balancer (KOOISV_PROXY_PROTOCOL_FROM, deploy/local/env.sh); the first
 * trusts nobody. Real TLS follows a real header on the same socket; the test checks what the
 * audit trail records as the source of marketplace and admin calls, that a header from an
 * untrusted address (127.0.0.2) or to the gateway without a trust list closes the connection
 * before TLS, and that a trusted peer may still connect without a header. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kclient.h"
#include "kconn.h"
#include "xmalloc.h"

#define CLIENT4 "203.0.113.77"
#define CLIENT6 "2001:db8::77"

/* A PROXY v2 header (TCP) naming client (IPv4 or IPv6) at port 40000 -> port 443; or LOCAL. */
static size_t header(uint8_t *out, const char *client, bool local)
{
    static const uint8_t sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                    0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
    memcpy(out, sig, 12);
    out[12] = local ? 0x20 : 0x21;
    size_t alen = 0;
    if (local) {
        out[13] = 0x00;
    } else if (strchr(client, ':')) {
        out[13] = 0x21;
        assert_int_equal(inet_pton(AF_INET6, client, out + 16), 1);
        inet_pton(AF_INET6, "2001:db8::1", out + 32);
        out[48] = 0x9C, out[49] = 0x40, out[50] = 0x01, out[51] = 0xBB;
        alen = 36;
    } else {
        out[13] = 0x11;
        assert_int_equal(inet_pton(AF_INET, client, out + 16), 1);
        inet_pton(AF_INET, "192.0.2.1", out + 20);
        out[24] = 0x9C, out[25] = 0x40, out[26] = 0x01, out[27] = 0xBB;
        alen = 12;
    }
    out[14] = 0;
    out[15] = (uint8_t)alen;
    return 16 + alen;
}

/* The source address the trail recorded for request id rid (NULL when none). */
static char *trail_source(const char *rid)
{
    const char *params[] = {rid};
    return kc_sql_value("SELECT source_addr FROM audit.intents WHERE request_id = $1", 1, params);
}

/* One signed queryInstance over a connection from src with the given preamble; returns the
 * request id of its answer (caller frees), NULL when the connection failed (err says why). */
static char *marketplace_call(const char *url, const char *src, const uint8_t *pre, size_t plen,
                              char *err, size_t errlen)
{
    kconn_t *c = kconn_open_from(url, NULL, src, pre, plen, err, errlen);
    if (!c)
        return NULL;
    const char *body = "{\"activity\":\"queryInstance\",\"instanceId\":\"proxyproto-none\"}";
    char *query = kc_basic_query(body);
    assert_non_null(query);
    const char *base = strstr(url + 8, "/");
    char *path = xasprintf("%s?%s", base ? base : "/", query);
    const char *headers[] = {"Content-Type: application/json", NULL};
    kresp_t r;
    int rc = kconn_request(c, "POST", path, headers, body, strlen(body), &r);
    char *rid = NULL;
    if (rc == 0) {
        assert_int_equal(r.status, 200);
        assert_non_null(r.request_id);
        rid = xstrdup(r.request_id);
    } else {
        snprintf(err, errlen, "%s", r.error);
    }
    kresp_free(&r);
    free(path);
    free(query);
    kconn_destroy(&c);
    return rid;
}

static void expect_source(const char *rid, const char *want)
{
    assert_non_null(rid);
    char *src = trail_source(rid);
    if (!src || strcmp(src, want) != 0)
        fail_msg("request %s: trail source %s, expected %s", rid, src ? src : "(none)", want);
    free(src);
}

/* A marketplace call to url from src with the header pre (what names it in a failure): fail
 * unless it is answered and the trail records want as its source. */
static void expect_call_source(const char *url, const char *src, const uint8_t *pre, size_t plen,
                               const char *what, const char *want)
{
    char err[256] = "";
    char *rid = marketplace_call(url, src, pre, plen, err, sizeof err);
    if (!rid)
        fail_msg("%s: %s", what, err);
    expect_source(rid, want);
    free(rid);
}

static void test_trusted_header_names_client(void **state)
{
    (void)state;
    const char *url = suite_get("KOOISV_GATEWAY2_URL");
    uint8_t h[64];
    size_t n = header(h, CLIENT4, false);
    expect_call_source(url, "127.0.0.1", h, n, "IPv4 header", CLIENT4);
    n = header(h, CLIENT6, false);
    expect_call_source(url, "127.0.0.1", h, n, "IPv6 header", CLIENT6);
    /* LOCAL (the balancer's own check) and no header at all: the peer is the source. */
    n = header(h, NULL, true);
    expect_call_source(url, "127.0.0.1", h, n, "LOCAL header", "127.0.0.1");
    expect_call_source(url, "127.0.0.1", NULL, 0, "no header", "127.0.0.1");
}

static void test_admin_api_behind_balancer(void **state)
{
    (void)state;
    uint8_t h[64];
    size_t n = header(h, CLIENT4, false);
    char err[256];
    kconn_t *c = kconn_open_from(suite_get("KOOISV_GATEWAY2_ADMIN_URL"), NULL, "127.0.0.1", h, n,
                                 err, sizeof err);
    if (!c)
        fail_msg("%s", err);
    char *auth = xasprintf("Authorization: Bearer %s", suite_get("KOOISV_OPERATOR_TOKEN"));
    const char *headers[] = {auth, NULL};
    kresp_t r;
    if (kconn_request(c, "GET", "/v1/instances?limit=1", headers, NULL, 0, &r) != 0)
        fail_msg("admin call: %s", r.error);
    assert_int_equal(r.status, 200);
    expect_source(r.request_id, CLIENT4);
    kresp_free(&r);
    xfree_secret(auth, strlen(auth));
    kconn_destroy(&c);
}

/* /metrics counter of gateway which (1 or 2); -1 when absent. */
static long refused_count(const char *metrics_url)
{
    kresp_t r;
    char *url = xasprintf("%s/metrics", metrics_url);
    long v = -1;
    const char *name = "\nkooisv_proxy_headers_refused_total ";
    if (kc_raw("GET", url, NULL, NULL, 0, &r) == 0 && r.status == 200) {
        const char *line = strstr(r.body, name);
        if (line)
            v = atol(line + strlen(name));
    }
    kresp_free(&r);
    free(url);
    return v;
}

/* A marketplace call to the gateway at url (its /metrics at metrics_url) from src with the
 * header pre: fail unless the connection is refused and counted once. */
static void expect_header_refused(const char *url, const char *metrics_url, const char *src,
                                  const uint8_t *pre, size_t plen)
{
    char err[256];
    long before = refused_count(metrics_url);
    assert_true(before >= 0);
    char *rid = marketplace_call(url, src, pre, plen, err, sizeof err);
    assert_null(rid);
    assert_true(refused_count(metrics_url) == before + 1);
}

static void test_untrusted_header_refused(void **state)
{
    (void)state;
    uint8_t h[64];
    size_t n = header(h, CLIENT4, false);
    char err[256];
    /* From an address outside the trust list. */
    const char *url2 = suite_get("KOOISV_GATEWAY2_URL");
    const char *metrics2 = suite_get("KOOISV_GATEWAY2_METRICS_URL");
    expect_header_refused(url2, metrics2, "127.0.0.2", h, n);
    /* The same address without a header is an ordinary client. */
    expect_call_source(url2, "127.0.0.2", NULL, 0, "127.0.0.2 without header", "127.0.0.2");
    /* A gateway without KOOISV_PROXY_PROTOCOL_FROM believes nobody, on either port. */
    expect_header_refused(suite_get("KOOISV_URL"), suite_get("KOOISV_METRICS_URL"), "127.0.0.1", h,
                          n);
    long before = refused_count(suite_get("KOOISV_METRICS_URL"));
    kconn_t *c =
        kconn_open_from(suite_get("KOOISV_ADMIN_URL"), NULL, "127.0.0.1", h, n, err, sizeof err);
    assert_null(c);
    assert_true(refused_count(suite_get("KOOISV_METRICS_URL")) == before + 1);
    /* A malformed header from the trusted balancer is refused too (version 1 in binary form). */
    h[12] = 0x11;
    expect_header_refused(url2, metrics2, "127.0.0.1", h, n);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* a refused connection is closed under the handshake's writes */
    if (suite_env_load() != 0 || !suite_get("KOOISV_GATEWAY2_URL")) {
        fprintf(stderr, "no suite env\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trusted_header_names_client),
        cmocka_unit_test(test_admin_api_behind_balancer),
        cmocka_unit_test(test_untrusted_header_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
