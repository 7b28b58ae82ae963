/* ledger: order events -> billing ledger. A consumer thread pulls the order service's events
 * over ZeroMQ (order's events.pending, as a CURVE client admitted by order) in seq order, stores
 * each one (consumed_events row by event id + ledger line(s) + the instance's snapshot), all of
 * a pull in one transaction (one at a time when that fails: the events ahead of one that cannot
 * be stored still are), commits, then acknowledges the stored ones (order's events.ack). A crash
 * anywhere in between makes order give an event again; its event id is then found in
 * consumed_events and it is only acknowledged: at least once on the wire, exactly once in the
 * ledger. One replica applies at a time: every transaction of events first takes a transaction
 * advisory lock (try: a replica that does not get it pauses); a second replica is harmless
 * anyway (the event id is the key).
 *
 * Ledger lines (kind): instance.activated -> new (once per instance), instance.renewed ->
 * renewal | trial_to_formal | unsubscribe_renewal (by scene), instance.upgraded -> upgrade,
 * instance.frozen -> freeze, instance.unfrozen -> unfreeze, instance.released -> release, plus
 * refund when released by unsubscription (data.byUnsubscription) within 5 days of the ledger
 * line of the order it names. Amounts are signed: a charge as the order gives it, money given
 * back (unsubscribe_renewal, refund) negative; freeze/unfreeze/release carry none.
 * instance.created and instance.expiry_corrected update the instance only. */
#ifndef KOOISV_LEDGER_H
#define KOOISV_LEDGER_H
#include <jansson.h>
#include <stdbool.h>

#include "billing.h"
#include "pgutil.h"

extern const pg_stmt_t ledger_stmts[];
extern const size_t ledger_stmts_count;
/* What billing deletes once finished (svcrt_def_t.retention): the consumed_events rows of
 * events consumed longer ago than the retention period, the newest always kept (billing.ping's
 * lastSeq). The ledger, the instances and usage are the seller's record and stay. */
extern const pg_stmt_t billing_retention_rules[];
extern const size_t billing_retention_rules_count;

/* What applying one event did. */
typedef enum {
    LEDGER_APPLIED,   /* stored now */
    LEDGER_DUPLICATE, /* stored before (its event id is known): acknowledge it again */
    LEDGER_BUSY,      /* another replica is applying events: try later */
    LEDGER_REJECTED,  /* not an order event billing can read (no eventId...): logged, skipped */
} ledger_outcome_t;

/* The longest product id of KOOISV_BILLING_DAILY_PRODUCTS. */
#define LEDGER_PRODUCT_ID_MAX 64

/* The product ids of list (KOOISV_BILLING_DAILY_PRODUCTS: ids separated by commas and/or
 * blanks, each 1..LEDGER_PRODUCT_ID_MAX of A-Z a-z 0-9 _ . -; empty = none) as a PostgreSQL
 * text[] literal (caller frees); NULL with why (naming the bad entry) when one is malformed. */
char *ledger_daily_products(const char *list, char *why, size_t why_len);

/* Apply one order event document (README "Order events") inside tx (ledger_stmts prepared on its
 * connection); sets *out. daily_products (ledger_daily_products; NULL = none) decides the
 * instance's usage granularity when an event first names its product: 'day' for those, else
 * 'hour'; fixed from then on (never changed once the instance has a product or usage).
 * Takes the ledger's lock first (LEDGER_BUSY without it). PG_OK to commit, PG_ROLLBACK when
 * nothing is to be written (busy, rejected, duplicate), or a failure (logged). */
pg_status_t ledger_apply(pg_tx_t *tx, const json_t *event, const char *daily_products,
                         ledger_outcome_t *out);

typedef struct ledger_consumer ledger_consumer_t;

/* A consumer as cfg says (cfg must outlive it), with its own database session (dsn, setup_sql;
 * ledger_stmts prepared). NULL (logged) when the order endpoints or key are unusable. */
ledger_consumer_t *ledger_consumer_new(const billing_state_t *cfg, const char *dsn,
                                       const char *setup_sql);
/* Start the consumer thread; 0 or -1 (logged). */
int ledger_consumer_start(ledger_consumer_t *self);
/* Stop the thread if it runs (it finishes the pull in hand), free, set *self_p to NULL. */
void ledger_consumer_destroy(ledger_consumer_t **self_p);

#endif
