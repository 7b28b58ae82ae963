/* kooisvctl market against the suite: `market check` passes (twice: its ids are fresh per run)
 * and leaves what the marketplace would see behind it in PostgreSQL; it fails, naming the
 * reason, with a wrong key; one call prints request and answer as JSON, with Body-Sign checked
 * and appInfo decrypted, and --set adds a field; a failing result code, a missing key file, a
 * bad URL, an unknown activity, a missing field, a --set without NAME=VALUE and an untrusted
 * certificate each end in a clear error and a non-zero exit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kclient.h"
#include "xmalloc.h"

/* Run kooisvctl with args; exit status, stdout and stderr (caller frees both). */
static int ctl(char **out, char **err, const char *const *args)
{
    int rc = kc_ctl_err(out, err, NULL, args);
    assert_int_not_equal(rc, -1);
    return rc;
}

static void assert_contains(const char *text, const char *part)
{
    if (!strstr(text, part))
        fail_msg("expected \"%s\" in:\n%s", part, text);
}

/* sql's first value (one text parameter param, or none when NULL) is want. */
static void assert_sql_value(const char *want, const char *sql, const char *param)
{
    const char *p[] = {param};
    char *v = kc_sql_value(sql, param ? 1 : 0, param ? p : NULL);
    if (!v || strcmp(v, want) != 0)
        fail_msg("%s [%s] = %s, want %s", sql, param ? param : "", v ? v : "(none)", want);
    free(v);
}

/* The run id of a check's output ("..., run <id>"). Caller frees. */
static char *run_of(const char *out)
{
    const char *p = strstr(out, ", run ");
    assert_non_null(p);
    return xstrndup(p + 6, 16);
}

static void test_check_passes_twice(void **state)
{
    (void)state;
    for (int round = 0; round < 2; round++) {
        char *out, *err;
        int rc = ctl(&out, &err, (const char *[]){"market", "check", NULL});
        printf("%s%s", out, err);
        assert_int_equal(rc, 0);
        assert_contains(out, "30 passed, 0 failed, 0 skipped");
        assert_contains(out, "usage (pay-per-use)");
        /* Each case line says pass, the usage case too (the suite's env file has the meter
         * token). */
        int passes = 0;
        for (const char *p = out; (p = strstr(p, " pass ")) != NULL; p++)
            passes++;
        assert_int_equal(passes, 30);
        /* What it did is stored: the yearly debug instance active and flagged as a test, the
         * run's own order released, its tenant there. */
        assert_sql_value("active",
                         "SELECT state FROM orders.instances WHERE order_id ="
                         " 'MOCKPERIODYEARNEW' AND test_flag",
                         NULL);
        char *run = run_of(out);
        /* the usage case's record is in billing once, though it was sent twice */
        char *rec = xasprintf("%s-usage", run);
        assert_sql_value(
            "1", "SELECT count(*) FROM billing.usage_records WHERE client_record_id = $1", rec);
        free(rec);
        char *order = xasprintf("CS%s", run);
        char *tenant = xasprintf("T%s", run);
        assert_sql_value("released",
                         "SELECT state FROM orders.instances WHERE order_id = $1 AND test_flag",
                         order);
        const char *p2[] = {tenant};
        assert_int_equal(kc_sql_count("SELECT 1 FROM tenants.tenants WHERE tenant_id = $1", 1, p2),
                         1);
        free(tenant);
        free(order);
        free(run);
        free(out);
        free(err);
    }
}

static char *temp_file(const char *text)
{
    char *path = xstrdup("/tmp/test-market-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void test_check_fails_with_wrong_key(void **state)
{
    (void)state;
    char *key = temp_file("Wrong-basic-key-0123456789abcdef\n");
    char *out, *err;
    int rc =
        ctl(&out, &err,
            (const char *[]){"market", "check", "--basic-key-file", key, "--wait-s", "5", NULL});
    printf("%s%s", out, err);
    assert_int_equal(rc, 1);
    assert_contains(out, "purchase yearly (MOCKPERIODYEARNEW)");
    assert_contains(out, "FAIL");
    assert_contains(out, "expected 000000, got 000001");
    assert_contains(out, "needs the yearly instance");
    unlink(key);
    free(key);
    free(out);
    free(err);
}

static void test_one_call_json(void **state)
{
    (void)state;
    char *uid = kc_uid("CSM");
    char *out, *err;
    int rc = ctl(&out, &err,
                 (const char *[]){"market", "newInstance", "--orderId", uid, "--json", NULL});
    assert_int_equal(rc, 0);
    json_t *doc = json_loads(out, 0, NULL);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "resultCode")), "000000");
    json_t *resp = json_object_get(doc, "response");
    assert_string_equal(json_string_value(json_object_get(resp, "bodySign")), "valid");
    const char *url = json_string_value(json_object_get(json_object_get(doc, "request"), "url"));
    assert_non_null(strstr(url, "signature="));
    json_t *sent = json_object_get(json_object_get(doc, "request"), "body");
    assert_string_equal(json_string_value(json_object_get(sent, "testFlag")), "1");
    char *line = xasprintf("%s-000001", uid);
    assert_string_equal(json_string_value(json_object_get(sent, "orderLineId")), line);
    char *id =
        xstrdup(json_string_value(json_object_get(json_object_get(resp, "body"), "instanceId")));
    json_decref(doc);
    free(out);
    free(err);

    /* --print: the bare field; the same order gives the same instance. */
    rc = ctl(
        &out, &err,
        (const char *[]){"market", "newInstance", "--orderId", uid, "--print", "instanceId", NULL});
    assert_int_equal(rc, 0);
    char *expect_line = xasprintf("%s\n", id);
    assert_string_equal(out, expect_line);
    free(expect_line);
    free(out);
    free(err);

    /* Provisioned: appInfo decrypted with the basic key. */
    rc = ctl(&out, &err,
             (const char *[]){"market", "queryInstance", "--instanceId", id, "--wait", "60",
                              "--json", NULL});
    assert_int_equal(rc, 0);
    doc = json_loads(out, 0, NULL);
    assert_non_null(doc);
    json_t *app = json_array_get(json_object_get(doc, "appInfo"), 0);
    assert_string_equal(json_string_value(json_object_get(app, "instanceId")), id);
    const char *user = json_string_value(json_object_get(app, "userName"));
    const char *pass = json_string_value(json_object_get(app, "password"));
    assert_non_null(user);
    assert_non_null(pass);
    assert_true(strlen(pass) >= 8);
    /* What was decrypted is not what the wire carried. */
    json_t *wire = json_object_get(
        json_array_get(
            json_object_get(json_object_get(json_object_get(doc, "response"), "body"), "info"), 0),
        "appInfo");
    assert_string_not_equal(json_string_value(json_object_get(wire, "password")), pass);
    json_decref(doc);
    free(out);
    free(err);

    /* The human form shows the request, the answer and the decrypted appInfo. */
    rc = ctl(&out, &err, (const char *[]){"market", "queryInstance", "--instanceId", id, NULL});
    assert_int_equal(rc, 0);
    assert_contains(out, "> POST ");
    assert_contains(out, "< HTTP 200, Body-Sign valid");
    assert_contains(out, "decrypted: userName=");
    free(out);
    free(err);

    /* --set adds a field the flags do not name; the call still succeeds. */
    rc = ctl(&out, &err,
             (const char *[]){"market", "queryInstance", "--instanceId", id, "--set",
                              "customerName=Acme Ltd", "--json", NULL});
    if (rc != 0)
        fail_msg("--set: exit %d; stderr: %s", rc, err);
    doc = json_loads(out, 0, NULL);
    assert_non_null(doc);
    sent = json_object_get(json_object_get(doc, "request"), "body");
    assert_string_equal(json_string_value(json_object_get(sent, "customerName")), "Acme Ltd");
    assert_string_equal(json_string_value(json_object_get(sent, "instanceId")), id);
    assert_string_equal(json_string_value(json_object_get(doc, "resultCode")), "000000");
    json_decref(doc);
    free(out);
    free(err);

    /* A kit call with a plain secret encrypted by the tool. */
    char *tenant = kc_uid("TM");
    rc = ctl(&out, &err,
             (const char *[]){"market", "applicationSync", "--tenantId", tenant, "--appId", "a1",
                              "--clientId", "c1", "--clientSecretPlain", "s3cret-Value", "--flag",
                              "1", NULL});
    assert_int_equal(rc, 0);
    assert_contains(out, "/produceAPI/v2/applicationSync");
    assert_contains(out, "> x-sign: ");
    free(out);
    free(err);
    free(tenant);
    free(line);
    free(id);
    free(uid);
}

static void test_failing_result_code(void **state)
{
    (void)state;
    char *out, *err;
    int rc = ctl(&out, &err,
                 (const char *[]){"market", "updateInstanceStatus", "--instanceId",
                                  "NO-SUCH-INSTANCE", "--status", "FREEZE", NULL});
    assert_int_equal(rc, 1);
    assert_contains(err, "000003");
    free(out);
    free(err);
    /* A wrong signature on purpose: refused, exit 1. */
    rc = ctl(&out, &err,
             (const char *[]){"market", "queryInstance", "--instanceId", "x", "--signature", "00",
                              NULL});
    assert_int_equal(rc, 1);
    assert_contains(err, "000001");
    free(out);
    free(err);
}

/* args fail with exit status want and a message holding part on stderr. */
static void expect_refused(const char *const *args, int want, const char *part)
{
    char *out, *err;
    int rc = ctl(&out, &err, args);
    if (rc != want)
        fail_msg("exit %d (wanted %d); stderr: %s", rc, want, err);
    assert_contains(err, part);
    free(out);
    free(err);
}

static void test_bad_input(void **state)
{
    (void)state;
    expect_refused((const char *[]){"market", "queryInstance", "--instanceId", "x",
                                    "--basic-key-file", "/nonexistent/basic.key", NULL},
                   2, "cannot read KOOISV_BASIC_KEY (/nonexistent/basic.key)");
    expect_refused((const char *[]){"market", "queryInstance", "--instanceId", "x", "--url",
                                    "127.0.0.1:8443/produce", NULL},
                   2, "is not an https:// URL");
    expect_refused((const char *[]){"market", "queryInstance", "--instanceId", "x", "--url",
                                    "http://127.0.0.1:8443/produce", NULL},
                   2, "is not an https:// URL");
    expect_refused((const char *[]){"market", "queryInstance", "--instanceId", "x", "--url",
                                    "https://127.0.0.1:1/produce", NULL},
                   1, "no answer from https://127.0.0.1:1/produce");
    expect_refused((const char *[]){"market", "buyEverything", NULL}, 2,
                   "unknown activity 'buyEverything'");
    expect_refused((const char *[]){"market", "updateInstanceStatus", "--instanceId", "x", NULL}, 2,
                   "--status is required");
    expect_refused((const char *[]){"market", "queryInstance", "--nosuch", "x", NULL}, 2,
                   "unknown option --nosuch");
    expect_refused(
        (const char *[]){"market", "tenantSync", "--tenantId", "t", "--flag", "one", NULL}, 2,
        "--flag must be an integer");
    expect_refused((const char *[]){"market", "check", "--bogus", NULL}, 2, "is not an option");
    expect_refused((const char *[]){"market", "queryInstance", "--instanceId", "x", "--set",
                                    "customerName", NULL},
                   2, "--set needs NAME=VALUE");
    expect_refused(
        (const char *[]){"market", "queryInstance", "--instanceId", "x", "--set", "=x", NULL}, 2,
        "--set needs NAME=VALUE");
    /* Never silently insecure: the suite's certificate is not trusted by the system store. */
    expect_refused((const char *[]){"market", "queryInstance", "--instanceId", "x", "--ca-file",
                                    "/etc/ssl/certs/ca-certificates.crt", NULL},
                   1, "no answer");
    expect_refused((const char *[]){"market", "queryInstance", "--instanceId", "x", "--ca-file",
                                    "/nonexistent/ca.crt", NULL},
                   2, "cannot read the CA file");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_failing_result_code),
        cmocka_unit_test(test_one_call_json),
        cmocka_unit_test(test_check_passes_twice),
        cmocka_unit_test(test_check_fails_with_wrong_key),
    };
    return KC_SUITE_MAIN(tests, NULL, NULL);
}
