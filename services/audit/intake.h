/* intake: AuditIntent and AuditOutcome envelopes into journal records, and the replies. */
#ifndef KOOISV_AUDIT_INTAKE_H
#define KOOISV_AUDIT_INTAKE_H
#include "journal.h"
#include "svc.h"

/* For calls taken without a worker (svc.h handle_async): each returns at once and finishes the
 * call (svc_call_finish) from the journal's writer thread once its record is committed, or at
 * once when the record is malformed (000002). */

/* Record the intent of the call (after the replay check); replies 000000 only once committed,
 * with AuditIntentResult{seq, replay}. */
void intake_intent(journal_t *journal, svc_call_t *call);
/* Append the outcome of a call (stored once per request id); replies once committed. */
void intake_outcome(journal_t *journal, svc_call_t *call);

/* Append a batch of outcomes (AuditOutcomeBatch, each with its request id): each is stored or
 * refused as it would be alone; the reply, once all are answered, holds each one's code
 * (AuditOutcomeBatchResult) and is 000000 when every one was stored or refused, 000005 when
 * some could not be stored. A batch of none or more than TRANSPORT_OUTCOME_BATCH_MAX is refused
 * whole (000002). */
void intake_outcomes(journal_t *journal, svc_call_t *call);

#endif
