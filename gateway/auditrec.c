#include "auditrec.h"
#include "resultcode.h"

#include <string.h>

void auditrec_send_intent(dispatch_t *dispatch, Kooisv__Envelope *env, Kooisv__AuditIntent *intent,
                          int timeout_ms, dispatch_done_fn done, void *arg)
{
    env->body_case = KOOISV__ENVELOPE__BODY_AUDIT_INTENT;
    env->audit_intent = intent;
    if (dispatch_call(dispatch, SVC_AUDIT, env, timeout_ms, done, arg) != 0)
        done(NULL, arg);
}

bool auditrec_intent_stored(const Kooisv__Reply *reply, bool *replay)
{
    bool stored = reply && reply->result_code && strcmp(reply->result_code, RC_OK) == 0;
    if (replay)
        *replay = stored && reply->result_case == KOOISV__REPLY__RESULT_AUDIT_INTENT &&
                  reply->audit_intent && reply->audit_intent->replay;
    return stored;
}

void auditrec_outcome(auditq_t *auditq, Kooisv__Envelope *env, Kooisv__AuditIntent *intent,
                      bool intent_stored, const char *code, const char *msg, int64_t latency_us,
                      int http_status)
{
    Kooisv__AuditOutcome outcome = KOOISV__AUDIT_OUTCOME__INIT;
    outcome.result_code = (char *)code;
    outcome.result_msg = (char *)msg;
    outcome.latency_us = latency_us;
    outcome.http_status = http_status;
    if (intent_stored) {
        env->body_case = KOOISV__ENVELOPE__BODY_AUDIT_OUTCOME;
        env->audit_outcome = &outcome;
        auditq_deliver(auditq, env);
        return;
    }
    /* The intent never got stored: keep it, as a rejection, ahead of its outcome. */
    intent->reject_code = (char *)code;
    intent->reject_reason = (char *)msg;
    env->body_case = KOOISV__ENVELOPE__BODY_AUDIT_INTENT;
    env->audit_intent = intent;
    auditq_enqueue(auditq, env);
    env->body_case = KOOISV__ENVELOPE__BODY_AUDIT_OUTCOME;
    env->audit_outcome = &outcome;
    auditq_enqueue(auditq, env);
}
