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
 * below it is acknowledged). After an acknowledgement the mark moves up to the first event the
 * consumer has not acknowledged, but never past an id outbox_seq had given out five minutes ago
 * (orders.event_feed_seq_log): an event with a lower id may still be committing, and must not be
 * skipped when it appears. */
const pg_stmt_t eventfeed_stmts[] = {
    {"events_pending",
     "SELECT jsonb_build_object('events', coalesce(jsonb_agg(e.doc ORDER BY e.id), '[]'))::text"
     " FROM (SELECT o.id, o.payload::jsonb #- '{data,appInfo}' AS doc FROM orders.outbox o"
     "  WHERE o.id >= coalesce((SELECT below_id FROM orders.event_feed_marks"
     "                          WHERE consumer = $1), 0)"
     "   AND NOT EXISTS (SELECT 1 FROM orders.event_acks a"
     "   WHERE a.consumer = $1 AND a.event_id = o.event_id)"
     "  ORDER BY o.id LIMIT $2::int) e",
     2},
    {"events_mark",
     "WITH logged AS ("
     "  INSERT INTO orders.event_feed_seq_log (taken_at, seq_value)"
     "  SELECT now(), CASE WHEN is_called THEN last_value ELSE last_value - 1 END"
     "  FROM orders.outbox_seq"
     "  WHERE NOT EXISTS (SELECT 1 FROM orders.event_feed_seq_log"
     "                    WHERE taken_at > now() - interval '1 minute')"
     "  ON CONFLICT DO NOTHING),"
     " bound AS (SELECT max(seq_value) AS v FROM orders.event_feed_seq_log"
     "  WHERE taken_at < now() - interval '5 minutes'),"
     " pruned AS (DELETE FROM orders.event_feed_seq_log WHERE taken_at < now() - interval '1 hour'"
     "  AND taken_at < (SELECT max(taken_at) FROM orders.event_feed_seq_log"
     "                  WHERE taken_at < now() - interval '5 minutes')),"
     " first AS (SELECT o.id FROM orders.outbox o"
     "  WHERE o.id >= coalesce((SELECT below_id FROM orders.event_feed_marks"
     "                          WHERE consumer = $1), 0)"
     "   AND o.id <= (SELECT v FROM bound)"
     "   AND NOT EXISTS (SELECT 1 FROM orders.event_acks a"
     "    WHERE a.consumer = $1 AND a.event_id = o.event_id)"
     "  ORDER BY o.id LIMIT 1)"
     " INSERT INTO orders.event_feed_marks AS m (consumer, below_id)"
     " SELECT $1, coalesce((SELECT id FROM first), (SELECT v FROM bound) + 1)"
     " WHERE (SELECT v FROM bound) IS NOT NULL"
     " ON CONFLICT (consumer) DO UPDATE SET below_id = greatest(m.below_id, EXCLUDED.below_id),"
     "  updated_at = now()",
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
        PGresult *r = pg_session_exec(w->db, svc_call_rid(call), "events_mark", 1, p, NULL);
        PQclear(r);
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
