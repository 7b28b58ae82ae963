/* The marketplace's compact times (spec §3, "Time zone of compact times"): a refreshInstance
 * expireTime and Query Order's times land as the UTC instants they name, read back through the
 * admin API; with KOOISV_MARKETPLACE_TIME_ZONE=+08:00 (order service and emulator) they land
 * eight hours earlier, and the expiries already stored are read again at start (history
 * "rezone"), and back when the setting returns to UTC. An unknown zone stops the order service
 * and the emulator at start with a one-line reason. Needs the `suite` fixture. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "order_support.h"
#include "timeutil.h"
#include "xmalloc.h"

#define PROVISION_WAIT_MS 20000
#define HOUR_MS 3600000LL
#define RENEWAL "20271206111947"
#define RENEWAL_UTC_MS 1828091987000LL /* 2027-12-06T11:19:47Z */
#define ORDER_EXPIRE "20281231155959"
#define ORDER_EXPIRE_UTC_MS 1861891199000LL /* 2028-12-31T15:59:59Z */
#define YEAR_MS (365 * 24 * HOUR_MS)

/* The instance's expire_time as the operator sees it (GET /v1/instances/ID), epoch ms. */
static int64_t admin_expire_ms(const char *id)
{
    char *path = xasprintf("/v1/instances/%s", id);
    kresp_t r = {0};
    assert_int_equal(kc_admin("GET", path, suite_get("KOOISV_OPERATOR_TOKEN"), NULL, &r), 0);
    if (r.status != 200)
        fail_msg("GET %s: %d %s", path, r.status, r.body ? r.body : r.error);
    json_t *root = json_loads(r.body, 0, NULL);
    const char *at =
        json_string_value(json_object_get(json_object_get(root, "instance"), "expire_time"));
    int64_t ms = -1;
    if (!at || !time_parse_any(at, &ms))
        fail_msg("instance %s has no readable expire_time: %s", id, r.body);
    json_decref(root);
    kresp_free(&r);
    free(path);
    return ms;
}

static void renew(const char *id, const char *expire)
{
    char *order = ot_order_id(), *line = ot_line_of(order);
    kresp_t r;
    ot_expect("000000", &r, "{s:s, s:s, s:s, s:s, s:s, s:s}", "activity", "refreshInstance",
              "instanceId", id, "orderId", order, "orderLineId", line, "scene", "RENEWAL",
              "expireTime", expire);
    kresp_free(&r);
    free(order);
    free(line);
}

/* Register an order with the emulator whose line ends at ORDER_EXPIRE; its id (caller frees). */
static char *registered_order(void)
{
    char *order = ot_order_id();
    char *body = xasprintf("{\"orderId\":\"%s\",\"createTime\":\"20261128181500\","
                           "\"orderLine\":[{\"expireTime\":\"" ORDER_EXPIRE "\"}]}",
                           order);
    kresp_t r = {0};
    if (kc_emulator("POST", "/_emulator/orders", body, &r) != 0 || r.status != 200)
        fail_msg("emulator refused %s: %d %s", body, r.status, r.body ? r.body : r.error);
    kresp_free(&r);
    free(body);
    return order;
}

static void assert_near(int64_t got, int64_t want, int64_t slack_ms)
{
    if (got < want - slack_ms || got > want + slack_ms)
        fail_msg("got %lld, want %lld +- %lld ms (off by %.2f h)", (long long)got, (long long)want,
                 (long long)slack_ms, (double)(got - want) / HOUR_MS);
}

/* Three fresh instances whose expiries the operator reads shift_ms off the instants they name
 * in UTC: one renewed to RENEWAL, one of a registered order whose line ends at ORDER_EXPIRE, and
 * one of the emulator's own yearly order (now + 365 days, written in its zone, so unshifted).
 * ids[0..2] get them (caller frees). */
static void assert_new_expiries(int64_t shift_ms, char *ids[3])
{
    ids[0] = ot_provisioned(NULL, NULL, PROVISION_WAIT_MS);
    renew(ids[0], RENEWAL);
    assert_int_equal(admin_expire_ms(ids[0]), RENEWAL_UTC_MS + shift_ms);
    char *order = registered_order();
    ids[1] = ot_provisioned(order, NULL, PROVISION_WAIT_MS);
    assert_int_equal(admin_expire_ms(ids[1]), ORDER_EXPIRE_UTC_MS + shift_ms);
    free(order);
    int64_t t0 = time_now_ms();
    ids[2] = ot_provisioned(NULL, NULL, PROVISION_WAIT_MS);
    assert_near(admin_expire_ms(ids[2]), t0 + YEAR_MS, 120000);
}

static void test_utc_default(void **state)
{
    (void)state;
    ot_wait_service(10000);
    /* The case: a renewal to 20271206111947 is 11:19:47 UTC, not 03:19:47; Query Order's
     * registered expireTime lands as the instant it names, the emulator's yearly order too. */
    char *ids[3];
    assert_new_expiries(0, ids);
    char *created = ot_sql("SELECT order_info->>'createTime' FROM orders.instances"
                           " WHERE instance_id = $1",
                           ids[1], NULL);
    assert_string_equal(created, "20261128181500");
    free(created);
    for (int i = 0; i < 3; i++)
        free(ids[i]);
}

static const char *zone_procs[] = {"emulator", "order"};
static bool zone_set; /* set_zone wrote a zone that no set_zone(NULL) took back yet */

/* KOOISV_MARKETPLACE_TIME_ZONE for the order service and the emulator (NULL = the default). */
static void set_zone(const char *zone)
{
    const char **procs = zone_procs;
    if (zone)
        zone_set = true;
    for (size_t i = 0; i < 2; i++) {
        char *dir = xasprintf("%s/env", suite_get("KOOISV_SUITE_DIR"));
        char *path = xasprintf("%s/%s.env", dir, procs[i]);
        if (zone) {
            mkdir(dir, 0700);
            FILE *f = fopen(path, "w");
            assert_non_null(f);
            fprintf(f, "KOOISV_MARKETPLACE_TIME_ZONE=%s\n", zone);
            fclose(f);
        } else {
            unlink(path);
        }
        assert_int_equal(kc_suite("restart", procs[i]), 0);
        free(path);
        free(dir);
    }
    if (!zone)
        zone_set = false;
    ot_wait_service(10000);
}

static long long rezones(const char *id)
{
    return ot_sql_num("SELECT count(*) FROM orders.instance_history"
                      " WHERE instance_id = $1 AND event = 'rezone'",
                      id, NULL);
}

/* Teardown of test_utc8_setting: the default zone back for both processes, restarted, whatever
 * failed, so that no later test program runs them in UTC+8. */
static int zone_teardown(void **state)
{
    (void)state;
    if (!zone_set)
        return 0;
    zone_set = false;
    int rc = 0;
    for (size_t i = 0; i < 2; i++) {
        char *path = xasprintf("%s/env/%s.env", suite_get("KOOISV_SUITE_DIR"), zone_procs[i]);
        unlink(path);
        free(path);
        if (kc_suite("restart", zone_procs[i]) != 0)
            rc = -1;
    }
    return rc;
}

static void test_utc8_setting(void **state)
{
    (void)state;
    ot_wait_service(10000);
    char *before = ot_provisioned(NULL, NULL, PROVISION_WAIT_MS);
    renew(before, RENEWAL);
    assert_int_equal(admin_expire_ms(before), RENEWAL_UTC_MS);

    set_zone("+08:00");
    /* What was stored under UTC is read again as UTC+8, once, with a history row and an event. */
    assert_int_equal(admin_expire_ms(before), RENEWAL_UTC_MS - 8 * HOUR_MS);
    assert_int_equal(rezones(before), 1);
    assert_int_equal(ot_sql_num("SELECT count(*) FROM orders.outbox WHERE instance_id = $1"
                                " AND event_type = 'instance.expiry_corrected'",
                                before, NULL),
                     1);
    char *zone = ot_sql("SELECT zone FROM orders.compact_time_zone", NULL, NULL);
    assert_string_equal(zone, "+08:00");
    free(zone);

    /* New instances land 8 hours earlier; the emulator and the service agree on the yearly
     * order: still now + 365 days. */
    char *ids[3];
    assert_new_expiries(-8 * HOUR_MS, ids);

    /* A restart with the same setting changes nothing. */
    assert_int_equal(kc_suite("restart", "order"), 0);
    ot_wait_service(10000);
    assert_int_equal(rezones(before), 1);
    assert_int_equal(admin_expire_ms(before), RENEWAL_UTC_MS - 8 * HOUR_MS);

    set_zone(NULL);
    assert_int_equal(admin_expire_ms(before), RENEWAL_UTC_MS);
    assert_int_equal(admin_expire_ms(ids[0]), RENEWAL_UTC_MS);
    assert_int_equal(admin_expire_ms(ids[1]), ORDER_EXPIRE_UTC_MS);
    assert_int_equal(rezones(before), 2);
    free(before);
    for (int i = 0; i < 3; i++)
        free(ids[i]);
}

static void test_bad_zone_stops_start(void **state)
{
    (void)state;
    const char *bad[] = {"Mars/Olympus", "UTC+8", "+25:00"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *zone = xasprintf("KOOISV_MARKETPLACE_TIME_ZONE=%s", bad[i]);
        char **order_env = ot_order_start_env(zone);
        ot_assert_refused(KOOISV_ORDER_BIN, "kooisv-order", "KOOISV_MARKETPLACE_TIME_ZONE",
                          order_env);
        ot_env_free(order_env);
        char *emu_env[] = {"KOOISV_TLS_CERT_FILE=/nonexistent.crt",
                           "KOOISV_TLS_KEY_FILE=/nonexistent.key",
                           "KOOISV_MARKETPLACE_AK=AKTEST0123456789",
                           "KOOISV_MARKETPLACE_SK=Sk7-vX2mLp9Rt4Wz8Yb3",
                           "KOOISV_BASIC_KEY=Kq7-vX2mLp9Rt4Wz8Yb3",
                           zone,
                           NULL};
        ot_assert_refused(KOOISV_EMULATOR_BIN, "kooisv-emulator", "KOOISV_MARKETPLACE_TIME_ZONE",
                          emu_env);
        free(zone);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_zone_stops_start),
        cmocka_unit_test(test_utc_default),
        cmocka_unit_test_teardown(test_utc8_setting, zone_teardown),
    };
    return KC_SUITE_MAIN(tests, NULL, NULL);
}
