/* journal: the single writer of the audit chain. Callers hand it intents and outcomes and wait
 * (append) or are called back (submit); one writer thread takes up to batch_max waiting records,
 * assigns their sequence numbers and hashes under a chain lock, checks nonces, commits them in one
 * transaction (group commit) and only then wakes every waiter and calls every callback. Replicas of
 * the service serialise on a transaction-scoped advisory lock, so the chain stays gapless with any
 * number of writers. A writer appends after the head of its own last commit without reading it
 * first: the head is checked in the same transaction (one round trip), and read when it moved.
 * Expired nonces are deleted by a thread of their own. */
#ifndef KOOISV_AUDIT_JOURNAL_H
#define KOOISV_AUDIT_JOURNAL_H
#include <stdbool.h>
#include <stdint.h>
#include "entry.h"
#include "resultcode.h"

/* Reasons filed on an intent whose nonce was refused (AuditIntentResult.replay = true). */
#define JOURNAL_REPLAYED "replayed nonce"
#define JOURNAL_STALE_NONCE "nonce outside the replay window"

typedef struct {
    const char *dsn;            /* the service role's connection string */
    int batch_max;              /* records per transaction, >= 1 */
    int64_t nonce_window_ms;    /* signature window: |now - timestamp| allowed by the gateway */
    int64_t nonce_margin_ms;    /* nonces are kept window + margin (clock skew between hosts) */
    int statement_timeout_ms;   /* per statement, so that a stuck database fails fast */
    const entry_chain_t *chain; /* how entries are hashed (key, keyed_from); outlives the journal */
    const char *head_file;      /* "" or NULL: none; else "seq:hash\n" replaced after each commit */
} journal_config_t;

typedef struct {
    const char *code;           /* RC_OK, RC_INVALID (bad record) or RC_INTERNAL (not stored) */
    char msg[160];
    int64_t seq;                /* position in the chain (also for an already stored record) */
    bool replay;                /* intents: the nonce was already used */
} journal_result_t;

typedef struct journal journal_t;

/* Start the writer thread (it connects lazily and reconnects by itself). cfg is copied. */
journal_t *journal_new(const journal_config_t *cfg);
/* Stop the writer once every waiting record is answered; set *self_p to NULL. */
void journal_destroy(journal_t **self_p);
/* Append intent and wait until it is committed (or refused). A request id already in the trail
 * answers with the stored seq and replay verdict and stores nothing. intent is only read. */
void journal_append_intent(journal_t *self, const entry_intent_t *intent, journal_result_t *out);
/* Append outcome and wait. Stored once per request id; refused (000002) without an intent. */
void journal_append_outcome(journal_t *self, const entry_outcome_t *outcome,
                            journal_result_t *out);

/* Told on the writer thread that a submitted record is committed or refused; res lives only
 * during the call. */
typedef void (*journal_done_fn)(const journal_result_t *res, void *arg);
/* Append intent without waiting: the journal takes its contents (*intent is left empty) and
 * calls done(res, arg) on the writer thread once it is committed or refused, as
 * journal_append_intent would have answered. */
void journal_submit_intent(journal_t *self, entry_intent_t *intent, journal_done_fn done,
                           void *arg);
/* Append outcome without waiting, as journal_submit_intent; with no intent queued it waits up
 * to 10 ms for one, to be committed in its transaction. */
void journal_submit_outcome(journal_t *self, entry_outcome_t *outcome, journal_done_fn done,
                            void *arg);

/* Counters since start, for the benchmark and logs. */
typedef struct {
    uint64_t batches;
    uint64_t records;
    uint64_t failures;
} journal_stats_t;
/* Counters since the journal started (batches committed, records in them, failed batches). */
void journal_stats(journal_t *self, journal_stats_t *out);

#endif
