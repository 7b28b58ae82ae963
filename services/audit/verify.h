/* verify: AuditVerify — walk the hash chain from from_seq and report the first entry that was
 * modified, removed or inserted. Problems, in the order they are looked for at an entry:
 *   removed   the sequence jumps (entry E missing), or the entry's content only matches its hash
 *             one position later (an entry before it was deleted and the rest renumbered)
 *   inserted  the next entry chains to this entry's predecessor (this one was slipped in), this
 *             entry chains to the one before its predecessor (that one was slipped in), the
 *             newest entry is self-consistent but does not chain to its predecessor, or two
 *             entries share a seq
 *   modified  the entry's content no longer gives its hash, or (self-consistent but not linked)
 *             its predecessor was rewritten and rehashed
 * Hashes are keyed (entry.h): whoever rewrites the tables without the chain key cannot make a
 * changed entry match again, re-hashing or not. Removing the newest entries leaves no trace
 * inside the database: the request may carry a head kept elsewhere (expect_head_seq/hash, from
 * the service's head file or log), and then
 *   removed   that entry is missing (the chain was truncated)
 *   modified  that entry's hash differs from the kept one */
#ifndef KOOISV_AUDIT_VERIFY_H
#define KOOISV_AUDIT_VERIFY_H
#include <stdbool.h>
#include <stdint.h>
#include "entry.h"
#include "pgutil.h"
#include "svc.h"

/* Rows fetched per round trip, and the time one call may spend before answering next_seq. */
#define VERIFY_CHUNK 2000
#define VERIFY_BUDGET_MS 2000

extern const pg_stmt_t verify_stmts[];
extern const size_t verify_nstmts;

/* One stored row as verification sees it. */
typedef struct {
    bool is_intent;
    entry_intent_t intent;   /* is_intent */
    entry_outcome_t outcome; /* !is_intent */
    uint8_t prev[ENTRY_HASH_LEN];
    uint8_t hash[ENTRY_HASH_LEN];
} verify_row_t;

typedef struct {
    const char *problem; /* NULL = fine, else "modified" | "removed" | "inserted" */
    int64_t bad_seq;
    char detail[200];
} verify_verdict_t;

/* What the walk expects of the next row: how it is hashed, its seq, the hash it must chain to
 * (known = false without an anchor: the first row of a walk that starts past the genesis without
 * its predecessor), and the hash that one chained to. */
typedef struct {
    const entry_chain_t *chain; /* how the rows were hashed */
    int64_t seq;
    uint8_t prev[ENTRY_HASH_LEN];
    bool prev_known;
    uint8_t prev_prev[ENTRY_HASH_LEN];
    bool prev_prev_known;
} verify_expect_t;

/* Judge row r (next, the row after it, may be NULL). Pure: the unit tests drive it with rows
 * built in memory. Returns true when r is fine, else fills out. */
bool verify_row(const verify_row_t *r, const verify_row_t *next, const verify_expect_t *ex,
                verify_verdict_t *out);
/* Move ex past row r, which verify_row accepted. */
void verify_expect_advance(verify_expect_t *ex, const verify_row_t *r);

/* Serve one AuditVerify on conn (statements of verify_stmts prepared) for a chain hashed as
 * chain: sets the reply. */
void verify_handle(PGconn *conn, const entry_chain_t *chain, svc_call_t *call);

#endif
