/* entry: one audit trail entry as it is stored and chained (ARCHITECTURE.md "Audit and replay").
 * Intents and outcomes share one gapless sequence; each entry's hash is keyed:
 *     hash = HMAC-SHA256(KOOISV_AUDIT_CHAIN_KEY, prev_hash || canonical content)
 * with prev_hash = 32 zero bytes for seq 1. The key never reaches the database, so whoever can
 * rewrite the tables (the schema owner, a superuser) cannot re-hash a rewritten chain. Entries
 * written before the chain was keyed (seq < keyed_from, see epoch.h) keep their plain
 *     hash = SHA-256(prev_hash || canonical content)
 * and the first keyed entry's HMAC covers the last legacy hash, so they cannot be rewritten
 * either once a keyed entry follows. The canonical content is a length-prefixed binary
 * encoding (unambiguous whatever the strings hold), all integers big-endian:
 *   str(s)  = u32(len) || bytes          i64(v) = u64(v)          bool(b) = one byte 0|1
 *   intent  = 'I' i64(seq) str(request_id) str(trace_id) i64(received_ms) str(caller_kind)
 *             str(caller_id) str(event_type) u32(n) n*(str(kind) str(id)) str(source_addr)
 *             bool(test_flag) str(nonce) i64(nonce_ts_ms) str(reject_reason) str(reject_code)
 *   outcome = 'O' i64(seq) str(request_id) i64(recorded_ms) str(result_code) str(result_msg)
 *             i64(latency_us) i64(http_status)
 * Strings are cleaned on intake (entry_clean_text) so that what PostgreSQL stores and gives back
 * is byte for byte what was hashed. */
#ifndef KOOISV_AUDIT_ENTRY_H
#define KOOISV_AUDIT_ENTRY_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "envelope.pb-c.h"

#define ENTRY_HASH_LEN 32

/* How a chain is hashed: entries from keyed_from on with HMAC-SHA256 under key, earlier ones
 * (the legacy part) with plain SHA-256. A NULL chain hashes every entry with plain SHA-256
 * (only the unit tests of the legacy encoding use it). */
typedef struct {
    const uint8_t *key; /* KOOISV_AUDIT_CHAIN_KEY's bytes, owned by the caller */
    size_t key_len;
    int64_t keyed_from; /* first keyed seq (1: the whole chain is keyed) */
} entry_chain_t;

/* Longest stored value of each field, in bytes (longer input is cut at a character boundary). */
#define ENTRY_MAX_ID 128        /* request id, trace id, caller id, nonce */
#define ENTRY_MAX_KIND 16       /* caller kind, resource kind, result/reject codes */
#define ENTRY_MAX_EVENT 64
#define ENTRY_MAX_RESOURCE_ID 256
#define ENTRY_MAX_RESOURCES 128
#define ENTRY_MAX_ADDR 64
#define ENTRY_MAX_TEXT 1024     /* reject reason, result message */

typedef struct {
    char *kind;
    char *id;
} entry_resource_t;

typedef struct {
    int64_t seq;
    char *request_id;
    char *trace_id;
    int64_t received_ms;
    char *caller_kind;
    char *caller_id;
    char *event_type;
    entry_resource_t *resources;
    size_t nresources;
    char *source_addr;
    bool test_flag;
    char *nonce;
    int64_t nonce_ts_ms;
    char *reject_reason;
    char *reject_code;
} entry_intent_t;

typedef struct {
    int64_t seq;
    char *request_id;
    int64_t recorded_ms;
    char *result_code;
    char *result_msg;
    int64_t latency_us;
    int64_t http_status;
} entry_outcome_t;

/* A cleaned copy of s: valid UTF-8 (bad bytes become U+FFFD), control characters turned into
 * spaces, cut to at most max bytes on a character boundary. NULL gives "". Caller owns it. */
char *entry_clean_text(const char *s, size_t max);
/* True when kind is a resource kind the trail accepts (see audit.proto ResourceRef). */
bool entry_resource_kind_allowed(const char *kind);

/* Fill self from an AuditIntent envelope (strings cleaned and owned by self). Returns NULL on
 * success, or a message naming the field that makes the intent unacceptable (000002). */
const char *entry_intent_from_envelope(entry_intent_t *self, const Kooisv__Envelope *env);
/* Fill self from the outcome out of request request_id, stamped with recorded_ms. NULL or a
 * message naming what makes it unacceptable. */
const char *entry_outcome_from(entry_outcome_t *self, const char *request_id,
                               const Kooisv__AuditOutcome *out, int64_t recorded_ms);
/* Fill self from an AuditOutcome envelope, stamped with recorded_ms. NULL or a message. */
const char *entry_outcome_from_envelope(entry_outcome_t *self, const Kooisv__Envelope *env,
                                        int64_t recorded_ms);
/* Free the strings an intent owns and zero it. */
void entry_intent_clear(entry_intent_t *self);
/* Free the strings an outcome owns and zero it. */
void entry_outcome_clear(entry_outcome_t *self);

/* Canonical content of an intent / outcome (see above). Caller owns *out; returns its length. */
size_t entry_intent_content(const entry_intent_t *self, uint8_t **out);
size_t entry_outcome_content(const entry_outcome_t *self, uint8_t **out);
/* Parse 64 hex digits (either case) into out; false (out zeroed) when hex is anything else. */
bool entry_hash_from_hex(const char *hex, uint8_t out[ENTRY_HASH_LEN]);
/* out = HMAC-SHA256(chain key, prev || content) for seq >= keyed_from, else
 * SHA-256(prev || content). */
void entry_chain_hash(const entry_chain_t *chain, int64_t seq, const uint8_t prev[ENTRY_HASH_LEN],
                      const uint8_t *content, size_t len, uint8_t out[ENTRY_HASH_LEN]);
/* Hash of an intent / outcome (at its seq) chained after prev. */
void entry_intent_hash(const entry_intent_t *self, const entry_chain_t *chain,
                       const uint8_t prev[ENTRY_HASH_LEN], uint8_t out[ENTRY_HASH_LEN]);
void entry_outcome_hash(const entry_outcome_t *self, const entry_chain_t *chain,
                        const uint8_t prev[ENTRY_HASH_LEN], uint8_t out[ENTRY_HASH_LEN]);

#endif
