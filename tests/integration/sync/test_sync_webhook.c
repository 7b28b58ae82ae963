/* The seller's application hears of every committed sync change: outbox rows written with the
 * change, delivered to the signed webhook (the emulator records it as webhook/sync) at least
 * once, retried with backoff, failures visible to operators and re-driven by them. The test
 * points the tenant and app services at the emulator through <suite>/env/<proc>.env and
 * restarts them; the files are restored at the end. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "config.h"
#include "kclient.h"
#include "kplan.h"
#include "outbox.h"
#include "timeutil.h"
#include "synctest.h"
#include "xmalloc.h"

static kc_envfile_t saved_env[2];
static const char *const procs[2] = {"tenant", "app"};

/* The gateway reconnects to a restarted service within about a second (ZMQ_IMMEDIATE: calls
 * fail fast meanwhile): wait until a harmless call (a delete of nothing) goes through. */
typedef struct {
    const char *name;
} probe_t;

static bool probe_ok(void *arg)
{
    probe_t *p = arg;
    const char *body = strcmp(p->name, "tenantSync") == 0
                           ? "{\"instanceId\":\"probe\",\"tenantId\":\"probe\",\"flag\":0}"
                           : "{\"instanceId\":\"probe\",\"tenantId\":\"probe\",\"appId\":"
                             "\"probe\",\"flag\":0}";
    kresp_t r;
    kc_kit(p->name, body, &r);
    bool ok = r.code && strcmp(r.code, "000000") == 0;
    kresp_free(&r);
    return ok;
}

static void wait_reachable(void)
{
    probe_t t = {"tenantSync"}, a = {"applicationSync"};
    if (!kc_wait(15000, 200, probe_ok, &t) || !kc_wait(15000, 200, probe_ok, &a))
        fail_msg("tenant or app service not reachable through the gateway after a restart");
}

/* Make the emulator's webhook/sync answer in mode ("http500", "drop"; count -1 = until
 * cleared, 0 = clear). */
static void set_fault(const char *mode, int count)
{
    kresp_t r;
    char *fault =
        xasprintf("{\"path\":\"webhook/sync\",\"mode\":\"%s\",\"count\":%d}", mode, count);
    kc_emulator("POST", "/_emulator/faults", fault, &r);
    free(fault);
    if (r.status != 200)
        fail_msg("cannot set the webhook fault %s: %s", mode, r.body);
    kresp_free(&r);
}

static void clear_fault(void)
{
    set_fault("error", 0);
}

/* Write original + extra into <suite>/env/<proc>.env and restart proc. */
static void configure(const char *extra)
{
    for (int i = 0; i < 2; i++) {
        kc_envfile_write(&saved_env[i], extra);
        if (kc_suite("restart", procs[i]) != 0)
            fail_msg("suite.sh restart %s failed", procs[i]);
    }
    wait_reachable();
}

static char *webhook_settings(void)
{
    const char *dir = suite_get("KOOISV_SUITE_DIR");
    return xasprintf("KOOISV_SYNC_WEBHOOK_URL=%s/_emulator/webhook/sync\n"
                     "KOOISV_SYNC_WEBHOOK_SECRET_FILE=%s/secrets/webhook-secret\n"
                     "KOOISV_SYNC_WEBHOOK_CA_FILE=%s\n"
                     "KOOISV_SYNC_WEBHOOK_MAX_ATTEMPTS=3\n"
                     "KOOISV_SYNC_WEBHOOK_BACKOFF_MS=200\n",
                     suite_get("KOOISV_EMULATOR_URL"), dir, suite_get("KOOISV_CA_FILE"));
}

/* configure() with the webhook settings and then the lines of more. */
static void configure_webhook(const char *more)
{
    char *settings = webhook_settings();
    char *extra = xasprintf("%s%s", settings, more);
    configure(extra);
    free(extra);
    free(settings);
}

static int group_setup(void **state)
{
    if (suite_env_load() != 0 || !suite_get("KOOISV_SUITE_DIR"))
        return -1;
    for (int i = 0; i < 2; i++)
        kc_envfile_save(&saved_env[i], procs[i]);
    return 0;
}

static int group_teardown(void **state)
{
    for (int i = 0; i < 2; i++) {
        kc_envfile_restore(&saved_env[i]);
        kc_suite("restart", procs[i]);
    }
    clear_fault();
    return 0;
}

static char *outbox_status(const char *schema, const char *tenant)
{
    const char *p[] = {tenant};
    char *sql = xasprintf("SELECT string_agg(status, ',' ORDER BY id) FROM %s.outbox WHERE"
                          " tenant_id = $1",
                          schema);
    char *v = sql_text(sql, 1, p);
    free(sql);
    return v ? v : xstrdup("");
}

typedef struct {
    const char *schema, *tenant, *want;
} status_wait_t;

static bool status_is(void *arg)
{
    status_wait_t *s = arg;
    char *v = outbox_status(s->schema, s->tenant);
    bool ok = strcmp(v, s->want) == 0;
    free(v);
    return ok;
}

static void wait_status(const char *schema, const char *tenant, const char *want, int timeout_ms)
{
    status_wait_t s = {schema, tenant, want};
    if (!kc_wait(timeout_ms, 100, status_is, &s)) {
        char *v = outbox_status(schema, tenant);
        fail_msg("%s outbox of %s: status %s, expected %s", schema, tenant, v, want);
    }
}

/* A plain tenantSync add: one tenant event. */
static void tenant_add(const char *inst, const char *tenant)
{
    kit_ok("tenantSync",
           "{\"instanceId\":\"%s\",\"tenantId\":\"%s\",\"tenantCode\":\"c\","
           "\"name\":\"N\",\"flag\":1}",
           inst, tenant);
}

/* With no webhook URL the events are still recorded, written skipped in the call's own
 * transaction (nothing is left pending for a delivery thread to mark). */
static void test_skipped_without_url(void **state)
{
    configure("KOOISV_SYNC_WEBHOOK_URL=\n");
    char *inst = uid("I"), *tenant = uid("T");
    tenant_add(inst, tenant);
    char *v = outbox_status("tenants", tenant);
    assert_non_null(v);
    assert_string_equal(v, "skipped");
    free(v);
    free(inst);
    free(tenant);
}

static void test_delivery(void **state)
{
    char *settings = webhook_settings();
    configure(settings);
    free(settings);
    char *inst = uid("I"), *tenant = uid("T");
    kit_ok("tenantSync",
           "{\"instanceId\":\"%s\",\"tenantId\":\"%s\",\"tenantCode\":\"c\","
           "\"name\":\"Webhook Tenant\",\"flag\":1,\"testFlag\":1}",
           inst, tenant);
    kit_ok("singleOrgSync",
           "{\"instanceId\":\"%s\",\"tenantId\":\"%s\",\"orgCode\":\"o\",\"orgName\":\"O\","
           "\"flag\":1}",
           inst, tenant);
    assert_true(webhook_wait(tenant, 2, 10000) >= 2);
    assert_true(webhook_signatures_ok(tenant));
    wait_status("tenants", tenant, "delivered,delivered", 5000);

    /* the event document */
    kresp_t r;
    assert_int_equal(kc_emulator("GET", "/_emulator/calls?path=webhook/sync&limit=100", NULL, &r),
                     0);
    json_t *calls = json_object_get(r.json, "calls");
    json_t *ev = NULL;
    size_t i;
    json_t *c;
    json_array_foreach(calls, i, c)
    {
        const char *body = json_string_value(json_object_get(c, "body"));
        if (body && strstr(body, tenant) && strstr(body, "tenantSync.add")) {
            json_decref(ev);
            ev = json_loads(body, 0, NULL);
        }
    }
    kresp_free(&r);
    assert_non_null(ev);
    assert_string_equal(json_string_value(json_object_get(ev, "eventType")), "tenantSync.add");
    assert_string_equal(json_string_value(json_object_get(ev, "source")), "tenant");
    assert_string_equal(json_string_value(json_object_get(ev, "instanceId")), inst);
    assert_true(json_is_true(json_object_get(ev, "testFlag")));
    assert_non_null(json_string_value(json_object_get(ev, "eventId")));
    assert_true(json_integer_value(json_object_get(ev, "seq")) > 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(ev, "data"), "name")),
                        "Webhook Tenant");
    json_decref(ev);

    /* app events: sealed at rest, opened for delivery; the secret never travels */
    char *ct = kit_encrypt_secret(0, "never-in-a-webhook");
    kit_answer_t a =
        kit_call("applicationSync",
                 "{\"instanceId\":\"%s\",\"tenantId\":\"%s\",\"appId\":\"a\",\"clientId\":\"c\","
                 "\"clientSecret\":\"%s\",\"flag\":1}",
                 inst, tenant, ct);
    free(ct);
    assert_kit(a, "000000", NULL);
    kit_ok("authSync",
           "{\"instanceId\":\"%s\",\"tenantId\":\"%s\",\"appId\":\"a\",\"flag\":1,"
           "\"userList\":[{\"userName\":\"u\",\"name\":\"U\",\"orgCode\":\"o\",\"role\":"
           "\"admin\",\"enable\":\"true\",\"mobile\":\"13912345678\"}]}",
           inst, tenant);
    assert_true(webhook_wait(tenant, 4, 10000) >= 4);
    assert_true(webhook_signatures_ok(tenant));
    assert_int_equal(webhook_calls_with("never-in-a-webhook"), 0);
    assert_int_equal(webhook_calls_with("13912345678"), 1); /* the seller's app gets the user */
    wait_status("apps", tenant, "delivered,delivered", 5000);
    free(inst);
    free(tenant);
}

static long first_outbox_id(const char *schema, const char *tenant)
{
    const char *p[] = {tenant};
    char *sql = xasprintf("SELECT min(id) FROM %s.outbox WHERE tenant_id = $1", schema);
    long id = sql_long(sql, 1, p);
    free(sql);
    return id;
}

/* Clear the fault, redrive the tenant's first outbox event (its id into id) and see it
 * delivered: exactly one webhook call mentions needle. */
static void redrive_first(const char *svc, const char *schema, const char *tenant,
                          const char *needle, char *id, size_t id_len)
{
    clear_fault();
    snprintf(id, id_len, "%ld", first_outbox_id(schema, tenant));
    char *json = NULL;
    char *code = admin_rpc(svc, "operator", "outbox.redrive", &json, "id", id, NULL);
    assert_string_equal(code, "000000 success");
    free(code);
    free(json);
    wait_status(schema, tenant, "delivered", 10000);
    assert_int_equal(webhook_calls_with(needle), 1);
}

/* The events of one instance go out in order: a later event waits while an earlier one waits
 * for its retry (without that, the modify would be delivered during the add's backoff). */
static void test_ordered_per_instance(void **state)
{
    set_fault("http500", 1); /* the add's first post fails */
    char *inst = uid("I"), *tenant = uid("T");
    tenant_add(inst, tenant);
    kit_ok("tenantSync",
           "{\"instanceId\":\"%s\",\"tenantId\":\"%s\",\"tenantCode\":\"c\","
           "\"name\":\"N2\",\"flag\":2}",
           inst, tenant);
    wait_status("tenants", tenant, "delivered,delivered", 10000);
    const char *p[] = {tenant};
    char *order = sql_text("SELECT string_agg(event_type || ':' || attempts, ','"
                           " ORDER BY delivered_at, id) FROM tenants.outbox WHERE tenant_id = $1",
                           1, p);
    assert_non_null(order);
    assert_string_equal(order, "tenantSync.add:2,tenantSync.modify:1");
    free(order);
    free(inst);
    free(tenant);
}

static void fail_then_redrive(const char *svc, const char *schema, const char *tenant,
                              const char *needle)
{
    wait_status(schema, tenant, "failed", 15000);
    const char *p[] = {tenant};
    char *sql = xasprintf(
        "SELECT attempts || ' ' || last_error FROM %s.outbox WHERE tenant_id = $1", schema);
    char *v = sql_text(sql, 1, p);
    free(sql);
    assert_non_null(v);
    assert_int_equal(strncmp(v, "3 ", 2), 0);
    assert_non_null(strstr(v, "500"));
    free(v);
    char *json = NULL;
    char *code = admin_rpc(svc, "operator", "outbox.failed", &json, NULL);
    assert_string_equal(code, "000000 success");
    assert_non_null(strstr(json, tenant));
    assert_non_null(strstr(json, "\"status\":\"failed\""));
    free(code);
    free(json);
    assert_int_equal(webhook_calls_with(needle), 0);

    char id[32];
    redrive_first(svc, schema, tenant, needle, id, sizeof id);
    /* nothing left to redrive; unknown ids are refused clearly */
    code = admin_rpc(svc, "operator", "outbox.redrive", &json, "id", id, NULL);
    assert_int_equal(strncmp(code, "000002", 6), 0);
    assert_non_null(strstr(code, "delivered"));
    free(code);
    code = admin_rpc(svc, "operator", "outbox.redrive", &json, "id", "999999999", NULL);
    assert_int_equal(strncmp(code, "000002", 6), 0);
    free(code);
    code = admin_rpc(svc, "operator", "outbox.redrive", &json, "id", "1; DROP TABLE x", NULL);
    assert_int_equal(strncmp(code, "000002", 6), 0);
    free(code);
}

static void test_failures_and_redrive(void **state)
{
    set_fault("http500", -1);
    char *inst = uid("I"), *tenant = uid("T");
    kit_ok("singleOrgSync",
           "{\"instanceId\":\"%s\",\"tenantId\":\"%s\",\"orgCode\":\"o\","
           "\"orgName\":\"O\",\"flag\":1}",
           inst, tenant);
    fail_then_redrive("tenant", "tenants", tenant, tenant);

    /* the app service: its payloads are sealed at rest */
    set_fault("drop", -1);
    char *t2 = uid("T");
    kit_ok("authSync",
           "{\"instanceId\":\"%s\",\"tenantId\":\"%s\",\"appId\":\"a\",\"flag\":1,"
           "\"userList\":[{\"userName\":\"u\",\"name\":\"U\",\"orgCode\":\"o\",\"role\":"
           "\"user\",\"enable\":\"true\"}]}",
           inst, t2);
    const char *p[] = {t2};
    assert_int_equal(sql_long("SELECT count(*) FROM apps.outbox WHERE tenant_id = $1 AND sealed AND"
                              " payload LIKE 'v1:%'",
                              1, p),
                     1);
    wait_status("apps", t2, "failed", 15000);
    char id[32];
    redrive_first("app", "apps", t2, t2, id, sizeof id);
    free(t2);
    free(inst);
    free(tenant);
}

/* A redrive never touches an event a delivery thread holds under its lease: the thread is
 * posting it (the receiver is slow), and a redrive that made the row due again would let another
 * thread post it a second time. The redrive is refused and the event arrives once. */
static void test_redrive_leased_refused(void **state)
{
    char *inst = uid("I"), *tenant = uid("T");
    kresp_t r;
    char *fault = xasprintf("{\"path\":\"webhook/sync\",\"mode\":\"slow\",\"delay_ms\":3000,"
                            "\"count\":1,\"match\":\"%s\"}",
                            tenant);
    kc_emulator("POST", "/_emulator/faults", fault, &r);
    free(fault);
    assert_int_equal(r.status, 200);
    kresp_free(&r);
    tenant_add(inst, tenant);
    /* claimed: attempts 1, still pending, the post in flight */
    const char *p[] = {tenant};
    status_wait_t pending = {"tenants", tenant, "pending"};
    assert_true(kc_wait(5000, 50, status_is, &pending));
    for (int i = 0;
         i < 100 && sql_long("SELECT attempts FROM tenants.outbox WHERE tenant_id = $1", 1, p) < 1;
         i++)
        usleep(20000);
    char id[32];
    snprintf(id, sizeof id, "%ld", first_outbox_id("tenants", tenant));
    char *json = NULL;
    char *code = admin_rpc("tenant", "operator", "outbox.redrive", &json, "id", id, NULL);
    assert_int_equal(strncmp(code, "000002", 6), 0);
    assert_non_null(strstr(code, "pending"));
    free(code);
    free(json);
    assert_int_equal(sql_long("SELECT attempts FROM tenants.outbox WHERE tenant_id = $1", 1, p), 1);
    wait_status("tenants", tenant, "delivered", 10000);
    usleep(1500000); /* a second post would follow at once */
    assert_int_equal(webhook_calls_with(tenant), 1);
    free(inst);
    free(tenant);
}

/* A pending event survives the service being killed and goes out after it returns. */
static void test_survives_kill(void **state)
{
    set_fault("http500", -1);
    char *inst = uid("I"), *tenant = uid("T");
    tenant_add(inst, tenant);
    assert_int_equal(kc_suite("kill", "tenant"), 0);
    clear_fault();
    assert_int_equal(kc_suite("start-svc", "tenant"), 0);
    wait_reachable();
    /* at most the 60 s claim lease when it died in the middle of a post */
    wait_status("tenants", tenant, "delivered", 75000);
    assert_true(webhook_calls_with(tenant) >= 1);
    free(inst);
    free(tenant);
}

/* Rows read and dropped ("Rows Removed by Filter" and "by Join Filter", which EXPLAIN gives
 * per loop) over an EXPLAIN (ANALYZE, FORMAT JSON) plan tree. */
static double rows_filtered(json_t *node)
{
    json_t *loops = json_object_get(node, "Actual Loops");
    double n = (json_number_value(json_object_get(node, "Rows Removed by Filter")) +
                json_number_value(json_object_get(node, "Rows Removed by Join Filter"))) *
               (loops ? json_number_value(loops) : 1);
    size_t i;
    json_t *child;
    json_array_foreach(json_object_get(node, "Plans"), i, child) n += rows_filtered(child);
    return n;
}

static void sql_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
}

/* The claim stays a walk of the due events with one index probe each, however stale the
 * statistics: a copy of the tenants' outbox (its indexes included) is analysed while nothing
 * is pending, then 3,000 events go pending at once (a webhook that was down). Before migration
 * 003 each probe read every pending event (3,000 rows filtered per claimed row). The marks of
 * a post (delivered, failed) keep to the primary key under the same statistics. */
static void test_claim_plan_stale_statistics(void **state)
{
    PGconn *c = PQconnectdb(suite_get("KOOISV_PG_SUPER_DSN"));
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    char *schema = xasprintf("outbox_plan_%ld", (long)getpid());
    char *sql = xasprintf("DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s;"
                          " CREATE TABLE %s.outbox (LIKE tenants.outbox INCLUDING ALL);"
                          " SET search_path = %s",
                          schema, schema, schema, schema);
    sql_ok(c, sql);
    free(sql);
    const char *fill = "INSERT INTO outbox (id, event_id, event_type, instance_id, tenant_id,"
                       " test_flag, payload, sealed, status)"
                       " SELECT g, 'e' || g, 'tenantSync.add', 'i' || g, 't', false, '{}', false,"
                       " %s FROM generate_series(%d, %d) g";
    sql = xasprintf(fill, "'delivered'", 1, 3000);
    sql_ok(c, sql);
    free(sql);
    sql_ok(c, "ANALYZE outbox");
    sql = xasprintf(fill, "'pending'", 3001, 6000);
    sql_ok(c, sql);
    free(sql);
    size_t n = 0;
    const pg_stmt_t *stmts = outbox_delivery_stmts(&n);
    assert_string_equal(stmts[0].name, "outbox_claim");
    PGresult *r = PQprepare(c, "claim", stmts[0].sql, stmts[0].nparams, NULL);
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    sql_ok(c, "BEGIN");
    r = PQexec(c, "EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE claim(10, 60)");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    json_t *plan = json_loads(PQgetvalue(r, 0, 0), 0, NULL);
    PQclear(r);
    sql_ok(c, "ROLLBACK");
    assert_non_null(plan);
    double filtered = rows_filtered(json_object_get(json_array_get(plan, 0), "Plan"));
    json_decref(plan);
    /* A post's row is marked delivered or failed by its id, not through the index of the
     * pending rows, which these statistics say is nearly empty (the generic plans walked all of
     * it for each id: a backlog's marks read the backlog again). */
    char *wrong = xstrdup("");
    for (size_t i = 0; i < n; i++) {
        if (strcmp(stmts[i].name, "outbox_delivered") != 0 &&
            strcmp(stmts[i].name, "outbox_retry") != 0)
            continue;
        kplan_expect(c, &stmts[i], NULL, NULL, "outbox", "outbox_pkey", &wrong);
    }
    sql = xasprintf("DROP SCHEMA %s CASCADE", schema);
    sql_ok(c, sql);
    free(sql);
    free(schema);
    PQfinish(c);
    if (filtered > 100)
        fail_msg("the claim filtered %.0f rows to take 10 of 3,000 pending events", filtered);
    if (*wrong)
        fail_msg("statements that mark an event by its id through another index:%s", wrong);
    free(wrong);
}

/* Four delivery threads post the events of four instances at once: with every post taking a
 * second (the emulator's slow fault), all four are delivered well before four seconds. */
static void test_threads_post_at_once(void **state)
{
    configure_webhook("KOOISV_SYNC_WEBHOOK_THREADS=4\n");
    kresp_t r;
    kc_emulator("POST", "/_emulator/faults",
                "{\"path\":\"webhook/sync\",\"mode\":\"slow\",\"delay_ms\":1000,\"count\":4}", &r);
    assert_int_equal(r.status, 200);
    kresp_free(&r);
    char *inst[4], *tenant[4];
    int64_t t0 = time_mono_us();
    for (int i = 0; i < 4; i++) {
        inst[i] = uid("I");
        tenant[i] = uid("T");
        tenant_add(inst[i], tenant[i]);
    }
    for (int i = 0; i < 4; i++)
        wait_status("tenants", tenant[i], "delivered", 10000);
    int64_t took_ms = (time_mono_us() - t0) / 1000;
    clear_fault();
    for (int i = 0; i < 4; i++) {
        free(inst[i]);
        free(tenant[i]);
    }
    if (took_ms >= 3500)
        fail_msg("four slow posts took %lld ms: not posted at once", (long long)took_ms);
}

static char *attempts_of(const char *tenant)
{
    const char *p[] = {tenant};
    char *v = sql_text("SELECT attempts::text FROM tenants.outbox WHERE tenant_id = $1", 1, p);
    return v ? v : xstrdup("");
}

/* With the poll ten minutes apart, an event is posted as soon as its transaction commits (the
 * replica that commits it wakes its own delivery thread: no NOTIFY), and a failed post is
 * retried when its backoff (200 ms) ends, not at the next poll. */
static void test_wakes_without_poll(void **state)
{
    configure_webhook("KOOISV_SYNC_WEBHOOK_POLL_MS=600000\n");
    char *inst = uid("I"), *tenant = uid("T"), *second = uid("T");
    tenant_add(inst, tenant);
    wait_status("tenants", tenant, "delivered", 5000);

    set_fault("http500", 1); /* the next post fails once */
    tenant_add(inst, second);
    wait_status("tenants", second, "delivered", 5000);
    char *attempts = attempts_of(second);
    assert_string_equal(attempts, "2");
    free(attempts);
    clear_fault();
    free(inst);
    free(tenant);
    free(second);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_skipped_without_url),    cmocka_unit_test(test_delivery),
        cmocka_unit_test(test_ordered_per_instance),   cmocka_unit_test(test_failures_and_redrive),
        cmocka_unit_test(test_redrive_leased_refused), cmocka_unit_test(test_survives_kill),
        cmocka_unit_test(test_wakes_without_poll),
        cmocka_unit_test(test_claim_plan_stale_statistics),
        cmocka_unit_test(test_threads_post_at_once),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
