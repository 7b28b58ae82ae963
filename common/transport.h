/* transport: protobuf envelopes over ZeroMQ (ARCHITECTURE.md "Messages"), the part both sides
 * share: the process-wide ZeroMQ context and the packing of an envelope.
 * Wire: a client DEALER sends [empty frame][packed Kooisv__Envelope]; a service replica's ROUTER
 * hands the request to one of its worker threads; the reply is [empty frame][packed Kooisv__Reply]
 * carrying the same request_id. Every connection is CURVE-authenticated (zmqauth.h): only the
 * clients a service admits reach it. The service side is svc.h, the blocking client rpc.h, the
 * expansion of endpoint lists endpoint.h. */
#ifndef KOOISV_TRANSPORT_H
#define KOOISV_TRANSPORT_H
#include <stddef.h>
#include <stdint.h>
#include "envelope.pb-c.h"

/* Most outcomes one AuditOutcomeBatch may carry (the audit service refuses a larger one). */
#define TRANSPORT_OUTCOME_BATCH_MAX 256

/* The process-wide ZeroMQ context (created on first use, never destroyed). */
void *transport_context(void);
/* Pack an envelope into a new buffer; returns its length. Caller owns *buf. */
size_t transport_pack_envelope(const Kooisv__Envelope *env, uint8_t **buf);

#endif
