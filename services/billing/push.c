/* push: seal usage into push records and send them to the marketplace (see push.h). */
#include "push.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "billclock.h"
#include "config.h"
#include "httpc.h"
#include "log.h"
#include "pgworker.h"
#include "pushwire.h"
#include "randutil.h"
#include "svcrt.h"
#include "timeutil.h"
#include "xmalloc.h"

/* Requests one send transaction may make (a batch with refusals is sent again without the
 * refused records): what is left undecided waits for the next cycle. */
enum { PUSH_REQUESTS_PER_TX = 32 };

/* The usage rows still to seal, with the instance facts that decide whether they are pushed:
 * pushadmin's status reads the same view. */
static const pg_stmt_t push_stmts[] = {
    {"push_seal_lock", "SELECT pg_try_advisory_xact_lock(hashtext('billing.usage_seal'))", 0},
    /* The seal's CTEs have no statistics (the planner guesses one row each), and a bulk of
     * fresh usage or push rows none either until autovacuum has analyzed them: a nested loop
     * over two CTEs, or a sequential scan of usage_pushes per usage row, is quadratic (10,000
     * records took a minute). Hash joins and index look-ups keep it linear, whatever the
     * statistics say. For the seal's transaction only. */
    {"push_seal_plan",
     "SELECT set_config('enable_nestloop', 'off', true), set_config('enable_seqscan', 'off', true)",
     0},
    /* $1 now, $2 delay seconds. Normal rows: the bucket ended delay ago; late rows (their bucket
     * has a record already): the window after the one they arrived in has opened. */
    {"push_seal",
     "WITH due AS ("
     "  SELECT v.id, v.instance_id, v.bucket_start, v.quantity, v.granularity AS g, v.unit,"
     "   EXISTS (SELECT 1 FROM billing.usage_pushes p WHERE p.instance_id = v.instance_id"
     "           AND p.bucket_start = v.bucket_start) AS late, v.received_at"
     "  FROM billing.usage_push_state v"
     "  WHERE v.push_id IS NULL AND v.state = 'unsealed' AND v.bucket_start < $1::timestamptz"
     "), ready AS ("
     "  SELECT * FROM due"
     "  WHERE (CASE WHEN late THEN date_trunc(g, received_at) ELSE bucket_start END)"
     "   + unit + $2::int * interval '1 second' <= $1::timestamptz"
     "), grp AS ("
     "  SELECT r.instance_id, r.bucket_start, min(r.g) AS g, min(r.unit) AS unit,"
     "   sum(r.quantity) AS q, count(*) AS n,"
     "   (SELECT coalesce(max(p.late_seq) + 1, 0) FROM billing.usage_pushes p"
     "    WHERE p.instance_id = r.instance_id AND p.bucket_start = r.bucket_start) AS seq"
     "  FROM ready r GROUP BY r.instance_id, r.bucket_start ORDER BY r.bucket_start LIMIT 10000"
     "), ins AS ("
     "  INSERT INTO billing.usage_pushes (metering_sn, instance_id, bucket_start, granularity,"
     "   late_seq, begin_time, end_time, record_time, usage_value, record_count, next_attempt_at)"
     "  SELECT replace(gen_random_uuid()::text, '-', ''), instance_id, bucket_start, g, seq,"
     "   bucket_start + seq * interval '1 second', bucket_start + unit, $1::timestamptz, q, n,"
     "   $1::timestamptz FROM grp WHERE seq * interval '1 second' < unit"
     "  RETURNING id, instance_id, bucket_start, late_seq"
     ") UPDATE billing.usage_records u SET push_id = ins.id FROM ready r JOIN ins"
     "  ON ins.instance_id = r.instance_id AND ins.bucket_start = r.bucket_start"
     " WHERE u.id = r.id RETURNING ins.late_seq > 0",
     2},
    /* $1 now, $2 limit, $3 the longest retry delay (ms). A retry time further ahead than any
     * backoff sets was set by a clock that has since been stepped back: due now, not hours
     * later. */
    {"push_claim",
     "SELECT id, metering_sn, instance_id, trim_scale(usage_value)::text,"
     " (extract(epoch FROM begin_time) * 1000)::bigint,"
     " (extract(epoch FROM end_time) * 1000)::bigint,"
     " (extract(epoch FROM record_time) * 1000)::bigint, attempts"
     " FROM billing.usage_pushes WHERE state = 'pending' AND (next_attempt_at <= $1::timestamptz"
     "  OR next_attempt_at > $1::timestamptz + 2 * $3::bigint * interval '1 millisecond')"
     " ORDER BY next_attempt_at, id LIMIT $2::int FOR UPDATE SKIP LOCKED",
     3},
    /* $1 ids, $2 now. These three find the rows by their ids, not through the due index
     * (PG_ROW_CHECK). */
    {"push_accepted",
     "UPDATE billing.usage_pushes SET state = 'accepted', attempts = attempts + 1,"
     " first_attempt_at = coalesce(first_attempt_at, $2::timestamptz),"
     " last_attempt_at = $2::timestamptz, accepted_at = $2::timestamptz, last_code = 'MKT.0000',"
     " last_message = NULL WHERE id = ANY ($1::bigint[]) AND " PG_ROW_CHECK("state = 'pending'"),
     2},
    /* $1 id, $2 now, $3 code, $4 message. */
    {"push_refused",
     "UPDATE billing.usage_pushes SET state = 'refused', attempts = attempts + 1,"
     " first_attempt_at = coalesce(first_attempt_at, $2::timestamptz),"
     " last_attempt_at = $2::timestamptz, last_code = $3, last_message = $4"
     " WHERE id = $1::bigint AND " PG_ROW_CHECK("state = 'pending'"),
     4},
    /* $1 ids, $2 now, $3 code, $4 message, $5 delay ms, $6 max attempts (0 = none). */
    {"push_retry",
     "UPDATE billing.usage_pushes SET attempts = attempts + 1,"
     " first_attempt_at = coalesce(first_attempt_at, $2::timestamptz),"
     " last_attempt_at = $2::timestamptz, last_code = $3, last_message = $4,"
     " next_attempt_at = $2::timestamptz + $5::bigint * interval '1 millisecond',"
     " state = CASE WHEN ($6::int > 0 AND attempts + 1 >= $6::int)"
     "   OR $2::timestamptz + $5::bigint * interval '1 millisecond'"
     "      >= begin_time + interval '21 days' - interval '10 minutes'"
     "  THEN 'dead' ELSE 'pending' END"
     " WHERE id = ANY ($1::bigint[]) AND " PG_ROW_CHECK("state = 'pending'") " RETURNING state",
     6},
};

const pg_stmt_t *push_statements(size_t *n)
{
    *n = sizeof push_stmts / sizeof push_stmts[0];
    return push_stmts;
}

struct push {
    push_config_t cfg;
    pgworker_t *worker;     /* the push thread and its session */
    pg_session_t *db;       /* the worker's session, lent for a cycle */
    unsigned long requests; /* request counter of this replica, for request ids */
};

/* One claimed record while its batch is out. */
typedef struct {
    char id[24];
    char *sn, *instance, *value;
    int64_t begin_ms, end_ms, record_ms;
    int attempts;
    bool decided;
} item_t;

/* One send transaction. */
typedef struct {
    push_t *self;
    char now[32];
    int64_t now_ms;
    item_t *items;
    size_t n;
    int requests_left;
    bool backoff; /* a batch was told to retry: wait before the next cycle */
    char rid[64];
} send_run_t;

push_t *push_new(const push_config_t *cfg)
{
    push_t *self = xcalloc(1, sizeof *self);
    self->cfg = *cfg;
    self->cfg.dsn = xstrdup(cfg->dsn);
    self->cfg.url = xstrdup(cfg->url);
    self->cfg.key = xstrdup(cfg->key);
    self->cfg.ca_file = xstrdup(cfg->ca_file ? cfg->ca_file : "");
    self->cfg.replica = xstrdup(cfg->replica ? cfg->replica : "billing");
    return self;
}

void push_destroy(push_t **self_p)
{
    push_t *self = *self_p;
    if (!self)
        return;
    pgworker_destroy(&self->worker);
    free((char *)self->cfg.dsn);
    free((char *)self->cfg.url);
    free((char *)self->cfg.key);
    free((char *)self->cfg.ca_file);
    free((char *)self->cfg.replica);
    free(self);
    *self_p = NULL;
}

static void format_now(int64_t ms, char out[32])
{
    time_format_iso(ms, out, 32);
}

/* ---- seal ---- */

static pg_status_t seal_tx(pg_tx_t *tx, void *arg)
{
    const send_run_t *run = arg;
    PGresult *r = pg_tx_exec(tx, "push_seal_lock", 0, NULL);
    if (!r)
        return tx->failed;
    bool mine = strcmp(pg_value(r, 0, 0), "t") == 0;
    PQclear(r);
    if (!mine)
        return PG_ROLLBACK; /* another replica is sealing right now */
    if (!(r = pg_tx_exec(tx, "push_seal_plan", 0, NULL)))
        return tx->failed;
    PQclear(r);
    char delay[16];
    snprintf(delay, sizeof delay, "%d", run->self->cfg.delay_s);
    const char *p[] = {run->now, delay};
    r = pg_tx_exec(tx, "push_seal", 2, p);
    if (!r)
        return tx->failed;
    int rows = PQntuples(r), late = 0;
    for (int i = 0; i < rows; i++)
        late += strcmp(pg_value(r, i, 0), "t") == 0;
    PQclear(r);
    if (rows > 0)
        log_info(tx->rid, "sealed %d usage row(s) into push records (%d late) at %s", rows, late,
                 run->now);
    return PG_OK;
}

/* ---- send ---- */

static long backoff_ms(const push_config_t *cfg, int attempts)
{
    return rand_backoff_ms(cfg->backoff_ms, cfg->backoff_max_ms, attempts);
}

static char *id_array(item_t **set, size_t n)
{
    const char **ids = xcalloc(n ? n : 1, sizeof *ids);
    for (size_t i = 0; i < n; i++)
        ids[i] = set[i]->id;
    char *a = pg_text_array(ids, n);
    free(ids);
    return a;
}

static bool mark_accepted(pg_tx_t *tx, send_run_t *run, item_t **set, size_t n)
{
    char *ids = id_array(set, n);
    const char *p[] = {ids, run->now};
    PGresult *r = pg_tx_exec(tx, "push_accepted", 2, p);
    free(ids);
    if (!r)
        return false;
    PQclear(r);
    for (size_t i = 0; i < n; i++)
        set[i]->decided = true;
    return true;
}

static bool mark_refused(pg_tx_t *tx, send_run_t *run, item_t *it, const pushwire_answer_t *a)
{
    const char *p[] = {it->id, run->now, a->code, a->message};
    PGresult *r = pg_tx_exec(tx, "push_refused", 4, p);
    if (!r)
        return false;
    PQclear(r);
    it->decided = true;
    log_warn(tx->rid, "usage record %s (metering_sn %s, instance %s) refused: %s %s", it->id,
             it->sn, it->instance, a->code, a->message);
    return true;
}

static bool mark_retry(pg_tx_t *tx, send_run_t *run, item_t **set, size_t n, const char *code,
                       const char *message)
{
    int attempts = 0;
    for (size_t i = 0; i < n; i++)
        attempts = set[i]->attempts > attempts ? set[i]->attempts : attempts;
    char delay[24], max[16];
    snprintf(delay, sizeof delay, "%ld", backoff_ms(&run->self->cfg, attempts + 1));
    snprintf(max, sizeof max, "%d", run->self->cfg.max_attempts);
    char *ids = id_array(set, n);
    const char *p[] = {ids, run->now, code, message, delay, max};
    PGresult *r = pg_tx_exec(tx, "push_retry", 6, p);
    free(ids);
    if (!r)
        return false;
    int dead = 0;
    for (int i = 0; i < PQntuples(r); i++)
        dead += strcmp(pg_value(r, i, 0), "dead") == 0;
    PQclear(r);
    for (size_t i = 0; i < n; i++)
        set[i]->decided = true;
    run->backoff = true;
    log_msg(dead ? LOG_ERROR : LOG_WARN, tx->rid,
            "usage push of %zu record(s) failed: %s %s; %d now dead, the rest retry in %s ms", n,
            code, message, dead, delay);
    return true;
}

/* Send set (n >= 1 undecided records) and record the outcome in tx; false on a database error.
 * A refusal is narrowed down to the record it concerns, the others are sent again. */
static bool send_set(pg_tx_t *tx, send_run_t *run, item_t **set, size_t n)
{
    if (n == 0 || run->backoff)
        return true; /* after a retryable failure the rest waits for the next cycle */
    if (run->requests_left-- <= 0)
        return true;
    push_t *self = run->self;
    pushwire_record_t *recs = xcalloc(n, sizeof *recs);
    for (size_t i = 0; i < n; i++)
        recs[i] = (pushwire_record_t){.metering_sn = set[i]->sn,
                                      .instance_id = set[i]->instance,
                                      .usage_value = set[i]->value,
                                      .begin_ms = set[i]->begin_ms,
                                      .end_ms = set[i]->end_ms,
                                      .record_ms = set[i]->record_ms};
    char *body = pushwire_body(recs, n);
    free(recs);
    char **headers = pushwire_headers(self->cfg.key, body, time_now_ms());
    httpc_options_t opt = {.ca_file = *self->cfg.ca_file ? self->cfg.ca_file : NULL,
                           .verify_peer = 1,
                           .timeout_ms = self->cfg.timeout_ms,
                           .keep_alive = 1}; /* a record may be pushed again: it has its id */
    httpc_response_t resp;
    memset(&resp, 0, sizeof resp);
    int64_t t0 = time_mono_us();
    int rc = httpc_request("POST", self->cfg.url, (const char *const *)headers, body, strlen(body),
                           &opt, &resp);
    pushwire_headers_free(headers);
    free(body);
    pushwire_answer_t a;
    pushwire_read(rc == 0 ? resp.status : 0, resp.body, resp.body_len, resp.error, n, &a);
    httpc_response_free(&resp);
    log_info(tx->rid, "usage push: %zu record(s) -> %s (%lld ms)", n, a.code,
             (long long)((time_mono_us() - t0) / 1000));
    switch (a.verdict) {
    case PUSHWIRE_ACCEPTED:
        return mark_accepted(tx, run, set, n);
    case PUSHWIRE_RETRY:
        return mark_retry(tx, run, set, n, a.code, a.message);
    case PUSHWIRE_REFUSED:
        if (n == 1)
            return mark_refused(tx, run, set[0], &a);
        if (a.index >= 0) {
            if (!mark_refused(tx, run, set[a.index], &a))
                return false;
            item_t **rest = xcalloc(n - 1, sizeof *rest);
            size_t m = 0;
            for (size_t i = 0; i < n; i++)
                if (i != (size_t)a.index)
                    rest[m++] = set[i];
            bool ok = send_set(tx, run, rest, m);
            free(rest);
            return ok;
        }
        break; /* which record is refused is not said: halve until it is */
    case PUSHWIRE_SPLIT:
        break;
    }
    size_t half = n / 2;
    return send_set(tx, run, set, half) && send_set(tx, run, set + half, n - half);
}

static void items_free(send_run_t *run)
{
    for (size_t i = 0; i < run->n; i++) {
        free(run->items[i].sn);
        free(run->items[i].instance);
        free(run->items[i].value);
    }
    free(run->items);
    run->items = NULL;
    run->n = 0;
}

static pg_status_t send_tx(pg_tx_t *tx, void *arg)
{
    send_run_t *run = arg;
    items_free(run);
    run->backoff = false;
    run->requests_left = PUSH_REQUESTS_PER_TX;
    char limit[16], longest[16];
    snprintf(limit, sizeof limit, "%d", run->self->cfg.batch_max);
    snprintf(longest, sizeof longest, "%d", run->self->cfg.backoff_max_ms);
    const char *p[] = {run->now, limit, longest};
    PGresult *r = pg_tx_exec(tx, "push_claim", 3, p);
    if (!r)
        return tx->failed;
    run->n = (size_t)PQntuples(r);
    run->items = xcalloc(run->n ? run->n : 1, sizeof *run->items);
    for (size_t i = 0; i < run->n; i++) {
        item_t *it = &run->items[i];
        snprintf(it->id, sizeof it->id, "%s", pg_value(r, (int)i, 0));
        it->sn = xstrdup(pg_value(r, (int)i, 1));
        it->instance = xstrdup(pg_value(r, (int)i, 2));
        it->value = xstrdup(pg_value(r, (int)i, 3));
        it->begin_ms = strtoll(pg_value(r, (int)i, 4), NULL, 10);
        it->end_ms = strtoll(pg_value(r, (int)i, 5), NULL, 10);
        it->record_ms = strtoll(pg_value(r, (int)i, 6), NULL, 10);
        it->attempts = atoi(pg_value(r, (int)i, 7));
    }
    PQclear(r);
    if (run->n == 0)
        return PG_ROLLBACK;
    item_t **set = xcalloc(run->n, sizeof *set);
    for (size_t i = 0; i < run->n; i++)
        set[i] = &run->items[i];
    bool ok = send_set(tx, run, set, run->n);
    free(set);
    return ok ? PG_OK : tx->failed;
}

/* One cycle: seal what is due, then send until nothing is due or a batch must wait. Returns
 * true when the next cycle may follow at once. */
static bool push_cycle(push_t *self)
{
    send_run_t run = {.self = self};
    snprintf(run.rid, sizeof run.rid, "push-%s-%lu", self->cfg.replica, ++self->requests);
    run.now_ms = billclock_now_ms();
    format_now(run.now_ms, run.now);
    if (pg_tx_run(self->db, run.rid, seal_tx, &run) == PG_FAIL)
        return false;
    for (int batches = 0; batches < 100 && !pgworker_stopping(self->worker); batches++) {
        run.now_ms = billclock_now_ms();
        format_now(run.now_ms, run.now);
        pg_status_t st = pg_tx_run(self->db, run.rid, send_tx, &run);
        size_t n = run.n;
        items_free(&run);
        if (st != PG_OK || n == 0 || run.backoff)
            return false;
    }
    return true;
}

/* The push thread's step (pgworker_step_t): one cycle on the worker's session. */
static bool push_step(pgworker_t *worker, pg_session_t *db, void *arg)
{
    (void)worker;
    push_t *self = arg;
    self->db = db;
    return push_cycle(self);
}

push_t *push_from_config(const char *dsn)
{
    const char *url = config_get("KOOISV_MARKETPLACE_URL");
    if (strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0)
        svcrt_die("KOOISV_MARKETPLACE_URL", "must be an http(s) URL");
    size_t n = strlen(url);
    while (n > 0 && url[n - 1] == '/')
        n--;
    char *full = xasprintf("%.*s%s", (int)n, url, PUSH_USAGE_PATH);
    billclock_init(config_get("KOOISV_BILLING_CLOCK_OFFSET_FILE"));
    char host[128] = "billing";
    gethostname(host, sizeof host - 1);
    char replica[160];
    snprintf(replica, sizeof replica, "%s:%ld", host, (long)getpid());
    push_config_t cfg = {
        .dsn = dsn,
        .url = full,
        .key = config_get("KOOISV_BASIC_KEY"),
        .ca_file = config_get("KOOISV_MARKETPLACE_CA_FILE"),
        .timeout_ms = (int)config_get_long("KOOISV_MARKETPLACE_TIMEOUT_MS", 100, 60000),
        .delay_s = (int)config_get_long("KOOISV_USAGE_PUSH_DELAY_S", 0, 840),
        .poll_ms = (int)config_get_long("KOOISV_USAGE_POLL_MS", 50, 60000),
        .batch_max = (int)config_get_long("KOOISV_USAGE_BATCH_MAX", 1, PUSHWIRE_MAX_RECORDS),
        .backoff_ms = (int)config_get_long("KOOISV_USAGE_BACKOFF_MS", 10, 600000),
        .backoff_max_ms = (int)config_get_long("KOOISV_USAGE_BACKOFF_MAX_MS", 10, 3600000),
        .max_attempts = (int)config_get_long("KOOISV_USAGE_MAX_ATTEMPTS", 0, 100000),
        .replica = replica,
    };
    if (cfg.backoff_max_ms < cfg.backoff_ms)
        svcrt_die("KOOISV_USAGE_BACKOFF_MAX_MS", "must not be below KOOISV_USAGE_BACKOFF_MS");
    push_t *self = push_new(&cfg);
    free(full);
    return self;
}

int push_start(push_t *self)
{
    char setup[320];
    /* A send transaction waits for one request at a time while it holds its row locks. The seal
     * runs every cycle, mostly with nothing due: a generic plan made then (tiny tables, $1
     * unknown) took 90 s on 10,000 due rows, so every execution is planned for its values. */
    snprintf(setup, sizeof setup,
             "SET search_path = billing; SET TIME ZONE 'UTC'; SET statement_timeout = '120s';"
             " SET lock_timeout = '5s'; SET idle_in_transaction_session_timeout = '%ds';"
             " SET plan_cache_mode = force_custom_plan",
             self->cfg.timeout_ms / 1000 + 15);
    pgworker_config_t wc = {.name = "usage push",
                            .session = {.dsn = self->cfg.dsn,
                                        .app = "kooisv-billing-push",
                                        .setup_sql = setup,
                                        .stmts = push_stmts,
                                        .nstmts = sizeof push_stmts / sizeof push_stmts[0],
                                        .wait_s = 30},
                            .connect_first = true,
                            .poll_ms = self->cfg.poll_ms,
                            .retry_max_ms = self->cfg.poll_ms,
                            .step = push_step,
                            .arg = self};
    self->worker = pgworker_new(&wc);
    if (!self->worker || pgworker_start(self->worker) != 0)
        return -1;
    log_info(NULL, "usage push started (replica %s, delay %d s after each hour, batches of %d)",
             self->cfg.replica, self->cfg.delay_s, self->cfg.batch_max);
    return 0;
}
