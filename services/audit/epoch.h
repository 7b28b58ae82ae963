/* epoch: where the keyed part of the audit chain starts (entry.h). Migration 002 recorded in
 * audit.chain_epoch keyed_from, the first seq after the entries that existed when the chain
 * became keyed (1 on a fresh trail). The migration step (kooisv-audit --migrate, which holds the
 * chain key) seals that row once with
 *     mac = HMAC-SHA256(key, "kooisv-audit-keyed-from" || i64(keyed_from) || hash(keyed_from - 1))
 * (32 zero bytes for keyed_from = 1), and the service loads it at start, refusing to serve when
 * the mac does not match its key. Moving the marker, to pass entries re-hashed with plain
 * SHA-256 as legacy, needs the key; so does rewriting the last legacy entry. */
#ifndef KOOISV_AUDIT_EPOCH_H
#define KOOISV_AUDIT_EPOCH_H
#include <stddef.h>
#include <stdint.h>

#include "pgutil.h"

/* Seal the epoch row with key on conn (the schema owner's connection) if it is not sealed yet;
 * a sealed row is left as it is. 0, or -1 (logged). */
int epoch_seal(PGconn *conn, const uint8_t *key, size_t key_len);
/* Read the epoch on conn (any role that may SELECT the trail) and check its mac against key.
 * 0 with *keyed_from set, or -1 with a one-line reason logged (no row, not sealed, or sealed
 * with another key). */
int epoch_load(PGconn *conn, const uint8_t *key, size_t key_len, int64_t *keyed_from);

#endif
