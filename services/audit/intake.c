#include "intake.h"
#include "resultcode.h"

#include <string.h>

#include "entry.h"
#include "log.h"
#include "timeutil.h"

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
