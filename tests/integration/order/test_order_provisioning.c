/* Order service provisioning under trouble, through the gateway's HTTPS: Query Order failing
 * (error codes, HTTP 500, dropped connections, answers slower than the timeout) is retried with
 * backoff; a job that keeps failing shows in the operators' failed list and is redriven; the
 * service killed in the middle of a job resumes it after a restart without doing anything twice;
 * a runner whose job was taken over meanwhile stores nothing; with the service stopped the
 * gateway answers 000005 quickly, and all works once it is back; a new job is taken at once,
 * not at the next poll.
 * Needs the `suite` fixture; uses the emulator's fault control. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "order_support.h"
#include "timeutil.h"
#include "xmalloc.h"

#define PROVISION_WAIT_MS 40000

static void test_retry_on_error_answers(void **state)
{
    (void)state;
    char *id = ot_new_with_fault("\"mode\":\"error\",\"count\":3,\"code\":\"MKT.0999\"");
    ot_assert_provisioned_once(id, PROVISION_WAIT_MS, 4);
    char *err = ot_sql("SELECT last_error FROM orders.jobs WHERE instance_id = $1", id, NULL);
    assert_non_null(err);
    assert_non_null(strstr(err, "MKT.0999"));
    free(err);
    free(id);
}

static void test_retry_on_http500_and_drop(void **state)
{
    (void)state;
    char *id = ot_new_with_fault("\"mode\":\"http500\",\"count\":2");
    ot_assert_provisioned_once(id, PROVISION_WAIT_MS, 1);
    free(id);
    /* Two drops: Query Order goes on a kept-alive connection, and httpc sends a request once
     * more on a new connection when a kept one is closed under it before any answer; a new
     * connection is never resent, so the second drop fails the attempt. */
    id = ot_new_with_fault("\"mode\":\"drop\",\"count\":2");
    ot_assert_provisioned_once(id, PROVISION_WAIT_MS, 2);
    free(id);
}

/* Query Order keeps its connection alive: instances provisioned one after another are asked
 * about on one or two connections (the emulator sees their client ports), not one each. */
static void test_query_order_keeps_its_connection(void **state)
{
    (void)state;
    json_t *ports = json_object();
    for (int i = 0; i < 4; i++) {
        char *order = ot_order_id(), *line = ot_line_of(order), *biz = kc_uid("biz");
        char *id = ot_new_instance(order, line, biz, NULL);
        json_decref(ot_wait_provisioned(id, PROVISION_WAIT_MS));
        json_t *calls = ot_emulator_calls("order/query", order);
        assert_int_equal(json_array_size(calls), 1);
        json_int_t port =
            json_integer_value(json_object_get(json_array_get(calls, 0), "peer_port"));
        assert_true(port > 0);
        char key[16];
        snprintf(key, sizeof key, "%lld", (long long)port);
        json_object_set_new(ports, key, json_true());
        json_decref(calls);
        free(id);
        free(biz);
        free(line);
        free(order);
    }
    if (json_object_size(ports) > 2) {
        char *seen = json_dumps(ports, JSON_COMPACT);
        fail_msg("4 Query Orders came on %zu connections: %s", json_object_size(ports), seen);
    }
    json_decref(ports);
}

static void test_retry_on_slow_answer(void **state)
{
    (void)state;
    /* Slower than the Query Order timeout (5 s): the attempt is abandoned and retried. */
    char *id = ot_new_with_fault("\"mode\":\"slow\",\"count\":1,\"delay_ms\":7000");
    ot_assert_provisioned_once(id, PROVISION_WAIT_MS, 2);
    free(id);
}

static void test_failed_job_redrive(void **state)
{
    (void)state;
    const char *token = suite_get("KOOISV_OPERATOR_TOKEN");
    assert_non_null(token);
    char *id = ot_new_with_fault("\"mode\":\"error\",\"count\":-1");
    ot_wait_job(id, 2, "pending", 20000);
    char *job = ot_sql("SELECT id FROM orders.jobs WHERE instance_id = $1", id, NULL);

    kresp_t r = {0};
    assert_int_equal(kc_admin("GET", "/v1/jobs/failed", token, NULL, &r), 0);
    if (r.status != 200 || !strstr(r.body, id))
        fail_msg("failed jobs list lacks %s: %d %s", id, r.status, r.body);
    kresp_free(&r);

    ot_clear_faults();
    char *path = xasprintf("/v1/jobs/%s/redrive", job);
    assert_int_equal(kc_admin("POST", path, token, NULL, &r), 0);
    if (r.status != 200)
        fail_msg("redrive: %d %s", r.status, r.body);
    kresp_free(&r);
    ot_assert_provisioned_once(id, 15000, 1);

    /* The operator's view: history and job, never a credential. */
    char *ipath = xasprintf("/v1/instances/%s", id);
    assert_int_equal(kc_admin("GET", ipath, token, NULL, &r), 0);
    if (r.status != 200 || !strstr(r.body, "\"history\"") || !strstr(r.body, "provisioned"))
        fail_msg("instance view: %d %s", r.status, r.body);
    assert_null(strstr(r.body, "password_sealed"));
    assert_null(strstr(r.body, "user_name_sealed"));
    kresp_free(&r);
    /* Listing with a state filter and a limit. */
    assert_int_equal(kc_admin("GET", "/v1/instances?state=active&limit=5", token, NULL, &r), 0);
    if (r.status != 200 || !strstr(r.body, "\"instances\"") ||
        strstr(r.body, "\"state\":\"released\""))
        fail_msg("instance list: %d %s", r.status, r.body);
    kresp_free(&r);
    assert_int_equal(kc_admin("GET", "/v1/instances?state=bogus", token, NULL, &r), 0);
    assert_true(r.status >= 400 && r.status < 500);
    kresp_free(&r);
    /* Not for auditors. */
    const char *auditor = suite_get("KOOISV_AUDITOR_TOKEN");
    if (auditor) {
        assert_int_equal(kc_admin("GET", ipath, auditor, NULL, &r), 0);
        assert_int_equal(r.status, 403);
        kresp_free(&r);
    }
    free(ipath);
    free(path);
    free(job);
    free(id);
}

static void test_killed_mid_job_resumes(void **state)
{
    (void)state;
    /* Hold the job inside Query Order, kill the service, start it again. */
    char *id = ot_new_with_fault("\"mode\":\"slow\",\"count\":1,\"delay_ms\":4000");
    ot_wait_job(id, 1, "running", 10000);
    assert_int_equal(kc_suite("kill", "order"), 0);
    assert_int_equal(kc_suite("start-svc", "order"), 0);
    /* Nothing else touches the instance: the restarted replica resumes the job on its own. */
    ot_assert_provisioned_once(id, PROVISION_WAIT_MS, 2);
    free(id);
}

/* Another replica takes the job over while Query Order is slow: the runner that lost the lease
 * stores nothing (no order details, no credentials, no event) and leaves the job to its new
 * owner; once that owner gives it back, it is provisioned once. */
static void test_lease_lost_stores_nothing(void **state)
{
    (void)state;
    char *id = ot_new_with_fault("\"mode\":\"slow\",\"count\":1,\"delay_ms\":2500");
    ot_wait_job(id, 1, "running", 10000);
    char *job = ot_take_over_job(id);

    ot_assert_state(id, "provisioning");
    assert_int_equal(ot_sql_num("SELECT count(*) FROM orders.instances WHERE instance_id = $1"
                                " AND (order_fetched_at IS NOT NULL OR order_info IS NOT NULL)",
                                id, NULL),
                     0);
    assert_int_equal(ot_sql_num("SELECT count(*) FROM orders.instance_history"
                                " WHERE instance_id = $1 AND event = 'provisioned'",
                                id, NULL),
                     0);

    /* The new owner gives the job back. */
    ot_give_back_job(job);
    ot_assert_provisioned_once(id, PROVISION_WAIT_MS, 2);
    free(job);
    free(id);
}

static bool order_stopped; /* by test_service_down, until it starts it again */

/* Teardown of test_service_down: the order service running again whatever failed, then the
 * faults cleared. */
static int service_down_teardown(void **state)
{
    int rc = 0;
    if (order_stopped && kc_suite("start-svc", "order") != 0)
        rc = -1;
    order_stopped = false;
    return ot_clear_faults_teardown(state) != 0 ? -1 : rc;
}

static void test_service_down(void **state)
{
    (void)state;
    ot_wait_service(10000);
    char *before = ot_new_with_fault(NULL); /* acknowledged: must survive the outage */
    order_stopped = true;
    assert_int_equal(kc_suite("stop-svc", "order"), 0);

    char *order = ot_order_id(), *line = ot_line_of(order), *biz = kc_uid("biz");
    int64_t t0 = time_mono_us();
    kresp_t r;
    ot_expect("000005", &r, "{s:s, s:s, s:s, s:s}", "activity", "newInstance", "orderId", order,
              "orderLineId", line, "businessId", biz);
    int64_t took_ms = (time_mono_us() - t0) / 1000;
    kresp_free(&r);
    if (took_ms >= 4000)
        fail_msg("000005 took %lld ms with the order service down", (long long)took_ms);

    assert_int_equal(kc_suite("start-svc", "order"), 0);
    order_stopped = false;
    ot_wait_service(10000);
    char *id = ot_new_instance(order, line, biz, NULL);
    assert_string_equal(id, biz);
    json_decref(ot_wait_provisioned(id, PROVISION_WAIT_MS));
    json_decref(ot_wait_provisioned(before, PROVISION_WAIT_MS));
    free(id);
    free(order);
    free(line);
    free(biz);
    free(before);
}

/* A new job is taken at once, not at the next poll: with the poll 10 minutes long, a new
 * instance is provisioned within seconds, whether a job thread was idle (woken by the replica
 * that took the call) or both were busy (they look again as soon as their steps end). */
static kc_envfile_t slow_poll_env;

static int slow_poll_setup(void **state)
{
    (void)state;
    return ot_order_env_apply(&slow_poll_env, "KOOISV_PROVISION_THREADS=2\n"
                                              "KOOISV_PROVISION_POLL_MS=600000\n");
}

static int slow_poll_teardown(void **state)
{
    ot_clear_faults_teardown(state);
    ot_order_env_restore(&slow_poll_env);
    return 0;
}

static void test_new_job_wakes_a_thread(void **state)
{
    (void)state;
    usleep(500000); /* the job threads' first steps find nothing: both wait */
    for (int i = 0; i < 3; i++) {
        char *id = ot_new_with_fault(NULL);
        json_decref(ot_wait_provisioned(id, 10000));
        free(id);
        usleep(200000);
    }
    /* both threads busy for 3 s with a slow Query Order each; a third instance meanwhile */
    char *slow1 = ot_new_with_fault("\"mode\":\"slow\",\"count\":1,\"delay_ms\":3000");
    char *slow2 = ot_new_with_fault("\"mode\":\"slow\",\"count\":1,\"delay_ms\":3000");
    usleep(300000);
    char *third = ot_new_with_fault(NULL);
    json_decref(ot_wait_provisioned(third, 15000));
    json_decref(ot_wait_provisioned(slow1, 15000));
    json_decref(ot_wait_provisioned(slow2, 15000));
    free(slow1);
    free(slow2);
    free(third);

    /* A job waiting for its retry, redriven by an operator: its NOTIFY makes a job thread walk
     * the due jobs at once, not at the next poll ten minutes away. */
    char *failing = ot_new_with_fault("\"mode\":\"error\",\"count\":-1");
    ot_wait_job(failing, 1, "pending", 20000);
    ot_clear_faults();
    char *job = ot_sql("SELECT id FROM orders.jobs WHERE instance_id = $1", failing, NULL);
    char *path = xasprintf("/v1/jobs/%s/redrive", job);
    kresp_t r = {0};
    assert_int_equal(kc_admin("POST", path, suite_get("KOOISV_OPERATOR_TOKEN"), NULL, &r), 0);
    if (r.status != 200)
        fail_msg("redrive: %d %s", r.status, r.body);
    kresp_free(&r);
    json_decref(ot_wait_provisioned(failing, 15000));
    free(path);
    free(job);
    free(failing);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_retry_on_error_answers, ot_clear_faults_teardown),
        cmocka_unit_test_teardown(test_retry_on_http500_and_drop, ot_clear_faults_teardown),
        cmocka_unit_test(test_query_order_keeps_its_connection),
        cmocka_unit_test_teardown(test_retry_on_slow_answer, ot_clear_faults_teardown),
        cmocka_unit_test_teardown(test_failed_job_redrive, ot_clear_faults_teardown),
        cmocka_unit_test_teardown(test_killed_mid_job_resumes, ot_clear_faults_teardown),
        cmocka_unit_test_teardown(test_lease_lost_stores_nothing, ot_clear_faults_teardown),
        cmocka_unit_test_teardown(test_service_down, service_down_teardown),
        cmocka_unit_test_setup_teardown(test_new_job_wakes_a_thread, slow_poll_setup,
                                        slow_poll_teardown),
    };
    return KC_SUITE_MAIN(tests, NULL, ot_clear_faults_teardown);
}
