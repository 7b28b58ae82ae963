/* eventfeed: the order events for consumers inside the suite (billing), pulled over ZeroMQ:
 * events.pending (args consumer, limit) answers {"events":[...]}, the events that consumer has
 * not acknowledged, in seq order, each the JSON document the outbox holds (README "Order
 * events") without data.appInfo (credentials are the seller application's alone); events.ack
 * (args consumer, ids: comma list of event ids) records the acknowledgements and answers
 * {"acked":n} (ids already acknowledged or unknown count 0) and moves the consumer's mark (see
 * eventfeed_stmts), so that a pull costs what is pending, not the whole history. A consumer stores an event, commits,
 * then acknowledges it: at least once, and exactly once in effect when it stores by event id.
 * Only system clients (keys in KOOISV_CURVE_SYSTEM_CLIENTS) may use these actions, and nothing
 * else: the runtime refuses the rest before any handler runs (svc.h "Per-key rights"). */
#include "order.h"

#include <stdlib.h>
#include <string.h>

#include "svcadmin.h"
#include "xmalloc.h"

#define CONSUMER_MAX 64
#define ACK_MAX 1000
#define PENDING_MAX 1000

/* Events are looked for from the consumer's mark on (orders.event_feed_marks: every event
 * below it is acknowledged by that consumer, or belongs to a transaction that rolled back). After
 * an acknowledgement the mark moves up to the first event the consumer has not acknowledged, but
 * never past a value of outbox_seq that is not yet settled: an event with a lower id may still be
 * committing, and must not be skipped when it appears. Every transaction holds its transaction id
 * before it takes an event id (outbox.h OUTBOX_XACT_FIRST), so a value read from outbox_seq is
 * settled once every transaction that was running when it was read has ended (migration 010). The
 * NOT EXISTS probes are kept as per-row probes of the (consumer, seq) index (OFFSET 0): planned
 * as an anti-join, the mark's unknown value made PostgreSQL hash every acknowledgement the
 * consumer ever made (88 ms a pull at 95,000); by seq, a probe compares integers, not event ids
 * under the database's collation. */
#define FEED_UNACKED                                                                               \
    " NOT EXISTS (SELECT 1 FROM orders.event_acks a"                                              \
    "  WHERE a.consumer = $1 AND a.seq = o.id OFFSET 0)"
const pg_stmt_t eventfeed_stmts[] = {
    /* The documents are joined as stored (JSON text); only one that mentions appInfo is
     * parsed, to leave data.appInfo out (parsing every one was half of a pull's time). */
    {"events_pending",
     "SELECT '{\"events\":[' || coalesce(string_agg(e.doc, ',' ORDER BY e.id), '') || ']}'"
     " FROM (SELECT o.id, CASE WHEN strpos(o.payload, 'appInfo') > 0"
     "   THEN (o.payload::jsonb #- '{data,appInfo}')::text ELSE o.payload END AS doc"
     "  FROM orders.outbox o"
     "  WHERE o.id >= coalesce((SELECT below_id FROM orders.event_feed_marks"
     "                          WHERE consumer = $1), 0)"
     "   AND" FEED_UNACKED "  ORDER BY o.id LIMIT $2::int) e",
     2},
    /* The mark's row, then its lock: the update's own statement, which reads the row, begins
     * after the previous update committed, so its next transaction id comes after that update's
     * read of outbox_seq. */
    {"events_mark_row",
     "INSERT INTO orders.event_feed_marks (consumer, below_id) VALUES ($1, 0)"
     " ON CONFLICT (consumer) DO NOTHING",
     1},
    {"events_mark_lock", "SELECT 1 FROM orders.event_feed_marks WHERE consumer = $1 FOR UPDATE",
     1},
    /* bound: the candidate safe_seq once settled (no transaction below safe_after runs). The mark
     * moves to the first unacknowledged event up to the bound, or past the bound; never down.
     * Without a candidate, or once it settled, seen_seq becomes the candidate, settled when
     * every transaction running now has ended, and outbox_seq's value now the next seen_seq. */
    {"events_mark",
     "WITH now_ AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin,"
     "   pg_snapshot_xmax(pg_current_snapshot()) AS xmax,"
     "   (SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END"
     "    FROM orders.outbox_seq) AS seq),"
     " m AS (SELECT below_id, seen_seq, safe_seq, safe_after,"
     "   CASE WHEN safe_after <= (SELECT xmin FROM now_) THEN safe_seq END AS bound"
     "   FROM orders.event_feed_marks WHERE consumer = $1),"
     " first AS (SELECT o.id FROM orders.outbox o"
     "  WHERE o.id >= (SELECT below_id FROM m) AND o.id <= (SELECT bound FROM m)"
     "   AND" FEED_UNACKED "  ORDER BY o.id LIMIT 1)"
     " UPDATE orders.event_feed_marks f SET"
     "  below_id = CASE WHEN m.bound IS NULL THEN f.below_id"
     "   ELSE greatest(f.below_id, coalesce((SELECT id FROM first), m.bound + 1)) END,"
     "  safe_seq = CASE WHEN m.safe_after IS NULL OR m.bound IS NOT NULL THEN m.seen_seq"
     "   ELSE m.safe_seq END,"
     "  safe_after = CASE WHEN m.safe_after IS NULL OR m.bound IS NOT NULL"
     "   THEN CASE WHEN m.seen_seq IS NOT NULL THEN now_.xmax END ELSE m.safe_after END,"
     "  seen_seq = CASE WHEN m.safe_after IS NULL OR m.bound IS NOT NULL THEN now_.seq"
     "   ELSE m.seen_seq END,"
     "  updated_at = now()"
     " FROM m, now_ WHERE f.consumer = $1",
     1},
    {"events_ack",
     "WITH ins AS (INSERT INTO orders.event_acks (consumer, event_id, seq)"
     " SELECT $1, o.event_id, o.id FROM orders.outbox o WHERE o.event_id = ANY($2::text[])"
     " ON CONFLICT DO NOTHING RETURNING 1)"
     " SELECT jsonb_build_object('acked', count(*))::text FROM ins",
     2},
};
const size_t eventfeed_stmts_count = sizeof eventfeed_stmts / sizeof eventfeed_stmts[0];

const char *const eventfeed_actions[] = {"events.pending", "events.ack", NULL};

/* A consumer name: 1..64 of [a-z0-9_-]. */
static bool consumer_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > CONSUMER_MAX)
        return false;
    return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_-") == n;
}

/* Run stmt (one JSON text cell) outside a transaction and answer it. */
static void answer(svcrt_worker_t *w, svc_call_t *call, const char *stmt, int n,
                   const char *const *params)
{
    pg_status_t st = PG_OK;
    PGresult *res = pg_session_exec(w->db, svc_call_rid(call), stmt, n, params, &st);
    if (!res) {
        order_reply(call, st, RC_INTERNAL, "");
        return;
    }
    svcadmin_reply_text(call, pg_value(res, 0, 0));
    PQclear(res);
}

static void events_pending(svcrt_worker_t *w, svc_call_t *call, const char *consumer,
                           const Kooisv__AdminRequest *req)
{
    char lim[16];
    if (!svcadmin_limit(call, req, 100, PENDING_MAX, lim))
        return;
    const char *p[] = {consumer, lim};
    answer(w, call, "events_pending", 2, p);
}

/* The mark's transaction: its row, its lock, then the update (see "events_mark_lock"). */
static pg_status_t mark_body(pg_tx_t *tx, void *arg)
{
    const char *p[] = {arg};
    static const char *const steps[] = {"events_mark_row", "events_mark_lock", "events_mark"};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        PGresult *r = pg_tx_exec(tx, steps[i], 1, p);
        if (!r)
            return tx->failed;
        PQclear(r);
    }
    return PG_OK;
}

static void events_ack(svcrt_worker_t *w, svc_call_t *call, const char *consumer, const char *ids_s)
{
    char *copy = xstrdup(ids_s);
    const char *ids[ACK_MAX];
    size_t n = 0;
    bool ok = true;
    for (char *save = NULL, *t = strtok_r(copy, ",", &save); t && ok;
         t = strtok_r(NULL, ",", &save))
        ok = n < ACK_MAX && svcrt_text_ok(t, 64, true) && (ids[n++] = t);
    if (!ok || n == 0) {
        svc_call_result(call, RC_INVALID, "ids: 1..%d event ids, comma-separated", ACK_MAX);
        free(copy);
        return;
    }
    char *arr = pg_text_array(ids, n);
    const char *p[] = {consumer, arr};
    answer(w, call, "events_ack", 2, p);
    if (strcmp(svc_call_reply(call)->result_code, RC_OK) == 0) {
        /* the acknowledgements are committed: move the mark (a failure only leaves it lower) */
        pg_tx_run(w->db, svc_call_rid(call), mark_body, (void *)consumer);
    }
    free(arr);
    free(copy);
}

bool eventfeed_handle(svcrt_worker_t *w, svc_call_t *call, const Kooisv__AdminRequest *req)
{
    bool pending = strcmp(req->action, "events.pending") == 0;
    if (!pending && strcmp(req->action, "events.ack") != 0)
        return false;
    const char *consumer = svcadmin_arg(req, "consumer");
    if (!consumer_ok(consumer)) {
        svc_call_result(call, RC_INVALID, "consumer: 1..%d of a-z 0-9 _ -", CONSUMER_MAX);
        return true;
    }
    if (pending)
        events_pending(w, call, consumer, req);
    else
        events_ack(w, call, consumer, svcadmin_arg(req, "ids"));
    return true;
}
