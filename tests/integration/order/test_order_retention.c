/* Retention (common/retention.h, KOOISV_RETAIN_DAYS): the order service deletes its jobs done
 * or cancelled and its events delivered or skipped once they are older than the retention
 * period and every consumer of the event feed has acknowledged them (their acknowledgements go
 * with them); failed jobs and events, rows still within the period, events a consumer has not
 * acknowledged, and the instance's own record stay, and a retried order is still recognised
 * after its job is gone. Time is moved by shifting the timestamps of every row up to the test's
 * own back by 100 days (the walk goes in id order and stops at the first young row, as it would
 * after 100 days). The tenant service's outbox rule is run directly on an aged event. A bad
 * KOOISV_RETAIN_DAYS stops the service at start. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "order_support.h"
#include "outbox.h"
#include "xmalloc.h"

#define PROVISION_WAIT_MS 20000
#define SHIFT "interval '100 days'"

static kc_envfile_t saved_env;

static long long num(const char *sql, const char *a, const char *b)
{
    return ot_sql_num(sql, a, b);
}

static long long rows_of(const char *table, const char *instance)
{
    char *sql = xasprintf("SELECT count(*) FROM orders.%s WHERE instance_id = $1", table);
    long long n = num(sql, instance, NULL);
    free(sql);
    return n;
}

/* The highest id of the instance's rows in orders.<table> (0 for none). */
static long long max_id(const char *table, const char *instance)
{
    char *sql =
        xasprintf("SELECT coalesce(max(id), 0) FROM orders.%s WHERE instance_id = $1", table);
    long long n = num(sql, instance, NULL);
    free(sql);
    return n;
}

/* Until billing's feed mark is above id: billing has acknowledged every event up to it. Each
 * round makes an instance of its own, whose events make billing pull and acknowledge again (the
 * mark moves at an acknowledgement, up to what had settled at the one before). */
static void wait_billing_mark_above(long long id)
{
    char want[24];
    snprintf(want, sizeof want, "%lld", id);
    for (int round = 0; round < 30; round++) {
        if (ot_wait_value(1000,
                          "SELECT coalesce((SELECT below_id > $1::bigint FROM"
                          " orders.event_feed_marks WHERE consumer = 'billing'), false)",
                          want, NULL, "t"))
            return;
        free(ot_provisioned(NULL, "0", PROVISION_WAIT_MS));
    }
    fail_msg("billing's feed mark never passed event %lld", id);
}

/* Every job and event up to these ids is 100 days older. */
static void age_up_to(long long job, long long event)
{
    char j[24], e[24];
    snprintf(j, sizeof j, "%lld", job);
    snprintf(e, sizeof e, "%lld", event);
    const char *pj[] = {j}, *pe[] = {e};
    assert_true(kc_sql_exec("UPDATE orders.jobs SET created_at = created_at - " SHIFT ","
                            " updated_at = updated_at - " SHIFT ", done_at = done_at - " SHIFT
                            " WHERE id <= $1::bigint",
                            1, pj) > 0);
    assert_true(kc_sql_exec("UPDATE orders.outbox SET created_at = created_at - " SHIFT ","
                            " delivered_at = delivered_at - " SHIFT " WHERE id <= $1::bigint",
                            1, pe) > 0);
}

/* Restart the order service with KOOISV_RETAIN_DAYS=days added to its env file (saved the
 * first time, put back by the teardown). */
static void restart_with(const char *days)
{
    if (!saved_env.path)
        kc_envfile_save(&saved_env, "order");
    char *extra = xasprintf("KOOISV_RETAIN_DAYS=%s\n", days);
    kc_envfile_write(&saved_env, extra);
    free(extra);
    assert_int_equal(kc_suite("restart", "order"), 0);
    ot_wait_service(15000);
}

static bool gone_cb(void *arg)
{
    const char *id = arg;
    return rows_of("jobs", id) == 0 && rows_of("outbox", id) == 0;
}

static void test_finished_rows_go(void **state)
{
    (void)state;
    /* gone: finished and old. failed: its job and an event given up on (old, kept). held: its
     * events are above a consumer's mark (old, kept until it acknowledges them). */
    /* 0 keeps everything (from before the rows are aged: the running service keeps 90 days) */
    restart_with("0");
    assert_true(kc_wait(10000, 100, ot_order_logged,
                        "order: KOOISV_RETAIN_DAYS is 0: finished rows are kept"));
    /* Consumers other tests made (and left behind) would hold every event above their marks
     * back, rightly: only billing's mark counts here. */
    kc_sql_exec("DELETE FROM orders.event_feed_marks WHERE consumer <> 'billing'", 0, NULL);
    char *gone_order = ot_order_id();
    char *gone_line = ot_line_of(gone_order);
    char *gone = ot_provisioned(gone_order, "0", PROVISION_WAIT_MS);
    char *failed = ot_provisioned(NULL, "0", PROVISION_WAIT_MS);
    char *held = ot_provisioned(NULL, "0", PROVISION_WAIT_MS);
    assert_true(kc_sql_exec("UPDATE orders.jobs SET state = 'failed' WHERE instance_id = $1", 1,
                            (const char *[]){failed}) == 1);
    assert_true(
        kc_sql_exec("UPDATE orders.outbox SET status = 'failed', delivered_at = NULL"
                    " WHERE id = (SELECT max(id) FROM orders.outbox WHERE instance_id = $1)",
                    1, (const char *[]){failed}) == 1);
    long long top_event = max_id("outbox", held);
    wait_billing_mark_above(top_event);
    assert_true(rows_of("outbox", gone) >= 2);
    assert_true(num("SELECT count(*) FROM orders.event_acks WHERE consumer = 'billing'"
                    " AND event_id IN (SELECT event_id FROM orders.outbox WHERE instance_id = $1)",
                    gone, NULL) >= 2);
    char *held_from = xasprintf("%lld", num("SELECT min(id) FROM orders.outbox WHERE"
                                            " instance_id = $1",
                                            held, NULL));
    assert_true(kc_sql_exec("INSERT INTO orders.event_feed_marks (consumer, below_id)"
                            " VALUES ('retention-test', $1::bigint) ON CONFLICT (consumer)"
                            " DO UPDATE SET below_id = excluded.below_id",
                            1, (const char *[]){held_from}) == 1);
    age_up_to(max_id("jobs", held), top_event);
    char *young = ot_provisioned(NULL, "0", PROVISION_WAIT_MS);

    sleep(1);
    assert_int_equal(rows_of("jobs", gone), 1);

    /* 30 days: the walk at start deletes them. */
    restart_with("30");
    if (!kc_wait(20000, 200, gone_cb, gone))
        fail_msg("the finished rows of %s are still there: %lld jobs, %lld events", gone,
                 rows_of("jobs", gone), rows_of("outbox", gone));
    /* no acknowledgement is left of an event that went */
    assert_int_equal(num("SELECT count(*) FROM orders.event_acks a WHERE a.seq <= $1::bigint"
                         " AND a.consumer = 'billing' AND NOT EXISTS (SELECT 1 FROM orders.outbox "
                         "o WHERE o.id = a.seq)",
                         held_from, NULL),
                     0);
    /* the instance's record stays */
    assert_int_equal(rows_of("instances", gone), 1);
    assert_true(rows_of("instance_history", gone) >= 2);
    assert_int_equal(rows_of("order_applications", gone), 1);
    /* a failed job and a failed event stay; so do events a consumer has not acknowledged */
    assert_int_equal(num("SELECT count(*) FROM orders.jobs WHERE instance_id = $1"
                         " AND state = 'failed'",
                         failed, NULL),
                     1);
    assert_int_equal(num("SELECT count(*) FROM orders.outbox WHERE instance_id = $1"
                         " AND status = 'failed'",
                         failed, NULL),
                     1);
    assert_true(num("SELECT count(*) FROM orders.outbox WHERE instance_id = $1"
                    " AND status <> 'failed'",
                    failed, NULL) == 0);
    assert_true(rows_of("outbox", held) >= 2);
    assert_int_equal(rows_of("jobs", held), 0);
    /* and what is within the period */
    assert_int_equal(rows_of("jobs", young), 1);
    assert_true(rows_of("outbox", young) >= 2);

    /* The marketplace retries the purchase: the same instance, and no new job. */
    char *biz =
        ot_sql("SELECT business_id FROM orders.instances WHERE instance_id = $1", gone, NULL);
    char *again = ot_new_instance(gone_order, gone_line, biz, "0");
    free(biz);
    assert_string_equal(again, gone);
    assert_int_equal(rows_of("jobs", gone), 0);
    assert_int_equal(rows_of("instances", gone), 1);

    /* once the consumer acknowledges past them, held's events go at the next walk */
    kc_sql_exec("DELETE FROM orders.event_feed_marks WHERE consumer = 'retention-test'", 0, NULL);
    restart_with("30");
    if (!kc_wait(20000, 200, gone_cb, held))
        fail_msg("the events of %s stayed once no consumer held them", held);
    free(again);
    free(held_from);
    free(young);
    free(held);
    free(failed);
    free(gone);
    free(gone_line);
    free(gone_order);
}

/* The kit services' rule (outbox_retention_rules) on tenants.outbox, from just below an aged
 * event: a delivered one goes, a failed one stays, the walk stops at the first young row, and
 * a walk that meets another replica's running slice ends at once. */
static void test_kit_outbox_rule(void **state)
{
    (void)state;
    PGconn *c = kc_pg();
    assert_non_null(c);
    char *tenant = kc_uid("ret-t-");
    const char *p[] = {tenant};
    /* a young event first (the service's own walk, from the lowest id, stops there), then two old
     * ones (delivered, failed) and a young one, with ids from the service's sequence */
    assert_true(kc_sql_exec("INSERT INTO tenants.outbox (id, event_id, event_type, instance_id,"
                            " tenant_id, payload, status, created_at, delivered_at)"
                            " SELECT nextval('tenants.outbox_seq'), $1 || '-' || g, 'test',"
                            " 'ret-inst', $1, '{}', CASE g WHEN 2 THEN 'failed' ELSE 'delivered'"
                            " END, now() - CASE WHEN g IN (1, 2) THEN " SHIFT " ELSE interval '0'"
                            " END, CASE g WHEN 2 THEN NULL ELSE now() END"
                            " FROM generate_series(0, 3) g ORDER BY g",
                            1, p) == 4);
    char *from =
        ot_sql("SELECT min(id)::text FROM tenants.outbox WHERE tenant_id = $1", tenant, NULL);
    assert_non_null(from);
    PGresult *r = PQexec(c, "SET search_path = tenants");
    PQclear(r);
    const char *params[] = {from, "30"};
    r = PQexecParams(c, outbox_retention_rules[0].sql, 2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("the rule failed: %s", PQerrorMessage(c));
    /* the delivered event was delivered now: within the period, it stays */
    assert_string_equal(PQgetvalue(r, 0, 0), "0");
    assert_true(PQgetisnull(r, 0, 1)); /* the walk ended at a young row */
    PQclear(r);
    assert_true(kc_sql_exec("UPDATE tenants.outbox SET delivered_at = now() - " SHIFT
                            " WHERE tenant_id = $1 AND status = 'delivered' AND"
                            " event_id LIKE '%-1'",
                            1, p) == 1);
    /* another replica's slice of the tenants' outbox running (its lock held): this walk ends
     * at once, deleting nothing */
    PGconn *other = PQconnectdb(suite_get("KOOISV_PG_SUPER_DSN"));
    assert_int_equal(PQstatus(other), CONNECTION_OK);
    PGresult *held = PQexec(other, "BEGIN; SELECT pg_advisory_xact_lock("
                                   "hashtext('kooisv-retention tenants outbox'))");
    assert_int_equal(PQresultStatus(held), PGRES_TUPLES_OK);
    PQclear(held);
    r = PQexecParams(c, outbox_retention_rules[0].sql, 2, NULL, params, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_string_equal(PQgetvalue(r, 0, 0), "0");
    assert_true(PQgetisnull(r, 0, 1));
    PQclear(r);
    PQclear(PQexec(other, "COMMIT"));
    PQfinish(other);
    r = PQexecParams(c, outbox_retention_rules[0].sql, 2, NULL, params, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_string_equal(PQgetvalue(r, 0, 0), "1");
    PQclear(r);
    r = PQexec(c, "RESET search_path");
    PQclear(r);
    char *left = ot_sql("SELECT string_agg(status, ',' ORDER BY id) FROM tenants.outbox"
                        " WHERE tenant_id = $1",
                        tenant, NULL);
    assert_string_equal(left, "delivered,failed,delivered");
    kc_sql_exec("DELETE FROM tenants.outbox WHERE tenant_id = $1", 1, p);
    free(left);
    free(from);
    free(tenant);
}

/* A period that is not a number of days in 0..3650 stops the service before it connects. */
static void test_bad_retention_stops_start(void **state)
{
    (void)state;
    const char *bad[] = {"-1", "3651", "ninety", "30days"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *days = xasprintf("KOOISV_RETAIN_DAYS=%s", bad[i]);
        char **env = ot_order_start_env(days);
        ot_assert_refused(KOOISV_ORDER_BIN, "kooisv-order", "KOOISV_RETAIN_DAYS", env);
        ot_env_free(env);
        free(days);
    }
}

static int restore_teardown(void **state)
{
    (void)state;
    kc_sql_exec("DELETE FROM orders.event_feed_marks WHERE consumer = 'retention-test'", 0, NULL);
    if (saved_env.path)
        ot_order_env_restore(&saved_env);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_retention_stops_start),
        cmocka_unit_test(test_kit_outbox_rule),
        cmocka_unit_test_teardown(test_finished_rows_go, restore_teardown),
    };
    return KC_SUITE_MAIN(tests, NULL, NULL);
}
