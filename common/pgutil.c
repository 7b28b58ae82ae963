#include "pgutil.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cryptoutil.h"
#include "log.h"
#include "timeutil.h"

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

bool pg_command(PGconn *conn, const char *sql)
{
    PGresult *r = PQexec(conn, sql);
    bool ok = pg_ok(r);
    if (!ok)
        log_warn(NULL, "SQL command failed: %s", PQerrorMessage(conn));
    PQclear(r);
    return ok;
}

PGresult *pg_exec(PGconn *conn, const char *stmt, int nparams, const char *const *params)
{
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

bool pg_ensure(PGconn *conn, const pg_stmt_t *stmts, size_t n)
{
    if (PQstatus(conn) == CONNECTION_OK && PQtransactionStatus(conn) != PQTRANS_UNKNOWN)
        return true;
    PQreset(conn);
    if (PQstatus(conn) != CONNECTION_OK) {
        log_warn(NULL, "PostgreSQL reconnect failed: %s", PQerrorMessage(conn));
        return false;
    }
    log_info(NULL, "PostgreSQL connection re-established");
    return pg_prepare_all(conn, stmts, n) == 0;
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
    if (!exec_params(conn, "SELECT 1 FROM pg_tables WHERE schemaname = $1 AND tablename = "
                           "'schema_migrations'", 1, sp, &exists))
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
