/* Real ZeroMQ: a service runtime with several workers in this process, driven by the blocking
 * client; replicas expanded from a host name; an absent service fails fast; a client without
 * an admitted CURVE key, or with an oversized message, gets nothing done. Calls the service takes
 * without a worker (handle_async: order ids "async...") are finished by a thread of the test's
 * own, in any order, and need no free worker. */
#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>
#include <unistd.h>
#include <cmocka.h>

#include "endpoint.h"
#include "kclient.h"
#include "rpc.h"
#include "svc.h"
#include "timeutil.h"
#include "transport.h"
#include "xmalloc.h"
#include "zmqauth.h"

static int port_a, port_b;
static atomic_int handled;          /* handler runs */
static char server_pub[41];         /* the process's key: the service admits it as a client */
static atomic_int strangers_served; /* calls with order id "stranger" that reached a handler */

static void echo_handle(void *state, svc_call_t *call)
{
    const Kooisv__Envelope *req = svc_call_request(call);
    if (req->body_case != KOOISV__ENVELOPE__BODY_NEW_INSTANCE) {
        svc_call_result(call, "000002", "unsupported body");
        return;
    }
    atomic_fetch_add(&handled, 1);
    if (strcmp(req->new_instance->order_id, "stranger") == 0)
        atomic_fetch_add(&strangers_served, 1);
    if (strcmp(req->new_instance->order_id, "slow") == 0)
        usleep(300 * 1000);
    if (strcmp(req->new_instance->order_id, "stuck") == 0)
        usleep(1500 * 1000);
    if (strcmp(req->new_instance->order_id, "fail") == 0) {
        svc_call_result(call, "000005", "failed on purpose");
        return;
    }
    Kooisv__NewInstanceResult *res = svc_call_alloc(call, sizeof *res);
    kooisv__new_instance_result__init(res);
    res->instance_id =
        svc_call_printf(call, "%s@%s", req->new_instance->order_id, (const char *)state);
    Kooisv__Reply *r = svc_call_reply(call);
    r->result_case = KOOISV__REPLY__RESULT_NEW_INSTANCE;
    r->new_instance = res;
    svc_call_result(call, "000000", "ok");
}

static void *echo_init(int index, void *arg)
{
    return arg;
}

/* ---- calls taken without a worker: held by the test's finisher thread until they are due */

#define HELD_MAX 64
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    svc_call_t *call[HELD_MAX];
    int64_t due_us[HELD_MAX]; /* HOLD_LATE / HOLD_TEST: held until released */
    int n;
    bool release_late, release_hold, quit;
} held = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
static atomic_int async_taken; /* calls handle_async took */
#define HOLD_LATE INT64_MAX
#define HOLD_TEST (INT64_MAX - 1)

/* handle_async: "async" is answered at once, "async-slow" after 800 ms, "async-hold" when the
 * test releases it, "async-late" only after the service stopped, "async-bad" at once with
 * 000002 on the broker thread; other ids go to a worker. */
static bool echo_async(void *arg, svc_call_t *call)
{
    const Kooisv__Envelope *req = svc_call_request(call);
    if (req->body_case != KOOISV__ENVELOPE__BODY_NEW_INSTANCE ||
        strncmp(req->new_instance->order_id, "async", 5) != 0)
        return false;
    pthread_mutex_lock(&held.mu);
    bool full = held.n == HELD_MAX;
    pthread_mutex_unlock(&held.mu);
    if (full)
        return false; /* the worker answers 000002: the test sees it */
    atomic_fetch_add(&async_taken, 1);
    const char *order = req->new_instance->order_id;
    if (strcmp(order, "async-stranger") == 0)
        atomic_fetch_add(&strangers_served, 1);
    if (strcmp(order, "async-bad") == 0) {
        svc_call_result(call, "000002", "bad on purpose");
        svc_call_finish(call);
        return true;
    }
    int64_t due = time_mono_us();
    if (strcmp(order, "async-slow") == 0)
        due += 800 * 1000;
    else if (strcmp(order, "async-hold") == 0)
        due = HOLD_TEST;
    else if (strcmp(order, "async-late") == 0)
        due = HOLD_LATE;
    pthread_mutex_lock(&held.mu);
    held.call[held.n] = call;
    held.due_us[held.n++] = due;
    pthread_cond_signal(&held.cv);
    pthread_mutex_unlock(&held.mu);
    return true;
}

/* The finisher: answers each held call when it is due (not on the broker thread). */
static void *finisher_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&held.mu);
    while (!held.quit || held.n > 0) {
        int64_t now = time_mono_us();
        int i = 0;
        while (i < held.n && held.due_us[i] > now &&
               !(held.release_late && held.due_us[i] == HOLD_LATE) &&
               !(held.release_hold && held.due_us[i] == HOLD_TEST))
            i++;
        if (i == held.n) {
            if (held.quit && !held.release_late)
                break;
            pthread_mutex_unlock(&held.mu);
            usleep(5 * 1000);
            pthread_mutex_lock(&held.mu);
            continue;
        }
        svc_call_t *call = held.call[i];
        held.call[i] = held.call[--held.n];
        held.due_us[i] = held.due_us[held.n];
        pthread_mutex_unlock(&held.mu);
        const Kooisv__Envelope *req = svc_call_request(call);
        Kooisv__NewInstanceResult *res = svc_call_alloc(call, sizeof *res);
        kooisv__new_instance_result__init(res);
        res->instance_id = svc_call_printf(call, "%s@async", req->new_instance->order_id);
        Kooisv__Reply *r = svc_call_reply(call);
        r->result_case = KOOISV__REPLY__RESULT_NEW_INSTANCE;
        r->new_instance = res;
        svc_call_result(call, "000000", "ok");
        svc_call_finish(call);
        pthread_mutex_lock(&held.mu);
    }
    pthread_mutex_unlock(&held.mu);
    return NULL;
}

static svc_def_t def;

static void *service_thread(void *arg)
{
    (void)arg;
    svc_run(&def);
    return NULL;
}

static Kooisv__Envelope *make_env(const char *rid, const char *order, Kooisv__NewInstance *body)
{
    static Kooisv__Envelope env;
    kooisv__envelope__init(&env);
    kooisv__new_instance__init(body);
    body->order_id = (char *)order;
    body->order_line_id = "l";
    body->business_id = "b";
    env.request_id = (char *)rid;
    env.body_case = KOOISV__ENVELOPE__BODY_NEW_INSTANCE;
    env.new_instance = body;
    return &env;
}

static void test_round_trip_and_concurrency(void **st)
{
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://localhost:%d", port_a);
    rpc_client_t *c = rpc_client_new(ep, server_pub);
    assert_non_null(c);
    for (int i = 0; i < 50; i++) {
        char rid[32], order[32];
        snprintf(rid, sizeof rid, "rid-%d", i);
        snprintf(order, sizeof order, "o%d", i);
        Kooisv__NewInstance body;
        Kooisv__Reply *reply = NULL;
        assert_int_equal(rpc_call(c, make_env(rid, order, &body), 2000, &reply), 0);
        assert_string_equal(reply->request_id, rid);
        assert_string_equal(reply->result_code, "000000");
        char want[64];
        snprintf(want, sizeof want, "o%d@echo", i);
        assert_string_equal(reply->new_instance->instance_id, want);
        kooisv__reply__free_unpacked(reply, NULL);
    }
    rpc_client_destroy(&c);
    assert_null(c);
}

/* Send env to the server on port_a on a fresh client; fail unless it answers with code. */
static void call_expect_code(const Kooisv__Envelope *env, const char *code)
{
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", port_a);
    rpc_client_t *c = rpc_client_new(ep, server_pub);
    Kooisv__Reply *reply = NULL;
    assert_int_equal(rpc_call(c, env, 2000, &reply), 0);
    assert_string_equal(reply->result_code, code);
    kooisv__reply__free_unpacked(reply, NULL);
    rpc_client_destroy(&c);
}

static void test_ping_answered_by_runtime(void **st)
{
    Kooisv__Envelope env;
    Kooisv__Ping ping;
    kooisv__envelope__init(&env);
    kooisv__ping__init(&ping);
    env.request_id = "ping-1";
    env.body_case = KOOISV__ENVELOPE__BODY_PING;
    env.ping = &ping;
    call_expect_code(&env, "000000");
}

static void test_unsupported_body_is_an_error(void **st)
{
    Kooisv__Envelope env;
    kooisv__envelope__init(&env);
    env.request_id = "empty-1";
    call_expect_code(&env, "000002");
}

static void test_absent_service_fails_within_timeout(void **st)
{
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", port_b);
    rpc_client_t *c = rpc_client_new(ep, server_pub);
    assert_non_null(c);
    Kooisv__NewInstance body;
    Kooisv__Reply *reply = NULL;
    int64_t t0 = time_mono_us();
    assert_int_equal(rpc_call(c, make_env("r-absent", "x", &body), 300, &reply), -1);
    assert_null(reply);
    int64_t took_ms = (time_mono_us() - t0) / 1000;
    assert_true(took_ms < 1000);
    rpc_client_destroy(&c);
}

static void test_copy_of_answered_request(void **st)
{
    /* A copy of a request this replica answered with success (a resend, a retry) gets the same
     * answer without the handler running again; a failed one runs again. */
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", port_a);
    rpc_client_t *c = rpc_client_new(ep, server_pub);
    Kooisv__NewInstance body;
    Kooisv__Reply *first = NULL, *again = NULL;
    int before = atomic_load(&handled);
    assert_int_equal(rpc_call(c, make_env("dup-1", "o-dup", &body), 2000, &first), 0);
    assert_int_equal(rpc_call(c, make_env("dup-1", "o-dup", &body), 2000, &again), 0);
    assert_int_equal(atomic_load(&handled) - before, 1);
    assert_string_equal(again->result_code, "000000");
    assert_string_equal(again->new_instance->instance_id, first->new_instance->instance_id);
    kooisv__reply__free_unpacked(first, NULL);
    kooisv__reply__free_unpacked(again, NULL);
    before = atomic_load(&handled);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(rpc_call(c, make_env("dup-fail", "fail", &body), 2000, &first), 0);
        assert_string_equal(first->result_code, "000005");
        kooisv__reply__free_unpacked(first, NULL);
    }
    assert_int_equal(atomic_load(&handled) - before, 2);
    rpc_client_destroy(&c);
}

typedef struct {
    const char *rid, *order;
    int64_t ms;
    int rc;
    char code[8];      /* the answer's result code */
    char instance[64]; /* and instance id, when it has one */
    int wait_ms;       /* the call's timeout (0: 5000; the client resends at half of it) */
} timed_call_t;

static void *timed_call(void *arg)
{
    timed_call_t *t = arg;
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", port_a);
    rpc_client_t *c = rpc_client_new(ep, server_pub);
    /* Not make_env: its envelope is shared, and these calls run on several threads. */
    Kooisv__NewInstance body = KOOISV__NEW_INSTANCE__INIT;
    body.order_id = (char *)t->order;
    body.order_line_id = "l";
    body.business_id = "b";
    Kooisv__Envelope env = KOOISV__ENVELOPE__INIT;
    env.request_id = (char *)t->rid;
    env.body_case = KOOISV__ENVELOPE__BODY_NEW_INSTANCE;
    env.new_instance = &body;
    Kooisv__Reply *reply = NULL;
    int64_t t0 = time_mono_us();
    t->rc = rpc_call(c, &env, t->wait_ms ? t->wait_ms : 5000, &reply);
    t->ms = (time_mono_us() - t0) / 1000;
    if (reply) {
        snprintf(t->code, sizeof t->code, "%s", reply->result_code);
        if (reply->result_case == KOOISV__REPLY__RESULT_NEW_INSTANCE)
            snprintf(t->instance, sizeof t->instance, "%s", reply->new_instance->instance_id);
        kooisv__reply__free_unpacked(reply, NULL);
    }
    rpc_client_destroy(&c);
    return NULL;
}

/* Start timed_call of order on a thread of its own, as request "<prefix>-<i>" (the id is kept in
 * rid, rid_len bytes, which must outlive the call). */
static void start_call(timed_call_t *c, pthread_t *t, char *rid, size_t rid_len, const char *prefix,
                       int i, const char *order, int wait_ms)
{
    snprintf(rid, rid_len, "%s-%d", prefix, i);
    *c = (timed_call_t){rid, order, 0, -1, "", "", wait_ms};
    pthread_create(t, NULL, timed_call, c);
}

static void test_stuck_worker_holds_up_no_other(void **st)
{
    /* Three workers, two of them stuck: every quick call still goes to the free one. */
    timed_call_t stuck[2] = {{"stuck-1", "stuck", 0, -1, "", "", 0},
                             {"stuck-2", "stuck", 0, -1, "", "", 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, timed_call, &stuck[i]);
    usleep(100 * 1000);
    for (int i = 0; i < 6; i++) {
        char rid[32];
        snprintf(rid, sizeof rid, "quick-%d", i);
        timed_call_t quick = {rid, "quick", 0, -1, "", "", 0};
        timed_call(&quick);
        assert_int_equal(quick.rc, 0);
        assert_true(quick.ms < 500);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(stuck[i].rc, 0);
    }
}

static void test_async_calls_need_no_worker(void **st)
{
    /* All three workers stuck: calls taken without a worker are still served, each when the
     * service finishes it (a quick one while others taken earlier are held), on no worker. */
    int worker_calls = atomic_load(&handled);
    timed_call_t stuck[3];
    pthread_t ts[3];
    char srid[3][32];
    for (int i = 0; i < 3; i++)
        start_call(&stuck[i], &ts[i], srid[i], sizeof srid[i], "busy", i, "stuck", 0);
    for (int i = 0; i < 500 && atomic_load(&handled) - worker_calls < 3; i++)
        usleep(10 * 1000);
    assert_int_equal(atomic_load(&handled) - worker_calls, 3);
    int taken = atomic_load(&async_taken);
    enum { NSLOW = 20 };
    timed_call_t slow[NSLOW];
    pthread_t tw[NSLOW];
    char wrid[NSLOW][32];
    for (int i = 0; i < NSLOW; i++)
        start_call(&slow[i], &tw[i], wrid[i], sizeof wrid[i], "ahold", i, "async-hold", 60000);
    for (int i = 0; i < 500 && atomic_load(&async_taken) - taken < NSLOW; i++)
        usleep(10 * 1000);
    assert_int_equal(atomic_load(&async_taken) - taken, NSLOW);
    timed_call_t quick = {"aquick", "async", 0, -1, "", "", 0};
    timed_call(&quick);
    assert_int_equal(quick.rc, 0);
    assert_string_equal(quick.code, "000000");
    assert_string_equal(quick.instance, "async@async");
    timed_call_t bad = {"abad", "async-bad", 0, -1, "", "", 0};
    timed_call(&bad);
    assert_int_equal(bad.rc, 0);
    assert_string_equal(bad.code, "000002");
    for (int i = 0; i < NSLOW; i++)
        assert_int_equal(slow[i].rc, -1); /* still held: not answered yet */
    pthread_mutex_lock(&held.mu);
    held.release_hold = true;
    pthread_mutex_unlock(&held.mu);
    for (int i = 0; i < NSLOW; i++) {
        pthread_join(tw[i], NULL);
        assert_int_equal(slow[i].rc, 0);
        assert_string_equal(slow[i].instance, "async-hold@async");
    }
    assert_int_equal(atomic_load(&async_taken) - taken, NSLOW + 2);
    /* ...and no worker ran any of them: the three stuck calls are the only worker calls. */
    assert_int_equal(atomic_load(&handled) - worker_calls, 3);
    for (int i = 0; i < 3; i++) {
        pthread_join(ts[i], NULL);
        assert_int_equal(stuck[i].rc, 0);
    }
}

static void test_async_copy_answered_once(void **st)
{
    /* A copy of an answered call taken without a worker gets the first answer, not a second
     * run; a failed one runs again. */
    int taken = atomic_load(&async_taken);
    for (int i = 0; i < 2; i++) {
        timed_call_t t = {"adup-1", "async", 0, -1, "", "", 0};
        timed_call(&t);
        assert_int_equal(t.rc, 0);
        assert_string_equal(t.instance, "async@async");
    }
    assert_int_equal(atomic_load(&async_taken) - taken, 1);
    for (int i = 0; i < 2; i++) {
        timed_call_t t = {"adup-bad", "async-bad", 0, -1, "", "", 0};
        timed_call(&t);
        assert_string_equal(t.code, "000002");
    }
    assert_int_equal(atomic_load(&async_taken) - taken, 3);
}

typedef enum { RAW_PLAIN, RAW_STRANGER, RAW_ADMITTED } raw_key_t;

/* Send payload on a raw DEALER with the given keys; true when any reply came within wait_ms
 * (short where no answer is expected, long where one is: a loaded machine is slow). */
static bool raw_call_answered(raw_key_t key, const void *payload, size_t len, int wait_ms)
{
    void *s = zmq_socket(transport_context(), ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    if (key == RAW_STRANGER) {
        char pub[41], sec[41];
        assert_int_equal(zmq_curve_keypair(pub, sec), 0);
        zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, server_pub, 40);
        zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, pub, 40);
        zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, sec, 40);
    } else if (key == RAW_ADMITTED) {
        assert_int_equal(zmqauth_client(s, server_pub), 0);
    }
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", port_a);
    assert_int_equal(zmq_connect(s, ep), 0);
    zmq_send(s, "", 0, ZMQ_SNDMORE);
    zmq_send(s, payload, len, 0);
    zmq_pollitem_t item = {.socket = s, .events = ZMQ_POLLIN};
    bool answered = zmq_poll(&item, 1, wait_ms) > 0;
    zmq_close(s);
    return answered;
}

static void test_unadmitted_clients_get_nothing(void **st)
{
    Kooisv__NewInstance body;
    uint8_t *buf = NULL;
    size_t len = transport_pack_envelope(make_env("r-stranger", "stranger", &body), &buf);
    assert_false(raw_call_answered(RAW_PLAIN, buf, len, 700));
    assert_false(raw_call_answered(RAW_STRANGER, buf, len, 700));
    /* A call the service would take without a worker is refused the same way. */
    uint8_t *abuf = NULL;
    size_t alen = transport_pack_envelope(make_env("r-astranger", "async-stranger", &body), &abuf);
    assert_false(raw_call_answered(RAW_PLAIN, abuf, alen, 700));
    assert_false(raw_call_answered(RAW_STRANGER, abuf, alen, 700));
    free(abuf);
    usleep(100 * 1000);
    assert_int_equal(atomic_load(&strangers_served), 0);
    /* The same message with the admitted key is served: the refusals above were the keys. */
    assert_true(raw_call_answered(RAW_ADMITTED, buf, len, 5000));
    assert_int_equal(atomic_load(&strangers_served), 1);
    free(buf);
}

static void test_oversized_message_dropped(void **st)
{
    /* Past ZMQ_MAXMSGSIZE the connection is dropped before the message is taken in whole. */
    size_t len = (size_t)ZMQAUTH_MAX_MSG_BYTES + 1;
    uint8_t *big = xcalloc(1, len);
    assert_false(raw_call_answered(RAW_ADMITTED, big, len, 700));
    free(big);
    /* ...and the service still serves everyone else. */
    Kooisv__NewInstance body;
    uint8_t *buf = NULL;
    size_t n = transport_pack_envelope(make_env("r-after-big", "after-big", &body), &buf);
    assert_true(raw_call_answered(RAW_ADMITTED, buf, n, 5000));
    free(buf);
}

static void test_resolve(void **st)
{
    char **eps = NULL;
    int n = endpoint_resolve("tcp://localhost:7101, tcp://127.0.0.1:7102", &eps);
    assert_true(n >= 2);
    int found = 0;
    for (int i = 0; i < n; i++)
        found += strcmp(eps[i], "tcp://127.0.0.1:7102") == 0;
    assert_int_equal(found, 1);
    endpoint_list_free(eps, n);
    assert_int_equal(endpoint_resolve("tcp://no-port", &eps), -1);
    assert_int_equal(endpoint_resolve("tcp://host.invalid:1", &eps), -1);
    assert_null(rpc_client_new("tcp://:", server_pub));
    assert_null(rpc_client_new("tcp://127.0.0.1:1", "not a key"));
}

/* Graceful stop (last: it ends the service). Three workers, six slow calls: three are being
 * served and three wait at the broker when the stop comes; all six are answered, then svc_run
 * returns. */
static pthread_t service;
static bool service_joined;

static void test_stop_answers_what_it_holds(void **st)
{
    /* Also three calls taken without a worker, finished during the drain, are answered; one
     * the service finishes only after it stopped is dropped (the drain gives up on it after
     * SVC_DRAIN_MS) without harm. */
    int before = atomic_load(&handled), taken = atomic_load(&async_taken);
    enum { N = 10 };
    timed_call_t slow[N];
    pthread_t t[N];
    char rids[N][32];
    for (int i = 0; i < N; i++)
        start_call(&slow[i], &t[i], rids[i], sizeof rids[i], "drain", i,
                   i < 6   ? "slow"
                   : i < 9 ? "async-slow"
                           : "async-late",
                   0);
    /* Stop once every worker is busy and the calls without one are taken. */
    for (int i = 0; i < 200 && (atomic_load(&handled) - before < 3 ||
                                atomic_load(&async_taken) - taken < N - 6);
         i++)
        usleep(10 * 1000);
    usleep(50 * 1000);
    svc_stop();
    for (int i = 0; i < N - 1; i++) {
        pthread_join(t[i], NULL);
        if (slow[i].rc != 0)
            fail_msg("call %d was not answered after the stop", i);
        assert_string_equal(slow[i].code, "000000");
    }
    assert_int_equal(atomic_load(&handled) - before, 6);
    pthread_join(service, NULL);
    service_joined = true;
    pthread_mutex_lock(&held.mu);
    held.release_late = true;
    pthread_mutex_unlock(&held.mu);
    pthread_join(t[N - 1], NULL);
    assert_int_not_equal(slow[N - 1].rc, 0); /* never answered */
}

int main(void)
{
    char secret[41], why[160];
    if (zmq_curve_keypair(server_pub, secret) != 0 ||
        zmqauth_setup(secret, server_pub, NULL, why, sizeof why) != 0) {
        fprintf(stderr, "test_transport: CURVE set-up failed\n");
        return 1;
    }
    /* Ports the kernel says are free: one taken from the pid could be one a suite listens on. */
    port_a = kc_free_port();
    do
        port_b = kc_free_port();
    while (port_a >= 0 && port_b == port_a);
    if (port_a < 0 || port_b < 0) {
        fprintf(stderr, "test_transport: no free port\n");
        return 1;
    }
    static char bind[64];
    snprintf(bind, sizeof bind, "tcp://127.0.0.1:%d", port_a);
    def = (svc_def_t){.name = "echo",
                      .bind = bind,
                      .workers = 3,
                      .worker_init = echo_init,
                      .handle = echo_handle,
                      .arg = "echo",
                      .handle_async = echo_async};
    pthread_t finisher;
    pthread_create(&finisher, NULL, finisher_main, NULL);
    pthread_create(&service, NULL, service_thread, NULL);
    usleep(200 * 1000);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_and_concurrency),
        cmocka_unit_test(test_ping_answered_by_runtime),
        cmocka_unit_test(test_unsupported_body_is_an_error),
        cmocka_unit_test(test_absent_service_fails_within_timeout),
        cmocka_unit_test(test_copy_of_answered_request),
        cmocka_unit_test(test_stuck_worker_holds_up_no_other),
        cmocka_unit_test(test_async_calls_need_no_worker),
        cmocka_unit_test(test_async_copy_answered_once),
        cmocka_unit_test(test_unadmitted_clients_get_nothing),
        cmocka_unit_test(test_oversized_message_dropped),
        cmocka_unit_test(test_resolve),
        cmocka_unit_test(test_stop_answers_what_it_holds),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    svc_stop();
    if (!service_joined)
        pthread_join(service, NULL);
    pthread_mutex_lock(&held.mu);
    held.quit = held.release_late = true;
    pthread_mutex_unlock(&held.mu);
    pthread_join(finisher, NULL);
    return rc;
}
