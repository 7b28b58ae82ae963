/* cryptoutil: the small primitives every signature rule is built from. */
#ifndef KOOISV_CRYPTOUTIL_H
#define KOOISV_CRYPTOUTIL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* out[32] = HMAC-SHA256(key, data). */
void hmac_sha256(const void *key, size_t key_len, const void *data, size_t len, uint8_t out[32]);
/* out[32] = SHA-256(data). */
void sha256(const void *data, size_t len, uint8_t out[32]);
/* Lowercase hex of len bytes into out (2*len + 1 bytes); returns out. */
char *hex_encode(const uint8_t *bytes, size_t len, char *out);
/* Standard base64 with padding. Caller owns the result. */
char *b64_encode(const uint8_t *bytes, size_t len);
/* Decode standard base64 (padding required, no whitespace). Caller owns *out; -1 on bad input. */
int b64_decode(const char *text, uint8_t **out, size_t *out_len);
/* Constant-time comparison of two hex strings, ignoring ASCII case; false on length mismatch. */
bool hex_equal_ci(const char *a, const char *b);
/* Constant-time equality of two byte strings of equal length. */
bool bytes_equal(const void *a, const void *b, size_t len);

#endif
