/* A PostgreSQL restart under running services. Every service keeps the connections it made
 * before the restart, now dead; the first kit calls after it must still succeed (pgutil's
 * sessions notice the dead connection and its transaction runner reconnects and reruns once)
 * instead of answering 000005 until a connection happens to be replaced. The gateway's audit
 * intent and outcome of each call take the same way through the audit service; the audit
 * service's reading connections (queries of the trail) notice theirs before they are used. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kclient.h"
#include "synctest.h"

static const char TENANT_FMT[] =
    "{\"instanceId\":\"%s\",\"orderId\":\"CS%s\",\"tenantId\":\"%s\",\"tenantCode\":\"c\","
    "\"name\":\"%s\",\"domainName\":\"d.example.com\",\"flag\":%d,\"testFlag\":0,"
    "\"timeStamp\":\"20261128101500123\"}";
static const char APP_FMT[] =
    "{\"instanceId\":\"%s\",\"tenantId\":\"%s\",\"appId\":\"a1\",\"clientId\":\"%s\","
    "\"clientSecret\":\"%s\",\"flag\":%d,\"testFlag\":0,\"timeStamp\":\"20261128101500123\"}";

static char *tenant_name(const char *inst, const char *tenant)
{
    const char *p[] = {inst, tenant};
    return sql_text("SELECT name FROM tenants.tenants WHERE instance_id = $1 AND tenant_id = $2", 2,
                    p);
}

static char *app_client_id(const char *inst, const char *tenant)
{
    const char *p[] = {inst, tenant};
    return sql_text("SELECT client_id FROM apps.apps WHERE instance_id = $1 AND tenant_id = $2"
                    " AND app_id = 'a1'",
                    2, p);
}

/* An audit query through the admin API: its HTTP status. */
static int audit_query_status(void)
{
    kresp_t r;
    kc_admin("GET", "/v1/audit?limit=5", suite_get("KOOISV_AUDITOR_TOKEN"), NULL, &r);
    int status = r.status;
    kresp_free(&r);
    return status;
}

static void test_sync_right_after_pg_restart(void **state)
{
    (void)state;
    char *inst = uid("I"), *tenant = uid("T");
    char *secret = kit_encrypt_secret(0, "s3cret-Before-restart");
    /* Every worker involved has used its connection before the restart. */
    kit_ok("tenantSync", TENANT_FMT, inst, inst, tenant, "before", 1);
    kit_ok("applicationSync", APP_FMT, inst, tenant, "client-before", secret, 1);
    /* The audit service's reading connections too: several in use at once, then idle. */
    for (int i = 0; i < 4; i++)
        assert_int_equal(audit_query_status(), 200);

    assert_int_equal(kc_suite("pg-restart", NULL), 0);

    /* The first queries of the trail after the restart are answered, not 502. */
    for (int i = 0; i < 4; i++)
        assert_int_equal(audit_query_status(), 200);

    /* The very first calls after the restart: no 000005, and the change is stored. */
    kit_ok("tenantSync", TENANT_FMT, inst, inst, tenant, "after", 2);
    kit_ok("applicationSync", APP_FMT, inst, tenant, "client-after", secret, 2);
    char *name = tenant_name(inst, tenant), *client = app_client_id(inst, tenant);
    assert_non_null(name);
    assert_string_equal(name, "after");
    assert_non_null(client);
    assert_string_equal(client, "client-after");
    free(name);
    free(client);
    free(secret);
    free(inst);
    free(tenant);
}

int main(void)
{
    synctest_require_suite();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sync_right_after_pg_restart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
