#include "intake.h"
#include "resultcode.h"

#include <stdlib.h>
#include <string.h>

#include "entry.h"
#include "log.h"
#include "timeutil.h"
#include "transport.h"
#include "xmalloc.h"

/* The writer thread's answer to an intent. */
static void intent_done(const journal_result_t *res, void *arg)
{
    svc_call_t *call = arg;
    const char *rid = svc_call_rid(call);
    const Kooisv__Envelope *env = svc_call_request(call);
    if (res->replay)
        log_warn(rid, "replay refused: caller %s nonce already used",
                 env->caller && env->caller->id ? env->caller->id : "-");
    log_debug(rid, "audit intent %s: seq %lld", res->code, (long long)res->seq);
    if (strcmp(res->code, RC_OK) == 0) {
        Kooisv__AuditIntentResult *out = svc_call_alloc(call, sizeof *out);
        kooisv__audit_intent_result__init(out);
        out->seq = res->seq;
        out->replay = res->replay;
        Kooisv__Reply *reply = svc_call_reply(call);
        reply->result_case = KOOISV__REPLY__RESULT_AUDIT_INTENT;
        reply->audit_intent = out;
    }
    svc_call_result(call, res->code, "%s", res->msg);
    svc_call_finish(call);
}

void intake_intent(journal_t *journal, svc_call_t *call)
{
    const Kooisv__Envelope *env = svc_call_request(call);
    entry_intent_t in;
    const char *why = entry_intent_from_envelope(&in, env);
    if (why) {
        log_warn(svc_call_rid(call), "audit intent refused: %s", why);
        entry_intent_clear(&in);
        svc_call_result(call, RC_INVALID, "%s", why);
        svc_call_finish(call);
        return;
    }
    journal_submit_intent(journal, &in, intent_done, call);
}

/* The writer thread's answer to an outcome. */
static void outcome_done(const journal_result_t *res, void *arg)
{
    svc_call_t *call = arg;
    if (strcmp(res->code, RC_OK) != 0)
        log_warn(svc_call_rid(call), "audit outcome not stored: %s", res->msg);
    svc_call_result(call, res->code, "%s", res->msg);
    svc_call_finish(call);
}

void intake_outcome(journal_t *journal, svc_call_t *call)
{
    const Kooisv__Envelope *env = svc_call_request(call);
    entry_outcome_t out;
    const char *why = entry_outcome_from_envelope(&out, env, time_now_ms());
    if (why) {
        log_warn(svc_call_rid(call), "audit outcome refused: %s", why);
        entry_outcome_clear(&out);
        svc_call_result(call, RC_INVALID, "%s", why);
        svc_call_finish(call);
        return;
    }
    journal_submit_outcome(journal, &out, outcome_done, call);
}

/* A batch of outcomes being stored: answered when its last stored outcome is. */
typedef struct {
    svc_call_t *call;
    Kooisv__AuditOutcomeBatchResult *result; /* codes set as outcomes are answered */
    size_t waiting;                          /* submitted, not answered yet */
    bool all_final;                          /* no outcome answered 000005 so far */
} outcomes_t;

typedef struct {
    outcomes_t *batch;
    size_t index;
} outcome_slot_t;

/* The whole batch's reply: 000000 when every outcome got a final answer (stored or refused),
 * else 000005 (the caller sends the others again), with every code. */
static void outcomes_answer(outcomes_t *b)
{
    svc_call_t *call = b->call;
    Kooisv__Reply *reply = svc_call_reply(call);
    reply->result_case = KOOISV__REPLY__RESULT_AUDIT_OUTCOMES;
    reply->audit_outcomes = b->result;
    if (b->all_final)
        svc_call_result(call, RC_OK, "%zu outcomes answered", b->result->n_result_codes);
    else
        svc_call_result(call, RC_INTERNAL, "audit store unavailable for some outcomes");
    free(b);
    svc_call_finish(call);
}

/* The writer thread's answer to one outcome of a batch. */
static void outcomes_done(const journal_result_t *res, void *arg)
{
    outcome_slot_t *slot = arg;
    outcomes_t *b = slot->batch;
    if (strcmp(res->code, RC_OK) != 0)
        log_warn(svc_call_rid(b->call), "audit outcome %zu of the batch not stored: %s",
                 slot->index, res->msg);
    b->result->result_codes[slot->index] = (char *)res->code; /* a static string */
    b->all_final = b->all_final && strcmp(res->code, RC_INTERNAL) != 0;
    free(slot);
    if (--b->waiting == 0)
        outcomes_answer(b);
}

void intake_outcomes(journal_t *journal, svc_call_t *call)
{
    const Kooisv__Envelope *env = svc_call_request(call);
    const Kooisv__AuditOutcomeBatch *batch = env->audit_outcomes;
    size_t n = batch ? batch->n_outcomes : 0;
    if (n == 0 || n > TRANSPORT_OUTCOME_BATCH_MAX) {
        log_warn(svc_call_rid(call), "audit outcome batch refused: %zu outcomes", n);
        svc_call_result(call, RC_INVALID, "an outcome batch holds 1 to %d outcomes",
                        TRANSPORT_OUTCOME_BATCH_MAX);
        svc_call_finish(call);
        return;
    }
    outcomes_t *b = xcalloc(1, sizeof *b);
    b->call = call;
    b->all_final = true;
    b->result = svc_call_alloc(call, sizeof *b->result);
    kooisv__audit_outcome_batch_result__init(b->result);
    b->result->n_result_codes = n;
    b->result->result_codes = svc_call_alloc(call, n * sizeof *b->result->result_codes);
    /* Parse all first: the count of outcomes to wait for is known before the writer answers. */
    entry_outcome_t *entries = xcalloc(n, sizeof *entries);
    int64_t now = time_now_ms();
    for (size_t i = 0; i < n; i++) {
        const Kooisv__AuditOutcome *out = batch->outcomes[i];
        const char *why = entry_outcome_from(&entries[i], out ? out->request_id : NULL, out, now);
        if (why) {
            log_warn(svc_call_rid(call), "audit outcome %zu of the batch refused: %s", i, why);
            entry_outcome_clear(&entries[i]);
            b->result->result_codes[i] = (char *)RC_INVALID;
        } else {
            b->waiting++;
        }
    }
    if (b->waiting == 0) {
        free(entries);
        outcomes_answer(b);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (!entries[i].request_id)
            continue;
        outcome_slot_t *slot = xcalloc(1, sizeof *slot);
        slot->batch = b;
        slot->index = i;
        journal_submit_outcome(journal, &entries[i], outcomes_done, slot);
    }
    free(entries);
}
