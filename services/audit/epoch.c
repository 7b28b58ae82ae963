#include "epoch.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cryptoutil.h"
#include "entry.h"
#include "log.h"

#define EPOCH_LABEL "kooisv-audit-keyed-from"

static const pg_stmt_t epoch_stmts[] = {
    /* The marker and the hash of the entry before it (NULL for keyed_from = 1). */
    {"epoch_read",
     "SELECT e.keyed_from, encode(e.mac, 'hex'),"
     " (SELECT encode(c.hash, 'hex') FROM audit.chain c WHERE c.seq = e.keyed_from - 1"
     "  ORDER BY c.kind LIMIT 1)"
     " FROM audit.chain_epoch e",
     0},
    {"epoch_seal",
     "UPDATE audit.chain_epoch SET mac = decode($2, 'hex')"
     " WHERE keyed_from = $1::bigint AND mac IS NULL",
     2},
};
static const size_t epoch_nstmts = sizeof epoch_stmts / sizeof *epoch_stmts;

/* The mac for keyed_from after an entry whose hash is prev_hex (NULL: the genesis). false when
 * prev_hex is there but not a hash. */
static bool epoch_mac(const uint8_t *key, size_t key_len, int64_t keyed_from, const char *prev_hex,
                      uint8_t out[ENTRY_HASH_LEN])
{
    uint8_t msg[sizeof EPOCH_LABEL - 1 + 8 + ENTRY_HASH_LEN] = {0};
    memcpy(msg, EPOCH_LABEL, sizeof EPOCH_LABEL - 1);
    uint64_t v = (uint64_t)keyed_from;
    for (int i = 7; i >= 0; i--, v >>= 8)
        msg[sizeof EPOCH_LABEL - 1 + (size_t)i] = (uint8_t)v;
    uint8_t *prev = msg + sizeof EPOCH_LABEL - 1 + 8;
    if (keyed_from > 1 && !entry_hash_from_hex(prev_hex, prev))
        return false;
    hmac_sha256(key, key_len, msg, sizeof msg, out);
    return true;
}

/* The row of epoch_read, or NULL (logged). Caller clears. */
static PGresult *epoch_read(PGconn *conn)
{
    if (pg_prepare_all(conn, epoch_stmts, epoch_nstmts) != 0)
        return NULL;
    PGresult *r = pg_exec(conn, "epoch_read", 0, NULL);
    if (!pg_ok(r)) {
        log_error(NULL, "audit chain epoch: cannot read audit.chain_epoch: %s",
                  PQresultErrorMessage(r));
        PQclear(r);
        return NULL;
    }
    if (PQntuples(r) != 1) {
        log_error(NULL,
                  "audit chain epoch: audit.chain_epoch holds %d rows, not 1 "
                  "(migrations not applied? run kooisv-audit --migrate)",
                  PQntuples(r));
        PQclear(r);
        return NULL;
    }
    return r;
}

int epoch_seal(PGconn *conn, const uint8_t *key, size_t key_len)
{
    PGresult *r = epoch_read(conn);
    if (!r)
        return -1;
    int rc = 0;
    const char *from = pg_value(r, 0, 0);
    int64_t keyed_from = strtoll(from, NULL, 10);
    if (!pg_value(r, 0, 1)) {
        uint8_t mac[ENTRY_HASH_LEN];
        char hex[2 * ENTRY_HASH_LEN + 1];
        if (!epoch_mac(key, key_len, keyed_from, pg_value(r, 0, 2), mac)) {
            log_error(NULL,
                      "audit chain epoch: entry %lld, the last before the keyed chain, "
                      "is missing or has no valid hash",
                      (long long)(keyed_from - 1));
            PQclear(r);
            return -1;
        }
        const char *p[] = {from, hex_encode(mac, ENTRY_HASH_LEN, hex)};
        PGresult *u = pg_exec(conn, "epoch_seal", 2, p);
        if (!pg_ok(u)) {
            log_error(NULL, "audit chain epoch: sealing failed: %s", PQresultErrorMessage(u));
            rc = -1;
        } else {
            log_info(NULL, "audit chain epoch sealed: keyed from seq %lld (%lld legacy entries)",
                     (long long)keyed_from, (long long)(keyed_from - 1));
        }
        PQclear(u);
    }
    PQclear(r);
    return rc;
}

int epoch_load(PGconn *conn, const uint8_t *key, size_t key_len, int64_t *keyed_from)
{
    PGresult *r = epoch_read(conn);
    if (!r)
        return -1;
    int64_t from = strtoll(pg_value(r, 0, 0), NULL, 10);
    uint8_t want[ENTRY_HASH_LEN], have[ENTRY_HASH_LEN];
    int rc = -1;
    if (!pg_value(r, 0, 1))
        log_error(NULL, "audit chain epoch: not sealed (run kooisv-audit --migrate with the chain "
                        "key)");
    else if (!epoch_mac(key, key_len, from, pg_value(r, 0, 2), want) ||
             !entry_hash_from_hex(pg_value(r, 0, 1), have) ||
             !bytes_equal(want, have, ENTRY_HASH_LEN))
        log_error(NULL,
                  "audit chain epoch: the marker (keyed from seq %lld) does not match "
                  "KOOISV_AUDIT_CHAIN_KEY: another key, or the marker or entry %lld was "
                  "rewritten",
                  (long long)from, (long long)(from - 1));
    else {
        *keyed_from = from;
        rc = 0;
    }
    PQclear(r);
    return rc;
}
