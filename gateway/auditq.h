/* auditq: delivery of audit records (intents the gateway could not get stored in time, and
 * outcomes) to the audit service, retried with backoff until stored. One per worker thread;
 * records are kept in memory in arrival order, so a record queued after another is stored after
 * it (an intent before its outcome). Outcomes delivered within a couple of milliseconds of each
 * other go to the audit service as one AuditOutcomeBatch (one message, one answer, each outcome
 * answered on its own: one that was not stored joins the retry queue alone). */
#ifndef KOOISV_AUDITQ_H
#define KOOISV_AUDITQ_H
#include <event2/event.h>
#include <stddef.h>
#include "dispatch.h"
#include "envelope.pb-c.h"

typedef struct auditq auditq_t;

/* A queue on base sending through dispatch; each attempt waits up to timeout_ms. */
auditq_t *auditq_new(struct event_base *base, dispatch_t *dispatch, int timeout_ms);
/* Forget records still queued (each logged as lost, with its request id) and set *self_p to
 * NULL. Call auditq_detach first when the dispatcher goes away before the queue. */
void auditq_destroy(auditq_t **self_p);
/* Stop using the dispatcher: later records are only kept in memory until destroy. */
void auditq_detach(auditq_t *self);
/* Deliver env (audit body set): sent at once (an outcome with the next batch, within
 * milliseconds); if that fails it joins the retry queue. */
void auditq_deliver(auditq_t *self, const Kooisv__Envelope *env);
/* Put env at the tail of the retry queue without a direct attempt, to keep it after records
 * already waiting (e.g. an outcome behind its intent). */
void auditq_enqueue(auditq_t *self, const Kooisv__Envelope *env);
/* Records waiting (queued or being sent). */
size_t auditq_pending(const auditq_t *self);

#endif
