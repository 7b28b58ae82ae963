/* The audit service through ZeroMQ against the suite's PostgreSQL: intents and outcomes stored
 * once each with every field, the replay check held by the database (concurrent duplicates
 * included), queries and follow mode, the append-only triggers and grants, and verify finding
 * each kind of tampering done as superuser (then undone). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "config.h"
#include "cryptoutil.h"
#include "entry.h"
#include "journal.h"
#include "kclient.h"
#include "randutil.h"
#include "rpc.h"
#include "timeutil.h"
#include "transport.h"
#include "xmalloc.h"

#define CHAIN_LOCK "hashtextextended('kooisv-audit-chain', 0)"
#define SHIFT "1000000000"

static rpc_client_t *audit_client(void)
{
    return kc_rpc_client("audit");
}

static rpc_client_t *client;

static Kooisv__Reply *call(rpc_client_t *c, Kooisv__Envelope *env)
{
    Kooisv__Reply *reply = NULL;
    assert_int_equal(rpc_call(c, env, 5000, &reply), 0);
    return reply;
}

typedef struct {
    const char *rid;
    const char *caller;
    const char *nonce;
    int64_t nonce_ts;
    const char *event;
    const char *reject_code;
    const char *reject_reason;
    const char *instance;
} intent_args_t;

static Kooisv__Reply *send_intent_with(rpc_client_t *c, const intent_args_t *a)
{
    Kooisv__Envelope env = KOOISV__ENVELOPE__INIT;
    Kooisv__Caller caller = KOOISV__CALLER__INIT;
    Kooisv__AuditIntent in = KOOISV__AUDIT_INTENT__INIT;
    Kooisv__ResourceRef ref = KOOISV__RESOURCE_REF__INIT, *refs[1] = {&ref};
    env.request_id = (char *)a->rid;
    env.trace_id = (char *)a->rid;
    env.received_ms = time_now_ms();
    env.source_addr = "192.0.2.7";
    env.caller = &caller;
    env.test_flag = true;
    caller.kind = "basic";
    caller.id = (char *)(a->caller ? a->caller : "svc-test");
    in.event_type = (char *)(a->event ? a->event : "newInstance");
    if (a->instance) {
        ref.kind = "instance";
        ref.id = (char *)a->instance;
        in.resources = refs;
        in.n_resources = 1;
    }
    in.nonce = (char *)(a->nonce ? a->nonce : "");
    in.nonce_ts_ms = a->nonce_ts ? a->nonce_ts : time_now_ms();
    in.reject_code = (char *)(a->reject_code ? a->reject_code : "");
    in.reject_reason = (char *)(a->reject_reason ? a->reject_reason : "");
    env.body_case = KOOISV__ENVELOPE__BODY_AUDIT_INTENT;
    env.audit_intent = &in;
    return call(c, &env);
}

static Kooisv__Reply *send_intent(const char *rid, const char *nonce)
{
    intent_args_t a = {.rid = rid, .nonce = nonce};
    return send_intent_with(client, &a);
}

static Kooisv__Reply *send_outcome(const char *rid, const char *code)
{
    Kooisv__Envelope env = KOOISV__ENVELOPE__INIT;
    Kooisv__AuditOutcome out = KOOISV__AUDIT_OUTCOME__INIT;
    env.request_id = (char *)rid;
    env.received_ms = time_now_ms();
    out.result_code = (char *)code;
    out.result_msg = "done";
    out.latency_us = 1234;
    out.http_status = 200;
    env.body_case = KOOISV__ENVELOPE__BODY_AUDIT_OUTCOME;
    env.audit_outcome = &out;
    return call(client, &env);
}

/* call(client, env) under a fresh random request id. */
static Kooisv__Reply *call_fresh(Kooisv__Envelope *env)
{
    char rid[37];
    rand_uuid(rid);
    env->request_id = rid;
    Kooisv__Reply *r = call(client, env);
    env->request_id = NULL;
    return r;
}

static Kooisv__Reply *send_query(Kooisv__AuditQuery *q)
{
    Kooisv__Envelope env = KOOISV__ENVELOPE__INIT;
    env.body_case = KOOISV__ENVELOPE__BODY_AUDIT_QUERY;
    env.audit_query = q;
    return call_fresh(&env);
}

/* Verify the whole chain (following next_seq) against a kept head (seq 0: none); the last
 * answer. */
static Kooisv__Reply *send_verify_head(int64_t head_seq, const char *head_hash)
{
    int64_t from = 1;
    for (;;) {
        Kooisv__Envelope env = KOOISV__ENVELOPE__INIT;
        Kooisv__AuditVerify v = KOOISV__AUDIT_VERIFY__INIT;
        v.from_seq = from;
        v.expect_head_seq = head_seq;
        v.expect_head_hash = (char *)(head_hash ? head_hash : "");
        env.body_case = KOOISV__ENVELOPE__BODY_AUDIT_VERIFY;
        env.audit_verify = &v;
        Kooisv__Reply *r = call_fresh(&env);
        assert_string_equal(r->result_code, "000000");
        assert_int_equal(r->result_case, KOOISV__REPLY__RESULT_AUDIT_VERIFY);
        if (!r->audit_verify->ok || !r->audit_verify->next_seq)
            return r;
        from = r->audit_verify->next_seq;
        kooisv__reply__free_unpacked(r, NULL);
    }
}

/* The whole chain verifies. */
static void expect_chain_whole(void)
{
    Kooisv__Reply *r = send_verify_head(0, NULL);
    assert_true(r->audit_verify->ok);
    kooisv__reply__free_unpacked(r, NULL);
}

static int64_t intent_seq(Kooisv__Reply *r)
{
    assert_string_equal(r->result_code, "000000");
    assert_int_equal(r->result_case, KOOISV__REPLY__RESULT_AUDIT_INTENT);
    return r->audit_intent->seq;
}

static long rows(const char *sql, const char *param)
{
    const char *p[] = {param};
    return kc_sql_count(sql, param ? 1 : 0, p);
}

static char *value(const char *sql, const char *param)
{
    const char *p[] = {param};
    return kc_sql_value(sql, param ? 1 : 0, p);
}

static void free_reply(Kooisv__Reply *r)
{
    kooisv__reply__free_unpacked(r, NULL);
}

/* ---------------------------------------------------------------- intents and outcomes */

static void test_intent_stored_once(void **state)
{
    (void)state;
    char *rid = kc_uid("svc-");
    char *nonce = kc_uid("n-");
    intent_args_t a = {.rid = rid, .nonce = nonce, .instance = "inst-42"};
    Kooisv__Reply *r1 = send_intent_with(client, &a);
    int64_t seq = intent_seq(r1);
    assert_true(seq > 0);
    assert_false(r1->audit_intent->replay);
    /* A retried delivery (same request id) stores nothing new and answers the same. */
    Kooisv__Reply *r2 = send_intent_with(client, &a);
    assert_int_equal(intent_seq(r2), seq);
    assert_false(r2->audit_intent->replay);
    assert_int_equal(rows("SELECT 1 FROM audit.intents WHERE request_id = $1", rid), 1);
    char *fields = value("SELECT concat_ws('|', caller_kind, caller_id, event_type, source_addr,"
                         " test_flag, nonce, resources->0->>'kind', resources->0->>'id',"
                         " reject_reason, length(hash), length(prev_hash))"
                         " FROM audit.intents WHERE request_id = $1",
                         rid);
    char want[256];
    snprintf(want, sizeof want, "basic|svc-test|newInstance|192.0.2.7|t|%s|instance|inst-42||32|32",
             nonce);
    assert_string_equal(fields, want);
    free(fields);

    Kooisv__Reply *o1 = send_outcome(rid, "000000");
    assert_string_equal(o1->result_code, "000000");
    Kooisv__Reply *o2 = send_outcome(rid, "000000");
    assert_string_equal(o2->result_code, "000000");
    assert_int_equal(rows("SELECT 1 FROM audit.outcomes WHERE request_id = $1", rid), 1);
    char *oseq = value("SELECT seq FROM audit.outcomes WHERE request_id = $1", rid);
    assert_true(strtoll(oseq, NULL, 10) > seq);
    free(oseq);
    free_reply(r1);
    free_reply(r2);
    free_reply(o1);
    free_reply(o2);
    free(rid);
    free(nonce);
}

/* Fail unless r (freed here) refuses the record of rid as malformed (000002) and table
 * ("audit.intents", "audit.outcomes") holds no row of rid. */
static void expect_refused_unstored(Kooisv__Reply *r, const char *table, const char *rid)
{
    assert_string_equal(r->result_code, "000002");
    char *sql = xasprintf("SELECT 1 FROM %s WHERE request_id = $1", table);
    assert_int_equal(rows(sql, rid), 0);
    free(sql);
    free_reply(r);
}

static void test_outcome_needs_intent(void **state)
{
    (void)state;
    char *rid = kc_uid("orphan-");
    expect_refused_unstored(send_outcome(rid, "000000"), "audit.outcomes", rid);
    free(rid);
}

/* Send outcomes (rid, code; a NULL code: none) as one AuditOutcomeBatch. */
static Kooisv__Reply *send_outcome_batch(const char *const *rids, const char *const *codes,
                                         size_t n)
{
    Kooisv__AuditOutcome *outs = xcalloc(n + 1, sizeof *outs);
    Kooisv__AuditOutcome **ptrs = xcalloc(n + 1, sizeof *ptrs);
    for (size_t i = 0; i < n; i++) {
        kooisv__audit_outcome__init(&outs[i]);
        outs[i].request_id = (char *)rids[i];
        outs[i].result_code = (char *)(codes[i] ? codes[i] : "");
        outs[i].result_msg = "batched";
        outs[i].latency_us = 10 + (int64_t)i;
        outs[i].http_status = 200;
        ptrs[i] = &outs[i];
    }
    Kooisv__AuditOutcomeBatch batch = KOOISV__AUDIT_OUTCOME_BATCH__INIT;
    batch.outcomes = ptrs;
    batch.n_outcomes = n;
    Kooisv__Envelope env = KOOISV__ENVELOPE__INIT;
    env.received_ms = time_now_ms();
    env.body_case = KOOISV__ENVELOPE__BODY_AUDIT_OUTCOMES;
    env.audit_outcomes = &batch;
    Kooisv__Reply *r = call_fresh(&env);
    free(outs);
    free(ptrs);
    return r;
}

/* Fail unless r (freed here) answers a batch of n outcomes 000000 with these codes. */
static void expect_batch_codes(Kooisv__Reply *r, size_t n, const char *const *want)
{
    assert_string_equal(r->result_code, "000000");
    assert_int_equal(r->result_case, KOOISV__REPLY__RESULT_AUDIT_OUTCOMES);
    assert_int_equal(r->audit_outcomes->n_result_codes, n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(r->audit_outcomes->result_codes[i], want[i]);
    free_reply(r);
}

/* Fail unless the trail holds exactly one outcome of each request in rids. */
static void expect_one_outcome_each(const char *const *rids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        assert_int_equal(rows("SELECT 1 FROM audit.outcomes WHERE request_id = $1", rids[i]), 1);
}

static void test_outcome_batch(void **state)
{
    (void)state;
    char *a = kc_uid("ob-a-"), *b = kc_uid("ob-b-"), *orphan = kc_uid("ob-orphan-");
    free_reply(send_intent(a, NULL));
    free_reply(send_intent(b, NULL));
    /* Each outcome is answered as it would be alone: stored, refused without an intent, a
     * result code or a request id, the same request twice stored once. */
    const char *rids[] = {a, b, orphan, a, b, ""};
    const char *codes[] = {"000000", "000003", "000000", NULL, "000003", "000000"};
    const char *want[] = {"000000", "000000", "000002", "000002", "000000", "000002"};
    expect_batch_codes(send_outcome_batch(rids, codes, 6), 6, want);
    char *stored = value("SELECT string_agg(result_code || ':' || result_msg || ':' || latency_us,"
                         " ',') FROM audit.outcomes WHERE request_id = $1",
                         a);
    assert_string_equal(stored, "000000:batched:10");
    free(stored);
    stored = value("SELECT string_agg(result_code || ':' || latency_us, ',') FROM audit.outcomes"
                   " WHERE request_id = $1",
                   b);
    assert_string_equal(stored, "000003:11");
    free(stored);
    assert_int_equal(rows("SELECT 1 FROM audit.outcomes WHERE request_id = $1", orphan), 0);
    /* Sent again (the gateway's retry): already recorded, nothing new. */
    const char *again_rids[] = {a, b};
    const char *again_codes[] = {"000000", "000003"};
    const char *ok2[] = {"000000", "000000"};
    expect_batch_codes(send_outcome_batch(again_rids, again_codes, 2), 2, ok2);
    expect_one_outcome_each(again_rids, 2);
    free(a);
    free(b);
    free(orphan);
}

static void test_outcome_batch_size_refused(void **state)
{
    (void)state;
    /* None, or more than TRANSPORT_OUTCOME_BATCH_MAX: refused whole, nothing stored. */
    Kooisv__Reply *r = send_outcome_batch(NULL, NULL, 0);
    assert_string_equal(r->result_code, "000002");
    assert_int_not_equal(r->result_case, KOOISV__REPLY__RESULT_AUDIT_OUTCOMES);
    free_reply(r);
    enum { N = TRANSPORT_OUTCOME_BATCH_MAX + 1 };
    char *prefix = kc_uid("ob-big-");
    char **rids = xcalloc(N, sizeof *rids);
    const char **codes = xcalloc(N, sizeof *codes);
    for (int i = 0; i < N; i++) {
        rids[i] = xasprintf("%s-%d", prefix, i);
        codes[i] = "000000";
    }
    free_reply(send_intent(rids[0], NULL));
    r = send_outcome_batch((const char *const *)rids, codes, N);
    assert_string_equal(r->result_code, "000002");
    free_reply(r);
    char *like = xasprintf("%s-%%", prefix);
    assert_int_equal(rows("SELECT 1 FROM audit.outcomes WHERE request_id LIKE $1", like), 0);
    free(like);
    for (int i = 0; i < N; i++)
        free(rids[i]);
    free(rids);
    free(codes);
    free(prefix);
}

/* The contents of a file, without its trailing newline (caller frees); NULL when unreadable. */
static char *file_text(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    return xstrdup(buf);
}

/* A second writer of the trail in this process, as another replica of the service. */
static journal_t *other_writer(void)
{
    static entry_chain_t chain;
    char *path = xasprintf("%s/secrets/pg-kooisv_audit.dsn", suite_get("KOOISV_STATE_DIR"));
    char *dsn = file_text(path);
    free(path);
    assert_non_null(dsn);
    const char *key = suite_get("KOOISV_AUDIT_CHAIN_KEY");
    assert_non_null(key);
    char *from = value("SELECT keyed_from FROM audit.chain_epoch", NULL);
    chain = (entry_chain_t){
        .key = (const uint8_t *)key, .key_len = strlen(key), .keyed_from = strtoll(from, NULL, 10)};
    free(from);
    journal_config_t jc = {.dsn = dsn,
                           .batch_max = 16,
                           .nonce_window_ms = 60000,
                           .nonce_margin_ms = 300000,
                           .statement_timeout_ms = 3000,
                           .chain = &chain,
                           .head_file = ""};
    journal_t *other = journal_new(&jc);
    free(dsn);
    assert_non_null(other);
    return other;
}

/* An intent of rid with nonce through writer j; its answer into *res. */
static void other_intent(journal_t *j, const char *rid, const char *nonce, journal_result_t *res)
{
    Kooisv__Envelope env = KOOISV__ENVELOPE__INIT;
    Kooisv__Caller caller = KOOISV__CALLER__INIT;
    Kooisv__AuditIntent in = KOOISV__AUDIT_INTENT__INIT;
    caller.kind = "basic";
    caller.id = "svc-test";
    in.event_type = "newInstance";
    in.nonce = (char *)nonce;
    in.nonce_ts_ms = time_now_ms();
    env.request_id = (char *)rid;
    env.received_ms = time_now_ms();
    env.caller = &caller;
    env.body_case = KOOISV__ENVELOPE__BODY_AUDIT_INTENT;
    env.audit_intent = &in;
    entry_intent_t ein;
    assert_null(entry_intent_from_envelope(&ein, &env));
    journal_append_intent(j, &ein, res);
    entry_intent_clear(&ein);
}

/* *eout: an outcome of rid, 000000 with msg, recorded now. */
static void outcome_ok(entry_outcome_t *eout, const char *rid, const char *msg)
{
    Kooisv__AuditOutcome ao = KOOISV__AUDIT_OUTCOME__INIT;
    ao.result_code = "000000";
    ao.result_msg = (char *)msg;
    assert_null(entry_outcome_from(eout, rid, &ao, time_now_ms()));
}

/* An outcome of rid (000000, "second writer") through writer j; its answer into *res. */
static void other_outcome(journal_t *j, const char *rid, journal_result_t *res)
{
    entry_outcome_t eout;
    outcome_ok(&eout, rid, "second writer");
    journal_append_outcome(j, &eout, res);
    entry_outcome_clear(&eout);
}

static void test_second_writer(void **state)
{
    /* A second writer of the trail with a memory of recent records of its own (another replica,
     * or the service after a restart): what the service stored is found in the database and not
     * stored twice, what the second writer stored is found by the service, and the chain stays
     * whole. */
    (void)state;
    journal_t *other = other_writer();

    char *a = kc_uid("w2-a-"), *nonce = kc_uid("n-");
    Kooisv__Reply *r = send_intent(a, nonce);
    int64_t seq_a = intent_seq(r);
    free_reply(r);
    /* The same intent through the other writer: already recorded, its seq, no replay. */
    journal_result_t res;
    other_intent(other, a, nonce, &res);
    assert_string_equal(res.code, "000000");
    assert_string_equal(res.msg, "already recorded");
    assert_int_equal(res.seq, seq_a);
    assert_false(res.replay);
    assert_int_equal(rows("SELECT 1 FROM audit.intents WHERE request_id = $1", a), 1);
    /* Its outcome through the other writer: the intent is found, the outcome stored. */
    other_outcome(other, a, &res);
    assert_string_equal(res.code, "000000");
    assert_string_equal(res.msg, "recorded");
    journal_destroy(&other);
    /* The same outcome through the service, alone and in a batch with a new one: already
     * recorded, stored once; the new one stored. */
    r = send_outcome(a, "000000");
    assert_string_equal(r->result_code, "000000");
    assert_string_equal(r->result_msg, "already recorded");
    free_reply(r);
    char *b = kc_uid("w2-b-");
    free_reply(send_intent(b, NULL));
    const char *rids[] = {b, a};
    const char *codes[] = {"000000", "000000"};
    expect_batch_codes(send_outcome_batch(rids, codes, 2), 2, codes);
    expect_one_outcome_each(rids, 2);
    char *msg = value("SELECT result_msg FROM audit.outcomes WHERE request_id = $1", a);
    assert_string_equal(msg, "second writer");
    free(msg);
    expect_chain_whole();
    free(a);
    free(b);
    free(nonce);
}

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    char code[16];
} submitted_t;

static void on_submitted(const journal_result_t *res, void *arg)
{
    submitted_t *s = arg;
    pthread_mutex_lock(&s->mu);
    snprintf(s->code, sizeof s->code, "%s", res->code);
    s->done = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* Submit rid's outcome (000000) to writer j; s is told when it is committed. */
static void submit_outcome(journal_t *j, const char *rid, submitted_t *s)
{
    entry_outcome_t eout;
    outcome_ok(&eout, rid, "lingered");
    journal_submit_outcome(j, &eout, on_submitted, s);
}

/* Wait (at most 10 s) until s is told; its code. */
static const char *submitted_wait(submitted_t *s)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&s->mu);
    while (!s->done && pthread_cond_timedwait(&s->cv, &s->mu, &until) == 0)
        ;
    pthread_mutex_unlock(&s->mu);
    return s->done ? s->code : "not told";
}

static void test_outcome_waits_for_an_intent(void **state)
{
    /* An outcome alone waits a little for an intent and is committed in its transaction: the
     * call's outcome then costs no commit of its own. The intent comes 3 ms after the outcome,
     * when a writer that does not wait has committed the outcome alone; a few tries, since a
     * busy machine may hold the test thread past the wait. An outcome that no intent follows is
     * committed all the same. */
    (void)state;
    journal_t *other = other_writer();
    journal_result_t res;
    bool shared = false;
    for (int attempt = 0; attempt < 5 && !shared; attempt++) {
        char *a = kc_uid("linger-a-"), *b = kc_uid("linger-b-"), *na = kc_uid("n-"),
             *nb = kc_uid("n-");
        other_intent(other, a, na, &res);
        assert_string_equal(res.code, "000000");
        submitted_t s = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
        submit_outcome(other, a, &s);
        usleep(3000);
        other_intent(other, b, nb, &res);
        assert_string_equal(res.code, "000000");
        assert_string_equal(submitted_wait(&s), "000000");
        char *xo = value("SELECT xmin::text FROM audit.outcomes WHERE request_id = $1", a);
        char *xi = value("SELECT xmin::text FROM audit.intents WHERE request_id = $1", b);
        assert_non_null(xo);
        assert_non_null(xi);
        shared = strcmp(xo, xi) == 0;
        free(xo);
        free(xi);
        free(a);
        free(b);
        free(na);
        free(nb);
    }
    assert_true(shared);
    /* alone: committed once the wait is over */
    char *c = kc_uid("linger-c-"), *nc = kc_uid("n-");
    other_intent(other, c, nc, &res);
    assert_string_equal(res.code, "000000");
    submitted_t s = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    submit_outcome(other, c, &s);
    assert_string_equal(submitted_wait(&s), "000000");
    assert_int_equal(rows("SELECT 1 FROM audit.outcomes WHERE request_id = $1", c), 1);
    journal_destroy(&other);
    expect_chain_whole();
    free(c);
    free(nc);
}

/* The service's writer appends after the head of its own last commit without reading it first;
 * when another writer appended meanwhile (an intent and an outcome of a request the service never
 * saw, so that no key of the service's next record collides with theirs) the head is checked in
 * the same transaction, and the record goes after the other writer's. Without that check the
 * service's outcome took the seq of the other writer's intent and the chain broke. */
static void test_head_moved(void **state)
{
    (void)state;
    char *c = kc_uid("hm-c-"), *x = kc_uid("hm-x-");
    Kooisv__Reply *r = send_intent(c, NULL);
    int64_t seq_c = intent_seq(r);
    free_reply(r);
    journal_t *other = other_writer();
    char *nonce = kc_uid("n-");
    journal_result_t res;
    other_intent(other, x, nonce, &res);
    assert_string_equal(res.msg, "recorded");
    int64_t seq_xi = res.seq;
    other_outcome(other, x, &res);
    assert_string_equal(res.msg, "recorded");
    int64_t seq_xo = res.seq;
    journal_destroy(&other);
    free(nonce);
    assert_true(seq_xi > seq_c);
    assert_true(seq_xo > seq_xi);
    r = send_outcome(c, "000000");
    assert_string_equal(r->result_code, "000000");
    assert_string_equal(r->result_msg, "recorded");
    free_reply(r);
    char *seq = value("SELECT seq FROM audit.outcomes WHERE request_id = $1", c);
    assert_non_null(seq);
    assert_true(strtoll(seq, NULL, 10) > seq_xo);
    free(seq);
    /* no seq is taken twice, and the chain verifies */
    char from[24];
    snprintf(from, sizeof from, "%lld", (long long)seq_c);
    char *twice = value("SELECT count(*) FROM audit.intents i JOIN audit.outcomes o USING (seq)"
                        " WHERE i.seq >= $1::bigint",
                        from);
    assert_string_equal(twice, "0");
    free(twice);
    expect_chain_whole();
    free(c);
    free(x);
}

static void test_bad_records_refused(void **state)
{
    (void)state;
    char *rid = kc_uid("bad-");
    intent_args_t a = {.rid = rid, .event = ""};
    Kooisv__Reply *r = send_intent_with(client, &a);
    assert_string_equal(r->result_code, "000002");
    free_reply(r);
    /* Resource kinds outside the list are refused: nothing secret is filed by accident. */
    Kooisv__Envelope env = KOOISV__ENVELOPE__INIT;
    Kooisv__Caller caller = KOOISV__CALLER__INIT;
    Kooisv__AuditIntent in = KOOISV__AUDIT_INTENT__INIT;
    Kooisv__ResourceRef ref = KOOISV__RESOURCE_REF__INIT, *refs[1] = {&ref};
    ref.kind = "client_secret";
    ref.id = "s3cr3t";
    in.event_type = "applicationSync";
    in.resources = refs;
    in.n_resources = 1;
    env.request_id = rid;
    env.received_ms = time_now_ms();
    env.caller = &caller;
    env.body_case = KOOISV__ENVELOPE__BODY_AUDIT_INTENT;
    env.audit_intent = &in;
    expect_refused_unstored(call(client, &env), "audit.intents", rid);
    free(rid);
}

/* ---------------------------------------------------------------- replay */

static void test_replay_refused(void **state)
{
    (void)state;
    char *nonce = kc_uid("n-");
    char *rid1 = kc_uid("r1-"), *rid2 = kc_uid("r2-"), *rid3 = kc_uid("r3-");
    /* A call the gateway rejected (bad signature) must not burn the nonce of the genuine one. */
    intent_args_t rej = {.rid = rid3, .nonce = nonce, .reject_code = "000001",
                         .reject_reason = "signature mismatch"};
    Kooisv__Reply *r3 = send_intent_with(client, &rej);
    intent_seq(r3);
    assert_false(r3->audit_intent->replay);
    Kooisv__Reply *r1 = send_intent(rid1, nonce);
    intent_seq(r1);
    assert_false(r1->audit_intent->replay);
    Kooisv__Reply *r2 = send_intent(rid2, nonce);
    intent_seq(r2);
    assert_true(r2->audit_intent->replay);
    /* The replay is on the record, as such. */
    char *reason = value("SELECT reject_reason || '/' || reject_code FROM audit.intents"
                         " WHERE request_id = $1",
                         rid2);
    assert_string_equal(reason, JOURNAL_REPLAYED "/000001");
    free(reason);
    /* Retrying the replayed request answers replay again. */
    Kooisv__Reply *r2b = send_intent(rid2, nonce);
    assert_true(r2b->audit_intent->replay);
    /* Another key may use the same nonce. */
    char *rid4 = kc_uid("r4-");
    intent_args_t other = {.rid = rid4, .nonce = nonce, .caller = "other-key"};
    Kooisv__Reply *r4 = send_intent_with(client, &other);
    assert_false(r4->audit_intent->replay);
    free_reply(r1);
    free_reply(r2);
    free_reply(r2b);
    free_reply(r3);
    free_reply(r4);
    free(rid1);
    free(rid2);
    free(rid3);
    free(rid4);
    free(nonce);
}

static void test_stale_nonce_refused(void **state)
{
    (void)state;
    char *rid = kc_uid("stale-"), *nonce = kc_uid("n-");
    intent_args_t a = {.rid = rid, .nonce = nonce, .nonce_ts = time_now_ms() - 3600 * 1000};
    Kooisv__Reply *r = send_intent_with(client, &a);
    intent_seq(r);
    assert_true(r->audit_intent->replay);
    free_reply(r);
    free(rid);
    free(nonce);
}

/* Expired nonces are deleted while calls keep coming, at any rate: a stock of them far beyond one
 * slice goes within seconds, and nonces still inside the window stay. (Before, the writer pruned
 * 10,000 every 30 s and only when idle: above 333 calls/s the table grew without end.) */
static void test_expired_nonces_pruned(void **state)
{
    (void)state;
    char *caller = kc_uid("prune-");
    const char *p[] = {caller};
    /* 30,000 recorded in 1970 (expired), 5 recorded now with a current timestamp (kept). */
    assert_int_equal(kc_sql_exec("INSERT INTO audit.nonces SELECT $1, 'old-' || g, 'old-' || g, 1, 1"
                                 " FROM generate_series(1, 30000) g",
                                 1, p),
                     30000);
    assert_int_equal(
        kc_sql_exec("INSERT INTO audit.nonces SELECT $1, 'new-' || g, 'new-' || g,"
                    " (extract(epoch FROM now()) * 1000)::bigint,"
                    " (extract(epoch FROM now()) * 1000)::bigint FROM generate_series(1, 5) g",
                    1, p),
        5);
    int64_t until = time_now_ms() + 15000;
    long left = -1;
    int sent = 0;
    while (time_now_ms() < until) {
        /* the writer stays busy: a call with a fresh nonce every few milliseconds */
        for (int i = 0; i < 50; i++, sent++) {
            char *rid = kc_uid("prune-call-"), *nonce = kc_uid("n-");
            free_reply(send_intent(rid, nonce));
            free(rid);
            free(nonce);
        }
        char *n = value("SELECT count(*) FROM audit.nonces WHERE caller_id = $1 AND nonce LIKE 'old-%'",
                        caller);
        left = strtol(n, NULL, 10);
        free(n);
        if (left == 0)
            break;
    }
    assert_true(sent > 0);
    assert_int_equal(left, 0);
    assert_int_equal(rows("SELECT 1 FROM audit.nonces WHERE caller_id = $1 AND nonce LIKE 'new-%'",
                          caller),
                     5);
    assert_int_equal(kc_sql_exec("DELETE FROM audit.nonces WHERE caller_id = $1", 1, p), 5);
    free(caller);
}

#define RACERS 12

typedef struct {
    const char *nonce;
    int replays;
    int accepted;
} race_t;

static void *racer(void *arg)
{
    race_t *race = arg;
    rpc_client_t *c = audit_client();
    char *rid = kc_uid("race-");
    intent_args_t a = {.rid = rid, .nonce = race->nonce};
    Kooisv__Reply *r = send_intent_with(c, &a);
    if (r && strcmp(r->result_code, "000000") == 0) {
        if (r->audit_intent->replay)
            __atomic_add_fetch(&race->replays, 1, __ATOMIC_SEQ_CST);
        else
            __atomic_add_fetch(&race->accepted, 1, __ATOMIC_SEQ_CST);
    }
    if (r)
        free_reply(r);
    free(rid);
    rpc_client_destroy(&c);
    return NULL;
}

static void test_replay_concurrent(void **state)
{
    (void)state;
    char *nonce = kc_uid("n-");
    race_t race = {.nonce = nonce};
    pthread_t th[RACERS];
    for (int i = 0; i < RACERS; i++)
        pthread_create(&th[i], NULL, racer, &race);
    for (int i = 0; i < RACERS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(race.accepted, 1);
    assert_int_equal(race.replays, RACERS - 1);
    free(nonce);
}

/* ---------------------------------------------------------------- queries */

static void test_query(void **state)
{
    (void)state;
    char *inst = kc_uid("qi-");
    char *rids[3];
    for (int i = 0; i < 3; i++) {
        rids[i] = kc_uid("q-");
        char *nonce = kc_uid("n-");
        intent_args_t a = {.rid = rids[i], .nonce = nonce, .instance = inst,
                           .event = i == 2 ? "releaseInstance" : "newInstance"};
        free_reply(send_intent_with(client, &a));
        free(nonce);
    }
    free_reply(send_outcome(rids[0], "000000"));
    free_reply(send_outcome(rids[1], "000003"));

    Kooisv__AuditQuery q = KOOISV__AUDIT_QUERY__INIT;
    q.resource_id = inst;
    Kooisv__Reply *r = send_query(&q);
    assert_string_equal(r->result_code, "000000");
    Kooisv__AuditQueryResult *res = r->audit_query;
    assert_int_equal(res->n_entries, 3);
    /* Newest first; the intent without an outcome is shown as such. */
    assert_string_equal(res->entries[0]->request_id, rids[2]);
    assert_false(res->entries[0]->has_outcome);
    assert_string_equal(res->entries[1]->request_id, rids[1]);
    assert_true(res->entries[1]->has_outcome);
    assert_string_equal(res->entries[1]->result_code, "000003");
    assert_int_equal(res->entries[1]->latency_us, 1234);
    assert_string_equal(res->entries[2]->caller_id, "svc-test");
    assert_string_equal(res->entries[2]->source_addr, "192.0.2.7");
    assert_int_equal(res->entries[2]->n_resources, 1);
    assert_string_equal(res->entries[2]->resources[0]->id, inst);
    assert_true(res->entries[2]->test_flag);
    int64_t newest = res->entries[0]->seq;
    free_reply(r);

    /* Filters combine; pages follow the cursor. */
    q.event_type = "newInstance";
    q.result_code = "000003";
    r = send_query(&q);
    assert_int_equal(r->audit_query->n_entries, 1);
    assert_string_equal(r->audit_query->entries[0]->request_id, rids[1]);
    free_reply(r);
    q.event_type = "new*";
    q.result_code = "";
    r = send_query(&q);
    assert_int_equal(r->audit_query->n_entries, 2);
    free_reply(r);
    q.event_type = "";
    q.limit = 2;
    r = send_query(&q);
    assert_int_equal(r->audit_query->n_entries, 2);
    assert_true(r->audit_query->next_before_seq > 0);
    q.before_seq = r->audit_query->next_before_seq;
    free_reply(r);
    r = send_query(&q);
    assert_int_equal(r->audit_query->n_entries, 1);
    assert_string_equal(r->audit_query->entries[0]->request_id, rids[0]);
    assert_int_equal(r->audit_query->next_before_seq, 0);
    free_reply(r);

    /* Follow mode: oldest change first; an outcome brings its entry back. After the newest
     * intent came the outcomes of the first two. */
    Kooisv__AuditQuery f = KOOISV__AUDIT_QUERY__INIT;
    f.follow = true;
    f.resource_id = inst;
    f.after_seq = newest;
    r = send_query(&f);
    assert_int_equal(r->audit_query->n_entries, 2);
    assert_string_equal(r->audit_query->entries[0]->request_id, rids[0]);
    assert_string_equal(r->audit_query->entries[1]->request_id, rids[1]);
    assert_true(r->audit_query->entries[0]->last_seq < r->audit_query->entries[1]->last_seq);
    int64_t cursor = r->audit_query->next_after_seq;
    assert_true(cursor >= r->audit_query->entries[1]->last_seq);
    free_reply(r);
    f.after_seq = cursor;
    r = send_query(&f);
    assert_int_equal(r->audit_query->n_entries, 0);
    assert_true(r->audit_query->next_after_seq >= cursor);
    free_reply(r);
    free_reply(send_outcome(rids[2], "000000"));
    f.after_seq = cursor;
    r = send_query(&f);
    assert_int_equal(r->audit_query->n_entries, 1);
    assert_string_equal(r->audit_query->entries[0]->request_id, rids[2]);
    assert_true(r->audit_query->entries[0]->has_outcome);
    assert_true(r->audit_query->entries[0]->last_seq > cursor);
    free_reply(r);

    /* Time range and bad input. */
    Kooisv__AuditQuery t = KOOISV__AUDIT_QUERY__INIT;
    t.request_id = rids[0];
    t.from_ms = time_now_ms() + 3600 * 1000;
    r = send_query(&t);
    assert_int_equal(r->audit_query->n_entries, 0);
    free_reply(r);
    t.from_ms = 0;
    t.limit = 1001;
    r = send_query(&t);
    assert_string_equal(r->result_code, "000002");
    free_reply(r);
    for (int i = 0; i < 3; i++)
        free(rids[i]);
    free(inst);
}

/* One resource's entries come from intent_resources (migration 004), which the intents' own
 * insert fills: an intent with two resources is found under each, once even when it names one
 * twice; entries of a resource stay found however many of others come after them. */
static void test_resource_index(void **state)
{
    (void)state;
    char *a = kc_uid("ra-"), *b = kc_uid("rb-"), *rid = kc_uid("r2-");
    Kooisv__Envelope env = KOOISV__ENVELOPE__INIT;
    Kooisv__Caller caller = KOOISV__CALLER__INIT;
    Kooisv__AuditIntent in = KOOISV__AUDIT_INTENT__INIT;
    Kooisv__ResourceRef r0 = KOOISV__RESOURCE_REF__INIT, r1 = KOOISV__RESOURCE_REF__INIT,
                        r2 = KOOISV__RESOURCE_REF__INIT, *refs[3] = {&r0, &r1, &r2};
    r0.kind = "instance", r0.id = a;
    r1.kind = "tenant", r1.id = b;
    r2.kind = "app", r2.id = a; /* the same id again, of another kind */
    env.request_id = rid;
    env.trace_id = rid;
    env.received_ms = time_now_ms();
    env.source_addr = "192.0.2.7";
    env.caller = &caller;
    caller.kind = "basic";
    caller.id = "svc-test";
    in.event_type = "tenantSync";
    in.resources = refs;
    in.n_resources = 3;
    in.nonce_ts_ms = time_now_ms();
    env.body_case = KOOISV__ENVELOPE__BODY_AUDIT_INTENT;
    env.audit_intent = &in;
    Kooisv__Reply *r = call(client, &env);
    assert_string_equal(r->result_code, "000000");
    int64_t seq = intent_seq(r);
    free_reply(r);
    /* Entries of other resources after it. */
    for (int i = 0; i < 30; i++) {
        char *other = kc_uid("ro-"), *orid = kc_uid("ro-");
        intent_args_t o = {.rid = orid, .instance = other, .event = "queryInstance"};
        free_reply(send_intent_with(client, &o));
        free(other);
        free(orid);
    }
    const char *ids[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        Kooisv__AuditQuery q = KOOISV__AUDIT_QUERY__INIT;
        q.resource_id = (char *)ids[i];
        r = send_query(&q);
        assert_string_equal(r->result_code, "000000");
        assert_int_equal(r->audit_query->n_entries, 1);
        assert_string_equal(r->audit_query->entries[0]->request_id, rid);
        assert_int_equal(r->audit_query->entries[0]->seq, seq);
        assert_int_equal(r->audit_query->entries[0]->n_resources, 3);
        free_reply(r);
        /* Below its own seq there is nothing of it. */
        q.before_seq = seq;
        r = send_query(&q);
        assert_int_equal(r->audit_query->n_entries, 0);
        free_reply(r);
    }
    char s[24];
    snprintf(s, sizeof s, "%lld", (long long)seq);
    const char *p[] = {s};
    assert_int_equal(kc_sql_count("SELECT 1 FROM audit.intent_resources WHERE seq = $1::bigint",
                                  1, p),
                     2);

    /* An id far over the limit (2,000 bytes; a btree key holds about 2,700) is stored cut to
     * ENTRY_MAX_RESOURCE_ID bytes, indexed and found by what was stored, and the batch it came
     * in is not broken. */
    char *long_rid = kc_uid("rl-"), *tag = kc_uid("rl");
    char *long_id = xmalloc(2001);
    memset(long_id, 'L', 2000);
    long_id[2000] = '\0';
    memcpy(long_id, tag, strlen(tag));
    intent_args_t big = {.rid = long_rid, .instance = long_id, .event = "queryInstance"};
    r = send_intent_with(client, &big);
    assert_string_equal(r->result_code, "000000");
    free_reply(r);
    long_id[ENTRY_MAX_RESOURCE_ID] = '\0';
    Kooisv__AuditQuery q = KOOISV__AUDIT_QUERY__INIT;
    q.resource_id = long_id;
    r = send_query(&q);
    assert_string_equal(r->result_code, "000000");
    assert_int_equal(r->audit_query->n_entries, 1);
    assert_string_equal(r->audit_query->entries[0]->request_id, long_rid);
    assert_string_equal(r->audit_query->entries[0]->resources[0]->id, long_id);
    free_reply(r);
    free(long_id);
    free(long_rid);
    free(tag);
    free(a);
    free(b);
    free(rid);
}

/* ---------------------------------------------------------------- protection */

/* Run sql as superuser (optionally as role) and return the SQLSTATE of the failure, or "" on
 * success. */
static char *sql_state(const char *role, const char *sql)
{
    PGconn *pg = kc_pg();
    assert_non_null(pg);
    char set[96];
    if (role) {
        snprintf(set, sizeof set, "SET ROLE %s", role);
        PQclear(PQexec(pg, set));
    }
    PGresult *r = PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(r);
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    char *out = xstrdup(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? "" : state ? state : "?");
    PQclear(r);
    PQclear(PQexec(pg, "RESET ROLE"));
    return out;
}

static void expect_state(const char *role, const char *sql, const char *want)
{
    char *got = sql_state(role, sql);
    if (strcmp(got, want) != 0)
        fail_msg("%s as %s: SQLSTATE '%s', expected '%s'", sql, role ? role : "superuser", got,
                 want);
    free(got);
}

static void test_append_only(void **state)
{
    (void)state;
    char *rid = kc_uid("ro-");
    free_reply(send_intent(rid, NULL));
    /* The triggers refuse changes even to a superuser (42501 insufficient_privilege). */
    expect_state(NULL, "UPDATE audit.intents SET event_type = 'x' WHERE seq = (SELECT max(seq) FROM audit.intents)", "42501");
    expect_state(NULL, "DELETE FROM audit.intents WHERE seq = (SELECT max(seq) FROM audit.intents)", "42501");
    expect_state(NULL, "TRUNCATE audit.intents, audit.outcomes", "42501");
    expect_state(NULL, "UPDATE audit.outcomes SET result_code = 'x' WHERE seq = (SELECT max(seq) FROM audit.outcomes)", "42501");
    /* The service role may only INSERT and SELECT; the auditors only SELECT. */
    expect_state("kooisv_audit", "UPDATE audit.intents SET event_type = 'x' WHERE false", "42501");
    expect_state("kooisv_audit", "DELETE FROM audit.outcomes WHERE false", "42501");
    expect_state("kooisv_audit", "ALTER TABLE audit.intents DISABLE TRIGGER ALL", "42501");
    /* The resource index is append-only like the trail it indexes. */
    expect_state(NULL, "DELETE FROM audit.intent_resources WHERE seq = (SELECT max(seq) FROM audit.intent_resources)", "42501");
    expect_state(NULL, "UPDATE audit.intent_resources SET seq = seq WHERE seq = (SELECT max(seq) FROM audit.intent_resources)", "42501");
    expect_state(NULL, "TRUNCATE audit.intent_resources", "42501");
    expect_state("kooisv_audit", "DELETE FROM audit.intent_resources WHERE false", "42501");
    expect_state("kooisv_auditor", "INSERT INTO audit.intent_resources VALUES ('x', 1)", "42501");
    expect_state("kooisv_auditor", "SELECT count(*) FROM audit.intent_resources", "");
    expect_state("kooisv_audit", "SELECT count(*) FROM audit.intents", "");
    expect_state("kooisv_auditor", "SELECT count(*) FROM audit.chain", "");
    expect_state("kooisv_auditor", "INSERT INTO audit.nonces VALUES ('a','b','c',0,0)", "42501");
    expect_state("kooisv_auditor", "DELETE FROM audit.intents WHERE false", "42501");
    /* Nothing sensitive sits in the trail: no key, no signature. */
    const char *keys[] = {"KOOISV_BASIC_KEY", "KOOISV_KIT_KEY"};
    for (size_t i = 0; i < 2; i++) {
        const char *key = suite_get(keys[i]);
        if (!key || !*key)
            continue;
        assert_int_equal(rows("SELECT 1 FROM audit.intents i WHERE strpos(i::text, $1) > 0", key), 0);
        assert_int_equal(rows("SELECT 1 FROM audit.outcomes o WHERE strpos(o::text, $1) > 0", key), 0);
    }
    free(rid);
}

/* ---------------------------------------------------------------- tampering */

static void triggers(bool on)
{
    const char *sql[] = {
        on ? "ALTER TABLE audit.intents ENABLE TRIGGER intents_append_only"
           : "ALTER TABLE audit.intents DISABLE TRIGGER intents_append_only",
        on ? "ALTER TABLE audit.outcomes ENABLE TRIGGER outcomes_append_only"
           : "ALTER TABLE audit.outcomes DISABLE TRIGGER outcomes_append_only"};
    for (int i = 0; i < 2; i++)
        assert_true(kc_sql_exec(sql[i], 0, NULL) >= 0);
}

/* The chain from this seq on as it was before a test began to rewrite it (temporary tables
 * tamper_i and tamper_o of the test's connection), 0 when no rewrite is under way. A test that
 * fails halfway leaves it to tamper_teardown to put back, so that no later test or program
 * meets a broken chain. */
static int64_t tampered_from;

/* Keep the chain from seq k on (the chain lock held: nothing is appended meanwhile). */
static void tamper_snapshot(int64_t k)
{
    char seq[24];
    snprintf(seq, sizeof seq, "%lld", (long long)k);
    const char *p[] = {seq};
    assert_true(kc_sql_exec("CREATE TEMP TABLE tamper_i AS SELECT * FROM audit.intents"
                            " WHERE seq >= $1::bigint",
                            1, p) >= 0);
    assert_true(kc_sql_exec("CREATE TEMP TABLE tamper_o AS SELECT * FROM audit.outcomes"
                            " WHERE seq >= $1::bigint",
                            1, p) >= 0);
    tampered_from = k;
}

/* on: take the chain lock (writers wait) and turn the append-only triggers off, to rewrite the
 * stored chain under the service; off: the triggers on again, the lock released and the kept
 * copy (tamper_snapshot) dropped: the test has put the chain back itself. */
static void chain_rewriting(bool on)
{
    if (on) {
        assert_int_equal(kc_sql_count("SELECT pg_advisory_lock(" CHAIN_LOCK ")", 0, NULL), 1);
        triggers(false);
    } else {
        triggers(true);
        assert_int_equal(kc_sql_count("SELECT pg_advisory_unlock(" CHAIN_LOCK ")", 0, NULL), 1);
        if (tampered_from) {
            assert_true(kc_sql_exec("DROP TABLE tamper_i, tamper_o", 0, NULL) >= 0);
            tampered_from = 0;
        }
    }
}

/* Teardown of the tests that rewrite the chain: when one failed halfway, every row from the
 * kept seq on (renumbered ones past SHIFT included) is replaced by the kept copy, then the
 * triggers go back on and the lock is released. No assertion: it runs after a failure. */
static int tamper_teardown(void **state)
{
    (void)state;
    int rc = 0;
    if (tampered_from) {
        char seq[24];
        snprintf(seq, sizeof seq, "%lld", (long long)tampered_from);
        const char *p[] = {seq};
        kc_sql_exec("ALTER TABLE audit.intents DISABLE TRIGGER intents_append_only", 0, NULL);
        kc_sql_exec("ALTER TABLE audit.outcomes DISABLE TRIGGER outcomes_append_only", 0, NULL);
        if (kc_sql_exec("DELETE FROM audit.intents WHERE seq >= $1::bigint", 1, p) < 0 ||
            kc_sql_exec("DELETE FROM audit.outcomes WHERE seq >= $1::bigint", 1, p) < 0 ||
            kc_sql_exec("INSERT INTO audit.intents SELECT * FROM tamper_i", 0, NULL) < 0 ||
            kc_sql_exec("INSERT INTO audit.outcomes SELECT * FROM tamper_o", 0, NULL) < 0)
            rc = -1;
        kc_sql_exec("DROP TABLE IF EXISTS tamper_i, tamper_o, saved, saved_i, saved_o, cut_i,"
                    " cut_o",
                    0, NULL);
        tampered_from = 0;
    }
    kc_sql_exec("ALTER TABLE audit.intents ENABLE TRIGGER intents_append_only", 0, NULL);
    kc_sql_exec("ALTER TABLE audit.outcomes ENABLE TRIGGER outcomes_append_only", 0, NULL);
    kc_sql_count("SELECT pg_advisory_unlock_all()", 0, NULL);
    return rc;
}

static void expect_verdict_head(const char *problem, int64_t seq, int64_t head_seq,
                                const char *head_hash)
{
    Kooisv__Reply *r = send_verify_head(head_seq, head_hash);
    Kooisv__AuditVerifyResult *v = r->audit_verify;
    if (!problem) {
        if (!v->ok)
            fail_msg("chain reported %s at %lld (%s)", v->problem, (long long)v->first_bad_seq,
                     v->detail);
    } else {
        assert_false(v->ok);
        if (strcmp(v->problem, problem) != 0 || v->first_bad_seq != seq)
            fail_msg("expected %s at %lld, got %s at %lld (%s)", problem, (long long)seq,
                     v->problem, (long long)v->first_bad_seq, v->detail);
    }
    free_reply(r);
}

static void expect_verdict(const char *problem, int64_t seq)
{
    expect_verdict_head(problem, seq, 0, NULL);
}

/* A few fresh entries in the middle of which to tamper; returns the seq of the first intent. */
static int64_t fresh_entries(char *rids[3])
{
    int64_t first = 0;
    for (int i = 0; i < 3; i++) {
        rids[i] = kc_uid("t-");
        Kooisv__Reply *r = send_intent(rids[i], NULL);
        if (i == 0)
            first = intent_seq(r);
        free_reply(r);
        free_reply(send_outcome(rids[i], "000000"));
    }
    return first;
}

/* Move every intent and outcome whose seq is (cmp: ">=" or ">") seq by step ("+ 1", "- 1"),
 * through seq + SHIFT so that no two rows share a seq on the way. */
static void renumber(const char *cmp, const char *step, const char *seq)
{
    static const char *const tables[] = {"audit.intents", "audit.outcomes"};
    const char *ps[] = {seq};
    for (int t = 0; t < 2; t++) {
        char *sql = xasprintf("UPDATE %s SET seq = seq + " SHIFT " WHERE seq %s $1::bigint",
                              tables[t], cmp);
        assert_true(kc_sql_exec(sql, 1, ps) >= 0);
        free(sql);
    }
    for (int t = 0; t < 2; t++) {
        char *sql =
            xasprintf("UPDATE %s SET seq = seq - " SHIFT " %s WHERE seq > " SHIFT, tables[t], step);
        assert_true(kc_sql_exec(sql, 0, NULL) >= 0);
        free(sql);
    }
}

/* Start a rewrite of the stored chain: check that it verifies, write fresh entries (their
 * request ids in rids; caller frees) and chain_rewriting(true). Returns the seq of the first
 * fresh intent, also as text in seq. */
static int64_t tamper_begin(char *rids[3], char seq[24])
{
    expect_verdict(NULL, 0);
    int64_t k = fresh_entries(rids);
    snprintf(seq, 24, "%lld", (long long)k);
    /* Writers wait while the chain is being rewritten under them. */
    chain_rewriting(true);
    tamper_snapshot(k);
    return k;
}

static void test_tamper(void **state)
{
    (void)state;
    char *rids[3], seq[24], prev[24];
    int64_t k = tamper_begin(rids, seq);
    snprintf(prev, sizeof prev, "%lld", (long long)(k - 1));
    const char *ps[] = {seq};

    /* Modified: an edit in place. */
    char *orig = value("SELECT event_type FROM audit.intents WHERE seq = $1::bigint", seq);
    assert_int_equal(kc_sql_exec("UPDATE audit.intents SET event_type = 'forged' WHERE seq = $1::bigint", 1, ps), 1);
    expect_verdict("modified", k);
    const char *pr[] = {orig, seq};
    assert_int_equal(kc_sql_exec("UPDATE audit.intents SET event_type = $1 WHERE seq = $2::bigint", 2, pr), 1);
    free(orig);
    expect_verdict(NULL, 0);

    /* Removed: a row deleted (then put back exactly). */
    assert_true(kc_sql_exec("CREATE TEMP TABLE saved AS SELECT * FROM audit.intents WHERE seq = $1::bigint", 1, ps) >= 0);
    assert_int_equal(kc_sql_exec("DELETE FROM audit.intents WHERE seq = $1::bigint", 1, ps), 1);
    expect_verdict("removed", k);
    assert_int_equal(kc_sql_exec("INSERT INTO audit.intents SELECT * FROM saved", 0, NULL), 1);
    assert_true(kc_sql_exec("DROP TABLE saved", 0, NULL) >= 0);
    expect_verdict(NULL, 0);

    /* Inserted: a forged entry chained after k - 1, everything from k renumbered up by one. */
    renumber(">=", "+ 1", seq);
    char *prev_hex = value("SELECT encode(hash, 'hex') FROM audit.chain WHERE seq = $1::bigint", prev);
    assert_non_null(prev_hex);
    uint8_t prev_hash[32], hash[32];
    assert_true(entry_hash_from_hex(prev_hex, prev_hash));
    char *forged_rid = kc_uid("forged-");
    entry_intent_t x = {.seq = k, .request_id = forged_rid, .trace_id = "", .received_ms = 1,
                        .caller_kind = "operator", .caller_id = "mallory",
                        .event_type = "admin.app.secret", .resources = NULL, .nresources = 0,
                        .source_addr = "198.51.100.1", .nonce = "", .reject_reason = "",
                        .reject_code = ""};
    /* Slipped in by someone who holds the chain key too (the suite hands it to the tests), so
     * that the entry is self-consistent and verify tells "inserted" from "modified". */
    const char *key = suite_get("KOOISV_AUDIT_CHAIN_KEY");
    assert_non_null(key);
    char *from = value("SELECT keyed_from FROM audit.chain_epoch", NULL);
    assert_non_null(from);
    entry_chain_t chain = {
        .key = (const uint8_t *)key, .key_len = strlen(key), .keyed_from = strtoll(from, NULL, 10)};
    free(from);
    entry_intent_hash(&x, &chain, prev_hash, hash);
    char hash_hex[65];
    hex_encode(hash, 32, hash_hex);
    const char *pf[] = {seq, forged_rid, prev_hex, hash_hex};
    assert_int_equal(kc_sql_exec("INSERT INTO audit.intents VALUES ($1::bigint, $2, '', 1, 'operator',"
                                 " 'mallory', 'admin.app.secret', '[]', '198.51.100.1', false, '', 0,"
                                 " '', '', decode($3, 'hex'), decode($4, 'hex'))",
                                 4, pf),
                     1);
    expect_verdict("inserted", k);
    assert_int_equal(kc_sql_exec("DELETE FROM audit.intents WHERE request_id = $1", 1, pf + 1), 1);
    renumber(">", "- 1", seq);
    free(prev_hex);
    free(forged_rid);

    chain_rewriting(false);
    expect_verdict(NULL, 0);
    /* The chain still grows after the repair. */
    char *after = kc_uid("after-");
    free_reply(send_intent(after, NULL));
    expect_verdict(NULL, 0);
    free(after);
    for (int i = 0; i < 3; i++)
        free(rids[i]);
}

/* ---------------------------------------------------------------- forgery (issue 8 item 3) */

/* What the review did with the schema owner's rights: rewrite the chain from seq `from` to the
 * head with plain SHA-256(prev || content), each entry's content read back from the database,
 * so that every stored hash and link is consistent again. */
static void rehash_plain(int64_t from)
{
    PGconn *pg = kc_pg();
    assert_non_null(pg);
    char f[24], anchor[24];
    snprintf(f, sizeof f, "%lld", (long long)from);
    snprintf(anchor, sizeof anchor, "%lld", (long long)(from - 1));
    char *prev_hex =
        value("SELECT encode(hash, 'hex') FROM audit.chain WHERE seq = $1::bigint", anchor);
    uint8_t prev[32] = {0};
    assert_true(entry_hash_from_hex(prev_hex, prev));
    free(prev_hex);
    const char *p[] = {f};
    PGresult *r = PQexecParams(
        pg,
        "SELECT true, seq, request_id, trace_id, received_ms, caller_kind, caller_id, event_type,"
        " resources::text, source_addr, test_flag, nonce, nonce_ts_ms, reject_reason,"
        " reject_code, NULL, NULL, NULL, NULL FROM audit.intents WHERE seq >= $1::bigint"
        " UNION ALL SELECT false, seq, request_id, NULL, recorded_ms, NULL, NULL, NULL, NULL,"
        " NULL, NULL, NULL, NULL, NULL, NULL, result_code, result_msg, latency_us, http_status"
        " FROM audit.outcomes WHERE seq >= $1::bigint ORDER BY 2",
        1, NULL, p, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    for (int i = 0; i < PQntuples(r); i++) {
        bool is_intent = PQgetvalue(r, i, 0)[0] == 't';
        uint8_t *content = NULL;
        size_t len;
        if (is_intent) {
            json_error_t err;
            json_t *res = json_loads(PQgetvalue(r, i, 8), 0, &err);
            assert_true(json_is_array(res));
            size_t n = json_array_size(res);
            entry_resource_t *rs = xcalloc(n ? n : 1, sizeof *rs);
            for (size_t j = 0; j < n; j++) {
                rs[j].kind =
                    (char *)json_string_value(json_object_get(json_array_get(res, j), "kind"));
                rs[j].id = (char *)json_string_value(json_object_get(json_array_get(res, j), "id"));
            }
            entry_intent_t e = {.seq = strtoll(PQgetvalue(r, i, 1), NULL, 10),
                                .request_id = PQgetvalue(r, i, 2),
                                .trace_id = PQgetvalue(r, i, 3),
                                .received_ms = strtoll(PQgetvalue(r, i, 4), NULL, 10),
                                .caller_kind = PQgetvalue(r, i, 5),
                                .caller_id = PQgetvalue(r, i, 6),
                                .event_type = PQgetvalue(r, i, 7),
                                .resources = rs,
                                .nresources = n,
                                .source_addr = PQgetvalue(r, i, 9),
                                .test_flag = PQgetvalue(r, i, 10)[0] == 't',
                                .nonce = PQgetvalue(r, i, 11),
                                .nonce_ts_ms = strtoll(PQgetvalue(r, i, 12), NULL, 10),
                                .reject_reason = PQgetvalue(r, i, 13),
                                .reject_code = PQgetvalue(r, i, 14)};
            len = entry_intent_content(&e, &content);
            free(rs);
            json_decref(res);
        } else {
            entry_outcome_t o = {.seq = strtoll(PQgetvalue(r, i, 1), NULL, 10),
                                 .request_id = PQgetvalue(r, i, 2),
                                 .recorded_ms = strtoll(PQgetvalue(r, i, 4), NULL, 10),
                                 .result_code = PQgetvalue(r, i, 15),
                                 .result_msg = PQgetvalue(r, i, 16),
                                 .latency_us = strtoll(PQgetvalue(r, i, 17), NULL, 10),
                                 .http_status = strtoll(PQgetvalue(r, i, 18), NULL, 10)};
            len = entry_outcome_content(&o, &content);
        }
        uint8_t *buf = xmalloc(32 + len), hash[32];
        memcpy(buf, prev, 32);
        memcpy(buf + 32, content, len);
        sha256(buf, 32 + len, hash);
        free(buf);
        free(content);
        char prev_text[65], hash_text[65];
        hex_encode(prev, 32, prev_text);
        hex_encode(hash, 32, hash_text);
        const char *u[] = {PQgetvalue(r, i, 1), prev_text, hash_text};
        assert_int_equal(
            kc_sql_exec(is_intent ? "UPDATE audit.intents SET prev_hash = decode($2, 'hex'),"
                                    " hash = decode($3, 'hex') WHERE seq = $1::bigint"
                                  : "UPDATE audit.outcomes SET prev_hash = decode($2, 'hex'),"
                                    " hash = decode($3, 'hex') WHERE seq = $1::bigint",
                        3, u),
            1);
        memcpy(prev, hash, 32);
    }
    PQclear(r);
}

/* An entry rewritten with the triggers off and the chain re-hashed after it is reported: the
 * stored hashes are keyed, so SHA-256 recomputed without the key no longer matches. */
static void test_rehash_forgery_detected(void **state)
{
    (void)state;
    char *rids[3], seq[24];
    int64_t k = tamper_begin(rids, seq);
    const char *ps[] = {seq};
    /* Saved to put the chain back exactly afterwards. */
    assert_true(
        kc_sql_exec(
            "CREATE TEMP TABLE saved_i AS SELECT * FROM audit.intents WHERE seq >= $1::bigint", 1,
            ps) >= 0);
    assert_true(
        kc_sql_exec(
            "CREATE TEMP TABLE saved_o AS SELECT * FROM audit.outcomes WHERE seq >= $1::bigint", 1,
            ps) >= 0);
    assert_int_equal(
        kc_sql_exec("UPDATE audit.intents SET event_type = 'forged' WHERE seq = $1::bigint", 1, ps),
        1);
    rehash_plain(k);
    expect_verdict("modified", k);

    /* Undo: the saved rows back in place, the triggers on, the chain intact again. */
    assert_true(kc_sql_exec("DELETE FROM audit.intents WHERE seq >= $1::bigint", 1, ps) >= 0);
    assert_true(kc_sql_exec("DELETE FROM audit.outcomes WHERE seq >= $1::bigint", 1, ps) >= 0);
    assert_true(kc_sql_exec("INSERT INTO audit.intents SELECT * FROM saved_i", 0, NULL) >= 0);
    assert_true(kc_sql_exec("INSERT INTO audit.outcomes SELECT * FROM saved_o", 0, NULL) >= 0);
    assert_true(kc_sql_exec("DROP TABLE saved_i, saved_o", 0, NULL) >= 0);
    chain_rewriting(false);
    expect_verdict(NULL, 0);
    for (int i = 0; i < 3; i++)
        free(rids[i]);
}

/* The head file holds the last committed entry; the newest entries removed leave a chain that
 * verifies by itself, and only a head kept elsewhere shows the truncation. */
static void test_head_file_and_truncation(void **state)
{
    (void)state;
    char *rids[3];
    int64_t k = fresh_entries(rids);
    const char *path = suite_get("KOOISV_AUDIT_HEAD_PATH");
    assert_non_null(path);
    assert_int_equal(kc_sql_count("SELECT pg_advisory_lock(" CHAIN_LOCK ")", 0, NULL), 1);
    tamper_snapshot(k);
    char *text = config_read_file(path, NULL);
    assert_non_null(text);
    char *colon = strchr(text, ':');
    assert_non_null(colon);
    *colon = '\0';
    char *hash = colon + 1;
    hash[strcspn(hash, "\n")] = '\0';
    int64_t head = strtoll(text, NULL, 10);
    assert_true(head >= k + 5);
    char *stored =
        value("SELECT encode(hash, 'hex') FROM audit.chain WHERE seq = $1::bigint", text);
    char *max = value("SELECT max(seq)::text FROM audit.chain", NULL);
    assert_non_null(stored);
    assert_string_equal(stored, hash);
    assert_int_equal(strtoll(max, NULL, 10), head);
    expect_verdict_head(NULL, 0, head, hash);
    char bad[65];
    memset(bad, 'a', 64);
    bad[64] = '\0';
    expect_verdict_head("modified", head, head, bad);

    /* The newest entries deleted as superuser: the chain alone still looks intact. */
    char cut[24];
    snprintf(cut, sizeof cut, "%lld", (long long)(k + 3));
    const char *pc[] = {cut};
    triggers(false);
    assert_true(
        kc_sql_exec(
            "CREATE TEMP TABLE cut_i AS SELECT * FROM audit.intents WHERE seq >= $1::bigint", 1,
            pc) >= 0);
    assert_true(
        kc_sql_exec(
            "CREATE TEMP TABLE cut_o AS SELECT * FROM audit.outcomes WHERE seq >= $1::bigint", 1,
            pc) >= 0);
    assert_true(kc_sql_exec("DELETE FROM audit.intents WHERE seq >= $1::bigint", 1, pc) > 0);
    assert_true(kc_sql_exec("DELETE FROM audit.outcomes WHERE seq >= $1::bigint", 1, pc) > 0);
    expect_verdict(NULL, 0);
    expect_verdict_head("removed", head, head, hash);
    assert_true(kc_sql_exec("INSERT INTO audit.intents SELECT * FROM cut_i", 0, NULL) > 0);
    assert_true(kc_sql_exec("INSERT INTO audit.outcomes SELECT * FROM cut_o", 0, NULL) > 0);
    assert_true(kc_sql_exec("DROP TABLE cut_i, cut_o", 0, NULL) >= 0);
    chain_rewriting(false);
    expect_verdict_head(NULL, 0, head, hash);

    /* A malformed kept head is refused, not taken as "none". */
    Kooisv__Envelope env = KOOISV__ENVELOPE__INIT;
    Kooisv__AuditVerify v = KOOISV__AUDIT_VERIFY__INIT;
    env.request_id = "verify-bad-head";
    v.expect_head_seq = head;
    v.expect_head_hash = "not-hex";
    env.body_case = KOOISV__ENVELOPE__BODY_AUDIT_VERIFY;
    env.audit_verify = &v;
    Kooisv__Reply *r = call(client, &env);
    assert_string_equal(r->result_code, "000002");
    free_reply(r);
    free(stored);
    free(max);
    free(text);
    for (int i = 0; i < 3; i++)
        free(rids[i]);
}

/* The running audit process was never given the schema owner's connection: neither its
 * environment nor its arguments name it (the runner migrates in a separate step). */
static void test_no_owner_dsn_in_service(void **state)
{
    (void)state;
    const char *dir = suite_get("KOOISV_SUITE_DIR");
    assert_non_null(dir);
    char path[4096];
    snprintf(path, sizeof path, "%s/run/audit.pid", dir);
    size_t len = 0;
    char *pid = config_read_file(path, &len);
    assert_non_null(pid);
    const char *files[] = {"environ", "cmdline"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "/proc/%ld/%s", strtol(pid, NULL, 10), files[i]);
        char *text = config_read_file(path, &len);
        assert_non_null(text);
        assert_true(len > 0);
        for (size_t j = 0; j < len; j++)
            if (!text[j])
                text[j] = '\n';
        if (strstr(text, "KOOISV_PG_MIGRATE_DSN") || strstr(text, "audit_owner"))
            fail_msg("the audit process's %s names the schema owner's connection", files[i]);
        free(text);
    }
    free(pid);
}

static int setup(void **state)
{
    (void)state;
    client = audit_client();
    return 0;
}

/* Whatever a failed assertion left behind: triggers back on, the chain lock released. */
static int teardown(void **state)
{
    (void)state;
    kc_sql_exec("ALTER TABLE audit.intents ENABLE TRIGGER intents_append_only", 0, NULL);
    kc_sql_exec("ALTER TABLE audit.outcomes ENABLE TRIGGER outcomes_append_only", 0, NULL);
    kc_sql_count("SELECT pg_advisory_unlock_all()", 0, NULL);
    rpc_client_destroy(&client);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_intent_stored_once),
        cmocka_unit_test(test_outcome_needs_intent),
        cmocka_unit_test(test_outcome_batch),
        cmocka_unit_test(test_outcome_batch_size_refused),
        cmocka_unit_test(test_second_writer),
        cmocka_unit_test(test_outcome_waits_for_an_intent),
        cmocka_unit_test(test_head_moved),
        cmocka_unit_test(test_bad_records_refused),
        cmocka_unit_test(test_replay_refused),
        cmocka_unit_test(test_stale_nonce_refused),
        cmocka_unit_test(test_expired_nonces_pruned),
        cmocka_unit_test(test_replay_concurrent),
        cmocka_unit_test(test_query),
        cmocka_unit_test(test_resource_index),
        cmocka_unit_test(test_append_only),
        cmocka_unit_test_teardown(test_tamper, tamper_teardown),
        cmocka_unit_test_teardown(test_rehash_forgery_detected, tamper_teardown),
        cmocka_unit_test_teardown(test_head_file_and_truncation, tamper_teardown),
        cmocka_unit_test(test_no_owner_dsn_in_service),
    };
    return KC_SUITE_MAIN(tests, setup, teardown);
}
