/* jobs: background work of the order service, run by job threads in every replica.
 * Job rows are claimed with FOR UPDATE SKIP LOCKED and leased (lease_owner, lease_until): a new
 * job by its key, by a job thread of the replica that took the call (jobs_wake), other due jobs
 * by a walk of the due index once a poll interval, up to JOB_CLAIM_MAX at once under a backlog,
 * and run in turn; a replica killed mid-job leaves leases that run out, and any replica takes
 * the jobs over.
 * Failures retry with exponential backoff (attempts, next_attempt_at, last_error) until
 * max_attempts, then the job is "failed" for an operator to redrive.
 *   provision:  Query Order -> [webhook provisioner: store the order details (with the lease
 *               extended, in one statement, only while the job is ours) -> the webhook] ->
 *               seal and store the credentials (builtin: with the order details), mark
 *               active, history + outbox (one transaction).
 *   order_sync: Query Order for an upgrade or refresh order -> store the new plan details,
 *               history and, for a refresh, its outbox event (one transaction).
 * Slow calls (HTTP) run outside any transaction; each step's result is committed before the
 * next, so a retry resumes where the last attempt stopped. */
#include "order.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "instance_state.h"
#include "log.h"
#include "pgworker.h"
#include "randutil.h"
#include "sealbox.h"
#include "timeutil.h"
#include "xmalloc.h"

/* Reconnection delays of a job thread grow from KOOISV_PROVISION_POLL_MS up to this. */
#define JOBS_RETRY_MAX_MS 5000

/* An instance row i as the job runner reads it (load_instance): state, test flag, whether its
 * order was fetched, product, SKU, charging mode, expiry. */
#define JOB_INSTANCE_COLUMNS                                                                       \
    " i.state, i.test_flag, i.order_fetched_at IS NOT NULL, i.product_id, i.sku_code,"             \
    " i.charging_mode,"                                                                            \
    " to_char(i.expire_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

/* The instance's own order as Query Order gave it ($1 the instance; $2-$12 order type, charging
 * mode, period type and number, product, SKU, amount, trial, expiry in epoch ms, the order and
 * the product as JSON): fills what nothing else set yet, since a refresh or an upgrade may have
 * come first and is newer; a trial stays one only until its TRIAL_TO_FORMAL application. */
#define JOB_ORDER_SET                                                                              \
    " order_type = coalesce(order_type, $2), charging_mode = coalesce(charging_mode, $3),"         \
    " period_type = coalesce(period_type, $4), period_number = coalesce(period_number, $5::int),"  \
    " product_id = coalesce(product_id, $6), sku_code = coalesce(sku_code, $7),"                   \
    " amount = coalesce(amount, $8),"                                                              \
    " trial = $9::boolean AND NOT EXISTS (SELECT 1 FROM orders.order_applications a"               \
    "   WHERE a.instance_id = $1 AND a.scene = 'TRIAL_TO_FORMAL'),"                                \
    " expire_time = coalesce(expire_time, to_timestamp($10::bigint / 1000.0)),"                    \
    " order_info = $11::jsonb, product_info = coalesce(product_info, $12::jsonb),"                 \
    " order_fetched_at = now()"

/* The provisioned instance: front-end URL, admin URL, sealed user name and password, memo and
 * the state it is delivered in, from the six parameters named. */
#define JOB_CREDENTIALS_SET(url, admin, user, password, memo, state)                               \
    " front_end_url = " url ", admin_url = " admin ", user_name_sealed = " user ","                \
    " password_sealed = " password ", memo = " memo ", state = " state ","                         \
    " freeze_requested = false, provisioned_at = now(), updated_at = now()"

/* A job row that is running under owner's lease, in the WHERE of a statement that names the
 * job by its id: not in a form that fits the due index (jobs_due_order: pending and running
 * jobs), whose whole walk for the id a generic plan chose (PG_ROW_CHECK; test_order_claims
 * test_job_by_id_plans). */
#define JOB_LEASED_TO(owner) PG_ROW_CHECK("state = 'running' AND lease_owner = " owner)

/* The rest of a claim after its CTE c of job ids: lease them to $1 for $2 ms and read them with
 * their instances (columns 0-6 the job, 7-13 the instance, as job_instance). */
#define JOB_CLAIM_REST                                                                             \
    " j AS (UPDATE orders.jobs j SET state = 'running', attempts = j.attempts + 1,"                \
    "  lease_owner = $1, lease_until = now() + $2::int * interval '1 millisecond',"                \
    "  updated_at = now()"                                                                         \
    "  FROM c WHERE j.id = c.id"                                                                   \
    "  RETURNING j.id, j.kind, j.instance_id, j.order_id, j.order_line_id, j.attempts,"            \
    "   coalesce(j.request_id, '-') AS rid)"                                                       \
    " SELECT j.id, j.kind, j.instance_id, j.order_id, j.order_line_id, j.attempts, j.rid,"         \
    JOB_INSTANCE_COLUMNS " FROM j LEFT JOIN orders.instances i ON i.instance_id = j.instance_id"   \
    " ORDER BY j.id"

const pg_stmt_t jobs_stmts[] = {
    /* Claims up to $3 due jobs, oldest first, and reads their instances in one statement (one
     * walk of the due index serves them all): the instance's columns are NULL when it is gone.
     * Columns 0-6 the job, 7-13 the instance (as job_instance). The walk reads every entry of
     * the due index up to now, those of jobs done since the last vacuum included, so it runs
     * once a poll interval (run_some); this replica's new jobs are claimed by their keys, and
     * are due for the walks only JOB_KEY_GRACE later. */
    {"job_claim",
     "WITH c AS (SELECT id FROM orders.jobs"
     "  WHERE (state = 'pending' AND next_attempt_at <= now())"
     "     OR (state = 'running' AND lease_until < now())"
     "  ORDER BY next_attempt_at, id LIMIT $3::int FOR UPDATE SKIP LOCKED)," JOB_CLAIM_REST,
     3},
    /* The same for the pending job of one key ($3 kind, $4 instance, $5 order: jobs_wake's),
     * found through jobs_key (PG_ROW_CHECK keeps the due index out). A job never tried is due
     * for its key at once (the walks see it after JOB_KEY_GRACE); one tried keeps its backoff.
     * One key a statement: with arrays of keys PostgreSQL plans every call anew. */
    {"job_claim_key",
     "WITH c AS (SELECT id FROM orders.jobs"
     "  WHERE kind = $3 AND instance_id = $4 AND order_id = $5 AND "
     PG_ROW_CHECK("state = 'pending' AND (attempts = 0 OR next_attempt_at <= now())")
     "  FOR UPDATE SKIP LOCKED)," JOB_CLAIM_REST,
     5},
    /* Claimed jobs a runner will not start after all (too little lease left, or it stops):
     * due again at once for any runner, the claim's attempt not counted. */
    {"job_give_back",
     "UPDATE orders.jobs SET state = 'pending', attempts = greatest(attempts - 1, 0),"
     " lease_owner = NULL, lease_until = NULL, next_attempt_at = now(), updated_at = now()"
     " WHERE id = ANY($1::bigint[]) AND " JOB_LEASED_TO("$2"),
     2},
    /* The instance's own order (provision): fills what nothing else set yet, since a refresh or
     * an upgrade may have come first and is newer. Only while the job is still ours: the same
     * statement extends the lease ($13 job, $14 owner, $15 lease ms) and stores nothing when it
     * cannot. One row: 1 or 0 (still ours), then the instance as job_instance, NULL when it is
     * released or gone. Used before a webhook provisioner's call, which may be slow. */
    {"job_store_order",
     "WITH renew AS (UPDATE orders.jobs SET lease_until = now() + $15::int * interval '1 millisecond',"
     "  updated_at = now() WHERE id = $13::bigint AND " JOB_LEASED_TO("$14")
     "  RETURNING id),"
     " i AS (UPDATE orders.instances SET" JOB_ORDER_SET ", updated_at = now()"
     "  WHERE instance_id = $1 AND state <> 'released' AND EXISTS (SELECT 1 FROM renew)"
     "  RETURNING *)"
     " SELECT (SELECT count(*) FROM renew),"
     JOB_INSTANCE_COLUMNS
     " FROM (VALUES (1)) one LEFT JOIN i ON true",
     15},
    /* The same inside the finishing transaction, which holds the job and the instance locked
     * (job_lock_instance): the order alone, when the instance needs no credentials... */
    {"job_store_order_locked",
     "UPDATE orders.instances SET" JOB_ORDER_SET ", updated_at = now()"
     " WHERE instance_id = $1 AND state <> 'released'",
     12},
    /* ...or the order with the credentials ($13-$18, as job_store_credentials' $2-$7): one
     * row version for both. */
    {"job_store_all",
     "UPDATE orders.instances SET" JOB_ORDER_SET "," JOB_CREDENTIALS_SET("$13", "$14", "$15", "$16", "$17", "$18")
     " WHERE instance_id = $1",
     18},
    /* A later order (order_sync after an upgrade): its plan replaces the old one; expiry stays
     * with refreshInstance. */
    {"job_store_plan",
     "UPDATE orders.instances SET charging_mode = coalesce($2, charging_mode),"
     " period_type = coalesce($3, period_type), period_number = coalesce($4::int, period_number),"
     " product_id = coalesce($5, product_id), sku_code = coalesce($6, sku_code),"
     " amount = coalesce($7, amount), product_info = coalesce($8::jsonb, product_info),"
     " updated_at = now() WHERE instance_id = $1 AND state <> 'released'",
     8},
    /* The refresh (not a cancellation: its orderId is the renewal's) an order_sync job is for. */
    {"job_refresh_scene",
     "SELECT scene FROM orders.order_applications WHERE instance_id = $1 AND order_id = $2"
     " AND activity = 'refreshInstance' AND scene <> 'UNSUBSCRIBE_RENEWAL_PERIOD' LIMIT 1",
     2},
    /* Locks the job ($2) and its instance ($1), in that order (as the claim and
     * job_store_order do), in one round trip: the instance's state and whether a FREEZE waits,
     * then the job's lease owner, NULL unless it is running (the job is found by its id alone,
     * for the reason JOB_LEASED_TO gives, and locked whatever its state). No row: the instance
     * is gone. */
    {"job_lock_instance",
     "SELECT i.state, i.freeze_requested, (SELECT CASE WHEN j.state = 'running' THEN"
     "  j.lease_owner END FROM orders.jobs j WHERE j.id = $2::bigint FOR UPDATE)"
     " FROM orders.instances i WHERE i.instance_id = $1 FOR UPDATE OF i",
     2},
    {"job_store_credentials",
     "UPDATE orders.instances SET" JOB_CREDENTIALS_SET("$2", "$3", "$4", "$5", "$6", "$7") " WHERE instance_id = $1", 7},
    {"job_finish",
     "UPDATE orders.jobs SET state = $2, done_at = now(), lease_owner = NULL,"
     " lease_until = NULL, updated_at = now() WHERE id = $1::bigint",
     2},
    {"job_running_owners",
     "SELECT DISTINCT lease_owner FROM orders.jobs WHERE state = 'running' AND lease_owner IS NOT "
     "NULL",
     0},
    {"job_release_owner",
     "UPDATE orders.jobs SET state = 'pending', lease_owner = NULL, lease_until = NULL,"
     " next_attempt_at = now(), updated_at = now() WHERE state = 'running' AND lease_owner = $1",
     1},
    {"job_fail",
     "UPDATE orders.jobs SET state = CASE WHEN attempts >= $3::int THEN 'failed' ELSE 'pending' "
     "END,"
     " next_attempt_at = now() + $4::bigint * interval '1 millisecond', last_error = $2,"
     " last_error_at = now(), lease_owner = NULL, lease_until = NULL, updated_at = now()"
     " WHERE id = $1::bigint AND " JOB_LEASED_TO("$5") " RETURNING state",
     5},
};
const size_t jobs_stmts_count = sizeof jobs_stmts / sizeof jobs_stmts[0];

/* Jobs one claim takes at most. A runner asks for one; while its claims come back full (a
 * backlog), it asks for twice as many the next time, up to this; a claim that finds fewer than
 * it asked for brings it back down. Only the first job of a claim runs when the lease is no
 * longer than a job step (KOOISV_PROVISION_LEASE_MS at its lowest): then a claim takes one. */
#define JOB_CLAIM_MAX 8

typedef struct {
    const order_config_t *cfg;
    char owner[192];
    pg_session_t *db;  /* the worker's session, lent for the step */
    pgworker_t *worker; /* the step's (pgworker_stopping), lent for the step like db */
    int claim_n;        /* jobs the next claim asks for (1..claim_max) */
    int claim_max;      /* JOB_CLAIM_MAX, or 1 when the lease leaves no time for a second job */
    int64_t next_walk_us; /* when the next walk of the due index is due (monotonic) */
} runner_t;

typedef struct {
    char id[24];
    char kind[16];
    char instance_id[257];
    char order_id[257];
    char order_line_id[257];
    int attempts;
    char rid[160];
} job_t;

static pgworker_set_t *workers;
static runner_t *runners;

/* ---- small helpers ---- */

static bool exec_ok(runner_t *r, const char *rid, const char *stmt, int n, const char *const *p,
                    int *rows)
{
    pg_status_t st;
    PGresult *res = pg_session_exec(r->db, rid, stmt, n, p, &st);
    if (!res)
        return false;
    if (rows)
        *rows = PQresultStatus(res) == PGRES_TUPLES_OK ? PQntuples(res) : atoi(PQcmdTuples(res));
    PQclear(res);
    return true;
}

static long backoff_ms(const order_config_t *cfg, int attempts)
{
    return rand_backoff_ms(cfg->backoff_ms, cfg->backoff_max_ms, attempts);
}

/* Record a failed attempt: retry later, or give up at max_attempts. */
static void job_fail(runner_t *r, const job_t *job, const char *why)
{
    char max[16], delay[24];
    snprintf(max, sizeof max, "%d", r->cfg->max_attempts);
    snprintf(delay, sizeof delay, "%ld", backoff_ms(r->cfg, job->attempts));
    const char *p[] = {job->id, why, max, delay, r->owner};
    pg_status_t st;
    PGresult *res = pg_session_exec(r->db, job->rid, "job_fail", 5, p, &st);
    const char *state = res && PQntuples(res) == 1 ? pg_value(res, 0, 0) : "lost";
    log_msg(strcmp(state, "failed") == 0 ? LOG_ERROR : LOG_WARN, job->rid,
            "job %s %s instance=%s attempt %d failed: %s; now %s%s%s", job->id, job->kind,
            job->instance_id, job->attempts, why, state,
            strcmp(state, "pending") == 0 ? ", retry in ms " : "",
            strcmp(state, "pending") == 0 ? delay : "");
    if (res)
        PQclear(res);
}

/* ---- steps ---- */

typedef struct {
    instance_state_t state;
    bool test_flag;
    bool order_fetched;
    char product_id[257], sku_code[257], charging_mode[64], expire[32];
} job_instance_t;

/* The instance columns (JOB_INSTANCE_COLUMNS) of row row from column col into *out; false when
 * they are NULL (the instance is gone, or released where the statement says so). */
static bool instance_row(const PGresult *res, int row, int col, job_instance_t *out)
{
    if (row >= PQntuples(res) || PQgetisnull(res, row, col) ||
        !instance_state_parse(pg_value(res, row, col), &out->state))
        return false;
    out->test_flag = strcmp(pg_value(res, row, col + 1), "t") == 0;
    out->order_fetched = strcmp(pg_value(res, row, col + 2), "t") == 0;
#define COPY(field, i)                                                                             \
    snprintf(out->field, sizeof out->field, "%s",                                                  \
             pg_value(res, row, col + i) ? pg_value(res, row, col + i) : "")
    COPY(product_id, 3);
    COPY(sku_code, 4);
    COPY(charging_mode, 5);
    COPY(expire, 6);
#undef COPY
    return true;
}

/* Query Order for the job's order into *d (caller frees it); false after job_fail. */
static bool job_query_order(runner_t *r, const job_t *job, queryorder_details_t *d)
{
    char err[256];
    if (queryorder_fetch(&r->cfg->market, job->order_id, job->order_line_id, d, err, sizeof err) ==
        0)
        return true;
    job_fail(r, job, err);
    return false;
}

typedef enum { FETCH_STORED, FETCH_FAILED, FETCH_LOST, FETCH_RELEASED } fetch_result_t;

/* The text buffers order_params fills. */
typedef struct {
    char period[16], expire[24];
} order_text_t;

/* p[0..11] = the parameters of JOB_ORDER_SET for instance_id and d (t holds the numbers). */
static void order_params(const char *instance_id, const queryorder_details_t *d, order_text_t *t,
                         const char *p[12])
{
    snprintf(t->period, sizeof t->period, "%d", d->period_number);
    snprintf(t->expire, sizeof t->expire, "%lld", (long long)d->expire_ms);
    const char *v[12] = {instance_id,
                         d->order_type,
                         d->charging_mode,
                         d->period_type,
                         d->period_number >= 0 ? t->period : NULL,
                         d->product_id,
                         d->sku_code,
                         d->amount,
                         d->trial ? "true" : "false",
                         d->expire_ms > 0 ? t->expire : NULL,
                         d->order_json,
                         d->product_info};
    memcpy(p, v, sizeof v);
}

/* The log line of an order stored for job. */
static void log_order_fetched(const job_t *job, const queryorder_details_t *d)
{
    log_info(job->rid, "job %s: order %s fetched (type=%s charging=%s product=%s trial=%d)",
             job->id, job->order_id, d->order_type ? d->order_type : "-",
             d->charging_mode ? d->charging_mode : "-", d->product_id ? d->product_id : "-",
             d->trial);
}

/* Query Order for the instance's own order (provision), then store the details and extend the
 * lease in one statement, *inst refreshed from the stored row. FETCH_STORED; FETCH_FAILED after
 * job_fail; FETCH_LOST when the job is no longer ours (nothing stored); FETCH_RELEASED when the
 * instance was released or is gone meanwhile (nothing stored). */
static fetch_result_t fetch_order(runner_t *r, const job_t *job, job_instance_t *inst)
{
    queryorder_details_t d;
    if (!job_query_order(r, job, &d))
        return FETCH_FAILED;
    char lease[16];
    snprintf(lease, sizeof lease, "%d", r->cfg->lease_ms);
    order_text_t t;
    const char *p[15];
    order_params(job->instance_id, &d, &t, p);
    p[12] = job->id;
    p[13] = r->owner;
    p[14] = lease;
    pg_status_t st;
    PGresult *res = pg_session_exec(r->db, job->rid, "job_store_order", 15, p, &st);
    fetch_result_t out = FETCH_FAILED;
    if (res && PQntuples(res) == 1) {
        if (strcmp(pg_value(res, 0, 0), "1") != 0)
            out = FETCH_LOST;
        else if (!instance_row(res, 0, 1, inst))
            out = FETCH_RELEASED;
        else
            out = FETCH_STORED;
    }
    if (res)
        PQclear(res);
    if (out == FETCH_STORED)
        log_order_fetched(job, &d);
    else if (out == FETCH_LOST)
        log_warn(job->rid, "job %s: lease lost (taken over or cancelled); stopping", job->id);
    queryorder_details_free(&d);
    if (out == FETCH_FAILED)
        job_fail(r, job, "database error while storing the order");
    return out;
}

/* Lock the job and its instance (its state into *state, whether a FREEZE waits into *freeze)
 * and check the job still runs under this runner's lease. PG_OK to go on, PG_ROLLBACK (logged)
 * when the instance is gone or the job is no longer ours, else the failure. */
static pg_status_t lock_job_instance(PGconn *conn, const runner_t *r, const job_t *job,
                                     instance_state_t *state, bool *freeze)
{
    pg_status_t st = PG_OK;
    const char *p[] = {job->instance_id, job->id};
    PGresult *res = pg_exec_logged(conn, job->rid, "job_lock_instance", 2, p, &st);
    if (!res)
        return st;
    bool found = PQntuples(res) == 1 && instance_state_parse(pg_value(res, 0, 0), state);
    *freeze = found && strcmp(pg_value(res, 0, 1), "t") == 0; /* FREEZE while provisioning */
    const char *owner = found ? pg_value(res, 0, 2) : NULL;
    bool ours = owner && strcmp(owner, r->owner) == 0;
    PQclear(res);
    if (!found) {
        log_warn(job->rid, "job %s: instance %s is gone; not storing", job->id, job->instance_id);
        return PG_ROLLBACK;
    }
    if (!ours) {
        log_warn(job->rid, "job %s: lease lost (taken over or cancelled); not storing", job->id);
        return PG_ROLLBACK;
    }
    return PG_OK;
}

typedef struct {
    runner_t *r;
    const job_t *job;
    const char *kind_done; /* "done" or "cancelled" decided inside */
    const queryorder_details_t *order; /* the instance's own order to store too, or NULL */
    bool order_stored;
    provisioner_credentials_t *creds;
    char *user_sealed, *password_sealed;
    json_t *app_info; /* {"appInfo":...} for the activation event */
    bool activated;
} finish_ctx_t;

/* Store the credentials and activate, unless the instance moved on (released) meanwhile; with
 * c->order, store the instance's order too (unless it is released). */
static pg_status_t finish_body(pg_tx_t *tx, void *arg)
{
    PGconn *conn = tx->conn;
    finish_ctx_t *c = arg;
    const job_t *job = c->job;
    const char *rid = job->rid;
    pg_status_t st = PG_OK;
    c->activated = false;
    c->order_stored = false;
    instance_state_t from, to;
    bool freeze;
    if ((st = lock_job_instance(conn, c->r, job, &from, &freeze)) != PG_OK)
        return st;
    const char *why;
    instance_verdict_t v = instance_transition(from, INSTANCE_EV_PROVISIONED, &to, &why);
    c->kind_done = v == INSTANCE_INVALID ? "cancelled" : "done";
    order_text_t ot;
    const char *op[18];
    if (c->order)
        order_params(job->instance_id, c->order, &ot, op);
    if (c->order && v != INSTANCE_APPLY && from != INSTANCE_RELEASED) {
        if ((st = pg_tx_queue(tx, "job_store_order_locked", 12, op)) != PG_OK)
            return st;
        c->order_stored = true;
    }
    if (v == INSTANCE_APPLY) {
        /* Delivered in the status the marketplace set meanwhile. */
        instance_state_t delivered = to;
        if (freeze &&
            instance_transition(to, INSTANCE_EV_FREEZE, &delivered, &why) != INSTANCE_APPLY)
            delivered = to;
        const provisioner_credentials_t *k = c->creds;
        const char *p[] = {job->instance_id,
                           k->front_end_url,
                           k->admin_url,
                           c->user_sealed,
                           c->password_sealed,
                           k->memo,
                           instance_state_name(delivered)};
        if (c->order) {
            memcpy(op + 12, p + 1, 6 * sizeof *p);
            st = pg_tx_queue(tx, "job_store_all", 18, op);
            c->order_stored = st == PG_OK;
        } else {
            st = pg_tx_queue(tx, "job_store_credentials", 7, p);
        }
        if (st != PG_OK)
            return st;
        change_t ch = {.instance_id = job->instance_id,
                       .event = instance_event_name(INSTANCE_EV_PROVISIONED),
                       .from_state = instance_state_name(from),
                       .to_state = instance_state_name(to),
                       .order_id = job->order_id,
                       .order_line_id = job->order_line_id,
                       .outbox_event = "instance.activated",
                       .request_id = rid,
                       .data_extra = c->app_info};
        if ((st = change_record(tx, &ch)) != PG_OK)
            return st;
        if (delivered != to) {
            change_t fz = {.instance_id = job->instance_id,
                           .event = instance_event_name(INSTANCE_EV_FREEZE),
                           .from_state = instance_state_name(to),
                           .to_state = instance_state_name(delivered),
                           .status = "FREEZE",
                           .detail_json = "{\"requestedWhileProvisioning\":true}",
                           .outbox_event = "instance.frozen",
                           .request_id = rid};
            if ((st = change_record(tx, &fz)) != PG_OK)
                return st;
        }
        c->activated = true;
    }
    const char *fp[] = {job->id, c->kind_done};
    return pg_tx_queue(tx, "job_finish", 2, fp); /* sent with the COMMIT */
}

static char *seal_text(const order_config_t *cfg, const char *aad, const char *text)
{
    return text ? sealbox_seal(cfg->data_key, aad, text, strlen(text)) : NULL;
}

/* The activation event's {"appInfo": {frontEndUrl, adminUrl, memo, credentials}}: the builtin
 * provisioner's generated user name and password reach the application only here, sealed
 * (sealbox: AES-256-GCM, "v1:" base64(nonce | ciphertext | tag)) under cfg->event_key with the
 * instance id as associated data (README "Order events"). Without a webhook secret, or when the
 * application made them itself (webhook provisioner), "credentials" is absent. */
static json_t *event_app_info(const order_config_t *cfg, const char *instance_id,
                              const provisioner_credentials_t *k)
{
    json_t *info = json_pack("{s:s?,s:s?,s:s?}", "frontEndUrl", k->front_end_url, "adminUrl",
                             order_nullable(k->admin_url), "memo", order_nullable(k->memo));
    if (cfg->event_key_set && cfg->prov.kind == PROVISIONER_BUILTIN && k->user_name &&
        k->password) {
        json_t *plain = json_pack("{s:s,s:s}", "userName", k->user_name, "password", k->password);
        char *text = json_dumps(plain, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(plain); /* jansson keeps no other copy */
        char *sealed = sealbox_seal(cfg->event_key, instance_id, text, strlen(text));
        xfree_secret(text, strlen(text));
        json_object_set_new(info, "credentials", json_string(sealed));
        free(sealed);
    }
    return json_pack("{s:o}", "appInfo", info);
}

static void finish_job(runner_t *r, const job_t *job, const char *state)
{
    const char *p[] = {job->id, state};
    exec_ok(r, job->rid, "job_finish", 2, p, NULL);
}

/* Provision job's instance. A webhook provisioner may be slow: the order is fetched and stored
 * first (with the lease extended), then the webhook called. The builtin one is not: the order
 * is stored with the credentials, in the finishing transaction, one commit for both. */
static void run_provision(runner_t *r, const job_t *job, job_instance_t *inst)
{
    queryorder_details_t d;
    const queryorder_details_t *order = NULL;
    if (!inst->order_fetched && r->cfg->prov.kind == PROVISIONER_BUILTIN) {
        if (!job_query_order(r, job, &d))
            return;
        order = &d;
    } else if (!inst->order_fetched) {
        fetch_result_t f = fetch_order(r, job, inst);
        if (f == FETCH_RELEASED) {
            log_info(job->rid, "job %s: instance %s was released meanwhile; job cancelled",
                     job->id, job->instance_id);
            finish_job(r, job, "cancelled");
        }
        if (f != FETCH_STORED)
            return;
    }
    /* The builtin provisioner reads only the ids, so the order not stored yet does not matter
     * here; the webhook's request carries the stored order. */
    provisioner_request_t req = {.instance_id = job->instance_id,
                                 .order_id = job->order_id,
                                 .order_line_id = job->order_line_id,
                                 .product_id = order_nullable(inst->product_id),
                                 .sku_code = order_nullable(inst->sku_code),
                                 .charging_mode = order_nullable(inst->charging_mode),
                                 .expire_time = order_nullable(inst->expire),
                                 .test_flag = inst->test_flag,
                                 .request_id = job->rid};
    provisioner_credentials_t creds = {0};
    char err[256];
    if (provisioner_provision(&r->cfg->prov, &req, &creds, err, sizeof err) != 0) {
        job_fail(r, job, err);
        if (order)
            queryorder_details_free(&d);
        return;
    }
    finish_ctx_t c = {.r = r, .job = job, .order = order, .creds = &creds};
    c.user_sealed = seal_text(r->cfg, job->instance_id, creds.user_name);
    c.password_sealed = seal_text(r->cfg, job->instance_id, creds.password);
    c.app_info = event_app_info(r->cfg, job->instance_id, &creds);
    pg_status_t st = pg_tx_run(r->db, job->rid, finish_body, &c);
    free(c.user_sealed);
    free(c.password_sealed);
    json_decref(c.app_info);
    provisioner_credentials_free(&creds);
    if (st == PG_OK && c.order_stored)
        log_order_fetched(job, order);
    if (order)
        queryorder_details_free(&d);
    if (st == PG_FAIL)
        job_fail(r, job, "database error while storing the credentials");
    else if (st == PG_OK)
        log_info(job->rid, "job %s: instance %s %s", job->id, job->instance_id,
                 c.activated                             ? "provisioned and active"
                 : strcmp(c.kind_done, "cancelled") == 0 ? "not provisioned (released or moved "
                                                           "on meanwhile); job cancelled"
                                                         : "needed no provisioning");
}

typedef struct {
    runner_t *r;
    const job_t *job;
    const queryorder_details_t *d;
    const char *event; /* outbox event written, or NULL */
} sync_ctx_t;

/* Apply a later order's plan (upgrade, renewal, trial to formal) and finish the job in one
 * transaction. A refresh's event is written here, once the instance shows what its order says. */
static pg_status_t sync_body(pg_tx_t *tx, void *arg)
{
    PGconn *conn = tx->conn;
    sync_ctx_t *c = arg;
    const job_t *job = c->job;
    const char *rid = job->rid;
    const queryorder_details_t *d = c->d;
    pg_status_t st = PG_OK;
    c->event = NULL;
    instance_state_t state;
    bool freeze;
    if ((st = lock_job_instance(conn, c->r, job, &state, &freeze)) != PG_OK)
        return st;
    PGresult *res;
    const char *done[] = {job->id, state == INSTANCE_RELEASED ? "cancelled" : "done"};
    if (state != INSTANCE_RELEASED) {
        char period[16];
        snprintf(period, sizeof period, "%d", d->period_number);
        const char *p[] = {job->instance_id, d->charging_mode,
                           d->period_type,   d->period_number >= 0 ? period : NULL,
                           d->product_id,    d->sku_code,
                           d->amount,        d->product_info};
        if ((st = pg_tx_queue(tx, "job_store_plan", 8, p)) != PG_OK)
            return st;
        const char *ap[] = {job->instance_id, job->order_id};
        if (!(res = pg_exec_logged(conn, rid, "job_refresh_scene", 2, ap, &st)))
            return st;
        char scene[64] = "";
        if (PQntuples(res) == 1)
            snprintf(scene, sizeof scene, "%s", pg_value(res, 0, 0));
        PQclear(res);
        c->event = *scene ? "instance.renewed" : NULL;
        change_t ch = {.instance_id = job->instance_id,
                       .event = "order_applied",
                       .from_state = instance_state_name(state),
                       .to_state = instance_state_name(state),
                       .order_id = job->order_id,
                       .order_line_id = job->order_line_id,
                       .scene = *scene ? scene : NULL,
                       .outbox_event = c->event,
                       .request_id = rid};
        if ((st = change_record(tx, &ch)) != PG_OK)
            return st;
    }
    return pg_tx_queue(tx, "job_finish", 2, done); /* sent with the COMMIT */
}

static void run_order_sync(runner_t *r, const job_t *job)
{
    queryorder_details_t d;
    if (!job_query_order(r, job, &d))
        return;
    sync_ctx_t c = {.r = r, .job = job, .d = &d};
    pg_status_t st = pg_tx_run(r->db, job->rid, sync_body, &c);
    if (st == PG_FAIL)
        job_fail(r, job, "database error while storing the order");
    else if (st == PG_OK)
        log_info(
            job->rid, "job %s: order %s applied to %s (charging=%s period=%s x %d product=%s)%s%s",
            job->id, job->order_id, job->instance_id, d.charging_mode ? d.charging_mode : "-",
            d.period_type ? d.period_type : "-", d.period_number, d.product_id ? d.product_id : "-",
            c.event ? ", event " : "", c.event ? c.event : "");
    queryorder_details_free(&d);
}

/* The job of claim row i. */
static void job_from_row(const PGresult *res, int i, job_t *job)
{
    snprintf(job->id, sizeof job->id, "%s", pg_value(res, i, 0));
    snprintf(job->kind, sizeof job->kind, "%s", pg_value(res, i, 1));
    snprintf(job->instance_id, sizeof job->instance_id, "%s", pg_value(res, i, 2));
    snprintf(job->order_id, sizeof job->order_id, "%s", pg_value(res, i, 3));
    snprintf(job->order_line_id, sizeof job->order_line_id, "%s", pg_value(res, i, 4));
    job->attempts = atoi(pg_value(res, i, 5));
    snprintf(job->rid, sizeof job->rid, "%s", pg_value(res, i, 6));
}

/* Run one claimed job (the k-th of n claimed together, by_key: by their keys), its instance as
 * claimed in *inst (found false: gone). */
static void run_claimed(runner_t *r, const job_t *job, int k, int n, bool by_key, bool found,
                        job_instance_t *inst)
{
    log_info(job->rid, "job %s %s instance=%s attempt %d claimed by %s (%d of %d in one claim%s)",
             job->id, job->kind, job->instance_id, job->attempts, r->owner, k, n,
             by_key ? " by key" : "");
    if (!found || inst->state == INSTANCE_RELEASED) {
        log_info(job->rid, "job %s: instance %s is released; job cancelled", job->id,
                 job->instance_id);
        finish_job(r, job, "cancelled");
        return;
    }
    if (strcmp(job->kind, "provision") == 0 && inst->state != INSTANCE_PROVISIONING)
        finish_job(r, job, "done"); /* provisioned already: never a second set of credentials */
    else if (strcmp(job->kind, "provision") == 0)
        run_provision(r, job, inst);
    else
        run_order_sync(r, job);
}

/* Give claim rows from..n-1 of res back (job_give_back), logged with why. */
static void give_back(runner_t *r, const PGresult *res, int from, int n, const char *why)
{
    size_t len = 3;
    for (int i = from; i < n; i++)
        len += strlen(pg_value(res, i, 0)) + 1;
    char *ids = xmalloc(len), *p = ids;
    *p++ = '{';
    for (int i = from; i < n; i++)
        p += sprintf(p, "%s%s", i > from ? "," : "", pg_value(res, i, 0));
    *p++ = '}';
    *p = '\0';
    const char *params[] = {ids, r->owner};
    pg_status_t st;
    PGresult *up = pg_session_exec(r->db, NULL, "job_give_back", 2, params, &st);
    log_info(NULL, "%s gave back %s of its claimed job(s) %s: %s", r->owner,
             up ? PQcmdTuples(up) : "none", ids, why);
    if (up)
        PQclear(up);
    free(ids);
}

/* ---- keys of new jobs ---- */

/* The keys of the jobs this replica committed (jobs_wake), for its job threads to claim by key
 * instead of walking the due index. Bounded: a key that does not fit waits for the next walk. */
enum { JOB_KEYS_MAX = 1024 };

typedef struct {
    char kind[16];
    char instance_id[257];
    char order_id[257];
} job_key_t;

static struct {
    pthread_mutex_t mu;
    job_key_t ring[JOB_KEYS_MAX];
    size_t head, n;
} keys = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* Queue a key; false when the queue is full. */
static bool keys_put(const char *kind, const char *instance_id, const char *order_id)
{
    pthread_mutex_lock(&keys.mu);
    bool fits = keys.n < JOB_KEYS_MAX;
    if (fits) {
        job_key_t *k = &keys.ring[(keys.head + keys.n++) % JOB_KEYS_MAX];
        snprintf(k->kind, sizeof k->kind, "%s", kind);
        snprintf(k->instance_id, sizeof k->instance_id, "%s", instance_id);
        snprintf(k->order_id, sizeof k->order_id, "%s", order_id);
    }
    pthread_mutex_unlock(&keys.mu);
    return fits;
}

/* Take the oldest key into *out; false when none waits. */
static bool keys_take(job_key_t *out)
{
    pthread_mutex_lock(&keys.mu);
    bool any = keys.n > 0;
    if (any) {
        *out = keys.ring[keys.head];
        keys.head = (keys.head + 1) % JOB_KEYS_MAX;
        keys.n--;
    }
    pthread_mutex_unlock(&keys.mu);
    return any;
}

/* Whether keys wait to be claimed. */
static bool keys_waiting(void)
{
    pthread_mutex_lock(&keys.mu);
    bool any = keys.n > 0;
    pthread_mutex_unlock(&keys.mu);
    return any;
}

/* job_claim_key for key k, with the runner's lease; the result or NULL (logged). */
static PGresult *claim_key(runner_t *r, const job_key_t *k)
{
    char lease[16];
    snprintf(lease, sizeof lease, "%d", r->cfg->lease_ms);
    const char *p[] = {r->owner, lease, k->kind, k->instance_id, k->order_id};
    pg_status_t st;
    return pg_session_exec(r->db, NULL, "job_claim_key", 5, p, &st);
}

/* Claim jobs and run them in turn; the number claimed (0 when none was due), -1 on a database
 * error. The jobs of keys that jobs_wake queued are claimed by their keys, one at a time;
 * without keys, the due index is walked at most once a poll interval (more often only while
 * its walks come back full, or after a NOTIFY: an operator's redrive), for up to r->claim_n
 * jobs: other replicas' jobs, retries, expired leases, keys that did not fit. Jobs whose lease,
 * when their turn comes, no longer outlives a job step (cfg->job_step_ms), and those left when
 * the worker stops, are given back for any runner to take. */
static int run_some(runner_t *r)
{
    job_key_t k;
    bool by_key = keys_take(&k);
    int64_t claimed_at = time_mono_us();
    /* an operator's redrive NOTIFYs every replica's job threads: walk at once */
    if (!by_key && pgworker_take_notified(r->worker))
        r->next_walk_us = claimed_at;
    if (!by_key && claimed_at < r->next_walk_us) {
        pgworker_wait_at_most(r->worker, (long)((r->next_walk_us - claimed_at) / 1000) + 1);
        return 0;
    }
    PGresult *res;
    if (by_key) {
        res = claim_key(r, &k);
    } else {
        char lease[16], want[16];
        snprintf(lease, sizeof lease, "%d", r->cfg->lease_ms);
        snprintf(want, sizeof want, "%d", r->claim_n);
        const char *p[] = {r->owner, lease, want};
        pg_status_t st;
        res = pg_session_exec(r->db, NULL, "job_claim", 3, p, &st);
    }
    if (!res)
        return -1;
    int n = PQntuples(res);
    if (!by_key) {
        bool full = n >= r->claim_n;
        r->claim_n = n < r->claim_n ? (n > 1 ? n : 1)
                     : r->claim_n * 2 <= r->claim_max ? r->claim_n * 2
                                                      : r->claim_max;
        r->next_walk_us = full ? claimed_at : claimed_at + (int64_t)r->cfg->poll_ms * 1000;
    }
    /* A job starts only while its lease still outlives its slowest step. */
    int64_t start_by = claimed_at + (int64_t)(r->cfg->lease_ms - r->cfg->job_step_ms) * 1000;
    for (int i = 0; i < n; i++) {
        const char *why = NULL;
        if (i > 0 && pgworker_stopping(r->worker))
            why = "stopping";
        else if (i > 0 && time_mono_us() > start_by)
            why = "too little of their lease is left for a job";
        if (why) {
            give_back(r, res, i, n, why);
            break;
        }
        job_t job;
        job_from_row(res, i, &job);
        job_instance_t inst;
        bool found = instance_row(res, i, 7, &inst);
        run_claimed(r, &job, i + 1, n, by_key, found, &inst);
    }
    PQclear(res);
    return n;
}

/* ---- thread loop ---- */

/* One step of a job thread (pgworker_step_t): true when jobs ran and more may be due, or when
 * a key found nothing (its job taken meanwhile) and other keys wait. */
static bool job_step(pgworker_t *worker, pg_session_t *db, void *arg)
{
    runner_t *r = arg;
    r->db = db;
    r->worker = worker;
    int n = run_some(r);
    return n > 0 || (n == 0 && keys_waiting());
}

void jobs_wake(const char *kind, const char *instance_id, const char *order_id)
{
    if (!workers)
        return;
    if (!keys_put(kind, instance_id, order_id))
        log_debug(NULL, "job keys queue full: job %s of %s waits for the next walk", kind,
                  instance_id);
    pgworker_set_wake(workers);
}

/* False when pid is gone or a zombie (killed, not yet reaped by its parent). */
static bool process_alive(pid_t pid)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return kill(pid, 0) == 0 || errno != ESRCH;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* "pid (comm) S ...": the state follows the last ')' (comm may hold spaces and parens). */
    const char *close = strrchr(buf, ')');
    return !(close && close[1] == ' ' && (close[2] == 'Z' || close[2] == 'X'));
}

/* True when owner ("host:pid:thread") names a process of this host that is gone: this very
 * process (a restart that got the same pid, e.g. pid 1 in a container) or a dead pid. */
static bool owner_is_dead_here(const order_config_t *cfg, const char *owner)
{
    const char *last = strrchr(owner, ':');
    if (!last)
        return false;
    size_t id_len = (size_t)(last - owner);
    if (strlen(cfg->replica_id) == id_len && strncmp(owner, cfg->replica_id, id_len) == 0)
        return true;
    const char *pid_sep = memrchr(owner, ':', id_len);
    size_t host_len = pid_sep ? (size_t)(pid_sep - owner) : 0;
    const char *my_sep = strrchr(cfg->replica_id, ':');
    if (!pid_sep || !my_sep || host_len != (size_t)(my_sep - cfg->replica_id) ||
        strncmp(owner, cfg->replica_id, host_len) != 0)
        return false;
    long pid = strtol(pid_sep + 1, NULL, 10);
    return pid > 0 && !process_alive((pid_t)pid);
}

/* A replica restarted on the same host takes back the jobs its dead predecessor leased at
 * once instead of waiting for the leases to run out. Leases of other hosts are left alone. */
static void reclaim_dead_leases(const order_config_t *cfg)
{
    pg_session_t *db = orderdb_session(cfg, "kooisv-order-jobs", 5);
    if (!db)
        return;
    pg_status_t st;
    PGresult *res = pg_session_exec(db, NULL, "job_running_owners", 0, NULL, &st);
    for (int i = 0; res && i < PQntuples(res); i++) {
        const char *owner = pg_value(res, i, 0);
        if (!owner_is_dead_here(cfg, owner))
            continue;
        const char *p[] = {owner};
        PGresult *up = pg_session_exec(db, NULL, "job_release_owner", 1, p, &st);
        if (up) {
            log_info(NULL, "took back %s job(s) of dead lease owner %s", PQcmdTuples(up), owner);
            PQclear(up);
        }
    }
    if (res)
        PQclear(res);
    pg_session_destroy(&db);
}

int jobs_start(const order_config_t *cfg)
{
    reclaim_dead_leases(cfg);
    runners = xcalloc((size_t)cfg->job_threads, sizeof *runners);
    for (int i = 0; i < cfg->job_threads; i++) {
        runners[i].cfg = cfg;
        runners[i].claim_n = 1;
        runners[i].claim_max = cfg->lease_ms > cfg->job_step_ms ? JOB_CLAIM_MAX : 1;
        snprintf(runners[i].owner, sizeof runners[i].owner, "%s:%d", cfg->replica_id, i);
    }
    pgworker_config_t wc = {.name = "job thread",
                            .session = orderdb_session_config(cfg, "kooisv-order-jobs", 1),
                            .channel = "orders_jobs",
                            .poll_ms = cfg->poll_ms,
                            .retry_max_ms = JOBS_RETRY_MAX_MS,
                            .step = job_step,
                            .arg = runners};
    workers = pgworker_set_new(cfg->job_threads, &wc, sizeof *runners);
    if (!workers)
        return -1;
    log_info(NULL, "%d job thread(s) started as %s", cfg->job_threads, cfg->replica_id);
    return 0;
}

void jobs_join(void)
{
    pgworker_set_destroy(&workers);
    free(runners);
    runners = NULL;
}
