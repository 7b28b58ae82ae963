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
#include <stdint.h>

#include "config.h"
#include "pgutil.h"
#include "svc.h"
#include "zmqauth.h"

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
/* Run a read-only prepared statement for an admin action on the worker's connection. The result
 * (caller PQclears), or NULL after logging the failure and answering 000005. */
PGresult *sync_admin_query(sync_worker_t *w, svc_call_t *call, const char *stmt, int n,
                           const char *const *params);
/* Answer call with doc as the AdminResult JSON and 000000 (steals doc). */
void sync_admin_reply(svc_call_t *call, json_t *doc);
/* sync_admin_reply for a document holding a secret: the serialised copy is wiped once the
 * reply holds it (steals doc). */
void sync_admin_reply_secret(svc_call_t *call, json_t *doc);

/* The configuration variables every sync service reads before its own: bind is the default
 * endpoint of KOOISV_BIND, role and schema name the database login in the help text. */
// clang-format off
#define SYNC_SERVICE_CONFIG_VARS(bind, role, schema)                                             \
    {"KOOISV_BIND", bind, 0, "ZeroMQ endpoint the service binds (ROUTER)"},                      \
    ZMQAUTH_SERVER_CONFIG_VARS,                                                                  \
    {"KOOISV_WORKERS", "4", 0,                                                                   \
     "worker threads, each with its own PostgreSQL connection (1..64)"},                         \
    {"KOOISV_PG_DSN", NULL, CONFIG_REQUIRED | CONFIG_SECRET,                                     \
     "PostgreSQL connection string of role " role " (schema " schema ")"},                       \
    {"KOOISV_LOG_LEVEL", "info", 0, "debug | info | warn | error"}
// clang-format on

/* A sync service's shape, for sync_service_run. */
typedef struct {
    const char *name;   /* "tenant": log name, binary kooisv-<name>, outbox event source */
    const char *schema; /* "tenants" */
    const pg_stmt_t *const *groups; /* the service's statement groups (the outbox's are added) */
    const size_t *counts;
    size_t ngroups;
    /* Serve a kit body (after sync_worker_ready); false when the service does not serve it. */
    bool (*handle)(sync_worker_t *w, svc_call_t *call, const Kooisv__Envelope *env);
    /* Serve an admin action of the service's own; false when it is not one (the outbox's
     * actions are tried next). */
    bool (*admin)(sync_worker_t *w, svc_call_t *call, const Kooisv__AdminRequest *req);
    void *svc;               /* copied into every worker's svc */
    const uint8_t *seal_key; /* non-NULL: outbox payloads are sealed at rest with it */
} sync_service_t;

/* After config_load with SYNC_SERVICE_CONFIG_VARS and SYNCOUTBOX_CONFIG_VARS: take the CURVE
 * keys (zmqauth_config_server: exits 2 without them), set the outbox up (syncoutbox_init), apply
 * the embedded migrations (common/migrations.h), start the outbox delivery thread, serve until
 * SIGINT/SIGTERM, then wait for the thread. Returns the process exit code. */
int sync_service_run(const sync_service_t *s);

#endif
