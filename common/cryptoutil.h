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
/* PEM passphrase callback that refuses: a key file with a passphrase must fail, not prompt on the
 * terminal of a daemon. */
int pem_no_passphrase(char *buf, int size, int rwflag, void *u);
/* Value of one hex digit of either case, -1 for any other character. */
int hex_digit_value(char c);
/* Decode the first 2*len hex digits (either case) of hex into out[len]; false, out wiped, on a
 * non-hex character (the caller checks the length: hex must hold at least 2*len characters). */
bool hex_decode(const char *hex, uint8_t *out, size_t len);
/* Standard base64 with padding. Caller owns the result. */
char *b64_encode(const uint8_t *bytes, size_t len);
/* Decode standard base64 (padding required, no whitespace). Caller owns *out; -1 on bad input. */
int b64_decode(const char *text, uint8_t **out, size_t *out_len);
/* Constant-time comparison of two hex strings, ignoring ASCII case; false on length mismatch. */
bool hex_equal_ci(const char *a, const char *b);
/* Constant-time equality of two byte strings of equal length. */
bool bytes_equal(const void *a, const void *b, size_t len);

#endif
