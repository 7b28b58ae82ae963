/* Order events -> billing ledger through the real processes: every event kind becomes its
 * line (with the order's amount where it gives one), a release by unsubscription inside the
 * 5-day guarantee period adds a refund line and one outside it does not, test-flag instances
 * are kept apart (flagged), and every event is stored exactly once across a kill -9 of billing
 * in the middle of consumption, a restart of order and lost acknowledgements; an event that
 * cannot be stored stops its pull without holding back the events ahead of it; the ids of
 * events consumed go after KOOISV_RETAIN_DAYS, and an event given again after that is still
 * applied once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "billing_support.h"
#include "xmalloc.h"

/* The value of a column of the instance's n-th ledger line (by id), as text (caller frees). */
static char *line_value(const char *id, int n, const char *column)
{
    char *sql = xasprintf("SELECT coalesce(%s::text, '(null)') FROM billing.ledger"
                          " WHERE instance_id = $1 ORDER BY id OFFSET %d LIMIT 1",
                          column, n);
    char *v = ot_sql(sql, id, NULL);
    free(sql);
    assert_non_null(v);
    return v;
}

static void assert_line(const char *id, int n, const char *kind, const char *amount,
                        const char *order)
{
    char *k = line_value(id, n, "kind"), *a = line_value(id, n, "amount");
    assert_string_equal(k, kind);
    if (amount)
        assert_string_equal(a, amount);
    if (order) {
        char *o = line_value(id, n, "order_id");
        assert_string_equal(o, order);
        free(o);
    }
    free(k);
    free(a);
}

/* new, freeze, unfreeze, trial-to-formal, renewal, unsubscribe of the renewal period, upgrade
 * and release: one line each, in order, with the order's amounts. */
static void test_every_kind(void **state)
{
    (void)state;
    char *trial = kc_uid("TRIAL"), *formal = kc_uid("FORMAL"), *renew = kc_uid("RENEW");
    ot_order_register("{\"orderId\":\"%s\",\"orderLine\":[{\"chargingMode\":\"PERIOD\","
                      "\"periodType\":\"day\",\"periodNumber\":7,\"isTrial\":\"1\","
                      "\"amount\":\"0\"}]}",
                      trial);
    ot_order_register("{\"orderId\":\"%s\",\"orderType\":\"TRIAL_TO_FORMAL\",\"orderLine\":["
                      "{\"chargingMode\":\"PERIOD\",\"periodType\":\"month\",\"periodNumber\":1,"
                      "\"amount\":\"100.00\"}]}",
                      formal);
    ot_order_register("{\"orderId\":\"%s\",\"orderType\":\"RENEW\",\"orderLine\":["
                      "{\"chargingMode\":\"PERIOD\",\"periodType\":\"month\",\"periodNumber\":2,"
                      "\"amount\":\"180.5\"}]}",
                      renew);
    char *id = ot_provisioned(trial, NULL, BT_WAIT_MS);
    bt_wait_lines(id, 1);
    bt_status(id, "FREEZE", NULL);
    bt_status(id, "UNFREEZE", NULL);
    ot_refresh(id, formal, "TRIAL_TO_FORMAL", "20300101120000");
    bt_wait_lines(id, 4); /* its event follows Query Order, in the background */
    ot_refresh(id, renew, "RENEWAL", "20300301120000");
    bt_wait_lines(id, 5);
    ot_refresh(id, renew, "UNSUBSCRIBE_RENEWAL_PERIOD", "20300101120000");
    char *change = ot_order_id();
    ot_upgrade(id, change);
    bt_release(id, NULL, NULL);
    bt_wait_consumed(id);

    assert_int_equal(bt_lines(id, NULL), 8);
    assert_line(id, 0, "new", "0.0000", trial);
    assert_line(id, 1, "freeze", "(null)", NULL);
    assert_line(id, 2, "unfreeze", "(null)", NULL);
    assert_line(id, 3, "trial_to_formal", "100.0000", formal);
    assert_line(id, 4, "renewal", "180.5000", renew);
    assert_line(id, 5, "unsubscribe_renewal", "-180.5000", renew);
    assert_line(id, 6, "upgrade", NULL, change);
    assert_line(id, 7, "release", "(null)", NULL); /* not by unsubscription: no refund */
    char *pt = line_value(id, 4, "period_type"), *pn = line_value(id, 4, "period_number");
    assert_string_equal(pt, "month");
    assert_string_equal(pn, "2");
    free(pt);
    free(pn);
    /* The instance as the last event showed it. */
    char *st = ot_sql("SELECT state || ' ' || test_flag::text || ' ' || charging_mode"
                      " FROM billing.instances WHERE instance_id = $1",
                      id, NULL);
    assert_string_equal(st, "released false PERIOD");
    free(st);
    /* The operator's view through the admin API. */
    char *path = xasprintf("/v1/billing/instances/%s", id);
    kresp_t r;
    assert_int_equal(kc_admin("GET", path, suite_get("KOOISV_OPERATOR_ROLE_TOKEN"), NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "ledger")), 8);
    kresp_free(&r);
    free(path);
    free(trial);
    free(formal);
    free(renew);
    free(change);
    free(id);
}

/* Released by unsubscription within 5 days of its order's payment: a refund line of the paid
 * amount, negated. The same 6 days after the payment (the line moved back in time): none. */
static void test_refund(void **state)
{
    (void)state;
    char *order = NULL;
    char *id = bt_instance("PERIOD", "50.25", NULL, &order);
    bt_wait_lines(id, 1);
    bt_release(id, order, NULL);
    bt_wait_lines(id, 3);
    bt_wait_consumed(id);
    assert_int_equal(bt_lines(id, NULL), 3);
    assert_line(id, 1, "release", "(null)", order);
    assert_line(id, 2, "refund", "-50.2500", order);

    char *late_order = NULL;
    char *late = bt_instance("PERIOD", "70", NULL, &late_order);
    bt_wait_lines(late, 1);
    const char *p[] = {late};
    assert_int_equal(kc_sql_exec("UPDATE billing.ledger SET occurred_at = now() - interval '6 days'"
                                 " WHERE instance_id = $1 AND kind = 'new'",
                                 1, p),
                     1);
    bt_release(late, late_order, NULL);
    bt_wait_consumed(late);
    assert_int_equal(bt_lines(late, NULL), 2);
    assert_int_equal(bt_lines(late, "refund"), 0);
    free(order);
    free(id);
    free(late_order);
    free(late);
}

/* A seller-console test instance: its lines and its instance row carry the flag, so bills and
 * pushes leave them out. */
static void test_test_flag(void **state)
{
    (void)state;
    char *id = bt_instance("PERIOD", "10", "1", NULL);
    bt_status(id, "FREEZE", "1");
    bt_wait_lines(id, 2);
    bt_wait_consumed(id);
    const char *p[] = {id};
    assert_int_equal(kc_sql_count("SELECT 1 FROM billing.ledger WHERE instance_id = $1"
                                  " AND test_flag",
                                  1, p),
                     2);
    assert_int_equal(kc_sql_count("SELECT 1 FROM billing.instances WHERE instance_id = $1"
                                  " AND test_flag",
                                  1, p),
                     1);
    free(id);
}

/* Every event stored once whatever happens between store and acknowledgement. */
/* Billing's acknowledgements of the instance's events lost (billing stored them, order never
 * heard), and the feed's mark moved back below them (it only passes acknowledged events), so
 * that order gives them again; the number of acknowledgements deleted. */
static long lose_acks(const char *id)
{
    const char *p[] = {id};
    long n = kc_sql_exec("DELETE FROM orders.event_acks WHERE consumer = 'billing'"
                         " AND event_id IN (SELECT event_id FROM orders.outbox"
                         "  WHERE instance_id = $1)",
                         1, p);
    assert_int_equal(kc_sql_exec("UPDATE orders.event_feed_marks SET below_id ="
                                 " (SELECT min(id) FROM orders.outbox WHERE instance_id = $1)"
                                 " WHERE consumer = 'billing'",
                                 1, p),
                     1);
    return n;
}

static void test_restarts(void **state)
{
    (void)state;
    char *id = bt_instance("PERIOD", "20", NULL, NULL);
    bt_wait_consumed(id);
    /* Billing killed while events keep coming, started again. */
    for (int i = 0; i < 15; i++) {
        bt_status(id, "FREEZE", NULL);
        bt_status(id, "UNFREEZE", NULL);
        if (i == 3)
            assert_int_equal(kc_suite("kill", "billing"), 0);
    }
    assert_int_equal(kc_suite("start-svc", "billing"), 0);
    bt_wait_consumed(id);
    assert_int_equal(bt_lines(id, "freeze"), 15);
    assert_int_equal(bt_lines(id, "unfreeze"), 15);
    assert_int_equal(bt_lines(id, "new"), 1);

    /* Killed in the middle of consuming a burst. */
    for (int i = 0; i < 20; i++) {
        bt_status(id, "FREEZE", NULL);
        bt_status(id, "UNFREEZE", NULL);
    }
    usleep(300000);
    assert_int_equal(kc_suite("kill", "billing"), 0);
    assert_int_equal(kc_suite("start-svc", "billing"), 0);
    bt_wait_consumed(id);
    assert_int_equal(bt_lines(id, "freeze"), 35);

    /* Acknowledgements lost (billing stored, order never heard): given again, stored once. The
     * feed's mark goes back below them too, since it only passes acknowledged events. */
    assert_true(lose_acks(id) > 0);
    bt_wait_consumed(id);
    assert_int_equal(bt_lines(id, NULL), 1 + 35 + 35);

    /* The order service restarted: billing goes on pulling. */
    assert_int_equal(kc_suite("restart", "order"), 0);
    ot_wait_service(15000);
    bt_status(id, "FREEZE", NULL);
    bt_wait_consumed(id);
    assert_int_equal(bt_lines(id, "freeze"), 36);
    assert_int_equal(kc_sql_count("SELECT event_id FROM billing.ledger"
                                  " GROUP BY event_id HAVING count(*) > 1",
                                  0, NULL),
                     0);
    free(id);
}

/* Events of a pull are stored in one transaction; when it fails they are stored one at a time:
 * those ahead of the one that cannot be stored are stored and acknowledged, that one stops the
 * pull (nothing of it and of what follows is stored twice or lost), and once it can be stored,
 * it and the rest are. One event is made to fail by a trigger that refuses its ledger line. */
static long consumed_of(const char *id)
{
    const char *p[] = {id};
    return kc_sql_count("SELECT 1 FROM billing.consumed_events WHERE instance_id = $1", 1, p);
}

static long long consumed_count(const void *id)
{
    return consumed_of(id);
}

static void drop_refusal(void)
{
    kc_sql_exec("DROP TRIGGER IF EXISTS test_refuse_line ON billing.ledger", 0, NULL);
    kc_sql_exec("DROP FUNCTION IF EXISTS billing.test_refuse_line()", 0, NULL);
}

/* Whatever the test did: no refusal left, billing running. */
static int bad_event_teardown(void **state)
{
    (void)state;
    drop_refusal();
    return kc_suite("start-svc", "billing") == 0 ? 0 : -1;
}

static void test_bad_event_in_a_pull(void **state)
{
    (void)state;
    char *a = bt_instance("PERIOD", "20", NULL, NULL), *b = bt_instance("PERIOD", "30", NULL, NULL);
    bt_wait_consumed(a);
    bt_wait_consumed(b);
    long a_before = consumed_of(a), b_before = consumed_of(b);
    /* billing down while four events queue up: a's freeze and unfreeze, b's freeze, a's freeze */
    assert_int_equal(kc_suite("kill", "billing"), 0);
    bt_status(a, "FREEZE", NULL);
    bt_status(a, "UNFREEZE", NULL);
    bt_status(b, "FREEZE", NULL);
    bt_status(a, "FREEZE", NULL);
    drop_refusal();
    char *fn = xasprintf("CREATE FUNCTION billing.test_refuse_line() RETURNS trigger"
                         " LANGUAGE plpgsql AS $f$ BEGIN"
                         " IF NEW.instance_id = '%s' AND NEW.kind = 'freeze' THEN"
                         "  RAISE EXCEPTION 'refused by test_bad_event_in_a_pull'; END IF;"
                         " RETURN NEW; END $f$",
                         b);
    assert_int_equal(kc_sql_exec(fn, 0, NULL), 0);
    free(fn);
    assert_int_equal(kc_sql_exec("CREATE TRIGGER test_refuse_line BEFORE INSERT ON billing.ledger"
                                 " FOR EACH ROW EXECUTE FUNCTION billing.test_refuse_line()",
                                 0, NULL),
                     0);
    assert_int_equal(kc_suite("start-svc", "billing"), 0);
    /* the two ahead of b's are stored and acknowledged */
    if (!kc_wait_count(BT_WAIT_MS, consumed_count, a, a_before + 2))
        fail_msg("a's freeze and unfreeze were not stored ahead of the refused event");
    usleep(1500000); /* several polls: the refused event keeps stopping the pull */
    assert_int_equal(bt_lines(a, "freeze"), 1);
    assert_int_equal(bt_lines(a, "unfreeze"), 1);
    assert_int_equal(bt_lines(b, "freeze"), 0);
    assert_int_equal(consumed_of(a), a_before + 2);
    assert_int_equal(consumed_of(b), b_before);
    const char *p[] = {a};
    assert_int_equal(kc_sql_count("SELECT 1 FROM orders.event_acks k JOIN orders.outbox o"
                                  " USING (event_id) WHERE k.consumer = 'billing'"
                                  " AND o.instance_id = $1",
                                  1, p),
                     a_before + 2);
    /* stored once it can be: b's freeze, then a's second */
    drop_refusal();
    bt_wait_consumed(b);
    bt_wait_consumed(a);
    assert_int_equal(bt_lines(b, "freeze"), 1);
    assert_int_equal(bt_lines(a, "freeze"), 2);
    assert_int_equal(bt_lines(a, "unfreeze"), 1);
    free(a);
    free(b);
}

/* Retention (KOOISV_RETAIN_DAYS): the ids of events consumed longer ago than the period go,
 * the newest stays, and an event given again after its id went (its acknowledgement lost) is
 * still not applied twice: the instance keeps its last state and the ledger its lines. Time is
 * moved by shifting every consumed_at up to the instance's back by 100 days (the walk goes in
 * seq order and stops at the first young row). */
static kc_envfile_t billing_env;

static bool consumed_gone(void *id)
{
    return consumed_of(id) == 0;
}

static void test_consumed_ids_go_after_the_period(void **state)
{
    (void)state;
    char *id = bt_instance("PERIOD", "20", NULL, NULL);
    bt_status(id, "FREEZE", NULL);
    bt_status(id, "UNFREEZE", NULL);
    bt_wait_consumed(id);
    long events = consumed_of(id);
    assert_true(events >= 4);
    assert_int_equal(bt_lines(id, NULL), 3);
    const char *p[] = {id};
    assert_true(kc_sql_exec("UPDATE billing.consumed_events SET consumed_at = consumed_at"
                            " - interval '100 days' WHERE seq <= (SELECT max(seq) FROM"
                            " billing.consumed_events WHERE instance_id = $1)",
                            1, p) >= events);
    char *young = bt_instance("PERIOD", "30", NULL, NULL);
    bt_wait_consumed(young);

    kc_envfile_save(&billing_env, "billing");
    kc_envfile_write(&billing_env, "KOOISV_RETAIN_DAYS=30\n");
    assert_int_equal(kc_suite("restart", "billing"), 0);
    if (!kc_wait(20000, 200, consumed_gone, id))
        fail_msg("%ld consumed events of %s are still there", consumed_of(id), id);
    assert_true(consumed_of(young) >= 2);
    char *state_before = ot_sql("SELECT state || ' ' || last_seq FROM billing.instances"
                                " WHERE instance_id = $1",
                                id, NULL);
    assert_non_null(state_before);

    /* Its acknowledgements lost: order gives the events again; they are stored as consumed
     * again and change nothing else. */
    assert_true(lose_acks(id) >= events);
    bt_wait_consumed(id);
    assert_int_equal(consumed_of(id), events);
    assert_int_equal(bt_lines(id, NULL), 3);
    char *state_after = ot_sql("SELECT state || ' ' || last_seq FROM billing.instances"
                               " WHERE instance_id = $1",
                               id, NULL);
    assert_string_equal(state_after, state_before);
    free(state_after);
    free(state_before);
    free(young);
    free(id);
}

static int retention_teardown(void **state)
{
    (void)state;
    if (!billing_env.path)
        return 0;
    kc_envfile_restore(&billing_env);
    return kc_suite("restart", "billing") == 0 ? 0 : -1;
}

int main(void)
{
    if (suite_env_load() != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_kind),
        cmocka_unit_test(test_refund),
        cmocka_unit_test(test_test_flag),
        cmocka_unit_test(test_restarts),
        cmocka_unit_test_teardown(test_bad_event_in_a_pull, bad_event_teardown),
        cmocka_unit_test_teardown(test_consumed_ids_go_after_the_period, retention_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
