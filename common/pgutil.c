#include "pgutil.h"

#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cryptoutil.h"
#include "log.h"
#include "timeutil.h"
#include "xmalloc.h"

PGconn *pg_connect(const char *dsn, const char *app, int wait_s)
{
    const char *keys[] = {"dbname", "application_name", "connect_timeout", NULL};
    const char *vals[] = {dsn, app ? app : "kooisv", "5", NULL};
    int64_t until = time_mono_us() + (int64_t)(wait_s > 0 ? wait_s : 0) * 1000000;
    int warned = 0;
    for (;;) {
        /* expand_dbname=1: dsn may be a URI or key=value string. */
        PGconn *c = PQconnectdbParams(keys, vals, 1);
        if (c && PQstatus(c) == CONNECTION_OK)
            return c;
        if (!warned++)
            log_warn(NULL, "PostgreSQL not reachable yet: %s",
                     c ? PQerrorMessage(c) : "out of memory");
        PQfinish(c);
        if (time_mono_us() >= until) {
            log_error(NULL, "PostgreSQL unreachable after %d s", wait_s);
            return NULL;
        }
        usleep(250000);
    }
}

bool pg_ok(const PGresult *res)
{
    ExecStatusType s = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    return s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
}

static const char *sqlstate(const PGresult *res)
{
    const char *s = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return s ? s : "";
}

bool pg_is_unique_violation(const PGresult *res)
{
    return strcmp(sqlstate(res), "23505") == 0;
}

bool pg_is_retryable(const PGresult *res)
{
    const char *s = sqlstate(res);
    return strcmp(s, "40001") == 0 || strcmp(s, "40P01") == 0;
}

/* ---- statements queued in pipeline mode (pg_tx_run, pg_tx_queue) ----
 * pg_tx_run does not wait for BEGIN: it enters pipeline mode and queues it, and a body may queue
 * statements whose results it does not read (pg_tx_queue). What is queued goes out with the
 * next statement that needs an answer (pg_exec, pg_command) or with COMMIT, behind one sync, so
 * none of it costs a round trip of its own. A queued statement that fails aborts what follows it
 * up to the sync: the statement that carried it out gets the failure as its own result (logged
 * with the queued statement's name), and the transaction fails with it. Anything else that would
 * talk to the connection in pipeline mode fails, and the transaction with it. */

/* Most statements queued at once; one more sends them first. */
#define PG_QUEUE_MAX 32

/* The names of what is queued on conn, in order (per thread: a connection is used by one
 * thread at a time, and pg_tx_run starts the list afresh). */
static __thread struct {
    PGconn *conn;
    int n;
    const char *names[PG_QUEUE_MAX];
} queued;

static void queued_start(PGconn *conn)
{
    queued.conn = conn;
    queued.n = 0;
}

int pg_pipeline_results(PGconn *conn, PGresult **res, int max)
{
    int n = 0;
    /* Each statement gives its result, then NULL; two NULLs in a row: nothing more comes. */
    for (int nulls = 0; nulls < 2;) {
        PGresult *x = PQgetResult(conn);
        if (!x) {
            if (PQstatus(conn) == CONNECTION_BAD)
                break;
            nulls++;
            continue;
        }
        nulls = 0;
        if (PQresultStatus(x) == PGRES_PIPELINE_SYNC) {
            PQclear(x);
            return n;
        }
        if (n < max)
            res[n++] = x;
        else
            PQclear(x);
    }
    for (int i = 0; i < n; i++)
        PQclear(res[i]);
    return -1;
}

/* Send stmt (prepared; or the plain command sql when stmt is NULL; or nothing when both are
 * NULL) behind what is queued, with one sync, and read every result; leaves pipeline mode.
 * Returns the first failed queued statement's result (logged under its name), else stmt's or
 * sql's result, else (nothing sent) an empty success; never NULL. */
static PGresult *pipeline_finish(PGconn *conn, const char *stmt, const char *sql, int nparams,
                                 const char *const *params)
{
    int n_queued = queued.conn == conn ? queued.n : 0;
    bool tail = stmt || sql;
    bool sent = (!stmt || PQsendQueryPrepared(conn, stmt, nparams, params, NULL, NULL, 0) == 1) &&
                (!sql || stmt || PQsendQueryParams(conn, sql, 0, NULL, NULL, NULL, NULL, 0) == 1) &&
                PQpipelineSync(conn) == 1;
    PGresult *res[PG_QUEUE_MAX + 1];
    int got = sent ? pg_pipeline_results(conn, res, PG_QUEUE_MAX + 1) : -1;
    PGresult *failed = NULL, *last = NULL;
    for (int i = 0; i < got; i++) {
        if (!failed && i < n_queued && !pg_ok(res[i])) {
            pg_log_failure(NULL, queued.names[i], res[i]);
            failed = res[i];
        } else if (!failed && i == n_queued && tail) {
            last = res[i];
        } else {
            PQclear(res[i]);
        }
    }
    if (queued.conn == conn)
        queued.n = 0;
    PQexitPipelineMode(conn);
    if (failed) {
        PQclear(last);
        return failed;
    }
    if (last)
        return last;
    if (tail || !sent || PQstatus(conn) == CONNECTION_BAD)
        return PQmakeEmptyPGresult(conn, PGRES_FATAL_ERROR);
    return PQmakeEmptyPGresult(conn, PGRES_COMMAND_OK);
}

/* Send what is queued on its own, if anything; false when any of it failed. */
static bool queue_flush(PGconn *conn)
{
    if (PQpipelineStatus(conn) == PQ_PIPELINE_OFF)
        return true;
    PGresult *r = pipeline_finish(conn, NULL, NULL, 0, NULL);
    bool ok = pg_ok(r);
    PQclear(r);
    return ok;
}

bool pg_command(PGconn *conn, const char *sql)
{
    if (!queue_flush(conn)) {
        log_warn(NULL, "SQL command failed: a statement queued before it failed");
        return false;
    }
    PGresult *r = PQexec(conn, sql);
    bool ok = pg_ok(r);
    if (!ok)
        log_warn(NULL, "SQL command failed: %s", PQerrorMessage(conn));
    PQclear(r);
    return ok;
}

PGresult *pg_exec(PGconn *conn, const char *stmt, int nparams, const char *const *params)
{
    if (PQpipelineStatus(conn) != PQ_PIPELINE_OFF)
        return pipeline_finish(conn, stmt, NULL, nparams, params);
    PGresult *r = PQexecPrepared(conn, stmt, nparams, params, NULL, NULL, 0);
    if (!r)
        r = PQmakeEmptyPGresult(conn, PGRES_FATAL_ERROR);
    return r;
}

int pg_prepare_all(PGconn *conn, const pg_stmt_t *stmts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        PGresult *r = PQprepare(conn, stmts[i].name, stmts[i].sql, stmts[i].nparams, NULL);
        if (!pg_ok(r)) {
            log_error(NULL, "cannot prepare %s: %s", stmts[i].name, PQerrorMessage(conn));
            PQclear(r);
            return -1;
        }
        PQclear(r);
    }
    return 0;
}

bool pg_conn_alive(PGconn *conn)
{
    if (PQstatus(conn) != CONNECTION_OK)
        return false;
    struct pollfd pfd = {.fd = PQsocket(conn), .events = POLLIN};
    if (pfd.fd < 0)
        return false;
    /* An idle connection has nothing to read unless the server said something on its own: a
     * notification (kept for PQnotifies), or its farewell before closing. PQconsumeInput reads
     * what is there and stops: a farewell ("terminating connection due to administrator
     * command") comes first, its end of file on the next read. So read until nothing is left. */
    for (int i = 0; i < 16 && poll(&pfd, 1, 0) > 0; i++) {
        if (pfd.revents & (POLLERR | POLLHUP | POLLNVAL))
            return false;
        if (!PQconsumeInput(conn))
            return false;
    }
    return PQstatus(conn) == CONNECTION_OK;
}

const char *pg_value(const PGresult *res, int row, int col)
{
    if (row >= PQntuples(res) || col >= PQnfields(res) || PQgetisnull(res, row, col))
        return NULL;
    return PQgetvalue(res, row, col);
}

/* The advisory lock key: first 8 bytes of SHA-256("kooisv-migrate:" schema). */
static long long migrate_lock_key(const char *schema)
{
    char text[256];
    snprintf(text, sizeof text, "kooisv-migrate:%s", schema);
    uint8_t h[32];
    sha256(text, strlen(text), h);
    uint64_t k = 0;
    for (int i = 0; i < 8; i++)
        k = (k << 8) | h[i];
    /* Same bits as a signed bigint, without signed-shift undefined behaviour. */
    long long key;
    memcpy(&key, &k, sizeof key);
    return key;
}

static bool exec_params(PGconn *conn, const char *sql, int n, const char *const *params,
                        PGresult **out)
{
    PGresult *r = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
    bool ok = pg_ok(r);
    if (!ok)
        log_error(NULL, "migration bookkeeping failed: %s", PQerrorMessage(conn));
    if (out && ok)
        *out = r;
    else
        PQclear(r);
    return ok;
}

int pg_migrate(PGconn *conn, const char *schema, const pg_migration_t *migs, size_t n)
{
    char key[32];
    snprintf(key, sizeof key, "%lld", migrate_lock_key(schema));
    const char *kp[] = {key};
    if (!exec_params(conn, "SELECT pg_advisory_lock($1::bigint)", 1, kp, NULL))
        return -1;
    int rc = -1;
    char *ident = PQescapeIdentifier(conn, schema, strlen(schema));
    char sql[512];
    snprintf(sql, sizeof sql,
             "CREATE TABLE IF NOT EXISTS %s.schema_migrations ("
             " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
             ident);
    /* IF NOT EXISTS would print a NOTICE on every start: ask first. */
    const char *sp[] = {schema};
    PGresult *exists = NULL;
    if (!exec_params(conn,
                     "SELECT 1 FROM pg_tables WHERE schemaname = $1 AND tablename = "
                     "'schema_migrations'",
                     1, sp, &exists))
        goto out;
    int have_table = PQntuples(exists) > 0;
    PQclear(exists);
    if (!have_table && !pg_command(conn, sql))
        goto out;
    size_t applied = 0;
    for (size_t i = 0; i < n; i++) {
        snprintf(sql, sizeof sql, "SELECT 1 FROM %s.schema_migrations WHERE name = $1", ident);
        const char *np[] = {migs[i].name};
        PGresult *r = NULL;
        if (!exec_params(conn, sql, 1, np, &r))
            goto out;
        int done = PQntuples(r) > 0;
        PQclear(r);
        if (done)
            continue;
        if (!pg_command(conn, "BEGIN"))
            goto out;
        snprintf(sql, sizeof sql, "SET LOCAL search_path TO %s", ident);
        PGresult *m = NULL;
        if (!pg_command(conn, sql) || !(m = PQexec(conn, migs[i].sql), pg_ok(m))) {
            log_error(NULL, "migration %s.%s failed: %s", schema, migs[i].name,
                      PQerrorMessage(conn));
            PQclear(m);
            pg_command(conn, "ROLLBACK");
            goto out;
        }
        PQclear(m);
        snprintf(sql, sizeof sql, "INSERT INTO %s.schema_migrations(name) VALUES ($1)", ident);
        if (!exec_params(conn, sql, 1, np, NULL) || !pg_command(conn, "COMMIT")) {
            pg_command(conn, "ROLLBACK");
            goto out;
        }
        log_info(NULL, "migration %s.%s applied", schema, migs[i].name);
        applied++;
    }
    rc = 0;
out:
    exec_params(conn, "SELECT pg_advisory_unlock($1::bigint)", 1, kp, NULL);
    PQfreemem(ident);
    return rc;
}

char *pg_text_array(const char *const *items, size_t n)
{
    size_t cap = 3;
    for (size_t i = 0; i < n; i++)
        cap += 2 * strlen(items[i]) + 3; /* quotes, comma, every byte possibly escaped */
    char *out = xmalloc(cap);
    char *o = out;
    *o++ = '{';
    for (size_t i = 0; i < n; i++) {
        if (i)
            *o++ = ',';
        *o++ = '"';
        for (const char *p = items[i]; *p; p++) {
            if (*p == '"' || *p == '\\')
                *o++ = '\\';
            *o++ = *p;
        }
        *o++ = '"';
    }
    *o++ = '}';
    *o = '\0';
    return out;
}

/* ---------------------------------------------------------------- failures */

static __thread char last_failure_state[6];

const char *pg_last_failure_sqlstate(void)
{
    return last_failure_state;
}

void pg_log_failure(const char *rid, const char *what, const PGresult *res)
{
    const char *state = sqlstate(res);
    snprintf(last_failure_state, sizeof last_failure_state, "%s", state);
    const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (!primary)
        primary = res ? PQresultErrorMessage(res) : "no result";
    /* A data exception's message quotes the offending input (personal data, maybe). */
    if (strncmp(state, "22", 2) == 0)
        primary = "data exception";
    char msg[256];
    snprintf(msg, sizeof msg, "%s", primary);
    msg[strcspn(msg, "\n")] = '\0';
    bool expected = pg_is_retryable(res) || strncmp(state, "KA", 2) == 0;
    log_msg(expected ? LOG_INFO : LOG_WARN, rid, "%s failed: sqlstate=%s %s", what,
            *state ? state : "-", msg);
}

/* r when it succeeded; otherwise log it, clear it, set *status and return NULL. */
static PGresult *result_or_log(PGresult *r, const char *rid, const char *stmt, pg_status_t *status)
{
    if (pg_ok(r))
        return r;
    if (status)
        *status = pg_is_retryable(r) ? PG_RETRY : PG_FAIL;
    pg_log_failure(rid, stmt, r);
    PQclear(r);
    return NULL;
}

PGresult *pg_exec_logged(PGconn *conn, const char *rid, const char *stmt, int nparams,
                         const char *const *params, pg_status_t *status)
{
    return result_or_log(pg_exec(conn, stmt, nparams, params), rid, stmt, status);
}

/* ---------------------------------------------------------------- sessions */

struct pg_session {
    PGconn *conn;
    char *dsn;
    char *app;
    char *setup_sql;
    const pg_stmt_t *stmts;
    size_t nstmts;
};

/* Session settings and statements on a fresh connection; true on success. */
static bool session_setup(pg_session_t *self)
{
    if (self->setup_sql && !pg_command(self->conn, self->setup_sql))
        return false;
    return pg_prepare_all(self->conn, self->stmts, self->nstmts) == 0;
}

pg_session_t *pg_session_new(const pg_session_config_t *cfg)
{
    PGconn *conn = pg_connect(cfg->dsn, cfg->app, cfg->wait_s);
    if (!conn)
        return NULL;
    pg_session_t *self = xcalloc(1, sizeof *self);
    self->conn = conn;
    self->dsn = xstrdup(cfg->dsn);
    self->app = xstrdup(cfg->app ? cfg->app : "kooisv");
    self->setup_sql = cfg->setup_sql ? xstrdup(cfg->setup_sql) : NULL;
    self->stmts = cfg->stmts;
    self->nstmts = cfg->nstmts;
    if (!session_setup(self)) {
        pg_session_destroy(&self);
        return NULL;
    }
    return self;
}

void pg_session_destroy(pg_session_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    pg_session_t *self = *self_p;
    PQfinish(self->conn);
    free(self->setup_sql);
    free(self->app);
    /* the connection string may hold a password */
    xfree_secret(self->dsn, strlen(self->dsn));
    free(self);
    *self_p = NULL;
}

PGconn *pg_session_conn(pg_session_t *self)
{
    return self->conn;
}

bool pg_session_reconnect(pg_session_t *self, const char *rid)
{
    /* PQreset keeps the PGconn (callers hold the pointer) and its connection parameters; the
     * session settings and prepared statements are the server's and are made again. */
    PQreset(self->conn);
    /* a connection that died with a pipeline open (pg_tx_run's queued BEGIN) comes back out of
     * pipeline mode, or not at all */
    if (PQstatus(self->conn) == CONNECTION_OK && PQpipelineStatus(self->conn) != PQ_PIPELINE_OFF)
        PQexitPipelineMode(self->conn);
    if (PQstatus(self->conn) != CONNECTION_OK ||
        PQpipelineStatus(self->conn) != PQ_PIPELINE_OFF || !session_setup(self)) {
        log_warn(rid, "PostgreSQL reconnect failed: %s", PQerrorMessage(self->conn));
        return false;
    }
    log_info(rid, "PostgreSQL connection re-established");
    return true;
}

bool pg_session_ready(pg_session_t *self, const char *rid)
{
    if (pg_conn_alive(self->conn)) {
        if (PQtransactionStatus(self->conn) == PQTRANS_IDLE)
            return true;
        /* a transaction left open by a failed caller: discard it */
        PQclear(PQexec(self->conn, "ROLLBACK"));
        if (PQstatus(self->conn) == CONNECTION_OK &&
            PQtransactionStatus(self->conn) == PQTRANS_IDLE)
            return true;
    }
    return pg_session_reconnect(self, rid);
}

/* True when a failure was the connection's death (not the statement's fault). */
static bool connection_dead(pg_session_t *self)
{
    return PQstatus(self->conn) != CONNECTION_OK;
}

PGresult *pg_session_exec(pg_session_t *self, const char *rid, const char *stmt, int nparams,
                          const char *const *params, pg_status_t *status)
{
    bool idle = PQtransactionStatus(self->conn) == PQTRANS_IDLE;
    PGresult *r = pg_exec(self->conn, stmt, nparams, params);
    /* A connection that died while idle is found broken only when used; outside a transaction
     * nothing is lost by reconnecting and asking again. */
    if (!pg_ok(r) && idle && connection_dead(self) && pg_session_reconnect(self, rid)) {
        PQclear(r);
        r = pg_exec(self->conn, stmt, nparams, params);
    }
    return result_or_log(r, rid, stmt, status);
}

/* ---------------------------------------------------------------- transactions */

PGresult *pg_tx_exec(pg_tx_t *tx, const char *stmt, int nparams, const char *const *params)
{
    pg_status_t st = PG_FAIL;
    PGresult *r = pg_exec_logged(tx->conn, tx->rid, stmt, nparams, params, &st);
    if (!r)
        tx->failed = st;
    return r;
}

pg_status_t pg_tx_queue(pg_tx_t *tx, const char *stmt, int nparams, const char *const *params)
{
    PGconn *conn = tx->conn;
    if (PQpipelineStatus(conn) != PQ_PIPELINE_OFF && queued.conn == conn &&
        queued.n == PG_QUEUE_MAX && !queue_flush(conn)) {
        tx->failed = PG_FAIL;
        return PG_FAIL;
    }
    if (PQpipelineStatus(conn) == PQ_PIPELINE_OFF) {
        if (PQenterPipelineMode(conn) != 1) {
            log_warn(tx->rid, "%s: cannot enter pipeline mode: %s", stmt, PQerrorMessage(conn));
            tx->failed = PG_FAIL;
            return PG_FAIL;
        }
        queued_start(conn);
    }
    if (queued.conn != conn || queued.n >= PG_QUEUE_MAX ||
        PQsendQueryPrepared(conn, stmt, nparams, params, NULL, NULL, 0) != 1) {
        log_warn(tx->rid, "%s: cannot queue: %s", stmt, PQerrorMessage(conn));
        tx->failed = PG_FAIL;
        return PG_FAIL;
    }
    queued.names[queued.n++] = stmt;
    return PG_OK;
}

pg_status_t pg_tx_after_commit(pg_tx_t *tx, pg_tx_hook_t fn, void *arg)
{
    for (int i = 0; i < tx->nhooks; i++)
        if (tx->hooks[i].fn == fn && tx->hooks[i].arg == arg)
            return PG_OK;
    if (tx->nhooks == PG_TX_HOOKS) {
        log_warn(tx->rid, "more than %d after-commit hooks in one transaction", PG_TX_HOOKS);
        tx->failed = PG_FAIL;
        return PG_FAIL;
    }
    tx->hooks[tx->nhooks].fn = fn;
    tx->hooks[tx->nhooks].arg = arg;
    tx->nhooks++;
    return PG_OK;
}

/* COMMIT, behind what is still queued (one round trip), and check that it was one; PG_OK,
 * PG_RETRY or PG_FAIL. After a failure no transaction is left open. */
static pg_status_t tx_commit(PGconn *conn, const char *rid)
{
    PGresult *r = PQpipelineStatus(conn) != PQ_PIPELINE_OFF
                      ? pipeline_finish(conn, NULL, "COMMIT", 0, NULL)
                      : PQexec(conn, "COMMIT");
    /* COMMIT of a failed transaction "succeeds" as a ROLLBACK: check what happened */
    pg_status_t st = pg_ok(r) && strcmp(PQcmdStatus(r), "COMMIT") == 0 ? PG_OK
                     : pg_is_retryable(r)                              ? PG_RETRY
                                                                       : PG_FAIL;
    if (st != PG_OK)
        pg_log_failure(rid, "COMMIT", r);
    PQclear(r);
    /* a queued statement failed: COMMIT was skipped with the rest of the pipeline */
    if (st != PG_OK && PQstatus(conn) == CONNECTION_OK &&
        PQtransactionStatus(conn) != PQTRANS_IDLE)
        PQclear(PQexec(conn, "ROLLBACK"));
    return st;
}

pg_status_t pg_tx_run(pg_session_t *session, const char *rid, pg_tx_body_t body, void *arg)
{
    bool reconnected = false;
    for (int attempt = 1; attempt <= PG_TX_ATTEMPTS; attempt++) {
        if (!pg_session_ready(session, rid))
            return PG_FAIL;
        PGconn *conn = session->conn;
        pg_tx_t tx = {.conn = conn, .rid = rid, .failed = PG_OK};
        pg_status_t st;
        /* BEGIN is queued, and sent with the body's first statement (see pipeline_finish) */
        queued_start(conn);
        if (PQenterPipelineMode(conn) == 1 &&
            PQsendQueryParams(conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) == 1) {
            queued.names[queued.n++] = "BEGIN";
            st = body(&tx, arg);
            if (st == PG_OK) {
                /* After a COMMIT that failed for any other reason the transaction is gone
                 * either way and nothing was promised: no reconnect-and-rerun. */
                st = tx_commit(conn, rid);
                if (st == PG_OK) {
                    for (int i = 0; i < tx.nhooks; i++)
                        tx.hooks[i].fn(tx.hooks[i].arg);
                    return PG_OK;
                }
                if (st == PG_RETRY)
                    continue;
                return PG_FAIL;
            }
            if (st == PG_FAIL && tx.failed == PG_RETRY)
                st = PG_RETRY;
        } else {
            pg_log_failure(rid, "BEGIN", NULL);
            st = PG_FAIL;
        }
        /* what is still queued (BEGIN, if the body ran no statement) is sent, and an open
         * transaction rolled back */
        if (!connection_dead(session)) {
            (void)queue_flush(conn);
            if (PQtransactionStatus(conn) != PQTRANS_IDLE)
                PQclear(PQexec(conn, "ROLLBACK"));
        } else if (PQpipelineStatus(conn) != PQ_PIPELINE_OFF) {
            PQexitPipelineMode(conn);
        }
        if (st == PG_ROLLBACK)
            return PG_ROLLBACK;
        if (st == PG_RETRY)
            continue;
        /* A connection found dead before COMMIT (database restart) wrote nothing: once, run
         * the whole transaction again on a fresh connection. */
        if (connection_dead(session) && !reconnected) {
            reconnected = true;
            if (pg_session_reconnect(session, rid))
                continue;
        }
        return PG_FAIL;
    }
    log_warn(rid, "transaction failed %d times on serialization failures or deadlocks",
             PG_TX_ATTEMPTS);
    return PG_FAIL;
}

bool pg_listen_once(PGconn *conn, const char *channel, int *listen_pid)
{
    if (PQbackendPID(conn) == *listen_pid)
        return true;
    char sql[128];
    snprintf(sql, sizeof sql, "LISTEN %s", channel);
    if (!pg_command(conn, sql))
        return false;
    *listen_pid = PQbackendPID(conn);
    return true;
}
