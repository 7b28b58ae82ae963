/* usagesign: signatures for calls the seller makes with the seller key (spec §6, usage push):
 *   signature = base64(HMAC-SHA256(key, "ts={ts}&nonce={nonce}&body={canonical body}")),
 * and the legacy V1 authToken (vectors.json v1AuthToken), kept for V1 callers. */
#ifndef KOOISV_USAGESIGN_H
#define KOOISV_USAGESIGN_H
#include <jansson.h>

/* Usage-push signature over body exactly as given: pass the canonical text that is also sent.
 * Caller owns the result. */
char *usagesign_signature(const char *key, const char *ts, const char *nonce, const char *body);
/* V1 authToken over params (a flat object of strings); string_to_sign, if non-NULL, receives the
 * signed text (caller owns). Caller owns the result. */
char *usagesign_v1_token(const char *key, const json_t *params, char **string_to_sign);

#endif
