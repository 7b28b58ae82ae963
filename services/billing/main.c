/* kooisv-billing: the billing service. Consumes the order service's events into its ledger
 * (ledger.h: one line per change, each event stored once by its id), takes usage from the
 * seller's application (intake.h: usage.add through the gateway's admin API) and answers
 * operators (billingadmin.c) over ZeroMQ; owns schema "billing". */
#include <stdlib.h>
#include <string.h>

#include "billing.h"
#include "export.h"
#include "intake.h"
#include "ledger.h"
#include "log.h"
#include "migrations.h"
#include "push.h"
#include "pushadmin.h"
#include "svcrt.h"
#include "zmqauth.h"

#include <stdio.h>
#include <unistd.h>

static const config_var_t billing_vars[] = {
    SVCRT_CONFIG_VARS("tcp://127.0.0.1:7105", "kooisv_billing", "billing"),
    {"KOOISV_ORDER_ENDPOINTS", NULL, CONFIG_REQUIRED,
     "the order service's replicas (tcp://host:port, comma list; a DNS name means all its "
     "addresses): billing pulls the order events from there"},
    {"KOOISV_ORDER_SERVER_KEY", NULL, CONFIG_REQUIRED | CONFIG_SECRET,
     "CURVE public key (Z85) of the order replicas; the order service must admit this "
     "process's public key in its KOOISV_CURVE_SYSTEM_CLIENTS"},
    {"KOOISV_BILLING_CONSUMER", "billing", 0,
     "this consumer's name at the order service (its acknowledgements are kept per name)"},
    {"KOOISV_BILLING_POLL_MS", "1000", 0,
     "pause between pulls of order events when none was pending (50..60000)"},
    {"KOOISV_BILLING_BATCH", "200", 0, "order events asked for per pull (1..1000)"},
    {"KOOISV_BILLING_DAILY_PRODUCTS", "", 0,
     "product ids (commas or blanks between them) whose pay-per-use usage is pushed per UTC day "
     "(at 00:00-00:15 UTC the next day) instead of per hour; applies to instances when billing "
     "first learns their product, never to an instance already known; empty = every product "
     "hourly"},
    PUSH_CONFIG_VARS,
    EXPORT_CONFIG_VARS,
    SVCRT_RETENTION_CONFIG_VARS,
};

static billing_state_t billing_state;
static ledger_consumer_t *consumer;
static push_t *pusher;             /* usage push to the marketplace (push.h) */
static export_config_t export_cfg; /* bill and detail exports (export.h) */
static char replica_id[300];       /* host:pid, names the replica that made an export */

/* The export threads, named after this replica. */
static int billing_export_start(void)
{
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    snprintf(replica_id, sizeof replica_id, "%s:%ld", host, (long)getpid());
    export_config_load(&export_cfg, config_get("KOOISV_PG_DSN"));
    export_cfg.replica_id = replica_id;
    return export_start(&export_cfg);
}

/* The order service to pull events from, and the consumer's pace. */
static void billing_configure(svcrt_def_t *def)
{
    billing_state_t *st = def->svc;
    st->order_endpoints = config_get("KOOISV_ORDER_ENDPOINTS");
    st->order_server_key = config_get("KOOISV_ORDER_SERVER_KEY");
    if (!zmqauth_key_valid(st->order_server_key))
        svcrt_die("KOOISV_ORDER_SERVER_KEY", "not a CURVE public key (Z85, 40 characters)");
    st->consumer = config_get("KOOISV_BILLING_CONSUMER");
    size_t n = strlen(st->consumer);
    if (n == 0 || n > 64 || strspn(st->consumer, "abcdefghijklmnopqrstuvwxyz0123456789_-") != n)
        svcrt_die("KOOISV_BILLING_CONSUMER", "1..64 of a-z 0-9 _ -");
    st->poll_ms = (int)config_get_long("KOOISV_BILLING_POLL_MS", 50, 60000);
    st->batch = (int)config_get_long("KOOISV_BILLING_BATCH", 1, 1000);
    char why[256];
    st->daily_products =
        ledger_daily_products(config_get("KOOISV_BILLING_DAILY_PRODUCTS"), why, sizeof why);
    if (!st->daily_products)
        svcrt_die("KOOISV_BILLING_DAILY_PRODUCTS", why);
    pusher = push_from_config(config_get("KOOISV_PG_DSN"));
}

/* The ledger's consumer of the order events, the usage push and the export threads, each on
 * its own database session. */
static int billing_start(svcrt_def_t *def)
{
    consumer = ledger_consumer_new(def->svc, config_get("KOOISV_PG_DSN"), def->session_sql);
    if (!consumer || ledger_consumer_start(consumer) != 0)
        goto fail;
    if (push_start(pusher) != 0)
        goto fail;
    if (billing_export_start() != 0)
        goto fail;
    return 0;
fail:
    push_destroy(&pusher);
    ledger_consumer_destroy(&consumer);
    return -1;
}

static void billing_stop(svcrt_def_t *def)
{
    export_join();
    push_destroy(&pusher);
    ledger_consumer_destroy(&consumer);
}

/* Admin actions: the operators' look-ups, the usage intake, the usage push's, the exports'. */
static bool billing_admin(svcrt_worker_t *w, svc_call_t *call, const Kooisv__AdminRequest *req)
{
    return billingadmin_handle(w, call, req) || intake_handle(w, call, req) ||
           pushadmin_handle(w, call, req) || export_admin(w, call, req);
}

/* Billing serves admin actions only: every request body is someone else's. */
static bool billing_handle(svcrt_worker_t *w, svc_call_t *call, const Kooisv__Envelope *env)
{
    return false;
}

int main(int argc, char **argv)
{
    const pg_stmt_t *const groups[] = {billingadmin_stmts, intake_stmts, pushadmin_stmts,
                                       export_stmts};
    const size_t counts[] = {billingadmin_stmts_count, intake_stmts_count, pushadmin_stmts_count,
                             export_stmts_count};
    svcrt_def_t billing = {
        .name = "billing",
        .summary =
            "billing service: order events -> ledger, usage intake, usage push, bill and detail "
            "exports (schema billing)",
        .vars = billing_vars,
        .nvars = sizeof billing_vars / sizeof billing_vars[0],
        .schema = "billing",
        .migrations = service_migrations,
        .nmigrations = service_migrations_count,
        .session_sql = SVCRT_KIT_SESSION_SQL("billing"),
        .workers_max = 64,
        .log_calls = true,
        .retention = billing_retention_rules,
        .nretention = billing_retention_rules_count,
        .groups = groups,
        .counts = counts,
        .ngroups = sizeof groups / sizeof groups[0],
        .configure = billing_configure,
        .start = billing_start,
        .stop = billing_stop,
        .handle = billing_handle,
        .admin = billing_admin,
        .metrics = pushadmin_metrics,
        .svc = &billing_state,
    };
    int rc = svcrt_run(&billing, argc, argv);
    free(billing_state.daily_products);
    return rc;
}
