#include "outbox.h"
#include "resultcode.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpc.h"
#include "log.h"
#include "pgworker.h"
#include "randutil.h"
#include "sealbox.h"
#include "svcadmin.h"
#include "timeutil.h"
#include "webhook.h"
#include "xmalloc.h"

enum {
    OUTBOX_BATCH = 10,   /* rows a claim takes when one thread delivers */
    OUTBOX_LEASE_S = 60, /* a claimed row is someone's for this long (> post timeout) */
    OUTBOX_POST_TIMEOUT_MS = 5000,
    OUTBOX_BACKOFF_CAP_MS = 600000,
    OUTBOX_POLL_MS = 1000,      /* default poll: other replicas' events, their retries */
    OUTBOX_RETRY_SLACK_MS = 20, /* wake this long after a retry of ours falls due */
};

#define TS_FMT "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'"

static const pg_stmt_t emit_stmts[] = {
    /* The transaction's id first (a one-time filter runs before the select list), then the
     * event's: a consumer's mark (order eventfeed.c) may pass a value of outbox_seq once every
     * transaction that was running when it was read has ended, so no transaction may hold an
     * event id without a transaction id. */
    {"outbox_next_id", "SELECT " OUTBOX_NEXT_ID " WHERE " OUTBOX_XACT_FIRST, 0},
    /* No NOTIFY: at each notifying commit PostgreSQL wakes every LISTENing session of the
     * database, whatever its channel. The committing process pokes its own delivery thread
     * instead (outbox_emit_id); other replicas find the event at their poll. */
    {"outbox_insert",
     "INSERT INTO outbox (id, event_id, event_type, instance_id, tenant_id, test_flag, payload,"
     " sealed) VALUES ($1::bigint, $2, $3, $4, $5, $6::boolean, $7, $8::boolean)",
     8},
    /* Without a webhook URL there is no one to deliver to: the event is recorded as skipped
     * at once, with no notification and no second transaction to mark it. */
    {"outbox_insert_skipped",
     "INSERT INTO outbox (id, event_id, event_type, instance_id, tenant_id, test_flag, payload,"
     " sealed, status, delivered_at)"
     " VALUES ($1::bigint, $2, $3, $4, $5, $6::boolean, $7, $8::boolean, 'skipped', now())",
     8},
    {"outbox_notify", "SELECT pg_notify($1, '')", 1},
    {"outbox_failed",
     "SELECT id, event_id, event_type, instance_id, tenant_id, status, attempts,"
     " coalesce(last_error, ''), to_char(created_at AT TIME ZONE 'UTC', " TS_FMT "),"
     " to_char(next_attempt_at AT TIME ZONE 'UTC', " TS_FMT ")"
     " FROM outbox WHERE status = 'failed' OR (status = 'pending' AND attempts > 0)"
     " ORDER BY id LIMIT $1::int",
     1},
    /* Only rows nobody delivers: a pending row may be under a delivery thread's lease (its
     * post in flight), and making it due again would let another thread post it a second time
     * meanwhile; a pending row is retried anyway. */
    {"outbox_redrive",
     "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = now(),"
     " delivered_at = NULL WHERE id = $1::bigint AND status IN ('failed', 'skipped')"
     " RETURNING id",
     1},
    {"outbox_status", "SELECT status FROM outbox WHERE id = $1::bigint", 1},
    /* Both counts are index scans of the partial indexes outbox_pending_by_instance and
     * outbox_failed. */
    {"outbox_stats",
     "SELECT (SELECT count(*) FROM outbox WHERE status = 'pending'),"
     " (SELECT count(*) FROM outbox WHERE status = 'failed'),"
     " (SELECT coalesce(floor(extract(epoch FROM now() - min(created_at))), 0)::bigint"
     "  FROM outbox WHERE status = 'pending')",
     0},
};

const pg_stmt_t outbox_retention_rules[] = {
    {"retention_outbox", OUTBOX_RETENTION_SQL(RETENTION_NO_FLOOR, ""), 2},
};
const size_t outbox_retention_rules_count =
    sizeof outbox_retention_rules / sizeof outbox_retention_rules[0];

const pg_stmt_t *outbox_stmts(size_t *n)
{
    *n = sizeof emit_stmts / sizeof emit_stmts[0];
    return emit_stmts;
}

/* The delivery thread's own statements. */
static const pg_stmt_t delivery_stmts[] = {
    /* Per (instance, tenant) in id order: a row waits while an earlier one of its instance is
     * pending (leased, or waiting for its retry); a failed (dead-lettered) or skipped row no
     * longer holds the others back. A claim leaves the row pending, so a concurrent claim by
     * another replica sees it too. The scan walks outbox_due (most overdue first) and stops at
     * $1 rows; each row's check is a scalar subquery, so it stays one probe of
     * outbox_pending_by_instance whatever the statistics say (a NOT EXISTS may become an
     * anti-join, and "ORDER BY id" walked the primary key through every delivered row). */
    {"outbox_claim",
     "WITH c AS (UPDATE outbox SET attempts = attempts + 1,"
     " next_attempt_at = now() + make_interval(secs => $2::int)"
     " WHERE id IN (SELECT o.id FROM outbox o WHERE o.status = 'pending'"
     "  AND o.next_attempt_at <= now() AND o.id = (SELECT e.id FROM outbox e"
     "   WHERE e.status = 'pending' AND e.instance_id = o.instance_id"
     "   AND e.tenant_id = o.tenant_id ORDER BY e.instance_id, e.tenant_id, e.id LIMIT 1)"
     " ORDER BY o.next_attempt_at LIMIT $1::int FOR UPDATE SKIP LOCKED)"
     " RETURNING id, event_id, payload, sealed, attempts) SELECT * FROM c ORDER BY id",
     2},
    /* A delivered or failed post's row, by its id (not through the partial index of the
     * pending rows: PG_ROW_CHECK). */
    {"outbox_delivered",
     "UPDATE outbox SET status = 'delivered', delivered_at = now(), last_error = NULL"
     " WHERE id = $1::bigint AND " PG_ROW_CHECK("status = 'pending'"),
     1},
    {"outbox_retry",
     "UPDATE outbox SET last_error = $2,"
     " status = CASE WHEN attempts >= $3::int THEN 'failed' ELSE 'pending' END,"
     " next_attempt_at = now() + $4::bigint * interval '1 millisecond'"
     " WHERE id = $1::bigint AND " PG_ROW_CHECK("status = 'pending'"),
     4},
    {"outbox_skip_all",
     "UPDATE outbox SET status = 'skipped', delivered_at = now() WHERE status = 'pending'", 0},
};

const pg_stmt_t *outbox_delivery_stmts(size_t *n)
{
    *n = sizeof delivery_stmts / sizeof delivery_stmts[0];
    return delivery_stmts;
}

/* One delivery thread's state (a pgworker of the outbox's set). Its claims take the earliest
 * pending event of each instance only, so the threads (and other replicas') post events of
 * different instances at once and those of one instance in order. */
typedef struct {
    outbox_t *box;
    int64_t next_retry_ms; /* when the soonest retry it set falls due (monotonic ms; 0 = none) */
} courier_t;

struct outbox {
    outbox_config_t cfg; /* strings owned */
    char channel[64];
    courier_t *couriers;     /* cfg.threads */
    pgworker_set_t *workers; /* the delivery threads, once started */
};

/* After a commit with events: wake an idle delivery thread, else the next in turn. */
static void outbox_wake(void *arg)
{
    outbox_t *self = arg;
    if (self->workers)
        pgworker_set_wake(self->workers);
}

outbox_t *outbox_new(const outbox_config_t *cfg, const char **why)
{
    if (*cfg->url && strncmp(cfg->url, "https://", 8) != 0 &&
        strncmp(cfg->url, "http://", 7) != 0) {
        *why = "must be an http(s) URL";
        return NULL;
    }
    if (*cfg->url && (!cfg->secret || !*cfg->secret)) {
        *why = "a webhook URL needs its secret";
        return NULL;
    }
    int threads = cfg->threads < 1 ? 1 : cfg->threads;
    outbox_t *self = xcalloc(1, sizeof *self);
    self->couriers = xcalloc((size_t)threads, sizeof *self->couriers);
    self->cfg = *cfg;
    self->cfg.threads = threads;
    for (int i = 0; i < threads; i++)
        self->couriers[i].box = self;
    self->cfg.source = xstrdup(cfg->source);
    self->cfg.schema = xstrdup(cfg->schema);
    self->cfg.dsn = xstrdup(cfg->dsn);
    self->cfg.setup_sql = cfg->setup_sql ? xstrdup(cfg->setup_sql) : NULL;
    self->cfg.url = xstrdup(cfg->url);
    self->cfg.secret = xstrdup(cfg->secret ? cfg->secret : "");
    self->cfg.ca_file = xstrdup(cfg->ca_file ? cfg->ca_file : "");
    if (self->cfg.max_attempts < 1)
        self->cfg.max_attempts = 1;
    if (self->cfg.backoff_ms < 1)
        self->cfg.backoff_ms = 1;
    if (self->cfg.poll_ms < 1)
        self->cfg.poll_ms = OUTBOX_POLL_MS;
    snprintf(self->channel, sizeof self->channel, "kooisv_%s_outbox", cfg->schema);
    return self;
}

void outbox_destroy(outbox_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    outbox_t *self = *self_p;
    pgworker_set_destroy(&self->workers);
    free(self->couriers);
    free((char *)self->cfg.source);
    free((char *)self->cfg.schema);
    xfree_secret((char *)self->cfg.dsn, strlen(self->cfg.dsn));
    free((char *)self->cfg.setup_sql);
    free((char *)self->cfg.url);
    xfree_secret((char *)self->cfg.secret, strlen(self->cfg.secret));
    free((char *)self->cfg.ca_file);
    free(self);
    *self_p = NULL;
}

static char *seal_aad(const outbox_t *self, const char *event_id)
{
    return xasprintf("%s.outbox\x1f%s", self->cfg.schema, event_id);
}

pg_status_t outbox_emit(outbox_t *self, pg_tx_t *tx, const char *event_type,
                        const char *instance_id, const char *tenant_id, bool test_flag,
                        json_t *data)
{
    PGresult *r = pg_tx_exec(tx, "outbox_next_id", 0, NULL);
    if (!r) {
        json_decref(data);
        return tx->failed;
    }
    char seq[32];
    snprintf(seq, sizeof seq, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return outbox_emit_id(self, tx, seq, event_type, instance_id, tenant_id, test_flag, data);
}

pg_status_t outbox_emit_id(outbox_t *self, pg_tx_t *tx, const char *seq, const char *event_type,
                           const char *instance_id, const char *tenant_id, bool test_flag,
                           json_t *data)
{
    char event_id[37], when[32];
    rand_uuid7(event_id);
    time_format_iso(time_now_ms(), when, sizeof when);
    json_t *ev =
        json_pack("{s:s,s:I,s:s,s:s,s:s,s:s,s:s,s:b,s:s,s:O}", "eventId", event_id, "seq",
                  (json_int_t)strtoll(seq, NULL, 10), "eventType", event_type, "source",
                  self->cfg.source, "requestId", tx->rid ? tx->rid : "-", "instanceId", instance_id,
                  "tenantId", tenant_id, "testFlag", test_flag, "occurredAt", when, "data", data);
    char *text = svcadmin_json_text(ev);
    json_decref(ev);
    char *stored = text;
    if (self->cfg.seal_key) {
        char *aad = seal_aad(self, event_id);
        stored = sealbox_seal(self->cfg.seal_key, aad, text, strlen(text));
        free(aad);
        xfree_secret(text, strlen(text));
    }
    const char *p[] = {seq,        event_id,
                       event_type, instance_id,
                       tenant_id,  test_flag ? "true" : "false",
                       stored,     self->cfg.seal_key ? "true" : "false"};
    bool skip = !*self->cfg.url;
    /* queued: it goes out with the transaction's next statement or its COMMIT; once that has
     * committed, this process's delivery thread is woken */
    pg_status_t st = pg_tx_queue(tx, skip ? "outbox_insert_skipped" : "outbox_insert", 8, p);
    if (st == PG_OK && !skip)
        st = pg_tx_after_commit(tx, outbox_wake, self);
    free(stored);
    json_decref(data);
    return st == PG_OK ? PG_OK : tx->failed;
}

/* ---- admin ---- */

static void admin_failed(outbox_t *self, pg_session_t *db, svc_call_t *call,
                         const Kooisv__AdminRequest *req)
{
    char nbuf[16];
    if (!svcadmin_limit(call, req, 100, 1000, nbuf))
        return;
    const char *p[] = {nbuf};
    PGresult *r = pg_session_exec(db, svc_call_rid(call), "outbox_failed", 1, p, NULL);
    if (!r) {
        svc_call_result(call, RC_INTERNAL, "database error");
        return;
    }
    json_t *rows = json_array();
    for (int i = 0; i < PQntuples(r); i++)
        json_array_append_new(
            rows, json_pack("{s:I,s:s,s:s,s:s,s:s,s:s,s:i,s:s,s:s,s:s}", "id",
                            (json_int_t)strtoll(PQgetvalue(r, i, 0), NULL, 10), "eventId",
                            PQgetvalue(r, i, 1), "eventType", PQgetvalue(r, i, 2), "instanceId",
                            PQgetvalue(r, i, 3), "tenantId", PQgetvalue(r, i, 4), "status",
                            PQgetvalue(r, i, 5), "attempts", atoi(PQgetvalue(r, i, 6)), "lastError",
                            PQgetvalue(r, i, 7), "createdAt", PQgetvalue(r, i, 8), "nextAttemptAt",
                            PQgetvalue(r, i, 9)));
    PQclear(r);
    svcadmin_reply(call, json_pack("{s:s,s:o}", "source", self->cfg.source, "events", rows));
}

static void admin_redrive(outbox_t *self, pg_session_t *db, svc_call_t *call,
                          const Kooisv__AdminRequest *req)
{
    const char *rid = svc_call_rid(call);
    const char *id = svcadmin_arg(req, "id");
    if (!*id || strlen(id) > 18 || strspn(id, "0123456789") != strlen(id)) {
        svc_call_result(call, RC_INVALID, "id: must be an outbox event id (digits)");
        return;
    }
    const char *p[] = {id};
    PGresult *r = pg_session_exec(db, rid, "outbox_redrive", 1, p, NULL);
    if (!r) {
        svc_call_result(call, RC_INTERNAL, "database error");
        return;
    }
    int n = PQntuples(r);
    PQclear(r);
    if (n == 0) {
        r = pg_session_exec(db, rid, "outbox_status", 1, p, NULL);
        const char *status = r ? pg_value(r, 0, 0) : NULL;
        if (status && strcmp(status, "pending") == 0)
            svc_call_result(call, RC_INVALID,
                            "outbox event %s is pending (being delivered or waiting for its "
                            "retry): nothing to redrive",
                            id);
        else if (status)
            svc_call_result(call, RC_INVALID, "outbox event %s is %s: nothing to redrive", id,
                            status);
        else
            svc_call_result(call, RC_INVALID, "no outbox event %s", id);
        PQclear(r);
        return;
    }
    const char *np[] = {self->channel};
    PQclear(pg_session_exec(db, rid, "outbox_notify", 1, np, NULL));
    log_info(rid, "outbox event %s re-driven by operator", id);
    svcadmin_reply(call, json_pack("{s:s,s:s}", "id", id, "status", "pending"));
}

bool outbox_admin(outbox_t *self, pg_session_t *db, svc_call_t *call,
                  const Kooisv__AdminRequest *req)
{
    if (strcmp(req->action, "outbox.failed") == 0)
        admin_failed(self, db, call, req);
    else if (strcmp(req->action, "outbox.redrive") == 0)
        admin_redrive(self, db, call, req);
    else
        return false;
    return true;
}

int outbox_metrics(outbox_t *self, pg_session_t *db, json_t *series)
{
    PGresult *r = pg_session_exec(db, NULL, "outbox_stats", 0, NULL, NULL);
    if (!r)
        return -1;
    const char *labels[] = {"source", self->cfg.source, NULL};
    svcadmin_series_add(series, "kooisv_outbox_pending", "gauge",
                        "events not yet delivered to the seller's application (in flight or "
                        "waiting for a retry)",
                        strtod(PQgetvalue(r, 0, 0), NULL), labels);
    svcadmin_series_add(series, "kooisv_outbox_failed", "gauge",
                        "events in the dead letter (delivery attempts exhausted; kooisvctl "
                        "outbox failed / redrive)",
                        strtod(PQgetvalue(r, 0, 1), NULL), labels);
    svcadmin_series_add(series, "kooisv_outbox_oldest_pending_seconds", "gauge",
                        "age of the oldest event not yet delivered (0 when none)",
                        strtod(PQgetvalue(r, 0, 2), NULL), labels);
    PQclear(r);
    return 0;
}

/* ---- delivery ---- */

static void mark_retry(courier_t *c, PGconn *conn, const char *id, int attempts, const char *error)
{
    outbox_t *self = c->box;
    long long delay = self->cfg.backoff_ms;
    for (int i = 1; i < attempts && delay < OUTBOX_BACKOFF_CAP_MS; i++)
        delay *= 2;
    if (delay > OUTBOX_BACKOFF_CAP_MS)
        delay = OUTBOX_BACKOFF_CAP_MS;
    char max[16], delay_s[24];
    snprintf(max, sizeof max, "%d", self->cfg.max_attempts);
    snprintf(delay_s, sizeof delay_s, "%lld", delay);
    const char *p[] = {id, error, max, delay_s};
    PGresult *r = pg_exec(conn, "outbox_retry", 4, p);
    if (!pg_ok(r))
        log_warn(NULL, "outbox: cannot record failed delivery of %s: %s", id, PQerrorMessage(conn));
    PQclear(r);
    int64_t due = time_mono_us() / 1000 + delay + OUTBOX_RETRY_SLACK_MS;
    if (attempts < self->cfg.max_attempts && (!c->next_retry_ms || due < c->next_retry_ms))
        c->next_retry_ms = due;
    if (attempts >= self->cfg.max_attempts)
        log_error(NULL, "outbox: event %s failed after %d attempts: %s", id, attempts, error);
    else
        log_warn(NULL, "outbox: delivery of %s failed (attempt %d): %s; retry in %lld ms", id,
                 attempts, error, delay);
}

/* Deliver one claimed row. */
static void deliver_row(courier_t *c, PGconn *conn, PGresult *rows, int i)
{
    outbox_t *self = c->box;
    const char *id = PQgetvalue(rows, i, 0);
    const char *event_id = PQgetvalue(rows, i, 1);
    const char *payload = PQgetvalue(rows, i, 2);
    bool sealed = strcmp(PQgetvalue(rows, i, 3), "t") == 0;
    int attempts = atoi(PQgetvalue(rows, i, 4));
    char *plain = NULL;
    size_t plain_len = 0;
    if (sealed) {
        char *aad = seal_aad(self, event_id);
        int rc = self->cfg.seal_key
                     ? sealbox_open(self->cfg.seal_key, aad, payload, &plain, &plain_len)
                     : -1;
        free(aad);
        if (rc != 0) {
            /* wrong data key or tampered row: retrying will not help, but an operator can fix
             * the key and redrive */
            mark_retry(c, conn, id, self->cfg.max_attempts, "sealed payload cannot be opened");
            return;
        }
    }
    httpc_options_t opt = {.ca_file = *self->cfg.ca_file ? self->cfg.ca_file : NULL,
                           .verify_peer = 1,
                           .timeout_ms = OUTBOX_POST_TIMEOUT_MS,
                           .keep_alive = 1}; /* an event may be posted again: it has its id */
    httpc_response_t resp;
    int rc = webhook_post(self->cfg.url, self->cfg.secret, plain ? plain : payload, &opt, &resp);
    if (plain)
        xfree_secret(plain, plain_len);
    if (rc == 0) {
        const char *p[] = {id};
        PGresult *r = pg_exec(conn, "outbox_delivered", 1, p);
        if (!pg_ok(r))
            log_warn(NULL, "outbox: event %s delivered but not recorded (will repeat): %s", id,
                     PQerrorMessage(conn));
        PQclear(r);
        log_debug(NULL, "outbox: event %s delivered", id);
    } else {
        char error[200];
        if (resp.status)
            snprintf(error, sizeof error, "HTTP status %d", resp.status);
        else
            snprintf(error, sizeof error, "%s", resp.error[0] ? resp.error : "no response");
        mark_retry(c, conn, id, attempts, error);
    }
    httpc_response_free(&resp);
}

/* One round: returns rows handled (0 = nothing due), -1 on a database failure. */
static int deliver_batch(courier_t *c, pgworker_t *worker, PGconn *conn)
{
    outbox_t *self = c->box;
    if (!*self->cfg.url) {
        PGresult *r = pg_exec(conn, "outbox_skip_all", 0, NULL);
        int n = pg_ok(r) ? atoi(PQcmdTuples(r)) : -1;
        PQclear(r);
        return n > 0 ? 0 : n; /* nothing more to do until the next notification */
    }
    char batch[16], lease[16];
    /* With several threads each takes one event at a time: a batch is posted one by one, and
     * its tail would wait behind a slow post while another thread sat idle. */
    snprintf(batch, sizeof batch, "%d", self->cfg.threads > 1 ? 1 : OUTBOX_BATCH);
    snprintf(lease, sizeof lease, "%d", OUTBOX_LEASE_S);
    const char *p[] = {batch, lease};
    PGresult *rows = pg_exec(conn, "outbox_claim", 2, p);
    if (!pg_ok(rows)) {
        log_warn(NULL, "outbox: claim failed: %s", PQerrorMessage(conn));
        PQclear(rows);
        return -1;
    }
    int n = PQntuples(rows);
    for (int i = 0; i < n && !pgworker_stopping(worker); i++)
        deliver_row(c, conn, rows, i);
    PQclear(rows);
    return n;
}

/* One step of a delivery thread (pgworker_step_t): deliver a claim's events; true when there
 * may be more. Between steps the thread waits for a commit of this process (outbox_wake), an
 * operator's redrive (NOTIFY), the poll interval, or the soonest retry it set itself. */
static bool delivery_step(pgworker_t *worker, pg_session_t *db, void *arg)
{
    courier_t *c = arg;
    int n = deliver_batch(c, worker, pg_session_conn(db));
    if (n > 0)
        return true;
    if (c->next_retry_ms) {
        int64_t left = c->next_retry_ms - time_mono_us() / 1000;
        if (left <= 0) {
            c->next_retry_ms = 0; /* due now: the next claim takes it */
            return true;
        }
        pgworker_wait_at_most(worker, (long)left);
    }
    return false;
}

int outbox_start(outbox_t *self)
{
    /* Without a URL one thread marks what a run with a URL left pending. */
    int threads = *self->cfg.url ? self->cfg.threads : 1;
    char app[64];
    snprintf(app, sizeof app, "kooisv-%s-outbox", self->cfg.source);
    pgworker_config_t wc = {
        .name = "outbox delivery",
        .session = {.dsn = self->cfg.dsn,
                    .app = app,
                    .setup_sql = self->cfg.setup_sql,
                    .stmts = delivery_stmts,
                    .nstmts = sizeof delivery_stmts / sizeof delivery_stmts[0],
                    .wait_s = 5},
        .channel = self->channel,
        .poll_ms = self->cfg.poll_ms,
        .retry_max_ms = 30000,
        .step = delivery_step,
        .arg = self->couriers,
    };
    self->workers = pgworker_set_new(threads, &wc, sizeof *self->couriers);
    if (!self->workers)
        return -1;
    if (*self->cfg.url)
        log_info(NULL, "outbox: delivering %s events to the webhook (%d threads)", self->cfg.source,
                 threads);
    else
        log_info(NULL, "outbox: no webhook URL: %s events are recorded and skipped",
                 self->cfg.source);
    return 0;
}
