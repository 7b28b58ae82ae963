/* syncsvc: what the two kit sync services (tenant, app) share: a worker's PostgreSQL session
 * pinned to the service's schema, transactions retried on serialization failure or deadlock,
 * checks the services repeat on what the gateway validated, and admin replies.
 * (Shared by services/tenant and services/app only; compiled into both binaries.) */
#ifndef KOOISV_SYNCSVC_H
#define KOOISV_SYNCSVC_H
#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#include "pgutil.h"
#include "transport.h"

typedef struct {
    PGconn *conn;
    const char *schema; /* "tenants" / "apps"; static */
    pg_stmt_t *stmts;   /* every statement this worker prepares; owned */
    size_t nstmts;
    void *svc; /* the service's own per-worker state (not owned) */
} sync_worker_t;

/* Pin a connection of a sync service: search_path = schema, statement and lock timeouts well
 * inside the gateway's 4 s, UTC. true on success. */
bool sync_session_setup(PGconn *conn, const char *schema);
/* Connect (waiting up to wait_s), set the session up and prepare the concatenation of the
 * statement groups (a group's array ends at its count). NULL (logged) on failure. */
sync_worker_t *sync_worker_new(const char *dsn, const char *app, const char *schema,
                               const pg_stmt_t *const *groups, const size_t *counts,
                               size_t ngroups);
/* Close the connection, free, set *self_p to NULL. */
void sync_worker_destroy(sync_worker_t **self_p);
/* Ready to serve call: the deadline has not passed and the connection is usable (reconnected
 * and re-prepared if it broke). On false the call's result is already set (000005). */
bool sync_worker_ready(sync_worker_t *self, svc_call_t *call);

typedef struct {
    sync_worker_t *w;
    PGconn *conn;
    svc_call_t *call;
    const char *ok_msg; /* result message on commit ("success" unless the body sets it) */
    bool retryable;     /* the failed statement may succeed if the transaction is rerun */
} sync_tx_t;

typedef enum {
    SYNC_TX_COMMIT = 0, /* commit; the reply becomes 000000 ok_msg once committed */
    SYNC_TX_ABORT = 1,  /* roll back; the body already set the reply (e.g. 000002) */
    SYNC_TX_ERROR = -1, /* a statement failed (sync_exec logged it); roll back, maybe retry */
} sync_tx_rc_t;

typedef sync_tx_rc_t (*sync_tx_fn)(sync_tx_t *tx, void *arg);

/* Run fn inside BEGIN..COMMIT, rerunning it (up to 3 times) after a serialization failure or
 * deadlock. The reply is 000000 only after COMMIT succeeded; a database failure is 000005. */
void sync_tx_run(sync_worker_t *w, svc_call_t *call, sync_tx_fn fn, void *arg);
/* Run a prepared statement inside tx. Returns the result (caller PQclears), or NULL after
 * logging the failure with the request id (tx->retryable set when worth a rerun). */
PGresult *sync_exec(sync_tx_t *tx, const char *stmt, int n, const char *const *params);
/* Serialise a JSON value compactly (raw UTF-8). Caller owns the string. */
char *sync_json_text(const json_t *v);

/* A PostgreSQL array literal ({"a","b"}) of n strings, for a text[] parameter: "= ANY($n)" on
 * an indexed column is an index condition whatever the planner's statistics say. Caller frees. */
char *sync_text_array(const char *const *items, size_t n);

/* An id or text the service relies on: at most max characters, no control character (the
 * services use \x1f as a separator in associated data and lock keys), non-empty if required.
 * The gateway has checked this already; the service does not trust its callers blindly. */
bool sync_text_ok(const char *s, size_t max, bool required);

/* Value of an admin argument, "" when absent. */
const char *sync_admin_arg(const Kooisv__AdminRequest *req, const char *key);
/* Answer call with doc as the AdminResult JSON and 000000 (steals doc). */
void sync_admin_reply(svc_call_t *call, json_t *doc);

/* A sync service's shape, for sync_service_run. */
typedef struct {
    const char *name;   /* "tenant": log name, binary kooisv-<name> */
    const char *schema; /* "tenants" */
    const char *dsn;
    const char *bind;
    int workers;
    const pg_stmt_t *const *groups; /* statement groups every worker prepares */
    const size_t *counts;
    size_t ngroups;
    void (*handle)(sync_worker_t *w, svc_call_t *call); /* after sync_worker_ready */
    void *svc;                                          /* copied into every worker's svc */
} sync_service_t;

/* Apply the embedded migrations (common/migrations.h), start the outbox delivery thread
 * (syncoutbox_init must have run), serve until SIGINT/SIGTERM, then wait for the thread.
 * Returns the process exit code. */
int sync_service_run(const sync_service_t *s);

#endif
