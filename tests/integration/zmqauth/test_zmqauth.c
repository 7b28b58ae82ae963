/* The ZeroMQ plane admits only configured CURVE clients (ARCHITECTURE.md). An attacker who can
 * reach the services' ports, speaking raw libzmq: without CURVE, or with CURVE and a key pair of
 * its own, it sends forged envelopes (an unsigned newInstance, an admin instance.list, an audit
 * intent claiming an admin operator, a foreign source and a 2023 timestamp) and gets no reply,
 * and PostgreSQL (as superuser) holds nothing of them. The gateway's key (from the suite's
 * secrets) still gets answers, and its intent is stored: the checks can see what they look for.
 * Each key has only its rights: billing's key (a system client of order, and of no other
 * service) may call events.pending / events.ack and nothing else: a marketplace body or an
 * operator action with it is refused (000001, answered) and changes nothing, whatever caller
 * kind it claims; the gateway's key may not call the events actions. A service without its keys
 * (or with malformed ones, or a key in both lists) does not start. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <zmq.h>

#include "config.h"
#include "envelope.pb-c.h"
#include "kclient.h"
#include "ktest_shell.h"
#include "timeutil.h"
#include "transport.h"
#include "xmalloc.h"

#define QUIET_MS 1500 /* an admitted client gets its answer well within this */

typedef enum { AS_PLAIN, AS_STRANGER, AS_GATEWAY, AS_BILLING } caller_t;

static const char *const services[] = {"ORDER", "TENANT", "APP", "AUDIT"};

static char *suite_value(const char *fmt, const char *svc)
{
    char name[64];
    snprintf(name, sizeof name, fmt, svc);
    const char *v = suite_get(name);
    return v && *v ? xstrdup(v) : NULL;
}

/* A secret key the suite gives a process, from the file named by suite variable var: the
 * gateway's (KOOISV_CURVE_SECRET_KEY_FILE) or billing's (KOOISV_BILLING_CURVE_SECRET_KEY_FILE). */
static char *suite_secret(const char *var)
{
    const char *path = suite_get(var);
    if (!path || !*path)
        return NULL;
    char *key = config_read_file(path, NULL);
    if (key)
        key[strcspn(key, "\r\n")] = '\0';
    return key;
}

/* A DEALER set up as `who` for service svc ("ORDER"...); NULL fails the test. */
static void *dealer_for(const char *svc, caller_t who)
{
    void *s = zmq_socket(transport_context(), ZMQ_DEALER);
    assert_non_null(s);
    int linger = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    if (who != AS_PLAIN) {
        char *server = suite_value("KOOISV_%s_SERVER_KEY", svc);
        assert_non_null(server); /* the suite names each service's public key */
        char pub[41], sec[41];
        if (who == AS_STRANGER) {
            assert_int_equal(zmq_curve_keypair(pub, sec), 0);
        } else {
            char *g = suite_secret(who == AS_GATEWAY ? "KOOISV_CURVE_SECRET_KEY_FILE"
                                                     : "KOOISV_BILLING_CURVE_SECRET_KEY_FILE");
            assert_non_null(g);
            assert_int_equal(strlen(g), 40);
            memcpy(sec, g, 41);
            free(g);
            assert_int_equal(zmq_curve_public(pub, sec), 0);
        }
        assert_int_equal(zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, server, 40), 0);
        assert_int_equal(zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, pub, 40), 0);
        assert_int_equal(zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, sec, 40), 0);
        free(server);
    }
    char *ep = suite_value("KOOISV_%s_ENDPOINTS", svc);
    assert_non_null(ep);
    assert_int_equal(zmq_connect(s, ep), 0);
    free(ep);
    return s;
}

/* Send env as `who` and wait up to QUIET_MS for its reply; NULL when none came. */
static Kooisv__Reply *try_call(const char *svc, caller_t who, const Kooisv__Envelope *env)
{
    void *s = dealer_for(svc, who);
    uint8_t *buf = NULL;
    size_t len = transport_pack_envelope(env, &buf);
    /* Without ZMQ_IMMEDIATE the message waits for the connection (if it ever comes). */
    assert_int_equal(zmq_send(s, "", 0, ZMQ_SNDMORE), 0);
    assert_true(zmq_send(s, buf, len, 0) >= 0);
    free(buf);
    Kooisv__Reply *reply = NULL;
    int64_t until = time_mono_us() + QUIET_MS * 1000LL;
    while (!reply && time_mono_us() < until) {
        zmq_pollitem_t item = {.socket = s, .events = ZMQ_POLLIN};
        int left = (int)((until - time_mono_us()) / 1000);
        if (zmq_poll(&item, 1, left > 0 ? left : 1) <= 0)
            continue;
        zmq_msg_t part;
        zmq_msg_init(&part);
        while (zmq_msg_recv(&part, s, 0) >= 0 && zmq_msg_more(&part)) {
            zmq_msg_close(&part);
            zmq_msg_init(&part);
        }
        reply = kooisv__reply__unpack(NULL, zmq_msg_size(&part), zmq_msg_data(&part));
        zmq_msg_close(&part);
    }
    zmq_close(s);
    return reply;
}

/* The forged header: an admin operator, calling from elsewhere, back in 2023. */
static void forge(Kooisv__Envelope *env, Kooisv__Caller *caller, const char *rid)
{
    env->request_id = (char *)rid;
    env->trace_id = (char *)rid;
    env->received_ms = 1688169600000LL; /* 2023-07-01 */
    env->source_addr = "198.51.100.66";
    caller->kind = "operator";
    caller->id = "admin";
    env->caller = caller;
}

/* The honest header of a call made now from 127.0.0.1: request (and trace) id rid, caller
 * kind (id "test-zmqauth"). */
static void header_of(Kooisv__Envelope *env, Kooisv__Caller *caller, const char *rid,
                      const char *kind)
{
    env->request_id = env->trace_id = (char *)rid;
    env->received_ms = time_now_ms();
    env->source_addr = "127.0.0.1";
    caller->kind = (char *)kind;
    caller->id = "test-zmqauth";
    env->caller = caller;
}

/* Make env a newInstance of order (line, business id) with body ni. */
static void new_instance_of(Kooisv__Envelope *env, Kooisv__NewInstance *ni, const char *order,
                            const char *line, const char *business_id)
{
    ni->order_id = (char *)order;
    ni->order_line_id = (char *)line;
    ni->business_id = (char *)business_id;
    env->body_case = KOOISV__ENVELOPE__BODY_NEW_INSTANCE;
    env->new_instance = ni;
}

/* Make env a ping with request id rid and body ping. */
static void ping_of(Kooisv__Envelope *env, Kooisv__Ping *ping, const char *rid)
{
    env->request_id = (char *)rid;
    env->body_case = KOOISV__ENVELOPE__BODY_PING;
    env->ping = ping;
}

/* An operator action's envelope with up to two arguments (it points into itself: set it up
 * in place with admin_call_init). */
typedef struct {
    Kooisv__Envelope env;
    Kooisv__Caller caller;
    Kooisv__AdminRequest adm;
    Kooisv__AdminRequest__ArgsEntry arg[2];
    Kooisv__AdminRequest__ArgsEntry *args[2];
} admin_call_t;

/* Set up c in place, with no arguments. */
static void admin_call_init(admin_call_t *c)
{
    *c = (admin_call_t){
        KOOISV__ENVELOPE__INIT,
        KOOISV__CALLER__INIT,
        KOOISV__ADMIN_REQUEST__INIT,
        {KOOISV__ADMIN_REQUEST__ARGS_ENTRY__INIT, KOOISV__ADMIN_REQUEST__ARGS_ENTRY__INIT},
        {&c->arg[0], &c->arg[1]}};
    c->adm.args = c->args;
    c->env.body_case = KOOISV__ENVELOPE__BODY_ADMIN;
    c->env.admin = &c->adm;
}

/* Set argument i (0 or 1) of c to key=value; c sends arguments 0 to i from now on. */
static void admin_call_arg(admin_call_t *c, size_t i, const char *key, const char *value)
{
    c->arg[i].key = (char *)key;
    c->arg[i].value = (char *)value;
    c->adm.n_args = i + 1;
}

/* Make c call rid, by a caller of the given kind, asking for action. */
static void admin_call_as(admin_call_t *c, const char *rid, const char *kind, const char *action)
{
    header_of(&c->env, &c->caller, rid, kind);
    c->adm.action = (char *)action;
}

static void assert_no_answer(const char *svc, const Kooisv__Envelope *env)
{
    for (caller_t who = AS_PLAIN; who <= AS_STRANGER; who++) {
        Kooisv__Reply *r = try_call(svc, who, env);
        if (!r)
            continue;
        char got[160];
        snprintf(got, sizeof got, "%s %s", r->result_code, r->result_msg);
        kooisv__reply__free_unpacked(r, NULL);
        fail_msg("%s answered a %s caller: %s", svc, who == AS_PLAIN ? "keyless" : "wrong-key",
                 got);
    }
}

/* Fail unless svc answers env, sent with the gateway's key, with 000000. */
static void assert_gateway_answered(const char *svc, const Kooisv__Envelope *env)
{
    Kooisv__Reply *r = try_call(svc, AS_GATEWAY, env);
    if (!r)
        fail_msg("%s does not answer the gateway's key", svc);
    assert_string_equal(r->result_code, "000000");
    kooisv__reply__free_unpacked(r, NULL);
}

static long rows(const char *sql, const char *param)
{
    const char *p[1] = {param};
    return kc_sql_count(sql, 1, p);
}

static void test_forged_new_instance_does_nothing(void **st)
{
    (void)st;
    char *rid = kc_uid("zapni-"), *order = kc_uid("ZAPORD");
    Kooisv__Envelope env = KOOISV__ENVELOPE__INIT;
    Kooisv__Caller caller = KOOISV__CALLER__INIT;
    Kooisv__NewInstance ni = KOOISV__NEW_INSTANCE__INIT;
    forge(&env, &caller, rid);
    caller.kind = "basic";
    new_instance_of(&env, &ni, order, "zap-line", rid);
    assert_no_answer("ORDER", &env);
    usleep(300 * 1000);
    assert_int_equal(rows("SELECT 1 FROM orders.instances WHERE order_id = $1", order), 0);
    free(rid);
    free(order);
}

static void test_forged_admin_call_gets_nothing(void **st)
{
    (void)st;
    char *rid = kc_uid("zapadm-");
    admin_call_t c;
    admin_call_init(&c);
    forge(&c.env, &c.caller, rid);
    c.adm.action = "instance.list";
    assert_no_answer("ORDER", &c.env);
    /* ...while the gateway's key gets the list: the service was there to answer. */
    c.env.received_ms = time_now_ms();
    assert_gateway_answered("ORDER", &c.env);
    free(rid);
}

static void intent_of(Kooisv__Envelope *env, Kooisv__AuditIntent *in)
{
    in->event_type = "admin.instance.list";
    in->nonce = "";
    in->reject_code = "";
    in->reject_reason = "";
    env->body_case = KOOISV__ENVELOPE__BODY_AUDIT_INTENT;
    env->audit_intent = in;
}

static void test_forged_audit_intent_not_stored(void **st)
{
    (void)st;
    char *rid = kc_uid("zapaud-");
    Kooisv__Envelope env = KOOISV__ENVELOPE__INIT;
    Kooisv__Caller caller = KOOISV__CALLER__INIT;
    Kooisv__AuditIntent in = KOOISV__AUDIT_INTENT__INIT;
    forge(&env, &caller, rid);
    intent_of(&env, &in);
    assert_no_answer("AUDIT", &env);
    usleep(300 * 1000);
    assert_int_equal(rows("SELECT 1 FROM audit.intents WHERE request_id = $1", rid), 0);
    free(rid);
}

static void test_gateway_key_is_admitted(void **st)
{
    (void)st;
    char *rid = kc_uid("zapok-");
    Kooisv__Envelope env = KOOISV__ENVELOPE__INIT;
    Kooisv__Caller caller = KOOISV__CALLER__INIT;
    Kooisv__AuditIntent in = KOOISV__AUDIT_INTENT__INIT;
    header_of(&env, &caller, rid, "system");
    env.test_flag = true;
    intent_of(&env, &in);
    in.event_type = "test.zmqauth";
    assert_gateway_answered("AUDIT", &env);
    assert_int_equal(rows("SELECT 1 FROM audit.intents WHERE request_id = $1", rid), 1);
    free(rid);
}

static void test_every_service_refuses_strangers(void **st)
{
    (void)st;
    Kooisv__Envelope env = KOOISV__ENVELOPE__INIT;
    Kooisv__Ping ping = KOOISV__PING__INIT;
    ping_of(&env, &ping, "zap-ping");
    for (size_t i = 0; i < sizeof services / sizeof *services; i++) {
        assert_no_answer(services[i], &env);
        assert_gateway_answered(services[i], &env);
    }
}

/* ---- per-key rights: billing's key is a system client of order, nothing more ---- */

/* Send env to svc as who; fail unless it is answered with code (a refusal is answered, so the
 * caller does not wait for its deadline). Returns the reply's message (caller frees). */
static char *assert_answered(const char *svc, caller_t who, const Kooisv__Envelope *env,
                             const char *code)
{
    Kooisv__Reply *r = try_call(svc, who, env);
    if (!r)
        fail_msg("%s did not answer %s's key", svc, who == AS_GATEWAY ? "the gateway" : "billing");
    if (strcmp(r->result_code, code) != 0)
        fail_msg("%s answered %s \"%s\", want %s", svc, r->result_code, r->result_msg, code);
    char *msg = xstrdup(r->result_msg);
    kooisv__reply__free_unpacked(r, NULL);
    return msg;
}

/* A newInstance of order (line "<order>-000001") under request id rid, as the gateway sends it
 * after checking the signature, sent with who's key; fail unless answered with code. */
static void new_instance_as(caller_t who, const char *rid, const char *order, const char *code)
{
    char *line = xasprintf("%s-000001", order);
    Kooisv__Envelope env = KOOISV__ENVELOPE__INIT;
    Kooisv__Caller caller = KOOISV__CALLER__INIT;
    Kooisv__NewInstance ni = KOOISV__NEW_INSTANCE__INIT;
    header_of(&env, &caller, rid, "basic");
    new_instance_of(&env, &ni, order, line, rid);
    free(assert_answered("ORDER", who, &env, code));
    free(line);
}

/* A marketplace body as the gateway sends it after checking the signature, with billing's key:
 * refused (000001), and no instance is made. The emulator answers "CS..." orders, so the same
 * envelope with the gateway's key makes one: the check can see what it looks for. */
static void test_billing_key_sends_no_marketplace_body(void **st)
{
    (void)st;
    char *rid = kc_uid("zapbill-"), *order = kc_uid("CS");
    new_instance_as(AS_BILLING, rid, order, "000001");
    usleep(300 * 1000);
    assert_int_equal(rows("SELECT 1 FROM orders.instances WHERE order_id = $1", order), 0);
    /* The same envelope (a new request id) with the gateway's key is served. */
    char *rid2 = kc_uid("zapgw-");
    new_instance_as(AS_GATEWAY, rid2, order, "000000");
    assert_int_equal(rows("SELECT 1 FROM orders.instances WHERE order_id = $1", order), 1);
    free(rid2);
    free(rid);
    free(order);
}

/* First value sql answers, waited for up to 15 s (events of the instance made above are written
 * and delivered in the background); NULL fails the test. Caller frees. */
static char *sql_wait_value(const char *sql)
{
    char *v = NULL;
    for (int i = 0; i < 150 && !(v = kc_sql_value(sql, 0, NULL)); i++)
        usleep(100 * 1000);
    if (!v)
        fail_msg("no row for: %s", sql);
    return v;
}

/* Lines of the suite's log of proc holding both needles. */
static int log_lines(const char *proc, const char *needle, const char *needle2)
{
    const char *dir = suite_get("KOOISV_SUITE_DIR");
    assert_non_null(dir);
    char *path = xasprintf("%s/logs/%s.log", dir, proc);
    FILE *f = fopen(path, "r");
    free(path);
    assert_non_null(f);
    int n = 0;
    char line[2048];
    while (fgets(line, sizeof line, f))
        n += strstr(line, needle) && strstr(line, needle2);
    fclose(f);
    return n;
}

/* Operator actions with billing's key, whatever caller kind it claims: refused (000001). The
 * redrive of a failed outbox event would change its row: it does not, while the same call with
 * the gateway's key does. */
static void test_billing_key_calls_no_operator_action(void **st)
{
    (void)st;
    static const char *const kinds[] = {"operator", "system"};
    static const char *const actions[] = {"outbox.redrive", "instance.list", "metrics",
                                          "license.pubkey"};
    char *id = sql_wait_value("SELECT id::text FROM orders.outbox"
                              " WHERE status IN ('delivered', 'skipped') ORDER BY id LIMIT 1");
    const char *p[] = {id};
    assert_int_equal(
        kc_sql_exec("UPDATE orders.outbox SET status = 'failed' WHERE id = $1::bigint", 1, p), 1);
    admin_call_t c;
    admin_call_init(&c);
    admin_call_arg(&c, 0, "id", id);
    usleep(1100 * 1000); /* a second after the last refusal: the next one is logged */
    for (size_t k = 0; k < 2; k++)
        for (size_t a = 0; a < sizeof actions / sizeof *actions; a++) {
            char *rid = kc_uid("zapbadm-");
            admin_call_as(&c, rid, kinds[k], actions[a]);
            free(assert_answered("ORDER", AS_BILLING, &c.env, "000001"));
            free(rid);
        }
    /* Logged, at most a line a second: not one per refusal. */
    int logged = log_lines("order", "rid=zapbadm-", "from a system client");
    if (logged < 1 || logged >= 8)
        fail_msg("%d log lines for 8 refusals, want 1 a second", logged);
    const char *failed = "SELECT 1 FROM orders.outbox WHERE id = $1::bigint AND status = 'failed'";
    assert_int_equal(kc_sql_count(failed, 1, p), 1);
    char *rid = kc_uid("zapgadm-");
    admin_call_as(&c, rid, "operator", "outbox.redrive");
    free(assert_answered("ORDER", AS_GATEWAY, &c.env, "000000"));
    assert_int_equal(kc_sql_count(failed, 1, p), 0);
    free(rid);
    free(id);
}

/* As a system client with who's key: events.pending for consumer (its second argument
 * key=value), then events.ack of ids; fail unless order answers both with code and stores no
 * acknowledgement of consumer. */
static void pull_events(caller_t who, const char *code, const char *consumer, const char *key,
                        const char *value, const char *ids)
{
    char *rid = kc_uid(who == AS_GATEWAY ? "zapgev-" : "zapev-");
    char *rid2 = kc_uid(who == AS_GATEWAY ? "zapgack-" : "zapack-");
    admin_call_t c;
    admin_call_init(&c);
    admin_call_arg(&c, 0, "consumer", consumer);
    admin_call_arg(&c, 1, key, value);
    admin_call_as(&c, rid, "system", "events.pending");
    free(assert_answered("ORDER", who, &c.env, code));
    admin_call_arg(&c, 1, "ids", ids);
    admin_call_as(&c, rid2, "system", "events.ack");
    free(assert_answered("ORDER", who, &c.env, code));
    const char *p[] = {consumer};
    assert_int_equal(kc_sql_count("SELECT 1 FROM orders.event_acks WHERE consumer = $1", 1, p), 0);
    free(rid);
    free(rid2);
}

/* What billing needs still works with its key: events.pending and events.ack. */
static void test_billing_key_pulls_events(void **st)
{
    (void)st;
    pull_events(AS_BILLING, "000000", "zmqauth-test", "limit", "1", "no-such-event");
}

/* events.ack of ids for consumer with billing's key, answered 000000. */
static void ack_events(const char *consumer, const char *ids)
{
    char *rid = kc_uid("zapmark-");
    admin_call_t c;
    admin_call_init(&c);
    admin_call_arg(&c, 0, "consumer", consumer);
    admin_call_arg(&c, 1, "ids", ids);
    admin_call_as(&c, rid, "system", "events.ack");
    free(assert_answered("ORDER", AS_BILLING, &c.env, "000000"));
    free(rid);
}

static long feed_mark(const char *consumer)
{
    const char *p[] = {consumer};
    char *v = kc_sql_value("SELECT below_id FROM orders.event_feed_marks WHERE consumer = $1", 1, p);
    long mark = v ? strtol(v, NULL, 10) : -1;
    free(v);
    return mark;
}

/* ack_events(consumer, event_id) three times: the mark moves at most one step a call (see
 * eventfeed.c "events_mark"). For checks that the mark stays where it is. */
static void ack_thrice(const char *consumer, const char *event_id)
{
    for (int i = 0; i < 3; i++)
        ack_events(consumer, event_id);
}

typedef struct {
    const char *consumer, *event_id;
    long floor; /* the mark must pass it (> floor)... */
    long exact; /* ...or, when not -1, be exactly this */
} mark_goal_t;

static bool ack_reaches(void *arg)
{
    const mark_goal_t *g = arg;
    ack_events(g->consumer, g->event_id);
    long mark = feed_mark(g->consumer);
    return g->exact >= 0 ? mark == g->exact : mark > g->floor;
}

/* ack_events(consumer, event_id) until the mark is exact (when >= 0) or above floor, for at
 * most 5 s; the mark then. Three calls are enough when nothing else writes events, but another
 * consumer's transaction (billing pulls every second) may hold a transaction id across two of
 * them, and the mark then waits for it (rightly). */
static long ack_until(const char *consumer, const char *event_id, long floor, long exact)
{
    mark_goal_t g = {consumer, event_id, floor, exact};
    if (!kc_wait(5000, 50, ack_reaches, &g))
        fail_msg("the mark of %s stays at %ld (wanted %s %ld)", consumer, feed_mark(consumer),
                 exact >= 0 ? "exactly" : "above", exact >= 0 ? exact : floor);
    return feed_mark(consumer);
}

/* n new instances of fresh orders, and the wait until their background jobs, which make their
 * events, are done (the test runs alone, so no event of theirs is being written after that). */
static void make_events(int n)
{
    char *prefix = kc_uid("CSmk");
    for (int i = 0; i < n; i++) {
        char *rid = kc_uid("zapmk-"), *order = xasprintf("%s%d", prefix, i);
        new_instance_as(AS_GATEWAY, rid, order, "000000");
        free(rid);
        free(order);
    }
    char *idle = xasprintf("SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM orders.jobs"
                           " WHERE order_id LIKE '%s%%' AND state IN ('pending', 'running'))",
                           prefix);
    free(sql_wait_value(idle));
    free(idle);
    free(prefix);
    usleep(300 * 1000);
}

/* The newest event's id and event id (caller frees both). */
static void newest_event(int offset, char **id, char **event_id)
{
    char *sql = xasprintf("SELECT id FROM orders.outbox ORDER BY id DESC OFFSET %d LIMIT 1", offset);
    *id = kc_sql_value(sql, 0, NULL);
    free(sql);
    assert_non_null(*id);
    const char *p[] = {*id};
    *event_id = kc_sql_value("SELECT event_id FROM orders.outbox WHERE id = $1::bigint", 1, p);
    assert_non_null(*event_id);
}

/* Every event up to id acknowledged by consumer (but except, when not NULL). */
static void ack_up_to(const char *consumer, const char *id, const char *except)
{
    const char *p[] = {consumer, id, except ? except : "0"};
    assert_true(kc_sql_exec("INSERT INTO orders.event_acks (consumer, event_id, seq)"
                            " SELECT $1, event_id, id FROM orders.outbox"
                            " WHERE id <= $2::bigint AND id <> $3::bigint ON CONFLICT DO NOTHING",
                            3, p) >= 0);
}

/* The feed's mark (events.pending scans from it) moves up to the first event the consumer has
 * not acknowledged, and never past an event id whose transaction is still open, even when every
 * event after it is committed and acknowledged: that event may still commit, and must then be
 * pulled. Events e1 < e2 < e3, then an event id k held by an open transaction, then e4 > k. */
static void test_event_feed_mark(void **st)
{
    (void)st;
    char consumer[32];
    snprintf(consumer, sizeof consumer, "mark-%ld", (long)getpid());
    make_events(3);
    char *e1, *ev1, *e2, *ev2, *e3, *ev3;
    newest_event(2, &e1, &ev1);
    newest_event(1, &e2, &ev2);
    newest_event(0, &e3, &ev3);
    /* Everything up to e3 acknowledged but e1: the mark stops at e1. */
    ack_up_to(consumer, e3, e1);
    ack_until(consumer, ev2, 0, strtol(e1, NULL, 10));
    ack_thrice(consumer, ev2);
    assert_int_equal(feed_mark(consumer), strtol(e1, NULL, 10));

    /* A transaction takes an event id the way outbox.c does, and stays open. */
    const char *dsn = suite_get("KOOISV_PG_SUPER_DSN");
    PGconn *open_tx = PQconnectdb(dsn ? dsn : "");
    assert_int_equal(PQstatus(open_tx), CONNECTION_OK);
    PQclear(PQexec(open_tx, "BEGIN"));
    PGresult *r = PQexec(open_tx, "SELECT nextval('orders.outbox_seq')"
                                  " WHERE pg_current_xact_id() IS NOT NULL");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    long k = strtol(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    assert_true(k > strtol(e3, NULL, 10));

    /* e1 acknowledged: the mark passes e3, but not k. */
    long mark = ack_until(consumer, ev1, strtol(e3, NULL, 10), -1);
    assert_true(mark <= k);
    /* Events after k, committed and acknowledged: the mark still stays at or below k. */
    make_events(1);
    char *e4, *ev4;
    newest_event(0, &e4, &ev4);
    assert_true(strtol(e4, NULL, 10) > k);
    ack_up_to(consumer, e4, NULL);
    ack_thrice(consumer, ev4);
    assert_true(feed_mark(consumer) >= mark);
    assert_true(feed_mark(consumer) <= k);

    /* k's transaction ends (here without an event): the mark moves past e4. */
    PQclear(PQexec(open_tx, "ROLLBACK"));
    PQfinish(open_tx);
    mark = ack_until(consumer, ev4, strtol(e4, NULL, 10), -1);
    /* A lower settled bound later never moves the mark down. */
    const char *pc[] = {consumer};
    assert_int_equal(kc_sql_exec("UPDATE orders.event_feed_marks SET safe_seq = 1,"
                                 " safe_after = '1'::xid8 WHERE consumer = $1",
                                 1, pc),
                     1);
    ack_events(consumer, ev4);
    assert_int_equal(feed_mark(consumer), mark);
    kc_sql_exec("DELETE FROM orders.event_acks WHERE consumer = $1", 1, pc);
    kc_sql_exec("DELETE FROM orders.event_feed_marks WHERE consumer = $1", 1, pc);
    free(e1);
    free(e2);
    free(e3);
    free(e4);
    free(ev1);
    free(ev2);
    free(ev3);
    free(ev4);
}

/* The gateway's key may not pull the events (only system clients do), whatever kind it claims,
 * and an acknowledgement it sends stores nothing. */
static void test_gateway_key_pulls_no_events(void **st)
{
    (void)st;
    char *event = sql_wait_value("SELECT event_id FROM orders.outbox ORDER BY id DESC LIMIT 1");
    pull_events(AS_GATEWAY, "000001", "zmqauth-gw", "ids", event, event);
    free(event);
}

/* Billing's key is admitted by order alone: the other services do not answer it. */
static void test_billing_key_admitted_by_order_only(void **st)
{
    (void)st;
    Kooisv__Envelope env = KOOISV__ENVELOPE__INIT;
    Kooisv__Ping ping = KOOISV__PING__INIT;
    ping_of(&env, &ping, "zap-bping");
    for (size_t i = 1; i < sizeof services / sizeof *services; i++) {
        Kooisv__Reply *r = try_call(services[i], AS_BILLING, &env);
        if (r) {
            kooisv__reply__free_unpacked(r, NULL);
            fail_msg("%s answered billing's key", services[i]);
        }
    }
}

/* Run kooisv-audit with only the given settings (freed here) and fail unless it exits with
 * status 2 (a refused setting); its first stderr line in line. */
static void audit_start_refused(char *settings, char *line, size_t len)
{
    const char *build = suite_get("KOOISV_BUILD_DIR");
    assert_non_null(build);
    char *cmd = xasprintf("env -i KOOISV_PG_DSN=host=/nonexistent "
                          "KOOISV_AUDIT_CHAIN_KEY=zmqauth-Test-chain-0123456789 %s "
                          "'%s/services/audit/kooisv-audit' 2>&1 >/dev/null",
                          settings, build);
    free(settings);
    assert_int_equal(ktest_shell_first_line(cmd, line, len), 2);
    free(cmd);
}

static void test_no_keys_no_start(void **st)
{
    (void)st;
    char pub[41], sec[41], line[256];
    assert_int_equal(zmq_curve_keypair(pub, sec), 0);
    audit_start_refused(xasprintf("'KOOISV_CURVE_CLIENTS=%s'", pub), line, sizeof line);
    assert_non_null(strstr(line, "KOOISV_CURVE_SECRET_KEY"));
    audit_start_refused(
        xasprintf("'KOOISV_CURVE_CLIENTS=%s' KOOISV_CURVE_SECRET_KEY=too-short", pub), line,
        sizeof line);
    assert_non_null(strstr(line, "kooisv-audit: KOOISV_CURVE_SECRET_KEY: must be a CURVE"));
    audit_start_refused(
        xasprintf("KOOISV_CURVE_CLIENTS=not-a-key 'KOOISV_CURVE_SECRET_KEY=%s'", sec), line,
        sizeof line);
    assert_non_null(strstr(line, "kooisv-audit: KOOISV_CURVE_CLIENTS: not a CURVE public key"));
    assert_null(strstr(line, sec)); /* the secret is never echoed */
    audit_start_refused(xasprintf("'KOOISV_CURVE_SECRET_KEY=%s'", sec), line, sizeof line);
    assert_non_null(strstr(line, "KOOISV_CURVE_CLIENTS"));
}

/* The system client list: keys only, never a key of the other list, and only for a service that
 * serves system clients an action (audit serves none). */
static void test_system_clients_checked(void **st)
{
    (void)st;
    char pub[41], sec[41], pub2[41], sec2[41], line[256];
    assert_int_equal(zmq_curve_keypair(pub, sec), 0);
    assert_int_equal(zmq_curve_keypair(pub2, sec2), 0);
    audit_start_refused(xasprintf("'KOOISV_CURVE_SECRET_KEY=%s' 'KOOISV_CURVE_CLIENTS=%s' "
                                  "KOOISV_CURVE_SYSTEM_CLIENTS=not-a-key",
                                  sec, pub),
                        line, sizeof line);
    assert_non_null(
        strstr(line, "kooisv-audit: KOOISV_CURVE_SYSTEM_CLIENTS: not a CURVE public key"));
    audit_start_refused(xasprintf("'KOOISV_CURVE_SECRET_KEY=%s' 'KOOISV_CURVE_CLIENTS=%s' "
                                  "'KOOISV_CURVE_SYSTEM_CLIENTS=%s,%s'",
                                  sec, pub, pub2, pub),
                        line, sizeof line);
    assert_non_null(strstr(line, "kooisv-audit: KOOISV_CURVE_SYSTEM_CLIENTS: key "));
    assert_non_null(strstr(line, "listed twice"));
    audit_start_refused(xasprintf("'KOOISV_CURVE_SECRET_KEY=%s' 'KOOISV_CURVE_CLIENTS=%s' "
                                  "'KOOISV_CURVE_SYSTEM_CLIENTS=%s'",
                                  sec, pub, pub2),
                        line, sizeof line);
    assert_non_null(strstr(line, "kooisv-audit: KOOISV_CURVE_SYSTEM_CLIENTS: this service serves "
                                 "system clients no action"));
    /* System clients alone: the gateway's list is still required. */
    audit_start_refused(
        xasprintf("'KOOISV_CURVE_SECRET_KEY=%s' 'KOOISV_CURVE_SYSTEM_CLIENTS=%s'", sec, pub2), line,
        sizeof line);
    assert_non_null(strstr(line, "KOOISV_CURVE_CLIENTS"));
    assert_null(strstr(line, sec));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forged_new_instance_does_nothing),
        cmocka_unit_test(test_forged_admin_call_gets_nothing),
        cmocka_unit_test(test_forged_audit_intent_not_stored),
        cmocka_unit_test(test_gateway_key_is_admitted),
        cmocka_unit_test(test_every_service_refuses_strangers),
        cmocka_unit_test(test_billing_key_sends_no_marketplace_body),
        cmocka_unit_test(test_billing_key_calls_no_operator_action),
        cmocka_unit_test(test_billing_key_pulls_events),
        cmocka_unit_test(test_event_feed_mark),
        cmocka_unit_test(test_gateway_key_pulls_no_events),
        cmocka_unit_test(test_billing_key_admitted_by_order_only),
        cmocka_unit_test(test_no_keys_no_start),
        cmocka_unit_test(test_system_clients_checked),
    };
    return KC_SUITE_MAIN(tests, NULL, NULL);
}
