/* svcrt: the one runtime of the kooisv services (order, tenant, app, audit). A service declares
 * itself in an svcrt_def_t (name, configuration table, schema, prepared statements, handlers,
 * hooks for its own background work) and its main() is svcrt_run(). The runtime, in order:
 *  - reads the configuration (--help prints it), takes the CURVE keys (zmqauth: a service with
 *    none refuses to start, and one with system client keys but no system_actions too) and lets
 *    the service check its own (configure);
 *  - applies the service's migrations under pgutil's advisory lock;
 *  - starts the service's background work (start) and, when declared, its outbox;
 *  - serves on KOOISV_BIND with KOOISV_WORKERS threads, each with its own PostgreSQL session
 *    (pgutil: reconnected after a database restart) when the service has statements;
 *    refuses calls whose deadline has passed (unless serve_late); PING is answered by the
 *    transport; the admin action "metrics" is answered by the runtime (the outbox's series,
 *    then the service's metrics hook); other admin actions go to the service, then to the
 *    outbox;
 *  - at SIGINT/SIGTERM releases in reverse order through one path: the outbox, then the
 *    service's background work (stop).
 * Readiness: a PING is answered 000000 only while the database answers (one connection of the
 * runtime's own, asked at most once a second), else 000005 "not ready: ..."; the gateway's
 * /readyz relies on this for audit. Probes for containers and pods, run as a second process
 * with the service's environment: `kooisv-<name> --check live` (exit 0 when something accepts
 * TCP on KOOISV_BIND's port) and `--check ready` (that, and SELECT 1 through KOOISV_PG_DSN
 * within 3 s); one line on stdout, exit 1 when not. */
#ifndef KOOISV_SVCRT_H
#define KOOISV_SVCRT_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "outbox.h"
#include "pgutil.h"
#include "svc.h"
#include "zmqauth.h"

/* The variables every service with per-worker database sessions reads: bind is the default
 * endpoint of KOOISV_BIND, role and schema name the database login in the help text. */
// clang-format off
#define SVCRT_CONFIG_VARS(bind, role, schema)                                                    \
    {"KOOISV_BIND", bind, 0, "ZeroMQ endpoint the service binds (ROUTER)"},                      \
    ZMQAUTH_SERVER_CONFIG_VARS,                                                                  \
    {"KOOISV_WORKERS", "4", 0,                                                                   \
     "worker threads, each with its own PostgreSQL connection (1..64)"},                         \
    {"KOOISV_PG_DSN", NULL, CONFIG_REQUIRED | CONFIG_SECRET,                                     \
     "PostgreSQL connection string of role " role " (schema " schema ")"},                       \
    {"KOOISV_LOG_LEVEL", "info", 0, "debug | info | warn | error"}

/* Session settings of the kit sync services (tenant, app): search_path = schema (a string
 * literal), UTC, and timeouts that make a statement stuck behind a lock fail (000005, the
 * marketplace retries) before the gateway's 4 s budget is gone. */
#define SVCRT_KIT_SESSION_SQL(schema)                                                            \
    "SET search_path = \"" schema "\"; SET statement_timeout = '3s'; SET lock_timeout = '2s';"   \
    " SET idle_in_transaction_session_timeout = '10s'; SET TIME ZONE 'UTC'"

/* The svcrt_def_t fields the kit sync services (tenant, app) have in common: name and schema
 * (string literals), their embedded migrations (common/migrations.h), their session settings,
 * an outbox and a log line per call. */
#define SVCRT_KIT_SERVICE(svc_name, schema_name)                                                 \
    .name = svc_name, .schema = schema_name, .migrations = service_migrations,                   \
    .nmigrations = service_migrations_count, .session_sql = SVCRT_KIT_SESSION_SQL(schema_name),  \
    .workers_max = 64, .outbox = true, .log_calls = true, .retention = outbox_retention_rules,  \
    .nretention = outbox_retention_rules_count

/* The variables of a service's outbox (svcrt_def_t.outbox); list them in its table. */
#define SVCRT_OUTBOX_CONFIG_VARS                                                                 \
    {"KOOISV_SYNC_WEBHOOK_URL", "", 0,                                                           \
     "seller application's webhook for this service's events (https://...); empty = events "     \
     "are recorded and marked skipped"},                                                         \
    {"KOOISV_SYNC_WEBHOOK_SECRET", NULL, CONFIG_SECRET | CONFIG_KEY,                             \
     "HMAC key signing webhook posts (required with the URL)"},                                 \
    {"KOOISV_SYNC_WEBHOOK_CA_FILE", "", 0,                                                       \
     "PEM CA bundle for the webhook's certificate (default: KOOISV_MARKETPLACE_CA_FILE, else "   \
     "the system store)"},                                                                       \
    {"KOOISV_MARKETPLACE_CA_FILE", "", 0, "PEM CA bundle (fallback for the webhook)"},          \
    {"KOOISV_SYNC_WEBHOOK_MAX_ATTEMPTS", "10", 0,                                                \
     "delivery attempts before an event is marked failed (1..100)"},                             \
    {"KOOISV_SYNC_WEBHOOK_BACKOFF_MS", "1000", 0,                                                \
     "first retry delay; doubles per attempt, capped at 10 minutes (10..600000)"},               \
    {"KOOISV_SYNC_WEBHOOK_POLL_MS", "1000", 0,                                                   \
     "how often the delivery thread looks for other replicas' events and retries (an event "     \
     "this replica commits wakes it at once, a retry it set when due; 100..600000)"},           \
    {"KOOISV_SYNC_WEBHOOK_THREADS", "2", 0,                                                      \
     "delivery threads (one database connection each) posting events of different instances "   \
     "at once; those of one instance go in order (1..16)"}

/* The variable of a service with retention rules (svcrt_def_t.retention); list it in its
 * table. */
#define SVCRT_RETENTION_CONFIG_VARS                                                              \
    {"KOOISV_RETAIN_DAYS", "90", 0,                                                              \
     "days a finished row is kept before it is deleted: events delivered or skipped, the "      \
     "order service's jobs done or cancelled, billing's record of the events it consumed; "      \
     "pending and failed ones stay; 0 = keep all (0..3650)"}
// clang-format on

/* One worker thread of a service. */
typedef struct {
    int index;
    pg_session_t *db; /* its own session (NULL when the service declares no statements) */
    PGconn *conn;     /* the session's connection */
    void *svc;        /* the service's state (svcrt_def_t.svc; not owned) */
    outbox_t *outbox; /* the service's outbox, or NULL */
} svcrt_worker_t;

typedef struct svcrt_def svcrt_def_t;
struct svcrt_def {
    const char *name;    /* "tenant": log name, binary kooisv-<name>, application_name */
    const char *summary; /* one line for --help */
    const config_var_t *vars;
    size_t nvars;
    const char *schema;               /* the schema the migrations create ("tenants") */
    const pg_migration_t *migrations; /* the embedded history (common/migrations.h); none: the
                                         service does not apply them (audit: --migrate) */
    size_t nmigrations;
    /* Session settings of every worker connection (search_path, timeouts); NULL = none. The
     * configure hook may set it; the string must outlive the service. */
    const char *session_sql;
    int workers_max; /* KOOISV_WORKERS is read within 1..workers_max */
    /* The service's statement groups, prepared on every worker session (a group's array ends at
     * its count). No statements: workers have no database session. */
    const pg_stmt_t *const *groups;
    const size_t *counts;
    size_t ngroups;
    /* Variable holding the migrations' connection string (NULL: KOOISV_PG_DSN). When it is
     * empty, someone else applies them. */
    const char *migrate_dsn_var;
    /* Variable with the seconds to wait for PostgreSQL at start (NULL: 60 for migrations, 30
     * for worker sessions). */
    const char *wait_var;
    /* Has an outbox (table "outbox" in schema; SVCRT_OUTBOX_CONFIG_VARS in vars); its payloads
     * are sealed with seal_key when that is set (by configure, at the latest). */
    bool outbox;
    const uint8_t *seal_key;
    /* Rules deleting the rows the service has finished with (common/retention.h), applied by
     * one thread when KOOISV_RETAIN_DAYS (SVCRT_RETENTION_CONFIG_VARS in vars) is not 0; must
     * outlive the service. None: nothing is deleted, and the variable is not read. */
    const pg_stmt_t *retention;
    size_t nretention;
    bool log_calls; /* one info line per call (result code, time) */
    /* Serve calls whose deadline has passed instead of answering 000005 (audit: a gateway
     * resends the records it could not deliver in time, and they must still be stored). */
    bool serve_late;
    /* After the configuration is loaded, before anything connects: check and keep the service's
     * own settings; svcrt_die() on a bad one. NULL = nothing to do. */
    void (*configure)(svcrt_def_t *def);
    /* After the migrations, before serving: start the service's background work; 0 or -1
     * (logged). NULL = nothing. */
    int (*start)(svcrt_def_t *def);
    /* After serving (every worker has ended) or a failed start: end what start began. Called
     * only when start succeeded. NULL = nothing. */
    void (*stop)(svcrt_def_t *def);
    /* Serve a request body; false when the service does not serve it (answered 000002). */
    bool (*handle)(svcrt_worker_t *w, svc_call_t *call, const Kooisv__Envelope *env);
    /* Serve a request body without a worker thread (svc.h handle_async): on the broker
     * thread, never blocking; true when it took the call, which it finishes later with
     * svc_call_finish (and log_calls does not cover). False, or NULL: a worker serves it with
     * handle. Calls past their deadline (unless serve_late) go to a worker, which refuses them. */
    bool (*handle_async)(void *svc, svc_call_t *call, const Kooisv__Envelope *env);
    /* Serve an admin action; false when it is not one of the service's (the outbox's actions
     * are tried next, then 000002). NULL: admin requests go to handle. */
    bool (*admin)(svcrt_worker_t *w, svc_call_t *call, const Kooisv__AdminRequest *req);
    /* Append the service's own Prometheus series to series (svcadmin_series_add) for the admin
     * action "metrics", after the runtime's (the outbox's); return -1 when a read failed (the
     * answer is then 000005). NULL = none of its own. */
    int (*metrics)(svcrt_worker_t *w, json_t *series);
    void *svc; /* copied into every worker's svc */
    /* The admin actions the service serves system clients (KOOISV_CURVE_SYSTEM_CLIENTS), and
     * only them (svc.h "Per-key rights"; NULL-terminated). NULL: it serves none, and refuses to
     * start when that list holds a key. */
    const char *const *system_actions;
};

/* Run the service def describes, from argv to exit; returns the process exit code. Exits 2
 * (one line on stderr) on bad configuration. Run once per process. */
int svcrt_run(svcrt_def_t *def, int argc, char **argv);
/* Refuse to start: print "kooisv-<name>: <var>: <why>" on stderr and exit 2. */
void svcrt_die(const char *var, const char *why) __attribute__((noreturn));

/* The running service's outbox (svcrt_def_t.outbox), or NULL; set from the configure hook's
 * return on, so the start hook may hand it to the service's own threads. */
outbox_t *svcrt_outbox(void);

/* ---- for handlers ---- */

typedef struct {
    svcrt_worker_t *w;
    pg_tx_t *db;
    svc_call_t *call;
    const char *ok_msg; /* result message on commit ("success" unless the body sets it) */
} svcrt_tx_t;

/* PG_OK: commit, the reply becomes 000000 ok_msg once committed; PG_ROLLBACK: the body already
 * set the reply (e.g. 000002); PG_RETRY / PG_FAIL: a statement failed (svcrt_exec logged it). */
typedef pg_status_t (*svcrt_tx_fn)(svcrt_tx_t *tx, void *arg);

/* Run fn in a transaction on the worker's session (pg_tx_run: retries, reconnection). The reply
 * is 000000 only after COMMIT succeeded; a database failure is 000005. */
void svcrt_tx_run(svcrt_worker_t *w, svc_call_t *call, svcrt_tx_fn fn, void *arg);
/* Run a prepared statement inside tx. The result (caller PQclears), or NULL after logging the
 * failure with the request id. */
PGresult *svcrt_exec(svcrt_tx_t *tx, const char *stmt, int n, const char *const *params);
/* Record the change in the service's outbox, as a transaction body's last step: event type
 * "<interface>.<action>", data (stolen) its content. PG_OK or the failure. */
pg_status_t svcrt_emit(svcrt_tx_t *tx, const char *interface, const char *action,
                       const char *instance_id, const char *tenant_id, json_t *data);
/* svcrt_emit with the event id already read in tx as outbox.h's OUTBOX_NEXT_ID says (decimal
 * text), which saves the round trip that reads one; NULL: read one as svcrt_emit does. */
pg_status_t svcrt_emit_id(svcrt_tx_t *tx, const char *event_id, const char *interface,
                          const char *action, const char *instance_id, const char *tenant_id,
                          json_t *data);
/* Run a read-only prepared statement for an admin action on the worker's session. The result
 * (caller PQclears), or NULL after logging the failure and answering 000005. */
PGresult *svcrt_admin_query(svcrt_worker_t *w, svc_call_t *call, const char *stmt, int n,
                            const char *const *params);
/* An id or text the service relies on: at most max characters, no control character (the
 * services use \x1f as a separator in associated data and lock keys), non-empty if required.
 * The gateway has checked this already; the service does not trust its callers blindly. */
bool svcrt_text_ok(const char *s, size_t max, bool required);

#endif
