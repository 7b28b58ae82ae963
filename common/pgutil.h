/* pgutil: PostgreSQL helpers shared by the services: connect with retry, versioned migrations
 * under an advisory lock, named prepared statements, transactions and error classification.
 * SQL is never built from input: every statement is prepared once per connection. */
#ifndef KOOISV_PGUTIL_H
#define KOOISV_PGUTIL_H
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct {
    const char *name; /* prepared statement name, e.g. "instance_insert" */
    const char *sql;  /* with $1.. placeholders */
    int nparams;
} pg_stmt_t;

typedef struct {
    const char *name; /* "001_init.sql": applied in name order */
    const char *sql;
} pg_migration_t;

/* Connect with dsn, retrying for up to wait_s seconds; NULL (logged) if it never comes up.
 * Sets application_name to app. Caller owns the connection (PQfinish). */
PGconn *pg_connect(const char *dsn, const char *app, int wait_s);
/* Apply every migration not yet recorded in <schema>.schema_migrations, each in its own
 * transaction, all under a session advisory lock keyed by schema (safe with replicas starting
 * at once). 0 on success, -1 (logged) on failure. */
int pg_migrate(PGconn *conn, const char *schema, const pg_migration_t *migs, size_t n);
/* Prepare every statement on conn; 0 or -1 (logged). */
int pg_prepare_all(PGconn *conn, const pg_stmt_t *stmts, size_t n);
/* Run a prepared statement with text parameters (NULL = SQL NULL). Caller owns the result
 * (PQclear); never NULL. */
PGresult *pg_exec(PGconn *conn, const char *stmt, int nparams, const char *const *params);
/* Run a plain command with no parameters (BEGIN, COMMIT...); true on success. */
bool pg_command(PGconn *conn, const char *sql);
/* True when res is a success (COMMAND_OK or TUPLES_OK). */
bool pg_ok(const PGresult *res);
/* True when res failed with SQLSTATE class 23505 (unique violation). */
bool pg_is_unique_violation(const PGresult *res);
/* True when res failed with a serialization failure or deadlock (retry the transaction). */
bool pg_is_retryable(const PGresult *res);
/* Reset the connection if it is broken and re-prepare stmts; true when usable afterwards. */
bool pg_ensure(PGconn *conn, const pg_stmt_t *stmts, size_t n);
/* Value of row/column or NULL when SQL NULL. */
const char *pg_value(const PGresult *res, int row, int col);

#endif
