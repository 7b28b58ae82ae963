/* sealbox: encryption at rest with AES-256-GCM under a 32-byte data key. Text form:
 *   "v1:" base64(12-byte nonce | ciphertext | 16-byte tag)
 * An associated-data string binds a sealed value to its row (e.g. the instance id), so a value
 * copied to another row fails to open. */
#ifndef KOOISV_SEALBOX_H
#define KOOISV_SEALBOX_H
#include <stddef.h>
#include <stdint.h>

/* Parse a data key given as 64 hex chars or base64 of 32 bytes into key[32]; -1 if malformed. */
int sealbox_parse_key(const char *text, uint8_t key[32]);
/* Seal plain (len bytes) bound to aad (may be ""). Caller owns the result. */
char *sealbox_seal(const uint8_t key[32], const char *aad, const void *plain, size_t len);
/* Open a sealed text; caller owns *out (NUL-terminated, *out_len excludes it). -1 if tampered,
 * malformed, or the aad/key differ. */
int sealbox_open(const uint8_t key[32], const char *aad, const char *sealed, char **out,
                 size_t *out_len);

#endif
