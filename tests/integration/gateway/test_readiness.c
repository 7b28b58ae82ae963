/* Readiness and liveness against the suite: the gateway's /readyz follows its audit service and
 * audit's database (readiness.h, svcrt.h), /livez does not; a service's `--check ready` follows
 * its database, `--check live` only its port. Takes PostgreSQL and audit down in turn and
 * brings them back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kclient.h"
#include "ktest_shell.h"
#include "xmalloc.h"

/* GET path on the gateway's metrics listener: status, body into *body (caller frees). */
static int probe(const char *path, char **body)
{
    kresp_t r;
    char *url = xasprintf("%s%s", suite_get("KOOISV_METRICS_URL"), path);
    kc_raw("GET", url, NULL, NULL, 0, &r);
    int status = r.status;
    if (body)
        *body = xstrdup(r.body ? r.body : "");
    kresp_free(&r);
    free(url);
    return status;
}

typedef struct {
    int status;
    const char *needle;
} want_t;

static bool readyz_is(void *arg)
{
    const want_t *w = arg;
    char *body = NULL;
    bool ok = probe("/readyz", &body) == w->status && (!w->needle || strstr(body, w->needle));
    free(body);
    return ok;
}

/* kooisv-tenant --check mode, with bind and the superuser's connection string; its exit code
 * and first line of output into out. */
static int tenant_check(const char *mode, const char *bind, char *out, size_t outlen)
{
    /* The check reads only KOOISV_BIND and KOOISV_PG_DSN; the keys only need to be present. */
    char *cmd = xasprintf("env -i KOOISV_BIND='%s' KOOISV_PG_DSN='%s' "
                          "KOOISV_CURVE_SECRET_KEY=%040d KOOISV_CURVE_CLIENTS=%040d '%s' "
                          "--check %s 2>&1",
                          bind, suite_get("KOOISV_PG_SUPER_DSN"), 0, 0, TENANT_BIN, mode);
    int status = ktest_shell_first_line(cmd, out, outlen);
    free(cmd);
    return status;
}

static void test_ready_and_live(void **state)
{
    (void)state;
    want_t ready = {200, "ready"};
    assert_true(kc_wait(10000, 100, readyz_is, &ready));
    assert_int_equal(probe("/livez", NULL), 200);
    char out[256];
    const char *bind = suite_get("KOOISV_TENANT_ENDPOINTS");
    assert_int_equal(tenant_check("ready", bind, out, sizeof out), 0);
    assert_string_equal(out, "ready\n");
    assert_int_equal(tenant_check("live", bind, out, sizeof out), 0);
    /* Nothing listens on port 1; a wrong mode is a usage error. */
    assert_int_equal(tenant_check("live", "tcp://127.0.0.1:1", out, sizeof out), 1);
    assert_non_null(strstr(out, "nothing listens"));
    assert_int_equal(tenant_check("sideways", bind, out, sizeof out), 2);
}

static void test_database_down(void **state)
{
    (void)state;
    char out[256];
    assert_int_equal(kc_suite("pg-kill", NULL), 0);
    want_t down = {503, "database unreachable"};
    bool went = kc_wait(10000, 100, readyz_is, &down);
    int live = probe("/livez", NULL);
    int check = tenant_check("ready", suite_get("KOOISV_TENANT_ENDPOINTS"), out, sizeof out);
    int check_live = tenant_check("live", suite_get("KOOISV_TENANT_ENDPOINTS"), out, sizeof out);
    assert_int_equal(kc_suite("pg-start", NULL), 0);
    assert_true(went);
    assert_int_equal(live, 200);
    assert_int_equal(check, 1);
    assert_int_equal(check_live, 0);
    want_t ready = {200, "ready"};
    assert_true(kc_wait(20000, 200, readyz_is, &ready));
}

static void test_audit_down(void **state)
{
    (void)state;
    assert_int_equal(kc_suite("stop-svc", "audit"), 0);
    want_t down = {503, "audit service"};
    bool went = kc_wait(10000, 100, readyz_is, &down);
    int live = probe("/livez", NULL);
    assert_int_equal(kc_suite("start-svc", "audit"), 0);
    assert_true(went);
    assert_int_equal(live, 200);
    want_t ready = {200, "ready"};
    assert_true(kc_wait(20000, 200, readyz_is, &ready));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ready_and_live),
        cmocka_unit_test(test_database_down),
        cmocka_unit_test(test_audit_down),
    };
    return KC_SUITE_MAIN(tests, NULL, NULL);
}
