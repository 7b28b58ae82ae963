/* order: shared types of the order service (kooisv-order): its configuration, the per-thread
 * database worker and the statement registry every handler uses. */
#ifndef KOOISV_ORDER_H
#define KOOISV_ORDER_H
#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "licensesig.h"
#include "pgutil.h"
#include "resultcode.h"
#include "provisioner.h"
#include "queryorder.h"
#include "svcrt.h"

/* Everything read from the environment at start-up; read-only afterwards. */
typedef struct {
    const char *dsn;
    const char *session_sql;      /* statement and lock timeouts of every connection */
    uint8_t data_key[32];         /* sealbox key for credentials at rest */
    uint8_t event_key[32];        /* seals credentials in events (from the webhook secret) */
    bool event_key_set;           /* false: no webhook secret, events carry no credentials */
    licensesig_t *license_signer; /* KOOISV_LICENSE_KEY: Ed25519, signs licenses */
    const char *basic_key;        /* seller key: wire encryption of appInfo */
    const char *encrypt_type;
    queryorder_config_t market;
    provisioner_config_t prov;
    int job_threads;
    int poll_ms;
    int lease_ms;
    int job_step_ms; /* the longest a job step may take (slowest HTTP timeout + 2 s): a lease
                      * must outlive it, and a claimed job starts only with that much left */
    int backoff_ms;
    int backoff_max_ms;
    int max_attempts;
    char replica_id[128]; /* host:pid, the lease owner prefix */
} order_config_t;

/* Read and check every setting of cfg from the loaded configuration; svcrt_die() on a bad one.
 * The strings stay valid for the process's life. */
void orderconf_load(order_config_t *cfg);

/* The configuration a request worker serves with (its svc). */
static inline const order_config_t *order_cfg(const svcrt_worker_t *w)
{
    return w->svc;
}

/* The union of every module's prepared statements (built on first call; call once from main
 * before starting threads). */
const pg_stmt_t *orderdb_statements(size_t *n);
/* A session with every statement prepared and cfg's session settings; NULL (logged) on failure.
 * Caller owns it (pg_session_destroy). Transactions: pg_tx_run; statements inside them:
 * pg_exec_logged; outside them: pg_session_exec. */
pg_session_t *orderdb_session(const order_config_t *cfg, const char *app, int wait_s);
/* The configuration orderdb_session connects with (for a session made later, by a pgworker);
 * its pointers are cfg's and the statement table's. */
pg_session_config_t orderdb_session_config(const order_config_t *cfg, const char *app, int wait_s);

/* The outbox order events go to (the runtime's: svcrt_outbox()); set at start, before any
 * thread records a change. */
void orderdb_use_outbox(outbox_t *outbox);

/* One change to an instance: a history row and, when outbox_event is set, an event (common
 * outbox) whose data is the instance as it is now (write it after the instance update, in the
 * same transaction). */
typedef struct {
    const char *instance_id;
    const char *event;      /* history event: created, provisioned, freeze, ... */
    const char *from_state; /* NULL for created */
    const char *to_state;
    const char *order_id;      /* NULL = none */
    const char *order_line_id; /* NULL = none */
    const char *scene;         /* NULL = none */
    const char *status;        /* NULL = none */
    const char *detail_json;   /* JSON object text or NULL */
    const char *outbox_event;  /* "instance.frozen"... or NULL */
    const char *request_id;
    json_t *data_extra; /* members added to the event's data, or NULL (not owned) */
} change_t;

/* Record c in tx (history + event); PG_OK, PG_RETRY or PG_FAIL. */
pg_status_t change_record(pg_tx_t *tx, const change_t *c);

/* An event's data (README "Order events"): the instance row i as it is after the change, built
 * by SQL (jsonb): order and line from the text expressions o and l (NULL: the row's own), scene
 * s and previous state p. */
#define ORDER_EVENT_DATA(o, l, s, p)                                                               \
    "jsonb_build_object("                                                                          \
    "  'orderId', coalesce(" o "::text, i.order_id),"                                              \
    "  'orderLineId', coalesce(" l "::text, i.order_line_id), 'scene', " s "::text,"               \
    "  'state', i.state, 'previousState', " p "::text, 'productId', i.product_id,"                 \
    "  'skuCode', i.sku_code, 'chargingMode', i.charging_mode, 'periodType', i.period_type,"       \
    "  'periodNumber', i.period_number, 'amount', i.amount, 'trial', i.trial,"                     \
    "  'expireTime', to_char(i.expire_time AT TIME ZONE 'UTC',"                                    \
    "   'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"                                                     \
    "  'planVersion', i.plan_version)"

/* The columns a statement that has just written the instance row i selects, in this order, so
 * that change_record_snapshot emits its event without reading it again: the event's id
 * (outbox.h: put OUTBOX_XACT_FIRST in the WHERE), the test flag and ORDER_EVENT_DATA's text. */
#define ORDER_EVENT_COLUMNS(o, l, s, p) OUTBOX_NEXT_ID ", i.test_flag, " ORDER_EVENT_DATA(o, l, s, p) "::text"

/* change_record with the event built from a row of ORDER_EVENT_COLUMNS (res, row, from column
 * col on) instead of a read of its own: one round trip fewer. PG_OK, PG_RETRY or PG_FAIL. */
pg_status_t change_record_from(pg_tx_t *tx, const change_t *c, const PGresult *res, int row,
                               int col);
/* Wake the job threads of every replica once the transaction commits. */
pg_status_t change_notify_jobs(PGconn *conn, const char *rid);

/* Answer 000002 "<name> is required/too long" unless value is non-empty and <= max bytes. */
bool order_require(svc_call_t *call, const char *name, const char *value, size_t max);
/* Set the reply from a transaction outcome: code/msg when it committed or rolled back as
 * decided, 000005 when the database failed. */
void order_reply(svc_call_t *call, pg_status_t st, const char *code, const char *msg);
/* NULL for "" (optional proto3 strings become SQL NULL). */
static inline const char *order_nullable(const char *s)
{
    return s && *s ? s : NULL;
}

/* Statement tables of the modules (one per module, SQL beside its user). */
extern const pg_stmt_t orderdb_stmts[], lifecycle_stmts[], query_stmts[], license_stmts[],
    admin_stmts[], jobs_stmts[], zonemark_stmts[], eventfeed_stmts[];
extern const size_t orderdb_stmts_count, lifecycle_stmts_count, query_stmts_count,
    license_stmts_count, admin_stmts_count, jobs_stmts_count, zonemark_stmts_count,
    eventfeed_stmts_count;

/* What the service deletes once finished (retention.c; svcrt_def_t.retention). */
extern const pg_stmt_t order_retention_rules[];
extern const size_t order_retention_rules_count;

/* Handlers (one per body kind). Each sets the reply's result code. */
void lifecycle_new(svcrt_worker_t *w, svc_call_t *call);
void lifecycle_refresh(svcrt_worker_t *w, svc_call_t *call);
void lifecycle_status(svcrt_worker_t *w, svc_call_t *call);
void lifecycle_release(svcrt_worker_t *w, svc_call_t *call);
void lifecycle_upgrade(svcrt_worker_t *w, svc_call_t *call);
void lifecycle_change_check(svcrt_worker_t *w, svc_call_t *call);
void query_instances(svcrt_worker_t *w, svc_call_t *call);
/* True when call is a queryInstance of one well-formed id (*id, and *test_flag "true" or
 * "false", point into the request): what queryreader serves; anything else a worker answers. */
bool query_single(svc_call_t *call, const char **id, const char **test_flag);
/* Answer call (a queryInstance) from res, the rows of "query_instance(s)" for its ids. */
void query_answer(const order_config_t *cfg, svc_call_t *call, const PGresult *res);

/* queryreader: queryInstance of one id without a worker thread (svcrt handle_async). */
/* Start the reader thread on a session of its own; 0, or -1 (logged). */
int queryreader_start(const order_config_t *cfg);
/* On the broker thread: queue call for the reader when query_single says it is one of its,
 * without blocking; false when the reader is not running or its queue is full (a worker
 * serves the call). */
bool queryreader_take(svc_call_t *call);
/* Answer what is queued, stop the thread and close its session. */
void queryreader_stop(void);
void license_issue(svcrt_worker_t *w, svc_call_t *call);
void admin_handle(svcrt_worker_t *w, svc_call_t *call);
/* The admin actions of system clients (billing): events.pending, events.ack (NULL-terminated;
 * svcrt_def_t.system_actions: only system clients may call them, and they nothing else). */
extern const char *const eventfeed_actions[];
/* Serve events.pending / events.ack (eventfeed.c) for a system client; false when req
 * is neither. */
bool eventfeed_handle(svcrt_worker_t *w, svc_call_t *call, const Kooisv__AdminRequest *req);
/* svcrt_def_t.metrics: kooisv_provisioning_jobs{state} (pending, running, failed) and
 * kooisv_provisioning_oldest_waiting_seconds. 0, or -1 when the read failed. */
int admin_metrics(svcrt_worker_t *w, json_t *series);

/* Read the stored expiries again when they were read in another zone than zone (zonemark.c);
 * db has the order's statements prepared. Call before threads start (it may resolve the
 * recorded zone's IANA name). 0, or -1 (logged) when the database failed. */
int zonemark_reconcile(pg_session_t *db, const time_zone_t *zone);

/* Start cfg->job_threads background job threads; 0 or -1. */
int jobs_start(const order_config_t *cfg);
/* A new job is claimed by its key by the replica that queued it (jobs_wake); the walks of the
 * due jobs (every replica's, once a poll interval) see it only this long after it was queued:
 * a replica that stopped before it claimed it, or whose job threads are all busy. */
#define JOB_KEY_GRACE "2 seconds"
/* After a commit that added the job (kind, instance, order): queue its key for this replica's
 * job threads to claim it by, and wake one of them, an idle one if any, else make one look
 * again as soon as its step ends (other replicas find the job at their next poll); a no-op
 * before jobs_start. */
void jobs_wake(const char *kind, const char *instance_id, const char *order_id);
/* Stop the job threads and wait for them (after svc_run returned). */
void jobs_join(void);

#endif
