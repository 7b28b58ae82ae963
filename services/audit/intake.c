#include "intake.h"
#include "resultcode.h"

#include <string.h>

#include "entry.h"
#include "log.h"
#include "timeutil.h"

void intake_intent(journal_t *journal, svc_call_t *call)
{
    const Kooisv__Envelope *env = svc_call_request(call);
    const char *rid = svc_call_rid(call);
    entry_intent_t in;
    const char *why = entry_intent_from_envelope(&in, env);
    if (why) {
        log_warn(rid, "audit intent refused: %s", why);
        entry_intent_clear(&in);
        svc_call_result(call, RC_INVALID, "%s", why);
        return;
    }
    journal_result_t res;
    journal_append_intent(journal, &in, &res);
    if (res.replay)
        log_warn(rid, "replay refused: caller %s nonce already used", in.caller_id);
    log_debug(rid, "audit intent %s: seq %lld event %s", res.code, (long long)res.seq,
              in.event_type);
    entry_intent_clear(&in);
    if (strcmp(res.code, RC_OK) == 0) {
        Kooisv__AuditIntentResult *out = svc_call_alloc(call, sizeof *out);
        kooisv__audit_intent_result__init(out);
        out->seq = res.seq;
        out->replay = res.replay;
        Kooisv__Reply *reply = svc_call_reply(call);
        reply->result_case = KOOISV__REPLY__RESULT_AUDIT_INTENT;
        reply->audit_intent = out;
    }
    svc_call_result(call, res.code, "%s", res.msg);
}

void intake_outcome(journal_t *journal, svc_call_t *call)
{
    const Kooisv__Envelope *env = svc_call_request(call);
    const char *rid = svc_call_rid(call);
    entry_outcome_t out;
    const char *why = entry_outcome_from_envelope(&out, env, time_now_ms());
    if (why) {
        log_warn(rid, "audit outcome refused: %s", why);
        entry_outcome_clear(&out);
        svc_call_result(call, RC_INVALID, "%s", why);
        return;
    }
    journal_result_t res;
    journal_append_outcome(journal, &out, &res);
    if (strcmp(res.code, RC_OK) != 0)
        log_warn(rid, "audit outcome not stored: %s", res.msg);
    entry_outcome_clear(&out);
    svc_call_result(call, res.code, "%s", res.msg);
}
