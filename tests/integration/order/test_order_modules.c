/* Unit tests of the order service's pure-ish modules: Query Order answer parsing, the
 * provisioners (builtin, and webhook against a local HTTP receiver), and common/webhook
 * (signing, verification, the POST itself). No database, no suite. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "cryptoutil.h"
#include "provisioner.h"
#include "queryorder.h"
#include "timeutil.h"
#include "webhook.h"
#include "xmalloc.h"

/* ---- a one-connection-at-a-time HTTP receiver on 127.0.0.1 ---- */

static struct {
    int fd;
    int port;
    pthread_t thread;
    pthread_mutex_t lock;
    /* what the next request gets */
    int status;
    char answer[4096];
    /* what the last request carried */
    char head[8192];
    char body[8192];
    size_t body_len;
    int requests;
} rx = {.fd = -1, .lock = PTHREAD_MUTEX_INITIALIZER};

static const char *rx_header(const char *name)
{
    static char value[512];
    size_t n = strlen(name);
    for (const char *p = strstr(rx.head, "\r\n"); p; p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, name, n) == 0 && p[2 + n] == ':') {
            const char *v = p + 3 + n;
            while (*v == ' ')
                v++;
            size_t len = strcspn(v, "\r\n");
            snprintf(value, sizeof value, "%.*s", (int)len, v);
            return value;
        }
    }
    return NULL;
}

static void *rx_loop(void *arg)
{
    (void)arg;
    for (;;) {
        int c = accept(rx.fd, NULL, NULL);
        if (c < 0)
            return NULL;
        char buf[16384];
        size_t got = 0;
        char *end = NULL;
        while (got < sizeof buf - 1 && !end) {
            ssize_t r = read(c, buf + got, sizeof buf - 1 - got);
            if (r <= 0)
                break;
            got += (size_t)r;
            buf[got] = '\0';
            end = strstr(buf, "\r\n\r\n");
        }
        if (!end) {
            close(c);
            continue;
        }
        pthread_mutex_lock(&rx.lock);
        size_t head_len = (size_t)(end - buf);
        snprintf(rx.head, sizeof rx.head, "%.*s", (int)head_len, buf);
        const char *cl = rx_header("Content-Length");
        size_t want = cl ? (size_t)atol(cl) : 0;
        size_t have = got - head_len - 4;
        while (have < want && head_len + 4 + have < sizeof buf - 1) {
            ssize_t r = read(c, buf + got, sizeof buf - 1 - got);
            if (r <= 0)
                break;
            got += (size_t)r;
            have += (size_t)r;
        }
        rx.body_len = have < sizeof rx.body - 1 ? have : sizeof rx.body - 1;
        memcpy(rx.body, end + 4, rx.body_len);
        rx.body[rx.body_len] = '\0';
        rx.requests++;
        char out[8192];
        int n =
            snprintf(out, sizeof out,
                     "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s",
                     rx.status, strlen(rx.answer), rx.answer);
        pthread_mutex_unlock(&rx.lock);
        if (write(c, out, (size_t)n) < 0) {
            /* the client went away: nothing to do */
        }
        close(c);
    }
}

static int rx_start(void **state)
{
    (void)state;
    rx.fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (rx.fd < 0 || bind(rx.fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(rx.fd, 8) != 0 ||
        getsockname(rx.fd, (struct sockaddr *)&a, &len) != 0)
        return -1;
    rx.port = ntohs(a.sin_port);
    return pthread_create(&rx.thread, NULL, rx_loop, NULL);
}

static int rx_stop(void **state)
{
    (void)state;
    shutdown(rx.fd, SHUT_RDWR);
    close(rx.fd);
    pthread_join(rx.thread, NULL);
    return 0;
}

static void rx_answer(int status, const char *json)
{
    pthread_mutex_lock(&rx.lock);
    rx.status = status;
    snprintf(rx.answer, sizeof rx.answer, "%s", json);
    pthread_mutex_unlock(&rx.lock);
}

static char *rx_url(const char *path)
{
    return xasprintf("http://127.0.0.1:%d%s", rx.port, path);
}

/* ---- common/webhook ---- */

static void test_webhook_sign_and_verify(void **state)
{
    (void)state;
    const char *secret = "webhook-secret-0123456789";
    const char *body = "{\"a\":1}";
    char sig[65];
    webhook_sign(secret, "1700000000000", body, strlen(body), sig);
    /* Independently: HMAC over "timestamp.body". */
    uint8_t mac[32];
    char want[65];
    const char *data = "1700000000000.{\"a\":1}";
    hmac_sha256(secret, strlen(secret), data, strlen(data), mac);
    hex_encode(mac, 32, want);
    assert_string_equal(sig, want);

    int64_t now = 1700000000000 + 1000;
    assert_true(webhook_verify(secret, "1700000000000", sig, body, strlen(body), now, 300000));
    char upper[65];
    for (int i = 0; i < 65; i++)
        upper[i] = (char)(sig[i] >= 'a' && sig[i] <= 'f' ? sig[i] - 32 : sig[i]);
    assert_true(webhook_verify(secret, "1700000000000", upper, body, strlen(body), now, 300000));
    assert_false(webhook_verify(secret, "1700000000000", sig, "{\"a\":2}", 7, now, 300000));
    assert_false(webhook_verify("other-secret-0123456789", "1700000000000", sig, body, strlen(body),
                                now, 300000));
    assert_false(webhook_verify(secret, "1700000000001", sig, body, strlen(body), now, 300000));
    assert_false(
        webhook_verify(secret, "1700000000000", sig, body, strlen(body), now + 400000, 300000));
    assert_false(webhook_verify(secret, "1700000000000", sig, body, strlen(body),
                                1700000000000 - 400000, 300000));
    assert_false(webhook_verify(secret, "17e12", sig, body, strlen(body), now, 300000));
    assert_false(webhook_verify(secret, NULL, sig, body, strlen(body), now, 300000));
    assert_false(webhook_verify(secret, "1700000000000", NULL, body, strlen(body), now, 300000));
}

static void test_webhook_post(void **state)
{
    (void)state;
    const char *secret = "webhook-secret-0123456789";
    char *url = rx_url("/hook");
    rx_answer(200, "{\"ok\":true}");
    httpc_response_t resp;
    const char *event = "{\"event\":\"instance.created\",\"instanceId\":\"i-1\"}";
    assert_int_equal(webhook_post(url, secret, event, NULL, &resp), 0);
    assert_int_equal(resp.status, 200);
    assert_string_equal(resp.body, "{\"ok\":true}");
    httpc_response_free(&resp);

    pthread_mutex_lock(&rx.lock);
    assert_string_equal(rx.body, event);
    assert_non_null(strstr(rx.head, "POST /hook "));
    char ts[32], sig[80];
    snprintf(ts, sizeof ts, "%s", rx_header("X-Kooisv-Timestamp"));
    snprintf(sig, sizeof sig, "%s", rx_header("X-Kooisv-Signature"));
    assert_non_null(strstr(rx_header("Content-Type"), "application/json"));
    assert_true(webhook_verify(secret, ts, sig, rx.body, rx.body_len, time_now_ms(), 60000));
    pthread_mutex_unlock(&rx.lock);

    rx_answer(500, "{\"error\":\"down\"}");
    assert_int_equal(webhook_post(url, secret, event, NULL, &resp), -1);
    assert_int_equal(resp.status, 500);
    assert_non_null(strstr(resp.error, "500"));
    httpc_response_free(&resp);
    free(url);

    /* Nobody listening: no status, an error text. */
    httpc_options_t opt = {.verify_peer = 1, .timeout_ms = 2000};
    assert_int_equal(webhook_post("http://127.0.0.1:1/none", secret, event, &opt, &resp), -1);
    assert_int_equal(resp.status, 0);
    assert_true(strlen(resp.error) > 0);
    httpc_response_free(&resp);
}

/* ---- provisioner ---- */

static void test_expand(void **state)
{
    (void)state;
    char *s = provisioner_expand("https://x.invalid/i/{instanceId}?o={orderId}&again={instanceId}",
                                 "a/b c", "CS1");
    assert_string_equal(s, "https://x.invalid/i/a%2Fb%20c?o=CS1&again=a%2Fb%20c");
    free(s);
    s = provisioner_expand("https://x.invalid/{unknown}/{instanceId", "i", "o");
    assert_string_equal(s, "https://x.invalid/{unknown}/{instanceId");
    free(s);
    s = provisioner_expand("", "i", "o");
    assert_string_equal(s, "");
    free(s);
}

static void test_builtin(void **state)
{
    (void)state;
    provisioner_config_t cfg = {.kind = PROVISIONER_BUILTIN,
                                .frontend_template = "https://app.invalid/i/{instanceId}",
                                .admin_template = "https://app.invalid/a/{orderId}",
                                .memo = "hello"};
    provisioner_request_t req = {.instance_id = "inst-1", .order_id = "CS9", .order_line_id = "L"};
    provisioner_credentials_t a, b;
    char err[256];
    assert_int_equal(provisioner_provision(&cfg, &req, &a, err, sizeof err), 0);
    assert_int_equal(provisioner_provision(&cfg, &req, &b, err, sizeof err), 0);
    assert_string_equal(a.front_end_url, "https://app.invalid/i/inst-1");
    assert_string_equal(a.admin_url, "https://app.invalid/a/CS9");
    assert_string_equal(a.memo, "hello");
    assert_int_equal(strlen(a.user_name), 14);
    assert_memory_equal(a.user_name, "admin-", 6);
    const char *why = NULL;
    assert_true(config_password_is_strong(a.password, a.user_name, &why));
    assert_true(strlen(a.password) >= 16);
    assert_string_not_equal(a.password, b.password); /* random, never preset */
    provisioner_credentials_free(&a);
    provisioner_credentials_free(&b);
    assert_null(a.password);

    /* Too long a URL is refused, not truncated. */
    char long_tmpl[700];
    memset(long_tmpl, 'x', sizeof long_tmpl);
    memcpy(long_tmpl, "https://", 8);
    long_tmpl[sizeof long_tmpl - 1] = '\0';
    cfg.frontend_template = long_tmpl;
    assert_int_equal(provisioner_provision(&cfg, &req, &a, err, sizeof err), -1);
    assert_non_null(strstr(err, "512"));
    /* No admin template: no adminUrl. */
    cfg.frontend_template = "https://app.invalid/i/{instanceId}";
    cfg.admin_template = "";
    assert_int_equal(provisioner_provision(&cfg, &req, &a, err, sizeof err), 0);
    assert_null(a.admin_url);
    provisioner_credentials_free(&a);
}

static void test_parse_answer(void **state)
{
    (void)state;
    provisioner_credentials_t c;
    char err[256];
    const char *good = "{\"frontEndUrl\":\"https://a.example/x\",\"adminUrl\":\"https://a.example/"
                       "admin\",\"userName\":\"boss\",\"password\":\"Str0ng-Passw0rd!\","
                       "\"memo\":\"m\",\"extra\":1}";
    assert_int_equal(provisioner_parse_answer(good, strlen(good), &c, err, sizeof err), 0);
    assert_string_equal(c.front_end_url, "https://a.example/x");
    assert_string_equal(c.user_name, "boss");
    assert_string_equal(c.password, "Str0ng-Passw0rd!");
    assert_string_equal(c.memo, "m");
    provisioner_credentials_free(&c);

    const char *minimal = "{\"frontEndUrl\":\"https://a.example/x\",\"password\":null}";
    assert_int_equal(provisioner_parse_answer(minimal, strlen(minimal), &c, err, sizeof err), 0);
    assert_null(c.user_name);
    assert_null(c.password);
    provisioner_credentials_free(&c);

    const struct {
        const char *body;
        const char *why;
    } bad[] = {
        {"not json", "not a JSON object"},
        {"[1]", "not a JSON object"},
        {"{}", "frontEndUrl"},
        {"{\"frontEndUrl\":\"ftp://x\"}", "frontEndUrl"},
        {"{\"frontEndUrl\":42}", "frontEndUrl"},
        {"{\"frontEndUrl\":\"https://x\",\"adminUrl\":\"javascript:1\"}", "adminUrl"},
        {"{\"frontEndUrl\":\"https://x\",\"userName\":\"u\",\"password\":\"Qz7\"}", "password"},
        {"{\"frontEndUrl\":\"https://x\",\"userName\":\"u\",\"password\":\"alllowercaseletters\"}",
         "password"},
        {"{\"frontEndUrl\":\"https://x\",\"memo\":{}}", "memo"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        if (provisioner_parse_answer(bad[i].body, strlen(bad[i].body), &c, err, sizeof err) != -1)
            fail_msg("accepted %s", bad[i].body);
        if (!strstr(err, bad[i].why))
            fail_msg("%s: error '%s' does not name %s", bad[i].body, err, bad[i].why);
        /* never echo a password back */
        assert_null(strstr(err, "Qz7"));
        assert_null(strstr(err, "alllowercaseletters"));
        assert_null(c.front_end_url);
    }
}

static void test_webhook_provisioner(void **state)
{
    (void)state;
    char *url = rx_url("/provision");
    provisioner_config_t cfg = {.kind = PROVISIONER_WEBHOOK,
                                .webhook_url = url,
                                .webhook_secret = "webhook-secret-0123456789",
                                .webhook_timeout_ms = 3000};
    provisioner_request_t req = {.instance_id = "inst-7",
                                 .order_id = "CS7",
                                 .order_line_id = "CS7-1",
                                 .product_id = "P1",
                                 .test_flag = true};
    rx_answer(200, "{\"frontEndUrl\":\"https://app.example/i/inst-7\",\"userName\":\"u7\","
                   "\"password\":\"Zx9-longer-pass\",\"memo\":\"hi\"}");
    provisioner_credentials_t c;
    char err[256];
    assert_int_equal(provisioner_provision(&cfg, &req, &c, err, sizeof err), 0);
    assert_string_equal(c.front_end_url, "https://app.example/i/inst-7");
    assert_string_equal(c.password, "Zx9-longer-pass");
    provisioner_credentials_free(&c);
    pthread_mutex_lock(&rx.lock);
    assert_non_null(strstr(rx.body, "\"event\":\"instance.provision\""));
    assert_non_null(strstr(rx.body, "\"instanceId\":\"inst-7\""));
    assert_non_null(strstr(rx.body, "\"orderId\":\"CS7\""));
    assert_non_null(strstr(rx.body, "\"eventId\":\"provision:inst-7\""));
    assert_non_null(strstr(rx.body, "\"testFlag\":true"));
    char ts[32];
    snprintf(ts, sizeof ts, "%s", rx_header("X-Kooisv-Timestamp"));
    assert_true(webhook_verify(cfg.webhook_secret, ts, rx_header("X-Kooisv-Signature"), rx.body,
                               rx.body_len, time_now_ms(), 60000));
    pthread_mutex_unlock(&rx.lock);

    rx_answer(503, "{}");
    assert_int_equal(provisioner_provision(&cfg, &req, &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "503"));
    rx_answer(200, "{\"frontEndUrl\":\"https://x\",\"userName\":\"u\",\"password\":\"u\"}");
    assert_int_equal(provisioner_provision(&cfg, &req, &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "password"));
    free(url);
}

/* ---- Query Order parsing ---- */

static const char *emulator_answer =
    "{\"resultCode\":\"MKT.0000\",\"resultMsg\":\"success\",\"orderInfo\":{\"orderId\":"
    "\"MOCKPERIODDAYTRIAL\","
    "\"orderType\":\"NEW\",\"createTime\":\"20250101080000\",\"customerId\":\"C1\",\"orderLine\":["
    "{\"orderLineId\":\"MOCKPERIODDAYTRIAL-000001\",\"chargingMode\":\"PERIOD\",\"periodType\":"
    "\"day\","
    "\"periodNumber\":7,\"expireTime\":\"20250108080000\",\"isTrial\":\"1\",\"productInfo\":["
    "{\"productId\":\"OFFI1\",\"skuCode\":\"SKU-BASIC\",\"linearValue\":100}]}]}}";

static void test_queryorder_parse(void **state)
{
    (void)state;
    queryorder_details_t d;
    char err[256];
    assert_int_equal(queryorder_parse(emulator_answer, strlen(emulator_answer),
                                      "MOCKPERIODDAYTRIAL", "MOCKPERIODDAYTRIAL-000001", NULL, &d,
                                      err, sizeof err),
                     0);
    assert_string_equal(d.order_type, "NEW");
    assert_string_equal(d.charging_mode, "PERIOD");
    assert_string_equal(d.period_type, "day");
    assert_int_equal(d.period_number, 7);
    assert_string_equal(d.product_id, "OFFI1");
    assert_string_equal(d.sku_code, "SKU-BASIC");
    assert_string_equal(
        d.product_info,
        "[{\"linearValue\":100,\"productId\":\"OFFI1\",\"skuCode\":\"SKU-BASIC\"}]");
    assert_true(d.trial);
    assert_string_equal(d.expire_raw, "20250108080000");
    assert_int_equal(d.expire_ms, 1736323200000LL); /* 2025-01-08T08:00:00Z: UTC by default */
    assert_non_null(strstr(d.order_json, "\"orderId\":\"MOCKPERIODDAYTRIAL\""));
    queryorder_details_free(&d);
    assert_null(d.order_type);

    /* The same answer from a marketplace configured as UTC+8: eight hours earlier. */
    char why[128];
    time_zone_t *cst = time_zone_new("+08:00", why, sizeof why);
    assert_non_null(cst);
    assert_int_equal(queryorder_parse(emulator_answer, strlen(emulator_answer),
                                      "MOCKPERIODDAYTRIAL", "MOCKPERIODDAYTRIAL-000001", cst, &d, err,
                                      sizeof err),
                     0);
    assert_int_equal(d.expire_ms, 1736323200000LL - 8 * 3600 * 1000);
    queryorder_details_free(&d);
    time_zone_destroy(&cst);

    /* Loose types: periodNumber as text, amount as a number, ISO expiry, two lines, productInfo
     * as one object. */
    const char *loose =
        "{\"resultCode\":\"MKT.0000\",\"orderInfo\":{\"orderId\":\"O1\",\"orderType\":\"RENEW\","
        "\"orderLine\":[{\"orderLineId\":\"L1\",\"periodNumber\":\"3\",\"amount\":12.5},"
        "{\"orderLineId\":\"L2\",\"periodNumber\":\"x\",\"expireTime\":\"2030-01-02T03:04:05Z\","
        "\"productInfo\":{\"productId\":\"P2\"}}]}}";
    assert_int_equal(queryorder_parse(loose, strlen(loose), "O1", "L1", NULL, &d, err, sizeof err),
                     0);
    assert_null(d.product_info);
    assert_int_equal(d.period_number, 3);
    assert_string_equal(d.amount, "12.5");
    assert_false(d.trial);
    assert_int_equal(d.expire_ms, 0);
    queryorder_details_free(&d);
    assert_int_equal(queryorder_parse(loose, strlen(loose), "O1", "L2", NULL, &d, err, sizeof err),
                     0);
    assert_int_equal(d.period_number, -1);
    assert_string_equal(d.product_id, "P2");
    assert_string_equal(d.product_info, "[{\"productId\":\"P2\"}]");
    assert_int_equal(d.expire_ms, 1893553445000LL);
    queryorder_details_free(&d);

    /* Several billing items (pay-per-use): every one is kept, the first names the product. */
    const char *items =
        "{\"resultCode\":\"MKT.0000\",\"orderInfo\":{\"orderId\":\"O1\",\"orderLine\":["
        "{\"orderLineId\":\"L1\",\"chargingMode\":\"ON_DEMAND\",\"productInfo\":["
        "{\"productId\":\"P1\",\"skuCode\":\"CPU\"},{\"productId\":\"P2\",\"skuCode\":\"DISK\"},"
        "{\"productId\":\"P3\",\"skuCode\":\"NET\"}]}]}}";
    assert_int_equal(queryorder_parse(items, strlen(items), "O1", "L1", NULL, &d, err, sizeof err), 0);
    assert_string_equal(d.product_id, "P1");
    assert_string_equal(d.sku_code, "CPU");
    assert_string_equal(d.product_info, "[{\"productId\":\"P1\",\"skuCode\":\"CPU\"},"
                                        "{\"productId\":\"P2\",\"skuCode\":\"DISK\"},"
                                        "{\"productId\":\"P3\",\"skuCode\":\"NET\"}]");
    queryorder_details_free(&d);

    const struct {
        const char *body;
        const char *why;
    } bad[] = {
        {"", "not a JSON object"},
        {"<html>", "not a JSON object"},
        {"{\"resultCode\":\"MKT.0100\",\"resultMsg\":\"order does not exist\"}", "MKT.0100"},
        {"{\"resultMsg\":\"x\"}", "(none)"},
        {"{\"resultCode\":\"MKT.0000\"}", "orderLine"},
        {"{\"resultCode\":\"MKT.0000\",\"orderInfo\":{\"orderLine\":[]}}", "orderLine"},
        {"{\"resultCode\":\"MKT.0000\",\"orderInfo\":{\"orderId\":\"O9\",\"orderLine\":["
         "{\"orderLineId\":\"A\"},{\"orderLineId\":\"B\"}]}}",
         "not in the Query Order answer"},
        /* the only line of the order, but not the one asked for */
        {"{\"resultCode\":\"MKT.0000\",\"orderInfo\":{\"orderId\":\"O9\",\"orderLine\":["
         "{\"orderLineId\":\"L8\"}]}}",
         "not in the Query Order answer"},
        /* an answer about another order, or about no order at all */
        {"{\"resultCode\":\"MKT.0000\",\"orderInfo\":{\"orderId\":\"O8\",\"orderLine\":["
         "{\"orderLineId\":\"L9\"}]}}",
         "orderId O8"},
        {"{\"resultCode\":\"MKT.0000\",\"orderInfo\":{\"orderLine\":[{\"orderLineId\":\"L9\"}]}}",
         "orderId (none)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (queryorder_parse(bad[i].body, strlen(bad[i].body), "O9", "L9", NULL, &d, err,
                             sizeof err) !=
            -1)
            fail_msg("accepted %s", bad[i].body);
        if (!strstr(err, bad[i].why))
            fail_msg("%s: error '%s' lacks '%s'", bad[i].body, err, bad[i].why);
    }
}

static void test_queryorder_unreachable(void **state)
{
    (void)state;
    queryorder_config_t cfg = {
        .url = "http://127.0.0.1:1", .ak = "AK", .sk = "SK-0123456789abcdef", .timeout_ms = 2000};
    queryorder_details_t d;
    char err[256];
    assert_int_equal(queryorder_fetch(&cfg, "CS1", "CS1-000001", &d, err, sizeof err), -1);
    assert_non_null(strstr(err, "unreachable"));
    cfg.url = "not a url";
    assert_int_equal(queryorder_fetch(&cfg, "CS1", "CS1-000001", &d, err, sizeof err), -1);
    assert_non_null(strstr(err, "KOOISV_MARKETPLACE_URL"));
}

static void test_queryorder_request(void **state)
{
    (void)state;
    /* The request as sent: path under the URL's prefix, encoded query, SDK-HMAC headers. */
    char *base = rx_url("/prefix/");
    queryorder_config_t cfg = {
        .url = base, .ak = "AK1", .sk = "SK-0123456789abcdef", .timeout_ms = 3000};
    /* the answer names the order asked for, "MOCK PERIOD" */
    char *spaced =
        xasprintf("{\"resultCode\":\"MKT.0000\",\"orderInfo\":{\"orderId\":\"MOCK PERIOD\",%s",
                  strstr(emulator_answer, "\"orderType\""));
    rx_answer(200, spaced);
    queryorder_details_t d;
    char err[256];
    assert_int_equal(
        queryorder_fetch(&cfg, "MOCK PERIOD", "MOCKPERIODDAYTRIAL-000001", &d, err, sizeof err), 0);
    queryorder_details_free(&d);
    free(spaced);
    pthread_mutex_lock(&rx.lock);
    assert_non_null(strstr(rx.head,
                           "GET /prefix/api/mkp-openapi-public/global/v1/order/query"
                           "?orderId=MOCK%20PERIOD&orderLineId=MOCKPERIODDAYTRIAL-000001 "));
    assert_non_null(rx_header("X-Sdk-Date"));
    assert_non_null(strstr(rx_header("Authorization"), "SDK-HMAC-SHA256 Access=AK1"));
    pthread_mutex_unlock(&rx.lock);
    rx_answer(502, "bad gateway");
    assert_int_equal(queryorder_fetch(&cfg, "CS1", "CS1-1", &d, err, sizeof err), -1);
    assert_non_null(strstr(err, "HTTP 502"));
    free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_webhook_sign_and_verify),
        cmocka_unit_test(test_webhook_post),
        cmocka_unit_test(test_expand),
        cmocka_unit_test(test_builtin),
        cmocka_unit_test(test_parse_answer),
        cmocka_unit_test(test_webhook_provisioner),
        cmocka_unit_test(test_queryorder_parse),
        cmocka_unit_test(test_queryorder_unreachable),
        cmocka_unit_test(test_queryorder_request),
    };
    return cmocka_run_group_tests(tests, rx_start, rx_stop);
}
