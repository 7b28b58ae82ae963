/* The seller's application hears every lifecycle change of an instance: the order service's
 * events go through the common outbox to the signed webhook (the emulator records it as
 * webhook/order), in order per instance, with the instance's testFlag, retried, dead-lettered
 * and re-driven with kooisvctl. The builtin provisioner's credentials travel sealed under a key
 * derived from the webhook secret (README "Order events") and are in no log line. The test
 * points the order service at the emulator through <suite>/env/order.env and restarts it; the
 * file is restored at the end. */
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

#include <libpq-fe.h>

#include "appcrypt.h"
#include "cryptoutil.h"
#include "migrations.h"
#include "config.h"
#include "order_support.h"
#include "pgutil.h"
#include "sealbox.h"
#include "xmalloc.h"

#define PROVISION_WAIT_MS 20000
#define HOOK "webhook/order"

static kc_envfile_t saved_env;

static char *secret_path(void)
{
    return xasprintf("%s/secrets/webhook-secret", suite_get("KOOISV_SUITE_DIR"));
}

static int group_setup(void **state)
{
    (void)state;
    if (suite_env_load() != 0 || !suite_get("KOOISV_SUITE_DIR"))
        return -1;
    char *secret = secret_path();
    char *extra = xasprintf("KOOISV_SYNC_WEBHOOK_URL=%s/_emulator/" HOOK "\n"
                            "KOOISV_SYNC_WEBHOOK_SECRET_FILE=%s\n"
                            "KOOISV_SYNC_WEBHOOK_CA_FILE=%s\n"
                            "KOOISV_SYNC_WEBHOOK_MAX_ATTEMPTS=3\n"
                            "KOOISV_SYNC_WEBHOOK_BACKOFF_MS=200\n",
                            suite_get("KOOISV_EMULATOR_URL"), secret, suite_get("KOOISV_CA_FILE"));
    free(secret);
    int rc = ot_order_env_apply(&saved_env, extra);
    free(extra);
    return rc;
}

static void clear_fault(void)
{
    kresp_t r;
    kc_emulator("POST", "/_emulator/faults",
                "{\"path\":\"" HOOK "\",\"mode\":\"error\",\"count\":0}", &r);
    kresp_free(&r);
}

static int group_teardown(void **state)
{
    (void)state;
    clear_fault();
    ot_order_env_restore(&saved_env);
    return 0;
}

/* The events of instance id the webhook answered 200 for, oldest first (caller json_decref);
 * every one asserted signed. */
static json_t *events_of(const char *id)
{
    kresp_t r;
    assert_int_equal(kc_emulator("GET", "/_emulator/calls?path=" HOOK "&limit=100", NULL, &r), 0);
    json_t *out = json_array();
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(r.json, "calls"), i, c)
    {
        const char *body = json_string_value(json_object_get(c, "body"));
        if (!body || !strstr(body, id) || json_integer_value(json_object_get(c, "status")) != 200)
            continue;
        if (!json_is_true(json_object_get(c, "signature_ok")))
            fail_msg("unsigned or badly signed order event: %s", body);
        json_t *ev = json_loads(body, 0, NULL);
        assert_non_null(ev);
        json_array_append_new(out, ev);
    }
    kresp_free(&r);
    return out;
}

static long long events_count(const void *id)
{
    json_t *evs = events_of(id);
    size_t n = json_array_size(evs);
    json_decref(evs);
    return (long long)n;
}

/* Wait until n events of id arrived; returns them (caller json_decref). */
static json_t *wait_events(const char *id, size_t n)
{
    if (!kc_wait_count(PROVISION_WAIT_MS, events_count, id, (long long)n)) {
        json_t *evs = events_of(id);
        char *text = json_dumps(evs, JSON_COMPACT);
        fail_msg("%zu events of %s arrived, want %zu: %s", json_array_size(evs), id, n, text);
    }
    return events_of(id);
}

static long long outbox_rows(const void *id)
{
    return ot_sql_num("SELECT count(*) FROM orders.outbox WHERE instance_id = $1", id, NULL);
}

/* Wait until id has n outbox rows (an event written by a background job). */
static void wait_rows(const char *id, long long n)
{
    if (!kc_wait_count(PROVISION_WAIT_MS, outbox_rows, id, n))
        fail_msg("instance %s has %lld outbox rows, want %lld", id, outbox_rows(id), n);
}

static void status(const char *id, const char *st)
{
    kresp_t r;
    ot_expect("000000", &r, "{s:s, s:s, s:s}", "activity", "updateInstanceStatus", "instanceId", id,
              "status", st);
    kresp_free(&r);
}

/* The key the seller's application derives from its webhook secret (README "Order events"). */
static void event_key(uint8_t key[32])
{
    char *path = secret_path();
    char *secret = config_read_file(path, NULL);
    free(path);
    assert_non_null(secret);
    size_t n = strlen(secret);
    while (n > 0 && (secret[n - 1] == '\n' || secret[n - 1] == '\r'))
        secret[--n] = '\0';
    static const char label[] = "kooisv-order-credentials";
    hmac_sha256(secret, n, label, sizeof label - 1, key);
    free(secret);
}

/* Does any line of the suite's process logs contain needle? */
static bool logged(const char *needle)
{
    const char *const logs[] = {"order", "gateway", "gateway2", "emulator",
                                "audit", "tenant",  "app"};
    bool found = false;
    for (size_t i = 0; i < sizeof logs / sizeof logs[0]; i++) {
        char *path = xasprintf("%s/logs/%s.log", suite_get("KOOISV_SUITE_DIR"), logs[i]);
        char *text = config_read_file(path, NULL);
        free(path);
        if (text && strstr(text, needle))
            found = true;
        free(text);
    }
    return found;
}

static const char *str(json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : "";
}

/* Every lifecycle change reaches the application, signed, in order, once, with its data. */
static void test_lifecycle_events(void **state)
{
    (void)state;
    char *trial = kc_uid("TRIAL"), *formal = kc_uid("FORMAL");
    ot_order_register("{\"orderId\":\"%s\",\"orderLine\":[{\"chargingMode\":\"PERIOD\","
                      "\"periodType\":\"day\",\"periodNumber\":7,\"isTrial\":\"1\"}]}",
                      trial);
    ot_order_register("{\"orderId\":\"%s\",\"orderType\":\"TRIAL_TO_FORMAL\",\"orderLine\":["
                      "{\"chargingMode\":\"PERIOD\",\"periodType\":\"month\",\"periodNumber\":1}]}",
                      formal);
    char *line = ot_line_of(trial), *biz = kc_uid("biz");
    char *id = ot_new_instance(trial, line, biz, NULL);
    json_t *app = ot_wait_provisioned(id, PROVISION_WAIT_MS);
    wait_rows(id, 2);

    status(id, "FREEZE");
    status(id, "UNFREEZE");
    ot_refresh(id, formal, "TRIAL_TO_FORMAL", "20300101120000");
    wait_rows(id, 5); /* its event follows Query Order, in the background */
    char *renewal = ot_order_id();
    ot_refresh(id, renewal, "RENEWAL", "20310101120000");
    wait_rows(id, 6);
    ot_refresh(id, renewal, "UNSUBSCRIBE_RENEWAL_PERIOD", "20300601120000");
    char *change = ot_order_id();
    ot_upgrade(id, change);
    kresp_t r;
    ot_expect("000000", &r, "{s:s, s:s}", "activity", "releaseInstance", "instanceId", id);
    kresp_free(&r);

    static const char *const want[][2] = {
        {"instance.created", "provisioning"}, {"instance.activated", "active"},
        {"instance.frozen", "frozen"},        {"instance.unfrozen", "active"},
        {"instance.renewed", "active"},       {"instance.renewed", "active"},
        {"instance.renewed", "active"},       {"instance.upgraded", "active"},
        {"instance.released", "released"},
    };
    const char *scenes[] = {
        NULL, NULL, NULL, NULL, "TRIAL_TO_FORMAL", "RENEWAL", "UNSUBSCRIBE_RENEWAL_PERIOD",
        NULL, NULL};
    size_t n = sizeof want / sizeof want[0];
    json_t *evs = wait_events(id, n);
    usleep(500000); /* nothing more (no duplicate) follows */
    json_decref(evs);
    evs = events_of(id);
    assert_int_equal(json_array_size(evs), n);
    long long last_seq = 0;
    char *ids_seen = xstrdup("");
    for (size_t i = 0; i < n; i++) {
        json_t *ev = json_array_get(evs, i);
        json_t *data = json_object_get(ev, "data");
        assert_string_equal(str(ev, "eventType"), want[i][0]);
        assert_string_equal(str(data, "state"), want[i][1]);
        assert_string_equal(str(ev, "source"), "order");
        assert_string_equal(str(ev, "instanceId"), id);
        assert_string_equal(str(ev, "tenantId"), "");
        assert_true(json_is_false(json_object_get(ev, "testFlag")));
        assert_int_equal(strlen(str(ev, "eventId")), 36);
        assert_null(strstr(ids_seen, str(ev, "eventId")));
        char *more = xasprintf("%s,%s", ids_seen, str(ev, "eventId"));
        free(ids_seen);
        ids_seen = more;
        long long seq = json_integer_value(json_object_get(ev, "seq"));
        assert_true(seq > last_seq);
        last_seq = seq;
        if (scenes[i])
            assert_string_equal(str(data, "scene"), scenes[i]);
        else
            assert_true(json_is_null(json_object_get(data, "scene")));
    }
    free(ids_seen);
    json_t *formal_ev = json_object_get(json_array_get(evs, 4), "data");
    assert_string_equal(str(formal_ev, "orderId"), formal);
    assert_string_equal(str(formal_ev, "periodType"), "month");
    assert_true(json_is_false(json_object_get(formal_ev, "trial")));
    assert_string_equal(str(json_object_get(json_array_get(evs, 7), "data"), "orderId"), change);
    assert_string_equal(str(json_object_get(json_array_get(evs, 8), "data"), "previousState"),
                        "active");
    /* The creation's event is built by the instance's insert (instance_insert), every other
     * from a read of the row (outbox_snapshot): the same members, the creating order's. */
    json_t *created = json_object_get(json_array_get(evs, 0), "data");
    json_t *frozen = json_object_get(json_array_get(evs, 2), "data");
    assert_string_equal(str(created, "orderId"), trial);
    assert_string_equal(str(created, "orderLineId"), line);
    assert_true(json_is_null(json_object_get(created, "previousState")));
    assert_string_equal(str(frozen, "previousState"), "active");
    assert_int_equal(json_object_size(created), json_object_size(frozen));
    const char *member;
    json_t *value;
    json_object_foreach(frozen, member, value)
    {
        if (!json_object_get(created, member))
            fail_msg("instance.created has no %s", member);
    }

    /* The activation carries appInfo; the credentials sealed under the key derived from the
     * webhook secret, bound to the instance. They match what queryInstance gave. */
    json_t *info = json_object_get(json_object_get(json_array_get(evs, 1), "data"), "appInfo");
    assert_non_null(info);
    assert_string_equal(str(info, "frontEndUrl"), str(app, "frontEndUrl"));
    const char *sealed = str(info, "credentials");
    assert_memory_equal(sealed, "v1:", 3);
    uint8_t key[32];
    event_key(key);
    char *plain = NULL;
    size_t plain_len = 0;
    assert_int_equal(sealbox_open(key, id, sealed, &plain, &plain_len), 0);
    assert_int_not_equal(sealbox_open(key, "another-instance", sealed, &plain, &plain_len), 0);
    json_t *creds = json_loads(plain, 0, NULL);
    assert_non_null(creds);
    kresp_t q;
    ot_expect("000000", &q, "{s:s, s:s}", "activity", "queryInstance", "instanceId", id);
    const char *enc = json_string_value(json_object_get(q.json, "encryptType"));
    const char *basic = suite_get("KOOISV_BASIC_KEY");
    char *user = appcrypt_decrypt(basic, enc, str(app, "userName"));
    char *pass = appcrypt_decrypt(basic, enc, str(app, "password"));
    kresp_free(&q);
    assert_non_null(user);
    assert_non_null(pass);
    assert_string_equal(str(creds, "userName"), user);
    assert_string_equal(str(creds, "password"), pass);
    /* never in plain text on the wire, nor in any log line */
    kresp_t calls;
    assert_int_equal(kc_emulator("GET", "/_emulator/calls?path=" HOOK "&limit=100", NULL, &calls),
                     0);
    char *wire = json_dumps(calls.json, JSON_COMPACT);
    assert_null(strstr(wire, pass));
    free(wire);
    kresp_free(&calls);
    assert_false(logged(pass));
    free(user);
    free(pass);
    json_decref(creds);
    free(plain);
    json_decref(evs);
    json_decref(app);
    free(change);
    free(renewal);
    free(line);
    free(biz);
    free(id);
    free(trial);
    free(formal);
}

/* A test instance's events say so. */
static void test_test_flag(void **state)
{
    (void)state;
    char *id = ot_provisioned(NULL, "1", PROVISION_WAIT_MS);
    json_t *evs = wait_events(id, 2);
    size_t i;
    json_t *ev;
    json_array_foreach(evs, i, ev)
    {
        assert_true(json_is_true(json_object_get(ev, "testFlag")));
    }
    assert_string_equal(str(json_array_get(evs, 0), "eventType"), "instance.created");
    assert_string_equal(str(json_array_get(evs, 1), "eventType"), "instance.activated");
    json_decref(evs);
    free(id);
}

static char *ctl(int want_exit, const char *const *args)
{
    char *out = NULL;
    int rc = kc_ctl(&out, NULL, args);
    if (rc != want_exit)
        fail_msg("kooisvctl %s %s: exit %d, want %d: %s", args[0], args[1], rc, want_exit,
                 out ? out : "");
    return out ? out : xstrdup("");
}

static char *outbox_id(const char *id, const char *type)
{
    return ot_sql("SELECT id::text FROM orders.outbox WHERE instance_id = $1 AND event_type = $2",
                  id, type);
}

static void wait_statuses(const char *id, const char *want)
{
    if (!ot_wait_value(15000,
                       "SELECT string_agg(status, ',' ORDER BY id) FROM orders.outbox"
                       " WHERE instance_id = $1",
                       id, NULL, want)) {
        char *v = ot_sql("SELECT string_agg(status || ':' || attempts, ',' ORDER BY id)"
                         " FROM orders.outbox WHERE instance_id = $1",
                         id, NULL);
        fail_msg("outbox of %s: %s, want %s", id, v ? v : "(none)", want);
    }
}

/* Whether /metrics's count of order's dead letters equals the table's, in one of five reads. */
static bool metric_matches_failed(void)
{
    for (int i = 0; i < 5; i++) {
        long long before = ot_sql_num("SELECT count(*) FROM orders.outbox WHERE status = 'failed'",
                                      NULL, NULL);
        double m = kc_metric("kooisv_outbox_failed{service=\"order\",source=\"order\"}");
        if (m == (double)before)
            return true;
    }
    return false;
}

/* A failing receiver: retries, then the dead letter; kooisvctl lists and re-drives it; the
 * dead letter shows in /metrics. */
static void test_dead_letter_and_redrive(void **state)
{
    (void)state;
    char *order = ot_order_id(), *line = ot_line_of(order), *biz = kc_uid("biz");
    /* the receiver fails for this instance only (its business id is in every event's data) */
    char *fault = xasprintf(
        "{\"path\":\"" HOOK "\",\"mode\":\"http500\",\"count\":-1,\"match\":\"%s\"}", order);
    ot_fault(fault);
    free(fault);
    char *id = ot_new_instance(order, line, biz, NULL);
    json_decref(ot_wait_provisioned(id, PROVISION_WAIT_MS));
    status(id, "FREEZE");
    /* each fails 3 times, the later ones waiting behind the earlier */
    wait_statuses(id, "failed,failed,failed");
    char *v =
        ot_sql("SELECT attempts || ' ' || last_error FROM orders.outbox WHERE instance_id = $1"
               " AND event_type = 'instance.activated'",
               id, NULL);
    assert_non_null(v);
    assert_int_equal(strncmp(v, "3 ", 2), 0);
    assert_non_null(strstr(v, "500"));
    free(v);
    json_t *none = events_of(id);
    assert_int_equal(json_array_size(none), 0);
    json_decref(none);

    /* the dead letter is a series of the gateway's /metrics (the order service's own, asked
     * over ZeroMQ); other tests may change the count meanwhile, so it must match the table at
     * least once in a few reads */
    assert_true(metric_matches_failed());
    assert_true(kc_metric("kooisv_outbox_failed{service=\"order\",source=\"order\"}") >= 3);
    assert_true(kc_metric("kooisv_service_metrics_up{service=\"order\"}") == 1);
    assert_true(kc_metric("kooisv_service_metrics_up{service=\"audit\"}") == 1);
    assert_true(kc_metric("kooisv_outbox_oldest_pending_seconds{service=\"tenant\",source=\"tenant\"}") >= 0);

    char *out = ctl(0, (const char *const[]){"outbox", "failed", NULL});
    assert_non_null(strstr(out, id));
    assert_non_null(strstr(out, "\"source\": \"order\""));
    assert_non_null(strstr(out, "instance.activated"));
    free(out);

    clear_fault();
    char *crt = outbox_id(id, "instance.created"), *act = outbox_id(id, "instance.activated"),
         *frz = outbox_id(id, "instance.frozen");
    out = ctl(0, (const char *const[]){"outbox", "redrive", "order", crt, NULL});
    free(out);
    wait_statuses(id, "delivered,failed,failed");
    out = ctl(0, (const char *const[]){"outbox", "redrive", "order", act, NULL});
    free(out);
    wait_statuses(id, "delivered,delivered,failed");
    out = ctl(0, (const char *const[]){"outbox", "redrive", "order", frz, NULL});
    free(out);
    wait_statuses(id, "delivered,delivered,delivered");
    json_t *evs = events_of(id);
    assert_int_equal(json_array_size(evs), 3);
    assert_string_equal(str(json_array_get(evs, 1), "eventType"), "instance.activated");
    assert_string_equal(str(json_array_get(evs, 2), "eventType"), "instance.frozen");
    json_decref(evs);

    /* delivered: nothing to redrive; unknown ids and services refused */
    out = ctl(1, (const char *const[]){"outbox", "redrive", "order", act, NULL});
    free(out);
    out = ctl(1, (const char *const[]){"outbox", "redrive", "order", "999999999", NULL});
    free(out);
    out = ctl(1, (const char *const[]){"outbox", "redrive", "billing", act, NULL});
    free(out);
    free(crt);
    free(act);
    free(frz);
    free(order);
    free(line);
    free(biz);
    free(id);
}

static char *pq_value(PGconn *conn, const char *sql)
{
    PGresult *r = PQexec(conn, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        fail_msg("%s: %s", sql, PQerrorMessage(conn));
    char *v = xstrdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

static void pq_ok(PGconn *conn, const char *sql)
{
    PGresult *r = PQexec(conn, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(conn));
    PQclear(r);
}

/* Migration 006 keeps the events written before it, in the common outbox's shape: a scratch
 * database at 005 with two old rows (one delivered), then 006. */
static void test_migration_keeps_events(void **state)
{
    (void)state;
    const char *super = suite_get("KOOISV_PG_SUPER_DSN");
    assert_non_null(super);
    char *db = kc_uid("migtest_");
    for (char *p = db; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    PGconn *admin = PQconnectdb(super);
    assert_int_equal(PQstatus(admin), CONNECTION_OK);
    char *sql = xasprintf("CREATE DATABASE %s", db);
    pq_ok(admin, sql);
    free(sql);
    char *dsn = xasprintf("%s dbname=%s", super, db);
    PGconn *conn = PQconnectdb(dsn);
    free(dsn);
    assert_int_equal(PQstatus(conn), CONNECTION_OK);
    pq_ok(conn, "CREATE SCHEMA orders");
    /* everything before 006, then rows as that version wrote them, then 006 and later */
    size_t n = service_migrations_count, before = 0;
    while (before < n && strcmp(service_migrations[before].name, "006_outbox_delivery.sql") != 0)
        before++;
    assert_true(before < n);
    assert_int_equal(pg_migrate(conn, "orders", service_migrations, before), 0);
    pq_ok(conn, "INSERT INTO orders.instances (instance_id, order_id, order_line_id, business_id,"
                " state) VALUES ('i1', 'o1', 'l1', 'b1', 'active')");
    pq_ok(conn, "INSERT INTO orders.outbox (event_id, event_type, instance_id, test_flag, payload,"
                " created_at, delivered_at) VALUES"
                " ('6e25d82c-0000-4000-8000-000000000001', 'instance.created', 'i1', false,"
                "  '{\"eventId\":\"6e25d82c-0000-4000-8000-000000000001\",\"eventType\":"
                "\"instance.created\",\"instanceId\":\"i1\",\"orderId\":\"o1\",\"state\":"
                "\"provisioning\",\"testFlag\":false,\"requestId\":\"r1\",\"at\":\"x\"}',"
                "  '2026-01-02 03:04:05.678+00', now()),"
                " ('6e25d82c-0000-4000-8000-000000000002', 'instance.activated', 'i1', true,"
                "  '{\"eventId\":\"6e25d82c-0000-4000-8000-000000000002\",\"eventType\":"
                "\"instance.activated\",\"instanceId\":\"i1\",\"orderId\":\"o1\",\"state\":"
                "\"active\",\"testFlag\":true,\"requestId\":\"r2\",\"at\":\"x\"}',"
                "  '2026-01-02 03:04:06+00', NULL)");
    assert_int_equal(pg_migrate(conn, "orders", service_migrations, n), 0);
    char *rows = pq_value(
        conn, "SELECT string_agg(id || ':' || event_id || ':' || event_type || ':' || status"
              " || ':' || test_flag || ':' || attempts || ':' || tenant_id, ',' ORDER BY id)"
              " FROM orders.outbox");
    assert_string_equal(rows, "1:6e25d82c-0000-4000-8000-000000000001:instance.created:delivered:"
                              "false:0:,2:6e25d82c-0000-4000-8000-000000000002:"
                              "instance.activated:pending:true:0:");
    free(rows);
    char *doc = pq_value(conn, "SELECT payload FROM orders.outbox WHERE id = 2");
    json_t *ev = json_loads(doc, 0, NULL);
    free(doc);
    assert_non_null(ev);
    assert_string_equal(str(ev, "eventId"), "6e25d82c-0000-4000-8000-000000000002");
    assert_int_equal(json_integer_value(json_object_get(ev, "seq")), 2);
    assert_string_equal(str(ev, "eventType"), "instance.activated");
    assert_string_equal(str(ev, "source"), "order");
    assert_string_equal(str(ev, "requestId"), "r2");
    assert_string_equal(str(ev, "instanceId"), "i1");
    assert_string_equal(str(ev, "tenantId"), "");
    assert_true(json_is_true(json_object_get(ev, "testFlag")));
    assert_string_equal(str(ev, "occurredAt"), "2026-01-02T03:04:06.000Z");
    json_t *data = json_object_get(ev, "data");
    assert_string_equal(str(data, "orderId"), "o1");
    assert_string_equal(str(data, "state"), "active");
    assert_null(json_object_get(data, "eventId"));
    assert_null(json_object_get(data, "at"));
    json_decref(ev);
    /* new events continue after the old ones */
    char *next = pq_value(conn, "SELECT nextval('orders.outbox_seq')");
    assert_string_equal(next, "3");
    free(next);
    PQfinish(conn);
    sql = xasprintf("DROP DATABASE %s", db);
    pq_ok(admin, sql);
    free(sql);
    PQfinish(admin);
    free(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lifecycle_events),
        cmocka_unit_test(test_test_flag),
        cmocka_unit_test(test_dead_letter_and_redrive),
        cmocka_unit_test(test_migration_keeps_events),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
