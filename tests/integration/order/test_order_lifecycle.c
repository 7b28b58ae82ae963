/* Order service end to end through the gateway's HTTPS (spec §3): the whole life cycle of an
 * instance with every repeat the marketplace may send, the database checked after each step;
 * newInstance idempotency (retries, 50 concurrent duplicates, a reused businessId); unknown
 * instances; queryInstance limits; testFlag isolation. Needs the `suite` fixture. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "appcrypt.h"
#include "config.h"
#include "order_support.h"
#include "timeutil.h"
#include "xmalloc.h"

#define PROVISION_WAIT_MS 20000

static long long history_count(const char *id, const char *event)
{
    return ot_sql_num("SELECT count(*) FROM orders.instance_history"
                      " WHERE instance_id = $1 AND event = $2",
                      id, event);
}

/* getLicenseAsync for (event, fingerprint), effective 2026-01-01 to 2027-01-01 (the instance
 * is periodic), answered 000000. */
static void license_ok(const char *id, const char *event_id, const char *fingerprint)
{
    kresp_t r;
    ot_expect("000000", &r, "{s:s, s:s, s:s, s:s, s:s, s:s}", "activity", "getLicenseAsync",
              "instanceId", id, "eventId", event_id, "effectiveTime", "20260101000000",
              "expireTime", "20270101000000", "deviceFingerprint", fingerprint);
    kresp_free(&r);
}

/* Licenses issued for id. */
static long long license_count(const char *id)
{
    return ot_sql_num("SELECT count(*) FROM orders.licenses WHERE instance_id = $1", id, NULL);
}

static void status(const char *want, const char *id, const char *st, kresp_t *r)
{
    ot_expect(want, r, "{s:s, s:s, s:s}", "activity", "updateInstanceStatus", "instanceId", id,
              "status", st);
}

static void test_lifecycle(void **state)
{
    (void)state;
    const char *key = suite_get("KOOISV_BASIC_KEY");
    assert_non_null(key);
    char *order = ot_order_id(), *line = ot_line_of(order), *biz = kc_uid("biz");
    kresp_t r;

    /* newInstance: the first businessId becomes the id; a retry with a new one changes nothing. */
    char *id = ot_new_instance(order, line, biz, NULL);
    assert_string_equal(id, biz);
    char *biz2 = kc_uid("biz");
    char *again = ot_new_instance(order, line, biz2, NULL);
    assert_string_equal(again, id);
    assert_int_equal(
        ot_sql_num("SELECT count(*) FROM orders.instances WHERE order_id = $1", order, NULL), 1);

    /* Provisioning runs after the answer; queryInstance shows appInfo once it is done. */
    json_t *app = ot_wait_provisioned(id, PROVISION_WAIT_MS);
    json_t *info = ot_query(id);
    kresp_t q;
    ot_expect("000000", &q, "{s:s, s:s}", "activity", "queryInstance", "instanceId", id);
    const char *enc = json_string_value(json_object_get(q.json, "encryptType"));
    assert_non_null(enc);
    const char *front = json_string_value(json_object_get(app, "frontEndUrl"));
    assert_non_null(front);
    assert_non_null(strstr(front, id));
    assert_true(strlen(front) <= 512);
    const char *user_wire = json_string_value(json_object_get(app, "userName"));
    const char *pass_wire = json_string_value(json_object_get(app, "password"));
    assert_non_null(user_wire);
    assert_non_null(pass_wire);
    char *user = appcrypt_decrypt(key, enc, user_wire);
    char *pass = appcrypt_decrypt(key, enc, pass_wire);
    assert_non_null(user);
    assert_non_null(pass);
    const char *why = NULL;
    if (!config_password_is_strong(pass, user, &why))
        fail_msg("provisioned password is weak: %s", why);
    /* At rest: sealed, never the plain text. */
    char *sealed =
        ot_sql("SELECT password_sealed FROM orders.instances WHERE instance_id = $1", id, NULL);
    assert_non_null(sealed);
    assert_memory_equal(sealed, "v1:", 3);
    assert_null(strstr(sealed, pass));
    free(sealed);
    assert_int_equal(ot_sql_num("SELECT count(*) FROM orders.instances WHERE instance_id = $1"
                                " AND user_name_sealed LIKE 'v1:%' AND user_name_sealed <> $2",
                                id, user),
                     1);
    /* Order details came from Query Order. */
    assert_int_equal(ot_sql_num("SELECT count(*) FROM orders.instances WHERE instance_id = $1"
                                " AND charging_mode = 'PERIOD' AND product_id IS NOT NULL"
                                " AND expire_time IS NOT NULL AND order_fetched_at IS NOT NULL"
                                " AND NOT test_flag",
                                id, NULL),
                     1);
    ot_assert_state(id, "active");
    free(user);
    free(pass);
    json_decref(app);
    json_decref(info);
    kresp_free(&q);

    /* FREEZE, FREEZE again (success, nothing happens), UNFREEZE. */
    status("000000", id, "FREEZE", &r);
    kresp_free(&r);
    ot_assert_state(id, "frozen");
    status("000000", id, "FREEZE", &r);
    kresp_free(&r);
    assert_int_equal(history_count(id, "freeze"), 1);
    status("000000", id, "UNFREEZE", &r);
    kresp_free(&r);
    ot_assert_state(id, "active");
    status("000000", id, "UNFREEZE", &r); /* repeating a status is success */
    kresp_free(&r);
    assert_int_equal(history_count(id, "unfreeze"), 1);

    /* refreshInstance twice with one orderId: the expiry moves once. */
    char *renew = ot_order_id(), *renew_line = ot_line_of(renew);
    ot_expect("000000", &r, "{s:s, s:s, s:s, s:s, s:s, s:s}", "activity", "refreshInstance",
              "instanceId", id, "orderId", renew, "orderLineId", renew_line, "scene", "RENEWAL",
              "expireTime", "20300101120000");
    kresp_free(&r);
    const int64_t want_ms = 1893499200000LL; /* 2030-01-01T12:00:00Z: the marketplace's UTC */
    assert_int_equal(ot_expire_ms_of(id), want_ms);
    ot_expect("000000", &r, "{s:s, s:s, s:s, s:s, s:s, s:s}", "activity", "refreshInstance",
              "instanceId", id, "orderId", renew, "orderLineId", renew_line, "scene", "RENEWAL",
              "expireTime", "20310101120000");
    kresp_free(&r);
    assert_int_equal(ot_expire_ms_of(id), want_ms);
    assert_int_equal(history_count(id, "refresh"), 1);
    /* The renewal event follows once its order was fetched (Query Order, in the background). */
    if (!ot_wait_value(PROVISION_WAIT_MS,
                       "SELECT count(*) FROM orders.outbox WHERE instance_id = $1"
                       " AND event_type = 'instance.renewed'",
                       id, NULL, "1"))
        fail_msg("no instance.renewed event for %s", id);

    /* upgradeInstance twice with one orderId: applied once. */
    char *change = ot_order_id();
    for (int i = 0; i < 2; i++)
        ot_upgrade(id, change);
    assert_int_equal(history_count(id, "upgrade"), 1);
    assert_int_equal(
        ot_sql_num("SELECT plan_version FROM orders.instances WHERE instance_id = $1", id, NULL),
        2);

    /* changeInstanceCheck: allowed while live. */
    ot_expect("000000", &r, "{s:s, s:s, s:{s:s}}", "activity", "changeInstanceCheck", "instanceId",
              id, "productInfo", "productId", "OFFI000000000000000002");
    kresp_free(&r);

    /* getLicenseAsync: same eventId + fingerprint -> the same license, never a second one. */
    for (int i = 0; i < 2; i++)
        license_ok(id, "ev-1", "fp-A");
    assert_int_equal(license_count(id), 1);
    license_ok(id, "ev-1", "fp-B");
    assert_int_equal(license_count(id), 2);

    /* releaseInstance twice: the second is a success that changes nothing. */
    for (int i = 0; i < 2; i++) {
        ot_expect("000000", &r, "{s:s, s:s}", "activity", "releaseInstance", "instanceId", id);
        kresp_free(&r);
    }
    ot_assert_state(id, "released");
    assert_int_equal(history_count(id, "release"), 1);

    /* Released is terminal: impossible transitions are 000002 with a clear message. */
    status("000002", id, "UNFREEZE", &r);
    assert_non_null(strstr(json_string_value(json_object_get(r.json, "resultMsg")), "released"));
    kresp_free(&r);
    ot_expect("000002", &r, "{s:s, s:s, s:{s:s}}", "activity", "changeInstanceCheck", "instanceId",
              id, "productInfo", "productId", "X");
    kresp_free(&r);
    char *renew2 = ot_order_id();
    ot_expect("000002", &r, "{s:s, s:s, s:s, s:s, s:s, s:s}", "activity", "refreshInstance",
              "instanceId", id, "orderId", renew2, "orderLineId", "L", "scene", "RENEWAL",
              "expireTime", "20320101120000");
    kresp_free(&r);
    /* The repeat of an order applied before the release is still a success. */
    ot_expect("000000", &r, "{s:s, s:s, s:s, s:s, s:s, s:s}", "activity", "refreshInstance",
              "instanceId", id, "orderId", renew, "orderLineId", renew_line, "scene", "RENEWAL",
              "expireTime", "20300101120000");
    kresp_free(&r);
    /* Data kept, not served. */
    info = ot_query(id);
    assert_int_equal(json_array_size(info), 0);
    json_decref(info);

    /* Every change left exactly one outbox event, in order. */
    char *events = ot_sql("SELECT string_agg(event_type, ',' ORDER BY id) FROM orders.outbox"
                          " WHERE instance_id = $1",
                          id, NULL);
    assert_string_equal(events, "instance.created,instance.activated,instance.frozen,"
                                "instance.unfrozen,instance.renewed,instance.upgraded,"
                                "instance.released");
    free(events);
    free(renew2);
    free(change);
    free(renew);
    free(renew_line);
    free(again);
    free(biz2);
    free(id);
    free(biz);
    free(line);
    free(order);
}

static void test_unknown_instance(void **state)
{
    (void)state;
    char *ghost = kc_uid("ghost");
    kresp_t r;
    ot_expect("000003", &r, "{s:s, s:s, s:s}", "activity", "updateInstanceStatus", "instanceId",
              ghost, "status", "FREEZE");
    kresp_free(&r);
    ot_expect("000003", &r, "{s:s, s:s}", "activity", "releaseInstance", "instanceId", ghost);
    kresp_free(&r);
    ot_expect("000003", &r, "{s:s, s:s, s:s, s:s, s:s, s:s}", "activity", "refreshInstance",
              "instanceId", ghost, "orderId", "CSX", "orderLineId", "CSX-1", "scene", "RENEWAL",
              "expireTime", "20300101120000");
    kresp_free(&r);
    ot_expect("000003", &r, "{s:s, s:s, s:s, s:s}", "activity", "upgradeInstance", "instanceId",
              ghost, "orderId", "CSX", "orderLineId", "CSX-1");
    kresp_free(&r);
    ot_expect("000003", &r, "{s:s, s:s, s:{s:s}}", "activity", "changeInstanceCheck", "instanceId",
              ghost, "productInfo", "productId", "X");
    kresp_free(&r);
    ot_expect("000003", &r, "{s:s, s:s, s:s, s:s}", "activity", "getLicenseAsync", "instanceId",
              ghost, "eventId", "e", "effectiveTime", "20260101000000");
    kresp_free(&r);
    /* Nothing was created by any of it. */
    assert_int_equal(
        ot_sql_num("SELECT count(*) FROM orders.instances WHERE instance_id = $1", ghost, NULL), 0);
    free(ghost);
}

static void test_query_limits(void **state)
{
    (void)state;
    char *order = ot_order_id(), *line = ot_line_of(order), *biz = kc_uid("biz");
    char *id = ot_new_instance(order, line, biz, NULL);

    /* 101 ids -> 000002; 100 (mostly unknown) -> only the known one. */
    size_t cap = 101 * 24 + 64;
    char *ids = xmalloc(cap);
    ids[0] = '\0';
    for (int i = 0; i < 101; i++) {
        char one[24];
        snprintf(one, sizeof one, "%snone%d", i ? "," : "", i);
        strcat(ids, one);
    }
    kresp_t r;
    ot_expect("000002", &r, "{s:s, s:s}", "activity", "queryInstance", "instanceId", ids);
    kresp_free(&r);
    /* 99 unknown ids and the real one last: 100 in all. */
    char *second_last = strrchr(ids, ',');
    *second_last = '\0';
    second_last = strrchr(ids, ',');
    snprintf(second_last, cap - (size_t)(second_last - ids), ",%s", id);
    json_t *info = ot_query(ids);
    assert_int_equal(json_array_size(info), 1);
    assert_non_null(ot_info_of(info, id));
    json_decref(info);
    info = ot_query("none-1,none-2");
    assert_int_equal(json_array_size(info), 0);
    json_decref(info);
    free(ids);
    free(id);
    free(biz);
    free(line);
    free(order);
}

static void test_test_flag(void **state)
{
    (void)state;
    char *order = ot_order_id(), *line = ot_line_of(order);
    char *biz_t = kc_uid("biz"), *biz_r = kc_uid("biz");
    char *test_id = ot_new_instance(order, line, biz_t, "1");
    assert_int_equal(ot_sql_num("SELECT count(*) FROM orders.instances WHERE instance_id = $1"
                                " AND test_flag",
                                test_id, NULL),
                     1);
    /* The same order without testFlag is real business: its own instance. */
    char *real_id = ot_new_instance(order, line, biz_r, "0");
    assert_string_not_equal(test_id, real_id);
    assert_int_equal(ot_sql_num("SELECT count(*) FROM orders.instances WHERE instance_id = $1"
                                " AND NOT test_flag",
                                real_id, NULL),
                     1);
    json_t *app = ot_wait_provisioned(test_id, PROVISION_WAIT_MS);
    json_decref(app);
    /* Its events are flagged, so billing can leave them out. */
    assert_int_equal(ot_sql_num("SELECT count(*) FROM orders.outbox WHERE instance_id = $1"
                                " AND (NOT test_flag OR (payload::jsonb->>'testFlag') <> 'true')",
                                test_id, NULL),
                     0);
    free(test_id);
    free(real_id);
    free(biz_t);
    free(biz_r);
    free(line);
    free(order);
}

static void test_business_id_reused(void **state)
{
    (void)state;
    char *a = ot_order_id(), *la = ot_line_of(a), *b = ot_order_id(), *lb = ot_line_of(b);
    char *biz = kc_uid("biz");
    char *id_a = ot_new_instance(a, la, biz, NULL);
    char *id_b = ot_new_instance(b, lb, biz, NULL);
    assert_string_equal(id_a, biz);
    assert_string_not_equal(id_b, biz); /* another order cannot take the same id */
    char *biz2 = kc_uid("biz");
    char *again = ot_new_instance(b, lb, biz2, NULL);
    assert_string_equal(again, id_b);
    free(again);
    free(biz2);
    free(id_a);
    free(id_b);
    free(biz);
    free(a);
    free(la);
    free(b);
    free(lb);
}

/* ---- 50 concurrent duplicates ---- */

#define DUPLICATES 50

typedef struct {
    const char *order, *line;
    char id[128];
    char code[16];
} dup_t;

static void *dup_call(void *arg)
{
    dup_t *d = arg;
    char *biz = kc_uid("dup");
    char body[512];
    snprintf(body, sizeof body,
             "{\"activity\":\"newInstance\",\"orderId\":\"%s\",\"orderLineId\":\"%s\","
             "\"businessId\":\"%s\"}",
             d->order, d->line, biz);
    kresp_t r = {0};
    if (kc_basic(body, &r) == 0 && r.code) {
        snprintf(d->code, sizeof d->code, "%s", r.code);
        const char *id = json_string_value(json_object_get(r.json, "instanceId"));
        snprintf(d->id, sizeof d->id, "%s", id ? id : "");
    } else {
        snprintf(d->code, sizeof d->code, "HTTP%d", r.status);
    }
    kresp_free(&r);
    free(biz);
    return NULL;
}

static void test_concurrent_duplicates(void **state)
{
    (void)state;
    char *order = ot_order_id(), *line = ot_line_of(order);
    dup_t d[DUPLICATES];
    pthread_t t[DUPLICATES];
    for (int i = 0; i < DUPLICATES; i++) {
        memset(&d[i], 0, sizeof d[i]);
        d[i].order = order;
        d[i].line = line;
        assert_int_equal(pthread_create(&t[i], NULL, dup_call, &d[i]), 0);
    }
    for (int i = 0; i < DUPLICATES; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < DUPLICATES; i++) {
        if (strcmp(d[i].code, "000000") != 0)
            fail_msg("duplicate %d answered %s", i, d[i].code);
        assert_string_equal(d[i].id, d[0].id);
    }
    assert_int_equal(
        ot_sql_num("SELECT count(*) FROM orders.instances WHERE order_id = $1", order, NULL), 1);
    assert_int_equal(
        ot_sql_num("SELECT count(*) FROM orders.jobs WHERE order_id = $1", order, NULL), 1);
    assert_int_equal(ot_sql_num("SELECT count(*) FROM orders.outbox o JOIN orders.instances i"
                                " USING (instance_id) WHERE i.order_id = $1"
                                " AND o.event_type = 'instance.created'",
                                order, NULL),
                     1);
    free(order);
    free(line);
}

static void test_bad_input(void **state)
{
    (void)state;
    kresp_t r;
    ot_expect("000002", &r, "{s:s, s:s, s:s}", "activity", "updateInstanceStatus", "instanceId",
              "x", "status", "PAUSE");
    kresp_free(&r);
    ot_expect("000002", &r, "{s:s, s:s, s:s, s:s, s:s, s:s}", "activity", "refreshInstance",
              "instanceId", "x", "orderId", "CSX", "orderLineId", "CSX-1", "scene", "RENEWAL",
              "expireTime", "2030-01-01");
    kresp_free(&r);
    ot_expect("000002", &r, "{s:s, s:s, s:s}", "activity", "newInstance", "orderId", "CSX",
              "orderLineId", "CSX-1");
    kresp_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lifecycle),          cmocka_unit_test(test_unknown_instance),
        cmocka_unit_test(test_query_limits),       cmocka_unit_test(test_test_flag),
        cmocka_unit_test(test_business_id_reused), cmocka_unit_test(test_concurrent_duplicates),
        cmocka_unit_test(test_bad_input),
    };
    return KC_SUITE_MAIN(tests, NULL, NULL);
}
