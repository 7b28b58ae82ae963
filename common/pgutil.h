/* pgutil: PostgreSQL helpers shared by the services: connect with retry, versioned migrations
 * under an advisory lock, named prepared statements, error classification, sessions that heal
 * themselves after a database restart, and the one transaction runner every service uses.
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
/* LISTEN on channel (an identifier) unless this backend already does: *listen_pid holds the
 * backend pid that listens (0 at first), so a reconnected session listens again; true when the
 * connection listens. */
bool pg_listen_once(PGconn *conn, const char *channel, int *listen_pid);
/* True when res is a success (COMMAND_OK or TUPLES_OK). */
bool pg_ok(const PGresult *res);
/* True when res failed with SQLSTATE class 23505 (unique violation). */
bool pg_is_unique_violation(const PGresult *res);
/* True when res failed with a serialization failure or deadlock (retry the transaction). */
bool pg_is_retryable(const PGresult *res);
/* False when conn is broken, including a connection the server closed while it was idle
 * (database restart): found without a round trip, by reading what already arrived. */
bool pg_conn_alive(PGconn *conn);
/* Value of row/column or NULL when SQL NULL. */
const char *pg_value(const PGresult *res, int row, int col);
/* A PostgreSQL array literal ({"a","b"}) of n strings, for a text[] parameter: "= ANY($n)" on
 * an indexed column is an index condition whatever the planner's statistics say. Caller frees. */
char *pg_text_array(const char *const *items, size_t n);

/* Outcome of a statement, of a transaction body and of a transaction. */
typedef enum {
    PG_OK = 0,   /* body: go on / commit; runner: committed */
    PG_ROLLBACK, /* body: the answer is decided and nothing is to be written; runner: rolled back */
    PG_RETRY,    /* serialization failure or deadlock: the whole transaction is worth rerunning */
    PG_FAIL,     /* database error (the caller answers 000005) */
} pg_status_t;

/* The one failure logger: statement name, SQLSTATE and PostgreSQL's primary message, never the
 * DETAIL (it quotes key values) nor, for data exceptions (class 22), the message (it quotes the
 * input): personal data stays out of logs. Retryable failures, and the project's own conditions
 * that their callers handle (SQLSTATE class KA, raised by its functions), log at info; others at
 * warn. */
void pg_log_failure(const char *rid, const char *what, const PGresult *res);
/* The SQLSTATE of the last failure pg_log_failure logged on this thread ("" before any, and
 * for a failure without one): what made a pg_tx_run return PG_FAIL, a queued statement's
 * included. */
const char *pg_last_failure_sqlstate(void);
/* Run a prepared statement. The result (caller PQclears), or NULL after logging the failure with
 * rid and setting *status to PG_RETRY or PG_FAIL. */
PGresult *pg_exec_logged(PGconn *conn, const char *rid, const char *stmt, int nparams,
                         const char *const *params, pg_status_t *status);

/* ---- sessions: one connection, set up again and re-prepared after every reconnection ---- */

typedef struct {
    const char *dsn;
    const char *app;        /* application_name */
    const char *setup_sql;  /* run on every (re)connection: search_path, timeouts; NULL = none */
    const pg_stmt_t *stmts; /* prepared on every (re)connection; must outlive the session */
    size_t nstmts;
    int wait_s; /* how long pg_session_new waits for the database */
} pg_session_config_t;

typedef struct pg_session pg_session_t;

/* Connect (waiting up to cfg->wait_s), run the setup and prepare the statements; NULL (logged)
 * on failure. cfg's strings are copied. */
pg_session_t *pg_session_new(const pg_session_config_t *cfg);
/* Close the connection, free, set *self_p to NULL. */
void pg_session_destroy(pg_session_t **self_p);
/* The connection. The pointer stays the same for the session's life (reconnection resets it in
 * place); owned by the session. */
PGconn *pg_session_conn(pg_session_t *self);
/* Make the connection usable and idle: roll back a transaction a failed caller left open,
 * reconnect a broken one (pg_conn_alive). false (logged with rid) when the database is unreachable.
 */
bool pg_session_ready(pg_session_t *self, const char *rid);
/* Reconnect now (the connection was found dead); true when usable again. */
bool pg_session_reconnect(pg_session_t *self, const char *rid);
/* Run a prepared statement outside a transaction. A connection that died while idle (database
 * restart) is reconnected and the statement asked once more: nothing was lost. The result
 * (caller PQclears), or NULL after logging with *status set (status may be NULL). */
PGresult *pg_session_exec(pg_session_t *self, const char *rid, const char *stmt, int nparams,
                          const char *const *params, pg_status_t *status);

/* ---- the transaction runner ---- */

/* Work to do once a transaction has committed (pg_tx_after_commit). */
typedef void (*pg_tx_hook_t)(void *arg);
enum { PG_TX_HOOKS = 4 };

typedef struct {
    PGconn *conn;
    const char *rid;    /* request id of log lines */
    pg_status_t failed; /* PG_RETRY or PG_FAIL once a pg_tx_exec failed, PG_OK before */
    int nhooks;         /* pg_tx_after_commit's, for this attempt */
    struct {
        pg_tx_hook_t fn;
        void *arg;
    } hooks[PG_TX_HOOKS];
} pg_tx_t;

/* A transaction body: runs statements with pg_tx_exec; returns PG_OK to commit, PG_ROLLBACK to
 * end without writing (the body decided the answer), PG_RETRY or PG_FAIL after a failure. It may
 * run several times: it must not keep state across runs that a rerun would not reset. */
typedef pg_status_t (*pg_tx_body_t)(pg_tx_t *tx, void *arg);

/* Run a prepared statement inside tx: pg_exec_logged with tx's request id, recording a failure
 * in tx->failed. */
PGresult *pg_tx_exec(pg_tx_t *tx, const char *stmt, int nparams, const char *const *params);
/* Read the results of the statements sent in pipeline mode up to the sync that ends them: each
 * statement's result, in order, into res (at most max; further ones are cleared). Returns how
 * many, or -1 (nothing kept) when the connection broke before the sync. Stays in pipeline
 * mode. */
int pg_pipeline_results(PGconn *conn, PGresult **res, int max);

/* Queue a prepared statement inside tx whose result the body does not read (an insert, an
 * update): it is sent with the next pg_tx_exec, pg_command or the COMMIT, in that round trip.
 * Its failure fails the transaction there: the carrying statement gets the failure as its own
 * result (so a body must not read a specific error of a statement that follows a queued one).
 * PG_OK, or PG_FAIL (logged, recorded in tx->failed) when it could not be queued. */
pg_status_t pg_tx_queue(pg_tx_t *tx, const char *stmt, int nparams, const char *const *params);
/* Have pg_tx_run call fn(arg) on its own thread once tx has committed, before it returns PG_OK;
 * never when this attempt rolls back or fails (a rerun registers again). A pair registered
 * already in tx is not added twice. PG_OK, or PG_FAIL (logged, tx->failed) past PG_TX_HOOKS. */
pg_status_t pg_tx_after_commit(pg_tx_t *tx, pg_tx_hook_t fn, void *arg);
/* BEGIN, body, COMMIT on the session's connection. COMMIT's status is checked (a COMMIT of a
 * failed transaction is a ROLLBACK). The body runs again, up to PG_TX_ATTEMPTS times in all,
 * after a serialization failure or deadlock (its own or COMMIT's), and once more on a fresh
 * connection when the connection was found dead before COMMIT (database restart: nothing was
 * written). PG_OK once committed, PG_ROLLBACK when the body asked for it, PG_FAIL otherwise
 * (logged). arg is handed to the body. */
pg_status_t pg_tx_run(pg_session_t *session, const char *rid, pg_tx_body_t body, void *arg);

enum { PG_TX_ATTEMPTS = 5 };

/* A condition (SQL text) on a row that a statement finds by its key, written so that no partial
 * index's predicate fits it. Written plainly ("status = 'pending'"), it implies the predicate of
 * a partial index of the pending rows; while the statistics say that index is nearly empty, a
 * generic plan then walks all of it for the key instead of probing the key's own index, and
 * under load such an index holds every row that left it since the last vacuum. A CASE is opaque
 * to the planner's proof of a predicate. */
#define PG_ROW_CHECK(cond) "(CASE WHEN " cond " THEN true ELSE false END)"

#endif
