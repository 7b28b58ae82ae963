/* auditrec: the audit record of one call, the same for the marketplace's calls (produce.c) and
 * the operators' (admincall.c). Its intent is stored by the audit service BEFORE the call runs:
 * a call whose intent is not stored does not run (nothing runs unlogged). After the answer its
 * outcome is appended. A call answered without a stored intent (refused by the gateway, or the
 * audit service failed) is recorded as a rejected intent carrying the answer's code and message,
 * then its outcome, queued in that order. */
#ifndef KOOISV_AUDITREC_H
#define KOOISV_AUDITREC_H
#include <stdbool.h>
#include <stdint.h>
#include "auditq.h"
#include "dispatch.h"
#include "envelope.pb-c.h"

/* Ask the audit service to store intent for the call whose identity env carries (the body is
 * set here; env and intent need only live during this call). done gets the reply later, or runs
 * at once with NULL when no audit service is configured. */
void auditrec_send_intent(dispatch_t *dispatch, Kooisv__Envelope *env, Kooisv__AuditIntent *intent,
                          int timeout_ms, dispatch_done_fn done, void *arg);
/* True when reply (NULL: none in time) says the intent is stored; *replay (when replay is not
 * NULL) tells whether the audit service had already seen the intent's nonce. */
bool auditrec_intent_stored(const Kooisv__Reply *reply, bool *replay);
/* Record the outcome of an answered call (code, msg, latency, HTTP status) through auditq, with
 * env the call's identity (body set here). When intent_stored is false, intent goes first, as a
 * rejection with code and msg. */
void auditrec_outcome(auditq_t *auditq, Kooisv__Envelope *env, Kooisv__AuditIntent *intent,
                      bool intent_stored, const char *code, const char *msg, int64_t latency_us,
                      int http_status);

#endif
