/* syncoutbox: the seller's own application learns of every committed kit sync change. Each
 * change writes an outbox row in the transaction that makes it; a delivery thread posts the
 * event (a JSON document, the same bytes on every attempt) to a signed webhook (common/webhook.h)
 * at least once, with exponential backoff, keeping attempts and the last error. Receivers
 * de-duplicate by eventId; seq orders events of one service.
 * Rows: pending -> delivered | failed (max attempts reached) ; with no webhook URL configured a
 * pending row is marked skipped. outbox.redrive puts a failed/pending/skipped row back to
 * pending now. Every table is the service's own "outbox" (see its migrations). */
#ifndef KOOISV_SYNCOUTBOX_H
#define KOOISV_SYNCOUTBOX_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "syncsvc.h"

/* The configuration variables the outbox reads; list them in the service's config table. */
// clang-format off
#define SYNCOUTBOX_CONFIG_VARS                                                                   \
    {"KOOISV_SYNC_WEBHOOK_URL", "", 0,                                                           \
     "seller application's webhook for sync events (https://...); empty = events are recorded "  \
     "and marked skipped"},                                                                      \
    {"KOOISV_SYNC_WEBHOOK_SECRET", NULL, CONFIG_SECRET | CONFIG_KEY,                             \
     "HMAC key signing webhook posts (required with the URL)"},                                 \
    {"KOOISV_SYNC_WEBHOOK_CA_FILE", "", 0,                                                       \
     "PEM CA bundle for the webhook's certificate (default: KOOISV_MARKETPLACE_CA_FILE, else "   \
     "the system store)"},                                                                       \
    {"KOOISV_MARKETPLACE_CA_FILE", "", 0, "PEM CA bundle (fallback for the webhook)"},          \
    {"KOOISV_SYNC_WEBHOOK_MAX_ATTEMPTS", "10", 0,                                                \
     "delivery attempts before an event is marked failed (1..100)"},                             \
    {"KOOISV_SYNC_WEBHOOK_BACKOFF_MS", "1000", 0,                                                \
     "first retry delay; doubles per attempt, capped at 10 minutes (10..600000)"}
// clang-format on

typedef struct {
    const char *source;      /* "tenant" / "app": names the emitter in every event */
    const char *schema;      /* "tenants" / "apps" */
    const char *dsn;         /* the delivery thread's own connection */
    const uint8_t *seal_key; /* non-NULL: payloads are sealed at rest (they hold personal data) */
} syncoutbox_config_t;

/* The outbox's prepared statements (prepare them on every worker connection). */
extern const pg_stmt_t syncoutbox_stmts[];
extern const size_t syncoutbox_stmts_count;

/* Read the SYNCOUTBOX_CONFIG_VARS (after config_load) and remember cfg (strings must outlive
 * the process). Exits 2 with a one-line reason when the URL is set without a secret. */
void syncoutbox_init(const syncoutbox_config_t *cfg);
/* Start the delivery thread; 0 or -1. */
int syncoutbox_start(void);
/* Wait for the delivery thread to notice service_stopping() and end. */
void syncoutbox_join(void);
/* Record one event inside tx, as a transaction body's last step: event type
 * "<interface>.<action>", data (stolen) the change. PG_OK, or PG_FAIL when a
 * statement failed. */
pg_status_t syncoutbox_emit(sync_tx_t *tx, const char *interface, const char *action,
                            const char *instance_id, const char *tenant_id, json_t *data);
/* Serve "outbox.failed" (args: limit) and "outbox.redrive" (args: id); false when action is
 * neither (the caller answers). */
bool syncoutbox_admin(sync_worker_t *w, svc_call_t *call, const Kooisv__AdminRequest *req);

#endif
