/* licensesig: licenses (getLicenseAsync, spec §3) signed with Ed25519 (RFC 8032, OpenSSL EVP),
 * so that the seller's software checks them offline with the public key alone:
 *
 *   license = "KL2." base64url(payload) "." base64url(signature)      (base64url: RFC 4648 §5,
 *             no padding; the signature is 64 bytes, 86 characters)
 *   signed bytes = the ASCII text before the second dot: "KL2." base64url(payload)
 *   payload = the caller's JSON object (the order service: compact, sorted keys) with "kid"
 *             added: the first 16 hex digits of SHA-256 of the raw 32-byte public key.
 *
 * Licenses of the earlier format "KL1." (an HMAC, not checkable without the secret) are
 * recognised by licensesig_verify and refused as such. */
#ifndef KOOISV_LICENSESIG_H
#define KOOISV_LICENSESIG_H
#include <jansson.h>
#include <stddef.h>

typedef struct licensesig_t licensesig_t;

/* A signer from a PEM Ed25519 private key (PKCS#8, as `openssl genpkey -algorithm ed25519`
 * writes it). NULL with a one-line reason in why (never the key) otherwise. Caller owns it. */
licensesig_t *licensesig_new(const char *pem, char *why, size_t whylen);
/* Free *self_p (the key is wiped) and set it to NULL. */
void licensesig_destroy(licensesig_t **self_p);
/* The public key as PEM (SubjectPublicKeyInfo, "-----BEGIN PUBLIC KEY-----"), owned by self. */
const char *licensesig_public_pem(const licensesig_t *self);
/* The key id written into every payload as "kid" (16 lowercase hex digits), owned by self. */
const char *licensesig_key_id(const licensesig_t *self);
/* The license of payload (a JSON object; "kid" is set in it). Caller owns the result; NULL only
 * when payload is not an object or cannot be dumped. Thread-safe. */
char *licensesig_sign(const licensesig_t *self, json_t *payload);
/* Check license against a PEM Ed25519 public key: 0 with the payload in *payload_out (caller
 * json_decref; may be NULL) when the signature holds; -1 with a one-line reason in why when the
 * key is not an Ed25519 public key, the license is malformed, of the HMAC format KL1, or its
 * signature does not hold. */
int licensesig_verify(const char *public_pem, const char *license, json_t **payload_out, char *why,
                      size_t whylen);

#endif
