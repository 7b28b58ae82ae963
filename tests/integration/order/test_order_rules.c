/* Order service business rules found in review (issue 16), end to end through the gateway's
 * HTTPS against the `suite` fixture and the emulator's Query Order:
 *   - testFlag isolation: a debug call sees and changes only test instances, and the reverse;
 *   - a renewal and its cancellation share an orderId and are each applied once;
 *   - refreshInstance fetches its order (period, product) as upgradeInstance does;
 *   - Query Order answers for another order or line are refused, every productInfo is kept;
 *   - licenses of periodic instances need an expireTime;
 *   - FREEZE (and UNFREEZE) while provisioning is accepted and delivered with the instance;
 *   - a ONE_TIME instance cannot be refreshed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "order_support.h"
#include "timeutil.h"
#include "xmalloc.h"

#define PROVISION_WAIT_MS 30000

static long long compact_ms(const char *compact)
{
    int64_t ms = 0;
    assert_true(time_parse_compact(NULL, compact, &ms));
    return ms;
}

static long long count_of(const char *sql, const char *a, const char *b)
{
    return ot_sql_num(sql, a, b);
}

/* refreshInstance answered want; testFlag NULL = absent. */
static void refresh(const char *want, const char *id, const char *order, const char *scene,
                    const char *expire, const char *test_flag)
{
    char *line = ot_line_of(order);
    kresp_t r;
    if (test_flag)
        ot_expect(want, &r, "{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "activity", "refreshInstance",
                  "instanceId", id, "orderId", order, "orderLineId", line, "scene", scene,
                  "expireTime", expire, "testFlag", test_flag);
    else
        ot_expect(want, &r, "{s:s, s:s, s:s, s:s, s:s, s:s}", "activity", "refreshInstance",
                  "instanceId", id, "orderId", order, "orderLineId", line, "scene", scene,
                  "expireTime", expire);
    kresp_free(&r);
    free(line);
}

/* ---- 1: testFlag isolation ---- */

/* Everything a call may change about an instance, as one text. */
static char *fingerprint(const char *id)
{
    return ot_sql("SELECT i.state || '|' || coalesce(i.expire_time::text, '-') || '|'"
                  " || i.plan_version || '|' || (SELECT count(*) FROM orders.instance_history h"
                  " WHERE h.instance_id = i.instance_id) || '|' || (SELECT count(*)"
                  " FROM orders.outbox o WHERE o.instance_id = i.instance_id) || '|'"
                  " || (SELECT count(*) FROM orders.licenses l WHERE l.instance_id = i.instance_id)"
                  " || '|' || (SELECT count(*) FROM orders.order_applications a"
                  " WHERE a.instance_id = i.instance_id)"
                  " FROM orders.instances i WHERE i.instance_id = $1",
                  id, NULL);
}

/* Every call naming id with testFlag flag ("1" or "0") answers 000003 and changes nothing; a
 * queryInstance shows nothing of it. */
static void assert_invisible(const char *id, const char *flag)
{
    char *before = fingerprint(id);
    char *order = ot_order_id(), *line = ot_line_of(order);
    kresp_t r;
    ot_expect("000003", &r, "{s:s, s:s, s:s, s:s}", "activity", "updateInstanceStatus",
              "instanceId", id, "status", "FREEZE", "testFlag", flag);
    kresp_free(&r);
    refresh("000003", id, order, "RENEWAL", "20400101120000", flag);
    ot_expect("000003", &r, "{s:s, s:s, s:s, s:s, s:s}", "activity", "upgradeInstance",
              "instanceId", id, "orderId", order, "orderLineId", line, "testFlag", flag);
    kresp_free(&r);
    ot_expect("000003", &r, "{s:s, s:s, s:{s:s}, s:s}", "activity", "changeInstanceCheck",
              "instanceId", id, "productInfo", "productId", "OFFI000000000000000002", "testFlag",
              flag);
    kresp_free(&r);
    ot_expect("000003", &r, "{s:s, s:s, s:s, s:s, s:s, s:s}", "activity", "getLicenseAsync",
              "instanceId", id, "eventId", "iso-ev", "effectiveTime", "20260101000000",
              "expireTime", "20270101000000", "testFlag", flag);
    kresp_free(&r);
    ot_expect("000003", &r, "{s:s, s:s, s:s}", "activity", "releaseInstance", "instanceId", id,
              "testFlag", flag);
    kresp_free(&r);
    /* queryInstance: no entry, so no credentials */
    ot_expect("000000", &r, "{s:s, s:s, s:s}", "activity", "queryInstance", "instanceId", id,
              "testFlag", flag);
    json_t *info = json_object_get(r.json, "info");
    assert_true(json_is_array(info));
    assert_null(ot_info_of(info, id));
    kresp_free(&r);
    char *after = fingerprint(id);
    assert_string_equal(after, before);
    free(after);
    free(before);
    free(line);
    free(order);
}

static void test_test_flag_isolation(void **state)
{
    (void)state;
    char *real_order = ot_order_id(), *test_order = ot_order_id();
    char *real_id = ot_provisioned(real_order, NULL, PROVISION_WAIT_MS);
    char *test_id = ot_provisioned(test_order, "1", PROVISION_WAIT_MS);

    assert_invisible(real_id, "1"); /* a console debug call never touches a customer */
    assert_invisible(test_id, "0"); /* and real business never touches a debug instance */
    ot_assert_state(real_id, "active");
    ot_assert_state(test_id, "active");

    /* The debug call on its own instance works, and its event is flagged as test. */
    kresp_t r;
    ot_expect("000000", &r, "{s:s, s:s, s:s, s:s}", "activity", "updateInstanceStatus",
              "instanceId", test_id, "status", "FREEZE", "testFlag", "1");
    kresp_free(&r);
    ot_assert_state(test_id, "frozen");
    ot_expect("000000", &r, "{s:s, s:s, s:s}", "activity", "queryInstance", "instanceId", test_id,
              "testFlag", "1");
    assert_non_null(
        json_object_get(ot_info_of(json_object_get(r.json, "info"), test_id), "appInfo"));
    kresp_free(&r);
    /* Every event carries the flag of the instance it belongs to. */
    assert_int_equal(count_of("SELECT count(*) FROM orders.outbox WHERE instance_id = $1"
                              " AND (NOT test_flag OR (payload::jsonb->>'testFlag') <> 'true')",
                              test_id, NULL),
                     0);
    assert_int_equal(count_of("SELECT count(*) FROM orders.outbox WHERE instance_id = $1"
                              " AND (test_flag OR (payload::jsonb->>'testFlag') <> 'false')",
                              real_id, NULL),
                     0);
    free(real_id);
    free(test_id);
    free(real_order);
    free(test_order);
}

/* ---- 3: a renewal and its cancellation share the orderId ---- */

static void test_unsubscribe_renewal_same_order(void **state)
{
    (void)state;
    char *order = ot_order_id();
    char *id = ot_provisioned(order, NULL, PROVISION_WAIT_MS);
    char *renewal = ot_order_id();

    refresh("000000", id, renewal, "RENEWAL", "20300101120000", NULL);
    assert_int_equal(ot_expire_ms_of(id), compact_ms("20300101120000"));
    /* The cancellation names the renewal's own orderId: applied, once. */
    refresh("000000", id, renewal, "UNSUBSCRIBE_RENEWAL_PERIOD", "20280101120000", NULL);
    assert_int_equal(ot_expire_ms_of(id), compact_ms("20280101120000"));
    refresh("000000", id, renewal, "UNSUBSCRIBE_RENEWAL_PERIOD", "20270101120000", NULL);
    refresh("000000", id, renewal, "RENEWAL", "20310101120000", NULL);
    assert_int_equal(ot_expire_ms_of(id), compact_ms("20280101120000"));
    assert_int_equal(count_of("SELECT count(*) FROM orders.instance_history"
                              " WHERE instance_id = $1 AND event = 'refresh'",
                              id, NULL),
                     2);
    assert_int_equal(count_of("SELECT count(*) FROM orders.order_applications"
                              " WHERE instance_id = $1 AND order_id = $2",
                              id, renewal),
                     2);
    free(renewal);
    free(id);
    free(order);
}

/* ---- 4: refresh fetches its order ---- */

static const char *PLAN_SQL = "SELECT coalesce(period_type, '-') || '|' ||"
                              " coalesce(period_number::text, '-') || '|' ||"
                              " coalesce(product_id, '-') || '|' || coalesce(sku_code, '-')"
                              " FROM orders.instances WHERE instance_id = $1";

/* Wait until the plan of id is want ("periodType|periodNumber|productId|skuCode"). */
static void wait_plan(const char *id, const char *want)
{
    if (!ot_wait_value(PROVISION_WAIT_MS, PLAN_SQL, id, NULL, want)) {
        char *got = ot_sql(PLAN_SQL, id, NULL);
        fail_msg("instance %s has plan %s, want %s", id, got ? got : "(none)", want);
    }
}

static char *renewed_payload(const char *id, const char *order)
{
    if (!ot_wait_value(PROVISION_WAIT_MS,
                       "SELECT count(*) FROM orders.outbox WHERE instance_id = $1 AND event_type ="
                       " 'instance.renewed' AND payload::jsonb->'data'->>'orderId' = $2",
                       id, order, "1"))
        fail_msg("no instance.renewed event for order %s of %s", order, id);
    return ot_sql(
        "SELECT payload::jsonb->'data'->>'periodType' || '|' || "
        "(payload::jsonb->'data'->>'periodNumber') || '|' ||"
        " (payload::jsonb->'data'->>'productId') || '|' || (payload::jsonb->'data'->>'skuCode') || "
        "'|' ||"
        " (payload::jsonb->'data'->>'trial') FROM orders.outbox WHERE instance_id = $1"
        " AND event_type = 'instance.renewed' AND payload::jsonb->'data'->>'orderId' = $2",
        id, order);
}

static void test_refresh_fetches_order(void **state)
{
    (void)state;
    char *trial = kc_uid("TRIAL"), *formal = kc_uid("FORMAL");
    ot_order_register("{\"orderId\":\"%s\",\"orderLine\":[{\"chargingMode\":\"PERIOD\","
                      "\"periodType\":\"day\",\"periodNumber\":7,\"isTrial\":\"1\","
                      "\"productInfo\":[{\"productId\":\"OFFI000000000000000001\","
                      "\"skuCode\":\"SKU-TRIAL\"}]}]}",
                      trial);
    ot_order_register("{\"orderId\":\"%s\",\"orderType\":\"TRIAL_TO_FORMAL\",\"orderLine\":["
                      "{\"chargingMode\":\"PERIOD\",\"periodType\":\"month\",\"periodNumber\":1,"
                      "\"productInfo\":[{\"productId\":\"OFFI000000000000000002\","
                      "\"skuCode\":\"SKU-PRO\"}]}]}",
                      formal);
    char *id = ot_provisioned(trial, NULL, PROVISION_WAIT_MS);
    wait_plan(id, "day|7|OFFI000000000000000001|SKU-TRIAL");
    assert_int_equal(count_of("SELECT count(*) FROM orders.instances WHERE instance_id = $1"
                              " AND trial",
                              id, NULL),
                     1);

    /* TRIAL_TO_FORMAL: the formal order's period and product replace the trial's. */
    refresh("000000", id, formal, "TRIAL_TO_FORMAL", "20300101120000", NULL);
    wait_plan(id, "month|1|OFFI000000000000000002|SKU-PRO");
    char *event = renewed_payload(id, formal);
    assert_string_equal(event, "month|1|OFFI000000000000000002|SKU-PRO|false");
    free(event);
    assert_int_equal(ot_expire_ms_of(id), compact_ms("20300101120000"));

    /* RENEWAL with a period-type change: a yearly renewal order ("CS..." = year x 1). */
    char *renewal = ot_order_id();
    refresh("000000", id, renewal, "RENEWAL", "20310101120000", NULL);
    wait_plan(id, "year|1|OFFI000000000000000001|SKU-BASIC");
    event = renewed_payload(id, renewal);
    assert_string_equal(event, "year|1|OFFI000000000000000001|SKU-BASIC|false");
    free(event);
    assert_int_equal(ot_expire_ms_of(id), compact_ms("20310101120000"));
    free(renewal);
    free(id);
    free(trial);
    free(formal);
}

/* ---- 5: Query Order answers checked against the question ---- */

/* The provisioning job of id failed an attempt with an error containing needle, and nothing of
 * the answer was stored. */
static void assert_attempt_refused(const char *id, const char *needle)
{
    if (!ot_wait_value(PROVISION_WAIT_MS,
                       "SELECT strpos(last_error, $2) > 0 FROM orders.jobs WHERE instance_id = $1"
                       " AND kind = 'provision'",
                       id, needle, "t")) {
        char *err = ot_sql("SELECT state || ' ' || attempts || ' ' || coalesce(last_error, '-')"
                           " FROM orders.jobs WHERE instance_id = $1",
                           id, NULL);
        fail_msg("job of %s: %s; want an error with \"%s\"", id, err ? err : "(none)", needle);
    }
    assert_int_equal(count_of("SELECT count(*) FROM orders.instances WHERE instance_id = $1"
                              " AND order_fetched_at IS NULL AND order_info IS NULL"
                              " AND product_id IS NULL AND state = 'provisioning'",
                              id, NULL),
                     1);
}

static void test_query_order_answer_checked(void **state)
{
    (void)state;
    /* An answer about another order. */
    char *asked = kc_uid("CSASK"), *other = kc_uid("CSOTHER");
    ot_order_register("{\"answerFor\":\"%s\",\"orderInfo\":{\"orderId\":\"%s\","
                      "\"orderLine\":[{\"orderLineId\":\"%s-000001\"}]}}",
                      asked, other, asked);
    char *line = ot_line_of(asked), *biz = kc_uid("biz");
    char *id = ot_new_instance(asked, line, biz, NULL);
    assert_attempt_refused(id, "orderId");
    /* ...which operators see in the failed jobs list, with the reason */
    kresp_t r = {0};
    assert_int_equal(
        kc_admin("GET", "/v1/jobs/failed", suite_get("KOOISV_OPERATOR_ROLE_TOKEN"), NULL, &r), 0);
    if (r.status != 200 || !strstr(r.body, id) || !strstr(r.body, other))
        fail_msg("failed jobs list lacks %s answered as %s: %d %s", id, other, r.status, r.body);
    kresp_free(&r);
    /* Once the marketplace answers right, the retry provisions it. */
    ot_order_register("{\"orderId\":\"%s\"}", asked);
    json_decref(ot_wait_provisioned(id, PROVISION_WAIT_MS));
    assert_int_equal(count_of("SELECT count(*) FROM orders.instances WHERE instance_id = $1"
                              " AND order_info->>'orderId' = $2",
                              id, asked),
                     1);
    free(id);
    free(biz);
    free(line);

    /* An answer whose only line is another line of the order. */
    char *lined = kc_uid("CSLINE");
    ot_order_register("{\"answerFor\":\"%s\",\"orderInfo\":{\"orderId\":\"%s\","
                      "\"orderLine\":[{\"orderLineId\":\"%s-000002\"}]}}",
                      lined, lined, lined);
    line = ot_line_of(lined);
    biz = kc_uid("biz");
    id = ot_new_instance(lined, line, biz, NULL);
    assert_attempt_refused(id, "line");
    free(id);
    free(biz);
    free(line);

    /* Several billing items: every productInfo entry is kept. */
    char *multi = kc_uid("CSMULTI");
    ot_order_register("{\"orderId\":\"%s\",\"orderLine\":[{\"chargingMode\":\"ON_DEMAND\","
                      "\"productInfo\":[{\"productId\":\"OFFI000000000000000003\","
                      "\"skuCode\":\"SKU-CPU\",\"linearValue\":4},"
                      "{\"productId\":\"OFFI000000000000000004\",\"skuCode\":\"SKU-DISK\","
                      "\"linearValue\":100}]}]}",
                      multi);
    id = ot_provisioned(multi, NULL, PROVISION_WAIT_MS);
    assert_int_equal(count_of("SELECT jsonb_array_length(product_info) FROM orders.instances"
                              " WHERE instance_id = $1",
                              id, NULL),
                     2);
    assert_int_equal(count_of("SELECT count(*) FROM orders.instances WHERE instance_id = $1"
                              " AND product_info->1->>'skuCode' = 'SKU-DISK'"
                              " AND product_id = 'OFFI000000000000000003'",
                              id, NULL),
                     1);
    free(id);
    free(multi);
    free(lined);
    free(asked);
    free(other);
}

/* ---- 6 and 9: periodic licenses need an end; ONE_TIME instances are not refreshed ---- */

static void test_license_and_one_time(void **state)
{
    (void)state;
    char *order = ot_order_id();
    char *periodic = ot_provisioned(order, NULL, PROVISION_WAIT_MS);
    kresp_t r;
    ot_expect("000002", &r, "{s:s, s:s, s:s, s:s}", "activity", "getLicenseAsync", "instanceId",
              periodic, "eventId", "ev-noexp", "effectiveTime", "20260101000000");
    assert_non_null(strstr(json_string_value(json_object_get(r.json, "resultMsg")), "expireTime"));
    kresp_free(&r);
    assert_int_equal(
        count_of("SELECT count(*) FROM orders.licenses WHERE instance_id = $1", periodic, NULL), 0);
    ot_expect("000000", &r, "{s:s, s:s, s:s, s:s, s:s}", "activity", "getLicenseAsync",
              "instanceId", periodic, "eventId", "ev-exp", "effectiveTime", "20260101000000",
              "expireTime", "20270101000000");
    kresp_free(&r);

    char *once = kc_uid("CSONCE");
    ot_order_register("{\"orderId\":\"%s\",\"orderLine\":[{\"chargingMode\":\"ONE_TIME\"}]}", once);
    char *one_time = ot_provisioned(once, NULL, PROVISION_WAIT_MS);
    /* a perpetual license is right for a one-time purchase */
    ot_expect("000000", &r, "{s:s, s:s, s:s, s:s}", "activity", "getLicenseAsync", "instanceId",
              one_time, "eventId", "ev-once", "effectiveTime", "20260101000000");
    kresp_free(&r);
    assert_int_equal(count_of("SELECT count(*) FROM orders.licenses WHERE instance_id = $1"
                              " AND expire_time IS NULL",
                              one_time, NULL),
                     1);
    /* ...and it has no expiry to move */
    char *renewal = ot_order_id();
    refresh("000002", one_time, renewal, "RENEWAL", "20300101120000", NULL);
    assert_int_equal(ot_expire_ms_of(one_time), -1);
    assert_int_equal(count_of("SELECT count(*) FROM orders.order_applications"
                              " WHERE instance_id = $1 AND activity = 'refreshInstance'",
                              one_time, NULL),
                     0);

    /* Before Query Order answered, the product's kind is unknown: no perpetual license yet. */
    char *pending = kc_uid("CSPEND"), *pending_line = ot_line_of(pending), *biz = kc_uid("biz");
    ot_fault("{\"path\":\"order/query\",\"match\":\"CSPEND\",\"mode\":\"error\",\"count\":-1}");
    char *fetching = ot_new_instance(pending, pending_line, biz, NULL);
    ot_expect("000004", &r, "{s:s, s:s, s:s, s:s}", "activity", "getLicenseAsync", "instanceId",
              fetching, "eventId", "ev-early", "effectiveTime", "20260101000000");
    kresp_free(&r);
    ot_expect("000000", &r, "{s:s, s:s, s:s, s:s, s:s}", "activity", "getLicenseAsync",
              "instanceId", fetching, "eventId", "ev-early", "effectiveTime", "20260101000000",
              "expireTime", "20270101000000");
    kresp_free(&r);
    ot_clear_faults();
    free(fetching);
    free(biz);
    free(pending_line);
    free(pending);
    free(renewal);
    free(one_time);
    free(once);
    free(periodic);
    free(order);
}

/* ---- 7: FREEZE while provisioning ---- */

static void status(const char *want, const char *id, const char *st)
{
    kresp_t r;
    ot_expect(want, &r, "{s:s, s:s, s:s}", "activity", "updateInstanceStatus", "instanceId", id,
              "status", st);
    kresp_free(&r);
}

static void test_freeze_while_provisioning(void **state)
{
    (void)state;
    /* Query Order keeps failing for these two orders (and only these). */
    char *frozen_order = kc_uid("CSFRZ"), *thawed_order = kc_uid("CSFRZ");
    ot_fault("{\"path\":\"order/query\",\"match\":\"CSFRZ\",\"mode\":\"error\",\"count\":-1}");
    char *l1 = ot_line_of(frozen_order), *l2 = ot_line_of(thawed_order);
    char *b1 = kc_uid("biz"), *b2 = kc_uid("biz");
    char *frozen = ot_new_instance(frozen_order, l1, b1, NULL);
    char *thawed = ot_new_instance(thawed_order, l2, b2, NULL);
    assert_true(ot_wait_value(PROVISION_WAIT_MS,
                              "SELECT attempts >= 1 FROM orders.jobs WHERE instance_id = $1"
                              " AND kind = 'provision'",
                              frozen, NULL, "t"));

    status("000000", frozen, "FREEZE");
    status("000000", frozen, "FREEZE"); /* repeating a status is success */
    status("000000", thawed, "FREEZE");
    status("000000", thawed, "UNFREEZE");
    ot_assert_state(frozen, "provisioning");
    ot_assert_state(thawed, "provisioning");
    assert_int_equal(count_of("SELECT count(*) FROM orders.instance_history"
                              " WHERE instance_id = $1 AND event = 'freeze'",
                              frozen, NULL),
                     1);

    ot_clear_faults();
    json_decref(ot_wait_provisioned(frozen, PROVISION_WAIT_MS));
    json_decref(ot_wait_provisioned(thawed, PROVISION_WAIT_MS));
    ot_assert_state(frozen, "frozen"); /* delivered frozen */
    ot_assert_state(thawed, "active");
    char *events =
        ot_sql("SELECT string_agg(event_type || ':' || (payload::jsonb->'data'->>'state'), ','"
               " ORDER BY id) FROM orders.outbox WHERE instance_id = $1",
               frozen, NULL);
    assert_string_equal(events, "instance.created:provisioning,instance.activated:frozen,"
                                "instance.frozen:frozen");
    free(events);
    events = ot_sql("SELECT string_agg(event_type, ',' ORDER BY id) FROM orders.outbox"
                    " WHERE instance_id = $1",
                    thawed, NULL);
    assert_string_equal(events, "instance.created,instance.activated");
    free(events);
    status("000000", frozen, "UNFREEZE");
    ot_assert_state(frozen, "active");
    free(frozen);
    free(thawed);
    free(b1);
    free(b2);
    free(l1);
    free(l2);
    free(frozen_order);
    free(thawed_order);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_test_flag_isolation),
        cmocka_unit_test(test_unsubscribe_renewal_same_order),
        cmocka_unit_test(test_refresh_fetches_order),
        cmocka_unit_test(test_query_order_answer_checked),
        cmocka_unit_test(test_license_and_one_time),
        cmocka_unit_test(test_freeze_while_provisioning),
    };
    return KC_SUITE_MAIN(tests, NULL, ot_clear_faults_teardown);
}
