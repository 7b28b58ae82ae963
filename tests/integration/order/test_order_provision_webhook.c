/* Provisioning through the seller's webhook (KOOISV_PROVISIONER=webhook, the emulator's
 * webhook/provision answering): the order is fetched and stored before the webhook is called
 * (the call carries its product), so a failed webhook is retried without a second Query Order;
 * a runner whose job was taken over while the webhook was slow stores nothing. The builtin
 * provisioner stores the order with the credentials in one transaction instead
 * (test_order_provisioning covers it); this file keeps the webhook's path honest. The test points
 * the order service at the emulator through <suite>/env/order.env and restarts it; the file is
 * restored at the end. Needs the `suite` fixture. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "order_support.h"
#include "xmalloc.h"

#define PROVISION_WAIT_MS 40000
#define HOOK "webhook/provision"

static kc_envfile_t saved_env;

static void webhook_fault(const char *json)
{
    kresp_t r;
    assert_int_equal(kc_emulator("POST", "/_emulator/faults", json, &r), 0);
    if (r.status != 200)
        fail_msg("emulator refused fault %s: %d %s", json, r.status, r.body);
    kresp_free(&r);
}

static int clear_faults(void **state)
{
    (void)state;
    webhook_fault("{\"path\":\"" HOOK "\",\"mode\":\"error\",\"count\":0}");
    return ot_clear_faults_teardown(state);
}

static int group_setup(void **state)
{
    (void)state;
    if (suite_env_load() != 0 || !suite_get("KOOISV_SUITE_DIR"))
        return -1;
    char *extra = xasprintf("KOOISV_PROVISIONER=webhook\n"
                            "KOOISV_WEBHOOK_URL=%s/_emulator/" HOOK "\n"
                            "KOOISV_WEBHOOK_SECRET_FILE=%s/secrets/webhook-secret\n"
                            "KOOISV_WEBHOOK_CA_FILE=%s\n"
                            "KOOISV_PROVISION_BACKOFF_MS=200\n",
                            suite_get("KOOISV_EMULATOR_URL"), suite_get("KOOISV_SUITE_DIR"),
                            suite_get("KOOISV_CA_FILE"));
    int rc = ot_order_env_apply(&saved_env, extra);
    free(extra);
    return rc;
}

static int group_teardown(void **state)
{
    clear_faults(state);
    ot_order_env_restore(&saved_env);
    return 0;
}

/* A new instance (order and business id fresh) whose provisioning webhook meets the fault
 * described by fields (JSON members after "path"; NULL: none). *order gets its order id. */
static char *create_with_webhook_fault(const char *fields, char **order)
{
    *order = ot_order_id();
    char *line = ot_line_of(*order), *biz = kc_uid("biz");
    if (fields) {
        char *fault = xasprintf("{\"path\":\"" HOOK "\",\"match\":\"%s\",%s}", biz, fields);
        webhook_fault(fault);
        free(fault);
    }
    char *id = ot_new_instance(*order, line, biz, NULL);
    free(line);
    free(biz);
    return id;
}

static void test_webhook_provisions(void **state)
{
    (void)state;
    char *order;
    char *id = create_with_webhook_fault(NULL, &order);
    ot_assert_provisioned_once(id, PROVISION_WAIT_MS, 1);
    /* The application's answer is what the instance holds. */
    json_t *app = ot_wait_provisioned(id, 1000);
    char *want = xasprintf("/i/%s", id);
    const char *url = json_string_value(json_object_get(app, "frontEndUrl"));
    if (!url || !strstr(url, want))
        fail_msg("frontEndUrl %s is not the webhook's answer for %s", url ? url : "(none)", id);
    json_decref(app);
    free(want);
    /* One signed call, with the product of the order stored before it. */
    json_t *calls = ot_emulator_calls(HOOK, id);
    assert_int_equal(json_array_size(calls), 1);
    json_t *call = json_array_get(calls, 0);
    assert_true(json_is_true(json_object_get(call, "signature_ok")));
    json_t *ev = json_loads(json_string_value(json_object_get(call, "body")), 0, NULL);
    assert_non_null(ev);
    char *product =
        ot_sql("SELECT product_id FROM orders.instances WHERE instance_id = $1", id, NULL);
    assert_non_null(product);
    const char *sent = json_string_value(json_object_get(ev, "productId"));
    if (!sent || strcmp(sent, product) != 0)
        fail_msg("the webhook was told product %s, the order has %s", sent ? sent : "null",
                 product);
    free(product);
    json_decref(ev);
    json_decref(calls);
    free(order);
    free(id);
}

static void test_failed_webhook_keeps_the_order(void **state)
{
    (void)state;
    char *order;
    char *id = create_with_webhook_fault("\"mode\":\"error\",\"count\":1", &order);
    ot_assert_provisioned_once(id, PROVISION_WAIT_MS, 2);
    char *err = ot_sql("SELECT last_error FROM orders.jobs WHERE instance_id = $1", id, NULL);
    assert_non_null(err);
    assert_non_null(strstr(err, "webhook"));
    free(err);
    /* Two webhook calls, one Query Order: the retry resumed after the stored order. */
    json_t *hooks = ot_emulator_calls(HOOK, id), *queries = ot_emulator_calls("order/query", order);
    assert_int_equal(json_array_size(hooks), 2);
    assert_int_equal(json_array_size(queries), 1);
    json_decref(hooks);
    json_decref(queries);
    free(order);
    free(id);
}

/* Another replica takes the job over while the webhook is slow: the runner that lost the lease
 * stores nothing (no credentials, no event) and leaves the job to its new owner. */
static void test_lease_lost_during_webhook(void **state)
{
    (void)state;
    char *order;
    char *id = create_with_webhook_fault("\"mode\":\"slow\",\"count\":1,\"delay_ms\":2500", &order);
    /* The order is stored just before the webhook is called. */
    if (!ot_wait_value(10000,
                       "SELECT order_fetched_at IS NOT NULL FROM orders.instances"
                       " WHERE instance_id = $1",
                       id, NULL, "t"))
        fail_msg("the order of %s was not stored before its webhook", id);
    char *job = ot_take_over_job(id);

    ot_assert_state(id, "provisioning");
    assert_int_equal(ot_sql_num("SELECT count(*) FROM orders.instances WHERE instance_id = $1"
                                " AND (front_end_url IS NOT NULL OR provisioned_at IS NOT NULL)",
                                id, NULL),
                     0);
    assert_int_equal(ot_sql_num("SELECT count(*) FROM orders.outbox WHERE instance_id = $1"
                                " AND event_type = 'instance.activated'",
                                id, NULL),
                     0);
    /* The new owner gives the job back. */
    ot_give_back_job(job);
    ot_assert_provisioned_once(id, PROVISION_WAIT_MS, 2);
    free(job);
    free(order);
    free(id);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_webhook_provisions, clear_faults),
        cmocka_unit_test_teardown(test_failed_webhook_keeps_the_order, clear_faults),
        cmocka_unit_test_teardown(test_lease_lost_during_webhook, clear_faults),
    };
    return KC_SUITE_MAIN(tests, group_setup, group_teardown);
}
