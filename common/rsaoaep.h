/* rsaoaep: decrypt the kit clientSecret (spec §4): RSA-OAEP with the seller's private key
 * (>= 3072 bits), trying OAEP SHA-256/MGF1-SHA-1, SHA-256/MGF1-SHA-256, SHA-1/MGF1-SHA-1. */
#ifndef KOOISV_RSAOAEP_H
#define KOOISV_RSAOAEP_H
#include <openssl/evp.h>
#include <stddef.h>

/* Load a PEM private key from a file; NULL (why set) if unreadable, not RSA, or < 3072 bits. */
EVP_PKEY *rsaoaep_load_private(const char *path, const char **why);
/* Load a PEM public key (SubjectPublicKeyInfo) from a file; NULL (why set) if unreadable, not
 * RSA, or < 3072 bits. */
EVP_PKEY *rsaoaep_load_public(const char *path, const char **why);
/* Decrypt base64 ciphertext. Caller owns *plain (NUL-terminated; free with xfree_secret).
 * Returns 0 on success, -1 if no variant decrypts. */
int rsaoaep_decrypt(EVP_PKEY *key, const char *b64, char **plain, size_t *plain_len);
/* Encrypt with the public half using variant 0..2 (tests, the emulator). Caller owns result. */
char *rsaoaep_encrypt(EVP_PKEY *key, int variant, const void *plain, size_t len);

#endif
