/* The order service checks its own input: envelopes sent to it over ZeroMQ directly, with what
 * the gateway refuses before it (a change check without productId, license times in another
 * zone), are answered 000002 naming the field; through the gateway the same bodies are refused
 * too. Needs the `suite` fixture. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "order_support.h"
#include "rpc.h"
#include "xmalloc.h"

#define PROVISION_WAIT_MS 20000

static rpc_client_t *client;
static char *instance;

static int setup(void **state)
{
    (void)state;
    client = kc_rpc_client("order");
    if (!client)
        return -1;
    instance = ot_provisioned(NULL, NULL, PROVISION_WAIT_MS);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    rpc_client_destroy(&client);
    free(instance);
    return 0;
}

/* Send env (request id and caller filled here); asserts the answer is want and its message
 * holds needle. */
static void expect_direct(Kooisv__Envelope *env, const char *want, const char *needle)
{
    Kooisv__Caller caller = KOOISV__CALLER__INIT;
    caller.kind = "basic";
    caller.id = "test";
    char *rid = kc_uid("rid");
    env->request_id = rid;
    env->caller = &caller;
    Kooisv__Reply *reply = NULL;
    assert_int_equal(rpc_call(client, env, 5000, &reply), 0);
    if (strcmp(reply->result_code, want) != 0 || !strstr(reply->result_msg, needle))
        fail_msg("got %s \"%s\", want %s naming \"%s\"", reply->result_code, reply->result_msg,
                 want, needle);
    kooisv__reply__free_unpacked(reply, NULL);
    free(rid);
}

static void test_change_check_needs_product(void **state)
{
    (void)state;
    Kooisv__Envelope env = KOOISV__ENVELOPE__INIT;
    Kooisv__ChangeInstanceCheck m = KOOISV__CHANGE_INSTANCE_CHECK__INIT;
    m.instance_id = instance;
    m.product_id = "";
    m.product_info_json = "{}";
    env.body_case = KOOISV__ENVELOPE__BODY_CHANGE_INSTANCE_CHECK;
    env.change_instance_check = &m;
    expect_direct(&env, "000002", "productInfo.productId");
    m.product_id = "prod-2";
    m.product_info_json = "{\"productId\":\"prod-2\"}";
    expect_direct(&env, "000000", "change allowed");

    /* Through the gateway: refused before it reaches the service. */
    kresp_t r;
    ot_expect("000002", &r, "{s:s, s:s, s:{s:s}}", "activity", "changeInstanceCheck", "instanceId",
              instance, "productInfo", "sku", "s");
    assert_non_null(
        strstr(json_string_value(json_object_get(r.json, "resultMsg")), "productId is missing"));
    kresp_free(&r);
}

static void test_license_times_checked(void **state)
{
    (void)state;
    Kooisv__Envelope env = KOOISV__ENVELOPE__INIT;
    Kooisv__GetLicenseAsync m = KOOISV__GET_LICENSE_ASYNC__INIT;
    m.instance_id = instance;
    m.event_id = "ev-direct";
    m.device_fingerprint = "";
    m.expire_time = "";
    env.body_case = KOOISV__ENVELOPE__BODY_GET_LICENSE_ASYNC;
    env.get_license_async = &m;
    m.effective_time = "2023-10-27 10:30:15 +08:00";
    expect_direct(&env, "000002", "effectiveTime must end in the zone z, Z or UTC");
    m.effective_time = "1698402615000"; /* epoch ms: not a form of the spec */
    expect_direct(&env, "000002", "effectiveTime must be a UTC time as");
    m.effective_time = "2023-10-27 10:30:15 z";
    m.expire_time = "2023-02-30 00:00:00 z";
    expect_direct(&env, "000002", "expireTime is not a real calendar time");
    const char *p[] = {instance};
    assert_int_equal(kc_sql_count("SELECT 1 FROM orders.licenses"
                                  " WHERE instance_id = $1 AND event_id = 'ev-direct'",
                                  1, p),
                     0);
    m.expire_time = "20241027103015999";
    expect_direct(&env, "000000", "success");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_change_check_needs_product),
        cmocka_unit_test(test_license_times_checked),
    };
    return KC_SUITE_MAIN(tests, setup, teardown);
}
