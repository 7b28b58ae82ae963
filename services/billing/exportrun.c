/* exportrun: the threads that make exports and the janitor that deletes them (export.h).
 *
 * Claiming: a thread takes the oldest queued export with FOR UPDATE SKIP LOCKED and marks it
 * running under its claim token (committed, so that export.get shows "running"). It then makes
 * the whole file in one transaction that first locks the export's row again (checking the token
 * is still its own) and holds that lock to the end: the chunks and the ready mark commit
 * together, and a replica that dies mid-way leaves no chunk and an unlocked "running" row, which
 * any thread takes back after CLAIM_STALE_S (a live maker's row is locked: SKIP LOCKED passes it
 * by). After EXPORT_MAX_ATTEMPTS such takeovers the export is marked failed.
 *
 * Memory is bounded: rows come through a server-side cursor FETCH_ROWS at a time, are rendered
 * (exportfmt) and stored as chunks of about CHUNK_BYTES; nothing holds the whole file. */
#include "export.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "cryptoutil.h"
#include "exportfmt.h"
#include "log.h"
#include "pgworker.h"
#include "randutil.h"
#include "svc.h"
#include "timeutil.h"
#include "xmalloc.h"

#define STR_(x) #x
#define XSTR(x) STR_(x)
#define KEEP_DAYS XSTR(EXPORT_KEEP_DAYS)
#define CHUNK_BYTES (1024 * 1024)
#define FETCH_ROWS 2000
#define CLAIM_STALE_S "30"
#define JANITOR_BATCH "20"
/* Reconnection delays of an export thread grow from KOOISV_EXPORT_POLL_MS up to this. */
#define EXPORT_RETRY_MAX_MS 5000

/* The range and filters every export query takes: $1 from (epoch ms), $2 to (exclusive),
 * $3 tenant, $4 instance, $5 product (NULL = any). Test-flag instances are never exported. */
#define RANGE_FROM "to_timestamp($1::bigint / 1000.0)"
#define RANGE_TO "to_timestamp($2::bigint / 1000.0)"
#define FILTERS                                                                                    \
    " AND NOT i.test_flag AND ($3::text IS NULL OR i.tenant_id = $3)"                              \
    " AND ($4::text IS NULL OR i.instance_id = $4) AND ($5::text IS NULL OR i.product_id = $5)"

/* Kinds of ledger lines that charge for a period, and the refund (spec §7). */
#define CHARGED_KINDS "('new', 'renewal', 'trial_to_formal', 'upgrade')"

static const pg_stmt_t run_stmts[] = {
    {"export_claim",
     "UPDATE exports SET status = 'running', attempts = attempts + 1, claim_token = $1,"
     " claimed_at = now() WHERE id = (SELECT id FROM exports WHERE status = 'queued'"
     " OR (status = 'running' AND claimed_at < now() - interval '" CLAIM_STALE_S " seconds')"
     " ORDER BY requested_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)"
     " RETURNING id::text, kind, format, (extract(epoch FROM range_from) * 1000)::bigint,"
     " (extract(epoch FROM range_to) * 1000)::bigint, tenant_id, instance_id, product_id,"
     " attempts, request_id",
     1},
    {"export_lock",
     "SELECT 1 FROM exports WHERE id = $1::uuid AND claim_token = $2 AND status = 'running'"
     " FOR UPDATE",
     2},
    /* The bill: per instance, then ROLLUP totals per product, tenant and all. */
    {"export_bill_cursor",
     "DECLARE export_rows NO SCROLL CURSOR FOR"
     " WITH l AS (SELECT instance_id, count(*) AS lines,"
     "   coalesce(sum(amount) FILTER (WHERE kind IN " CHARGED_KINDS "), 0) AS charged,"
     "   coalesce(sum(abs(amount)) FILTER (WHERE kind = 'refund'), 0) AS refunded"
     "   FROM ledger WHERE occurred_at >= " RANGE_FROM " AND occurred_at < " RANGE_TO
     "   AND NOT test_flag GROUP BY instance_id),"
     " u AS (SELECT instance_id, count(*) AS records, sum(quantity) AS quantity"
     "   FROM usage_records WHERE bucket_start >= " RANGE_FROM " AND bucket_start < " RANGE_TO
     "   AND NOT test_flag GROUP BY instance_id)"
     " SELECT CASE WHEN grouping(i.tenant_id) = 1 THEN 'all' WHEN grouping(i.product_id) = 1"
     "   THEN 'tenant' WHEN grouping(i.instance_id) = 1 THEN 'product' ELSE 'instance' END,"
     " i.tenant_id, i.product_id, i.instance_id,"
     " CASE WHEN grouping(i.instance_id) = 0 THEN min(i.sku_code) END,"
     " CASE WHEN grouping(i.instance_id) = 0 THEN min(i.charging_mode) END,"
     " " RANGE_FROM ", " RANGE_TO ","
     " coalesce(sum(l.lines), 0), coalesce(sum(l.charged), 0), coalesce(sum(l.refunded), 0),"
     " coalesce(sum(l.charged), 0) - coalesce(sum(l.refunded), 0),"
     " coalesce(sum(u.records), 0), coalesce(sum(u.quantity), 0)"
     " FROM instances i LEFT JOIN l USING (instance_id) LEFT JOIN u USING (instance_id)"
     " WHERE (l.instance_id IS NOT NULL OR u.instance_id IS NOT NULL)" FILTERS
     " GROUP BY ROLLUP (i.tenant_id, i.product_id, i.instance_id)"
     " ORDER BY grouping(i.tenant_id), i.tenant_id, grouping(i.product_id), i.product_id,"
     " grouping(i.instance_id), i.instance_id",
     5},
    /* The detail: ledger lines by time, then usage records by hour. Append runs its parts in
     * order (the export session disables parallel plans), so no sort of the union is needed.
     * A usage record's push status and metering_sn are its push record's (migration 002);
     * without one it is "unsealed" (waiting for its window) or, not pay-per-use, "excluded", as
     * in the view usage_push_state (read from the tables here to spare the view's second scan
     * of usage_records). */
    {"export_detail_cursor",
     "DECLARE export_rows NO SCROLL CURSOR FOR"
     " (SELECT 'ledger', l.id, l.occurred_at, i.tenant_id, i.product_id,"
     "  l.instance_id, l.kind, l.order_id, l.amount, l.period_type, l.period_number,"
     "  NULL::numeric, NULL, NULL, NULL, NULL, NULL, NULL"
     "  FROM ledger l JOIN instances i USING (instance_id)"
     "  WHERE l.occurred_at >= " RANGE_FROM " AND l.occurred_at < " RANGE_TO
     "  AND NOT l.test_flag" FILTERS " ORDER BY l.occurred_at, l.id)"
     " UNION ALL"
     " (SELECT 'usage', u.id, u.used_begin, i.tenant_id, i.product_id,"
     "  u.instance_id, NULL, NULL, NULL, NULL, NULL, u.quantity, u.used_begin,"
     "  u.used_end, u.bucket_start, u.client_record_id,"
     "  CASE WHEN u.push_id IS NOT NULL THEN p.state"
     "  WHEN i.charging_mode IS DISTINCT FROM 'ON_DEMAND' THEN 'excluded' ELSE 'unsealed' END,"
     "  p.metering_sn"
     "  FROM usage_records u JOIN instances i USING (instance_id)"
     "  LEFT JOIN usage_pushes p ON p.id = u.push_id"
     "  WHERE u.bucket_start >= " RANGE_FROM " AND u.bucket_start < " RANGE_TO
     "  AND NOT u.test_flag" FILTERS "  ORDER BY u.bucket_start, u.id)",
     5},
    {"export_fetch", "FETCH " XSTR(FETCH_ROWS) " FROM export_rows", 0},
    {"export_chunk_insert",
     "INSERT INTO export_chunks (export_id, seq, data) VALUES ($1::uuid, $2::int, $3)", 3},
    /* clock_timestamp(): now() would be the start of the (long) transaction that made the file. */
    {"export_ready",
     "UPDATE exports SET status = 'ready', finished_at = clock_timestamp(),"
     " expires_at = clock_timestamp() + interval '" KEEP_DAYS " days', row_count = $3::bigint,"
     " byte_count = $4::bigint, chunk_count = $5::int,"
     " sha256 = $6 WHERE id = $1::uuid AND claim_token = $2",
     6},
    {"export_fail",
     "UPDATE exports SET status = 'failed', finished_at = now(), error = $3"
     " WHERE id = $1::uuid AND claim_token = $2 AND status = 'running'",
     3},
    /* The janitor: chunks of expired files deleted, the export kept (marked expired) so that a
     * late download is told why. */
    {"export_expire",
     "WITH x AS (SELECT id FROM exports WHERE status = 'ready' AND expires_at <= now()"
     " ORDER BY expires_at LIMIT " JANITOR_BATCH " FOR UPDATE SKIP LOCKED),"
     " d AS (DELETE FROM export_chunks c USING x WHERE c.export_id = x.id)"
     " UPDATE exports e SET status = 'expired' FROM x WHERE e.id = x.id RETURNING e.id::text",
     0},
};

/* Session of an export thread: times as exportfmt's TIME columns expect them, long statements
 * (a sort of a million rows), lock waits long enough to outlast a migration's lock, and no
 * parallel plans (the detail's parts stream in order; the machine has few cores to share). */
static const char session_sql[] =
    "SET search_path = billing; SET TIME ZONE 'UTC'; SET DateStyle = ISO;"
    " SET statement_timeout = '300s'; SET lock_timeout = '60s';"
    " SET idle_in_transaction_session_timeout = '300s';"
    " SET max_parallel_workers_per_gather = 0";

typedef struct {
    const export_config_t *cfg;
    char token[128];
    pg_session_t *db; /* the worker's session, lent for the step */
    PGconn *conn;     /* its connection */
} runner_t;

/* The claimed export, as export_claim returns it. */
typedef struct {
    char id[40];
    export_kind_t kind;
    export_format_t format;
    char from[24], to[24];
    char *tenant, *instance, *product; /* NULL = any */
    int attempts;
    char rid[160];
} job_t;

static pgworker_set_t *workers;
static runner_t *runners;

void export_config_load(export_config_t *cfg, const char *dsn)
{
    cfg->dsn = dsn;
    cfg->threads = (int)config_get_long("KOOISV_EXPORT_THREADS", 0, 8);
    cfg->poll_ms = (int)config_get_long("KOOISV_EXPORT_POLL_MS", 50, 600000);
}

/* Why a statement failed, for the export's error field: the SQLSTATE and, unless it is a data
 * exception (class 22: the message may quote values), PostgreSQL's primary message. */
static char *failure_text(const PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (!state)
        return xstrdup("the database connection was lost");
    if (strncmp(state, "22", 2) == 0 || !msg)
        return xasprintf("database error %s", state);
    return xasprintf("database error %s: %s", state, msg);
}

/* ---- one export ---- */

typedef struct {
    runner_t *r;
    job_t *job;
    exportfmt_t *fmt;
    EVP_MD_CTX *sha;
    int chunks;
    long long bytes;
    char *error; /* why it failed (set with the failing result) */
    bool lost;   /* the connection broke: leave the export for a takeover */
} make_t;

static PGresult *make_exec(make_t *m, const char *stmt, int n, const char *const *p,
                           ExecStatusType want)
{
    PGresult *res = pg_exec(m->r->conn, stmt, n, p);
    if (PQresultStatus(res) == want)
        return res;
    pg_log_failure(m->job->rid, stmt, res);
    m->error = failure_text(res);
    m->lost = PQstatus(m->r->conn) != CONNECTION_OK;
    PQclear(res);
    return NULL;
}

/* Store what the writer holds as the next chunk. */
static bool flush_chunk(make_t *m)
{
    size_t len;
    const char *data = exportfmt_data(m->fmt, &len);
    char seq[16];
    snprintf(seq, sizeof seq, "%d", m->chunks);
    const char *values[] = {m->job->id, seq, data};
    int lengths[] = {0, 0, (int)len};
    int formats[] = {0, 0, 1};
    PGresult *res =
        PQexecPrepared(m->r->conn, "export_chunk_insert", 3, values, lengths, formats, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        pg_log_failure(m->job->rid, "export_chunk_insert", res);
        m->error = failure_text(res);
        m->lost = PQstatus(m->r->conn) != CONNECTION_OK;
        PQclear(res);
        return false;
    }
    PQclear(res);
    EVP_DigestUpdate(m->sha, data, len);
    m->bytes += (long long)len;
    m->chunks++;
    exportfmt_drain(m->fmt);
    return true;
}

/* The file, inside the open transaction: cursor, rows, chunks, ready mark. */
static bool make_file(make_t *m)
{
    job_t *j = m->job;
    const char *lock_p[] = {j->id, m->r->token};
    PGresult *res = make_exec(m, "export_lock", 2, lock_p, PGRES_TUPLES_OK);
    if (!res)
        return false;
    int locked = PQntuples(res);
    PQclear(res);
    if (!locked) {
        m->error = xstrdup("taken over by another export thread");
        m->lost = true; /* not ours any more: leave it */
        return false;
    }
    const char *cur_p[] = {j->from, j->to, j->tenant, j->instance, j->product};
    res = make_exec(m, j->kind == EXPORT_BILL ? "export_bill_cursor" : "export_detail_cursor", 5,
                    cur_p, PGRES_COMMAND_OK);
    if (!res)
        return false;
    PQclear(res);
    size_t ncols;
    exportfmt_columns(j->kind, &ncols);
    const char *values[32];
    for (;;) {
        res = make_exec(m, "export_fetch", 0, NULL, PGRES_TUPLES_OK);
        if (!res)
            return false;
        int n = PQntuples(res);
        if (PQnfields(res) != (int)ncols) {
            PQclear(res);
            m->error =
                xasprintf("the query returned %d columns, the file has %zu", PQnfields(res), ncols);
            return false;
        }
        for (int row = 0; row < n; row++) {
            for (size_t c = 0; c < ncols; c++)
                values[c] = PQgetisnull(res, row, (int)c) ? NULL : PQgetvalue(res, row, (int)c);
            exportfmt_row(m->fmt, values);
            size_t len;
            exportfmt_data(m->fmt, &len);
            if (len >= CHUNK_BYTES && !flush_chunk(m)) {
                PQclear(res);
                return false;
            }
        }
        PQclear(res);
        if (n < FETCH_ROWS)
            break;
    }
    exportfmt_end(m->fmt);
    if (!flush_chunk(m))
        return false;
    unsigned char digest[32];
    unsigned int dlen = 0;
    EVP_DigestFinal_ex(m->sha, digest, &dlen);
    char hex[65], rows[24], bytes[24], chunks[16];
    hex_encode(digest, 32, hex);
    snprintf(rows, sizeof rows, "%lld", exportfmt_rows(m->fmt));
    snprintf(bytes, sizeof bytes, "%lld", m->bytes);
    snprintf(chunks, sizeof chunks, "%d", m->chunks);
    const char *ready_p[] = {j->id, m->r->token, rows, bytes, chunks, hex};
    res = make_exec(m, "export_ready", 6, ready_p, PGRES_COMMAND_OK);
    if (!res)
        return false;
    PQclear(res);
    return true;
}

/* Mark the export failed with why (outside the rolled back transaction). */
static void mark_failed(runner_t *r, const job_t *j, const char *why)
{
    const char *p[] = {j->id, r->token, why};
    pg_status_t st;
    PGresult *res = pg_session_exec(r->db, j->rid, "export_fail", 3, p, &st);
    if (res)
        PQclear(res);
    log_warn(j->rid, "export %s failed: %s", j->id, why);
}

static void make_export(runner_t *r, job_t *j)
{
    if (j->attempts > EXPORT_MAX_ATTEMPTS) {
        char why[96];
        snprintf(why, sizeof why, "generation interrupted %d times", j->attempts - 1);
        mark_failed(r, j, why);
        return;
    }
    int64_t start = time_mono_us();
    make_t m = {
        .r = r, .job = j, .fmt = exportfmt_new(j->kind, j->format), .sha = EVP_MD_CTX_new()};
    EVP_DigestInit_ex(m.sha, EVP_sha256(), NULL);
    bool ok = pg_command(r->conn, "BEGIN");
    if (!ok)
        m.lost = PQstatus(r->conn) != CONNECTION_OK;
    ok = ok && make_file(&m);
    if (ok && !pg_command(r->conn, "COMMIT")) {
        ok = false;
        m.error = xstrdup("COMMIT failed");
        m.lost = PQstatus(r->conn) != CONNECTION_OK;
    }
    if (!ok) {
        pg_session_ready(r->db, j->rid); /* rolls back (or reconnects) */
        if (!m.lost)
            mark_failed(r, j, m.error ? m.error : "the database refused the transaction");
        else
            log_warn(j->rid, "export %s interrupted (%s); left for a takeover", j->id,
                     m.error ? m.error : "connection lost");
    } else {
        log_info(j->rid, "export %s ready: %s %s, %lld rows, %lld bytes in %d chunks, %.1f s",
                 j->id, exportfmt_kind_name(j->kind), exportfmt_format_name(j->format),
                 exportfmt_rows(m.fmt), m.bytes, m.chunks, (double)(time_mono_us() - start) / 1e6);
    }
    free(m.error);
    EVP_MD_CTX_free(m.sha);
    exportfmt_destroy(&m.fmt);
}

/* ---- the thread ---- */

static char *dup_or_null(const PGresult *res, int col)
{
    return PQgetisnull(res, 0, col) ? NULL : xstrdup(PQgetvalue(res, 0, col));
}

/* Claim and make one export; 1 when one was made (look again at once), 0 when none waits. */
static int run_one(runner_t *r)
{
    pg_status_t st;
    PGresult *res =
        pg_session_exec(r->db, NULL, "export_claim", 1, (const char *const[]){r->token}, &st);
    if (!res)
        return 0;
    if (PQntuples(res) == 0) {
        PQclear(res);
        return 0;
    }
    job_t j = {0};
    snprintf(j.id, sizeof j.id, "%s", PQgetvalue(res, 0, 0));
    exportfmt_kind_parse(PQgetvalue(res, 0, 1), &j.kind);
    exportfmt_format_parse(PQgetvalue(res, 0, 2), &j.format);
    snprintf(j.from, sizeof j.from, "%s", PQgetvalue(res, 0, 3));
    snprintf(j.to, sizeof j.to, "%s", PQgetvalue(res, 0, 4));
    j.tenant = dup_or_null(res, 5);
    j.instance = dup_or_null(res, 6);
    j.product = dup_or_null(res, 7);
    j.attempts = atoi(PQgetvalue(res, 0, 8));
    snprintf(j.rid, sizeof j.rid, "%s", PQgetvalue(res, 0, 9));
    PQclear(res);
    log_info(j.rid, "export %s running (attempt %d) on %s", j.id, j.attempts, r->token);
    make_export(r, &j);
    free(j.tenant);
    free(j.instance);
    free(j.product);
    return 1;
}

static void janitor(runner_t *r)
{
    pg_status_t st;
    PGresult *res = pg_session_exec(r->db, NULL, "export_expire", 0, NULL, &st);
    for (int i = 0; res && i < PQntuples(res); i++)
        log_info(NULL, "export %s expired: its file is deleted", PQgetvalue(res, i, 0));
    if (res)
        PQclear(res);
}

/* One turn of an export thread (pgworker_step_t): expire what is due, then make one export;
 * true unless nothing was queued. */
static bool export_step(pgworker_t *worker, pg_session_t *db, void *arg)
{
    (void)worker;
    runner_t *r = arg;
    r->db = db;
    r->conn = pg_session_conn(db);
    janitor(r);
    return run_one(r) != 0;
}

int export_start(const export_config_t *cfg)
{
    runners = xcalloc((size_t)cfg->threads + 1, sizeof *runners);
    char nonce[9];
    rand_alnum(nonce, 8);
    for (int i = 0; i < cfg->threads; i++) {
        runners[i].cfg = cfg;
        snprintf(runners[i].token, sizeof runners[i].token, "%s:%d:%s", cfg->replica_id, i, nonce);
    }
    pgworker_config_t wc = {.name = "export thread",
                            .session = {.dsn = cfg->dsn,
                                        .app = "kooisv-billing-export",
                                        .setup_sql = session_sql,
                                        .stmts = run_stmts,
                                        .nstmts = sizeof run_stmts / sizeof *run_stmts,
                                        .wait_s = 1},
                            .channel = "billing_exports",
                            .poll_ms = cfg->poll_ms,
                            .retry_max_ms = EXPORT_RETRY_MAX_MS,
                            .step = export_step,
                            .arg = runners};
    workers = pgworker_set_new(cfg->threads, &wc, sizeof *runners);
    if (!workers)
        return -1;
    log_info(NULL, "%d export thread(s) started", cfg->threads);
    return 0;
}

void export_join(void)
{
    pgworker_set_destroy(&workers);
    free(runners);
    runners = NULL;
}
