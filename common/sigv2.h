/* sigv2: the marketplace's request signatures. Basic interfaces (spec §2):
 *   inner = hex(HMAC(key, payload)); signature = hex(HMAC(key, key + nonce + timestamp + inner)).
 * Kit interfaces (spec §4): x-sign = hex(HMAC(key, key + nonce + timestamp + payload)).
 * payload is the canonical JSON; verification also accepts the same computation over the exact
 * raw body bytes. Hex compares are case-insensitive and constant-time. */
#ifndef KOOISV_SIGV2_H
#define KOOISV_SIGV2_H
#include <stddef.h>
#include <stdint.h>

#define SIGV2_WINDOW_MS 60000

typedef enum {
    SIGV2_OK = 0,          /* signature valid over the canonical payload */
    SIGV2_OK_RAW,          /* signature valid over the raw body bytes only */
    SIGV2_NO_TIMESTAMP,    /* timestamp or nonce missing/malformed  -> 000002 */
    SIGV2_STALE,           /* |now - timestamp| > window           -> 000002 */
    SIGV2_NO_SIGNATURE,    /* signature missing                    -> 000001 */
    SIGV2_BAD_SIGNATURE,   /* signature does not match              -> 000001 */
} sigv2_result_t;

typedef enum { SIGV2_BASIC, SIGV2_KIT } sigv2_kind_t;

typedef struct {
    sigv2_kind_t kind;
    const char *key;           /* seller key (basic) or kit key */
    const char *timestamp;     /* as received, may be NULL */
    const char *nonce;         /* may be NULL */
    const char *signature;     /* hex, may be NULL */
    const char *canonical;     /* canonical payload, may be NULL if the body did not parse */
    size_t canonical_len;
    const char *raw;           /* exact body bytes */
    size_t raw_len;
    int64_t now_ms;            /* the verifier's clock */
    int64_t window_ms;         /* 0 = SIGV2_WINDOW_MS */
} sigv2_check_t;

/* Lowercase hex signature of payload into out[65] for kind/key/nonce/timestamp. */
void sigv2_sign(sigv2_kind_t kind, const char *key, const char *nonce, const char *timestamp,
                const char *payload, size_t len, char out[65]);
/* The checks that need no HMAC and no body: timestamp and nonce present and well-formed, the
 * timestamp inside the window, a signature of 64 hex digits. SIGV2_OK when all pass (the
 * signature itself is still unchecked); else the verdict sigv2_verify would give. */
sigv2_result_t sigv2_precheck(const sigv2_check_t *check);
/* Verify a request as described above (sigv2_precheck first). */
sigv2_result_t sigv2_verify(const sigv2_check_t *check);
/* Short English reason for a result, for resultMsg and the audit record. */
const char *sigv2_reason(sigv2_result_t r);

#endif
