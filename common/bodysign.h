/* bodysign: the response signature header (spec §1):
 *   Body-Sign: sign_type="HMAC-SHA256", signature="<base64(HMAC-SHA256(key, body))>" */
#ifndef KOOISV_BODYSIGN_H
#define KOOISV_BODYSIGN_H
#include <stdbool.h>
#include <stddef.h>

/* Header value for body. Caller owns the result. */
char *bodysign_header(const char *key, const char *body, size_t len);
/* True when header is exactly the value bodysign_header would produce (constant-time). */
bool bodysign_verify(const char *key, const char *body, size_t len, const char *header);

#endif
