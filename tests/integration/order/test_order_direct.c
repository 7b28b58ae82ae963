/* The order service checks its own input: envelopes sent to it over ZeroMQ directly, with what
 * the gateway refuses before it (a change check without productId, license times in another
 * zone), are answered 000002 naming the field; through the gateway the same bodies are refused
 * too. Many queries at once are each answered with their own rows. Needs the `suite`
 * fixture. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "order_support.h"
#include "rpc.h"
#include "xmalloc.h"

#include <pthread.h>

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

/* A queryInstance the query reader does not take (no id, an empty or oversized one, too many)
 * still meets the worker's checks: 000002 naming what is wrong. */
static void test_query_refusals(void **state)
{
    (void)state;
    char big[258];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    char *empty[] = {""}, *oversized[] = {big}, *many[101];
    for (int i = 0; i < 101; i++)
        many[i] = instance;
    struct {
        char **ids;
        size_t n;
        const char *needle;
    } cases[] = {{NULL, 0, "instanceId is required"},
                 {empty, 1, "empty or oversized"},
                 {oversized, 1, "empty or oversized"},
                 {many, 101, "at most 100"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Kooisv__Envelope env = KOOISV__ENVELOPE__INIT;
        Kooisv__QueryInstance q = KOOISV__QUERY_INSTANCE__INIT;
        q.instance_ids = cases[i].ids;
        q.n_instance_ids = cases[i].n;
        env.body_case = KOOISV__ENVELOPE__BODY_QUERY_INSTANCE;
        env.query_instance = &q;
        expect_direct(&env, "000002", cases[i].needle);
    }
    /* and a well-formed one of the same kind is answered */
    Kooisv__Envelope env = KOOISV__ENVELOPE__INIT;
    Kooisv__QueryInstance q = KOOISV__QUERY_INSTANCE__INIT;
    char *one[] = {instance};
    q.instance_ids = one;
    q.n_instance_ids = 1;
    env.body_case = KOOISV__ENVELOPE__BODY_QUERY_INSTANCE;
    env.query_instance = &q;
    expect_direct(&env, "000000", "success");
}

/* ---- many queries at once: the query reader reads them in shared round trips ---- */

#define QR_THREADS 8
#define QR_CALLS 60

typedef struct {
    int index;
    const char *prefix;
    char why[256]; /* the first wrong answer, empty when all were right */
} qr_caller_t;

/* What a query of case c must answer: the provisioned instance (one info with appInfo), an
 * unknown id, or the real instance asked as a debug call (left out): zero infos. */
static void *qr_caller(void *arg)
{
    qr_caller_t *me = arg;
    rpc_client_t *c = kc_rpc_client("order");
    if (!c) {
        snprintf(me->why, sizeof me->why, "no rpc client");
        return NULL;
    }
    for (int i = 0; i < QR_CALLS && !me->why[0]; i++) {
        int kind = (me->index + i) % 3;
        char rid[96], unknown[64];
        snprintf(rid, sizeof rid, "%s-%d-%d", me->prefix, me->index, i);
        snprintf(unknown, sizeof unknown, "no-such-%d-%d", me->index, i);
        char *ids[] = {kind == 1 ? unknown : instance};
        Kooisv__QueryInstance q = KOOISV__QUERY_INSTANCE__INIT;
        q.n_instance_ids = 1;
        q.instance_ids = ids;
        Kooisv__Caller caller = KOOISV__CALLER__INIT;
        caller.kind = "basic";
        caller.id = "test";
        Kooisv__Envelope env = KOOISV__ENVELOPE__INIT;
        env.body_case = KOOISV__ENVELOPE__BODY_QUERY_INSTANCE;
        env.query_instance = &q;
        env.request_id = rid;
        env.caller = &caller;
        env.test_flag = kind == 2;
        Kooisv__Reply *reply = NULL;
        if (rpc_call(c, &env, 10000, &reply) != 0 || !reply) {
            snprintf(me->why, sizeof me->why, "%s: no answer", rid);
            break;
        }
        const Kooisv__QueryInstanceResult *r = reply->query_instance;
        size_t want = kind == 0 ? 1 : 0;
        if (strcmp(reply->result_code, "000000") != 0 || !r || r->n_info != want)
            snprintf(me->why, sizeof me->why, "%s (case %d): %s \"%s\", %zu infos", rid, kind,
                     reply->result_code, reply->result_msg, r ? r->n_info : 0);
        else if (want && (strcmp(r->info[0]->instance_id, instance) != 0 || !r->info[0]->app_info ||
                          !*r->info[0]->app_info->front_end_url ||
                          !*r->info[0]->app_info->password))
            snprintf(me->why, sizeof me->why, "%s: the answer is not the instance's", rid);
        kooisv__reply__free_unpacked(reply, NULL);
    }
    rpc_client_destroy(&c);
    return NULL;
}

/* The largest batch=N the order log shows for a call whose request id starts with prefix. */
static long largest_batch(const char *prefix)
{
    char *path = xasprintf("%s/logs/order.log", suite_get("KOOISV_SUITE_DIR"));
    char *text = config_read_file(path, NULL);
    free(path);
    long best = 0;
    for (char *line = text; line && *line;) {
        char *end = strchr(line, '\n');
        if (end)
            *end = '\0';
        const char *b = strstr(line, " batch=");
        if (strstr(line, prefix) && b && atol(b + 7) > best)
            best = atol(b + 7);
        line = end ? end + 1 : NULL;
    }
    free(text);
    return best;
}

/* Many callers at once, each asking one id: every answer is its own call's (the instance with
 * its appInfo, an unknown id, the other kind left out), and some of them shared a round trip. */
static void test_many_queries_at_once(void **state)
{
    (void)state;
    char *prefix = kc_uid("qrb");
    pthread_t t[QR_THREADS];
    qr_caller_t callers[QR_THREADS];
    for (int i = 0; i < QR_THREADS; i++) {
        callers[i] = (qr_caller_t){.index = i, .prefix = prefix};
        assert_int_equal(pthread_create(&t[i], NULL, qr_caller, &callers[i]), 0);
    }
    for (int i = 0; i < QR_THREADS; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < QR_THREADS; i++)
        if (callers[i].why[0])
            fail_msg("caller %d: %s", i, callers[i].why);
    long batch = largest_batch(prefix);
    if (batch < 2)
        fail_msg("no two of %d concurrent queries shared a round trip (largest batch %ld)",
                 QR_THREADS * QR_CALLS, batch);
    free(prefix);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_change_check_needs_product),
        cmocka_unit_test(test_license_times_checked),
        cmocka_unit_test(test_query_refusals),
        cmocka_unit_test(test_many_queries_at_once),
    };
    return KC_SUITE_MAIN(tests, setup, teardown);
}
