/* webhook: signed HTTPS POSTs of JSON events to a seller's application (provisioning, outbox
 * delivery). Headers: X-Kooisv-Timestamp = Unix milliseconds, X-Kooisv-Signature =
 * lowercase hex(HMAC-SHA256(secret, timestamp + "." + body)); Content-Type: application/json.
 * Receivers recompute the signature over the exact body bytes and bound the timestamp's age. */
#ifndef KOOISV_WEBHOOK_H
#define KOOISV_WEBHOOK_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "httpc.h"

/* out[65] = hex HMAC-SHA256(secret, timestamp "." body). */
void webhook_sign(const char *secret, const char *timestamp, const char *body, size_t len,
                  char out[65]);
/* True when signature (hex, any case) matches and |now_ms - timestamp| <= window_ms. */
bool webhook_verify(const char *secret, const char *timestamp, const char *signature,
                    const char *body, size_t len, int64_t now_ms, int64_t window_ms);
/* POST event_json to url, signed with secret. Returns 0 when a 2xx response arrived, -1
 * otherwise (out->status is the HTTP status or 0, out->error says why). out is filled in both
 * cases: free it with httpc_response_free. opt may be NULL (system CAs, 5 s). */
int webhook_post(const char *url, const char *secret, const char *event_json,
                 const httpc_options_t *opt, httpc_response_t *out);

#endif
