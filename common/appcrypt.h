/* appcrypt: encryption of appInfo userName/password on the wire (spec §3). The AES key is the
 * first 32 (encryptType "1", AES-256) or 16 (encryptType "2", AES-128) output bytes of Java's
 * SecureRandom("SHA1PRNG") seeded with the seller key; CBC with PKCS#5 padding; wire form is the
 * 16-character alphanumeric IV text followed by base64(ciphertext). */
#ifndef KOOISV_APPCRYPT_H
#define KOOISV_APPCRYPT_H
#include <stddef.h>
#include <stdint.h>

/* Fill out[len] with the SHA1PRNG stream seeded with seed (len <= 64). */
void appcrypt_derive_key(const char *seed, uint8_t *out, size_t len);
/* Wire form of plain under encrypt_type "1" or "2"; iv16 = 16 alphanumeric chars or NULL for a
 * random one. Caller owns the result; NULL on a bad encrypt_type or iv. */
char *appcrypt_encrypt(const char *seed, const char *encrypt_type, const char *plain,
                       const char *iv16);
/* Inverse of appcrypt_encrypt. Caller owns the result; NULL on malformed input or bad padding. */
char *appcrypt_decrypt(const char *seed, const char *encrypt_type, const char *wire);

#endif
