/* outbox: a service's committed changes, told to an application at least once. Each change
 * writes an event row in the transaction that makes it (outbox_emit); delivery threads post
 * the event (a JSON document, the same bytes on every attempt) to a signed webhook
 * (common/webhook.h) with exponential backoff, keeping attempts and the last error.
 * Receivers de-duplicate by eventId; seq orders the events of one service. The events of one
 * (instance, tenant) are delivered in seq order: one waits while an earlier one is pending
 * (in flight or waiting for its retry) and goes once that one is delivered or dead-lettered.
 * Rows: pending -> delivered | failed (max attempts reached: the dead letter); with no webhook
 * URL configured an event is written skipped, and a pending row left from a run with a URL is
 * marked skipped. outbox_admin's outbox.redrive puts a failed
 * or skipped row back to pending now; a pending row is refused (a delivery thread may hold it
 * under its lease, and it is retried anyway).
 * Storage: the table "outbox" and the sequence "outbox_seq" of the service's schema (see the
 * tenant and app migrations for the columns), found through the search_path of the
 * connections. */
#ifndef KOOISV_OUTBOX_H
#define KOOISV_OUTBOX_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pgutil.h"
#include "retention.h"
#include "svc.h"

typedef struct {
    const char *source;      /* "tenant" / "app": names the emitter in every event */
    const char *schema;      /* "tenants" / "apps": names the NOTIFY channel and the sealing AAD */
    const char *dsn;         /* the delivery thread's own connection */
    const char *setup_sql;   /* its session settings (search_path = schema...); NULL = none */
    const uint8_t *seal_key; /* non-NULL (32 bytes, must outlive the outbox): payloads are
                              * sealed at rest (they hold personal data) */
    const char *url;         /* the webhook (http(s)); "" = events are recorded and skipped */
    const char *secret;      /* HMAC key signing posts; required with url */
    const char *ca_file;     /* PEM CA bundle of the webhook; "" = the system store */
    int max_attempts;        /* delivery attempts before an event is failed (>= 1) */
    int backoff_ms;          /* first retry delay; doubles per attempt, capped at 10 minutes */
    int poll_ms; /* how often a delivery thread looks for other replicas' events and retries
                  * (its own process's commits wake one at once, its own retries when due);
                  * 0 = 1000 */
    int threads; /* delivery threads, each with its own connection, posting events of
                  * different instances at once (>= 1) */
} outbox_config_t;

typedef struct outbox outbox_t;

/* An outbox as cfg says (its strings are copied). NULL with *why set (static text) when cfg is
 * unusable: a URL that is not http(s), a URL without a secret. */
outbox_t *outbox_new(const outbox_config_t *cfg, const char **why);
/* Stop the delivery threads that run, free, set *self_p to NULL. */
void outbox_destroy(outbox_t **self_p);
/* Start the delivery threads (one when there is no URL); 0 or -1. They end at outbox_destroy. */
int outbox_start(outbox_t *self);
/* The statements outbox_emit and outbox_admin run: prepare them on every connection that
 * they are given. Sets *n. */
const pg_stmt_t *outbox_stmts(size_t *n);
/* Record one event inside tx (a transaction body's last step): event_type names the change
 * ("tenantSync.add"), data (stolen) its content. PG_OK, or the failure (logged). */
pg_status_t outbox_emit(outbox_t *self, pg_tx_t *tx, const char *event_type,
                        const char *instance_id, const char *tenant_id, bool test_flag,
                        json_t *data);
/* The delivery thread's statements (outbox_claim first), for tests that look at their plans.
 * Sets *n. */
const pg_stmt_t *outbox_delivery_stmts(size_t *n);
/* A new event id read by a statement of the caller's that needs an answer anyway (saving
 * outbox_emit's own read): select OUTBOX_NEXT_ID and put OUTBOX_XACT_FIRST in its WHERE (a
 * one-time filter, run before the select list), so that no event id is ever held by a
 * transaction without a transaction id (a consumer's mark relies on it). */
#define OUTBOX_NEXT_ID "nextval('outbox_seq')"
#define OUTBOX_XACT_FIRST "pg_current_xact_id() IS NOT NULL"
/* outbox_emit with the event id id (decimal text) read in tx as OUTBOX_NEXT_ID says. */
pg_status_t outbox_emit_id(outbox_t *self, pg_tx_t *tx, const char *id, const char *event_type,
                           const char *instance_id, const char *tenant_id, bool test_flag,
                           json_t *data);
/* The retention rule of an outbox (common/retention.h): events delivered or skipped longer
 * ago than the retention period go; pending and failed ones (the dead letter an operator may
 * redrive) stay. keep_from and also as RETENTION_WALK_SQL says (the order service keeps what
 * its feed's consumers have not acknowledged, and deletes their acknowledgements with the
 * events). */
#define OUTBOX_RETENTION_SQL(keep_from, also)                                                      \
    RETENTION_WALK_SQL("outbox", "id", "created_at",                                               \
                       "t.status IN ('delivered', 'skipped') AND coalesce(t.delivered_at,"         \
                       " t.created_at) < now() - " RETENTION_AGE_SQL,                              \
                       keep_from, also)
/* The kit services' rules (OUTBOX_RETENTION_SQL with no floor): svcrt_def_t.retention. */
extern const pg_stmt_t outbox_retention_rules[];
extern const size_t outbox_retention_rules_count;
/* Serve "outbox.failed" (args: limit) and "outbox.redrive" (args: id) on db; false when action
 * is neither (the caller answers). */
bool outbox_admin(outbox_t *self, pg_session_t *db, svc_call_t *call,
                  const Kooisv__AdminRequest *req);
/* Append the outbox's series (svcadmin_series_add: pending, failed, age of the oldest pending
 * event, labelled source=<source>) to series, read on db; 0, or -1 when the read failed. */
int outbox_metrics(outbox_t *self, pg_session_t *db, json_t *series);

#endif
