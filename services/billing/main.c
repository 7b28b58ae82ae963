/* kooisv-billing: the billing service. Consumes the order service's events into its ledger
 * (one line per change, each event stored once by its id), takes usage from the seller's
 * application (usage.add through the gateway's admin API) and answers operators over ZeroMQ;
 * owns schema "billing". */
#include "billing.h"
#include "export.h"
#include "migrations.h"
#include "push.h"
#include "pushadmin.h"
#include "svcrt.h"

#include <stdio.h>
#include <unistd.h>

static const config_var_t billing_vars[] = {
    SVCRT_CONFIG_VARS("tcp://127.0.0.1:7105", "kooisv_billing", "billing"),
    {"KOOISV_ORDER_ENDPOINTS", NULL, CONFIG_REQUIRED,
     "the order service's replicas (tcp://host:port, comma list; a DNS name means all its "
     "addresses): billing pulls the order events from there"},
    {"KOOISV_ORDER_SERVER_KEY", NULL, CONFIG_REQUIRED | CONFIG_SECRET,
     "CURVE public key (Z85) of the order replicas; the order service must admit this "
     "process's public key in its KOOISV_CURVE_CLIENTS"},
    {"KOOISV_BILLING_CONSUMER", "billing", 0,
     "this consumer's name at the order service (its acknowledgements are kept per name)"},
    {"KOOISV_BILLING_POLL_MS", "1000", 0,
     "pause between pulls of order events when none was pending (50..60000)"},
    {"KOOISV_BILLING_BATCH", "200", 0, "order events asked for per pull (1..1000)"},
    PUSH_CONFIG_VARS,
    EXPORT_CONFIG_VARS,
};

static billing_state_t billing_state;

/* Billing serves admin actions only: every request body is someone else's. */
static bool billing_handle(svcrt_worker_t *w, svc_call_t *call, const Kooisv__Envelope *env)
{
    return false;
}

/* ---- usage push (push.h): its thread, its operators' actions (pushadmin.h) ---- */

static push_t *pusher;

static void billing_push_configure(svcrt_def_t *def)
{
    pusher = push_from_config(config_get("KOOISV_PG_DSN"));
}

/* ---- exports (export.h): admin actions after billingadmin's, generation threads ---- */
static export_config_t export_cfg;
static char replica_id[300];

static int billing_export_start(void)
{
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    snprintf(replica_id, sizeof replica_id, "%s:%ld", host, (long)getpid());
    export_config_load(&export_cfg, config_get("KOOISV_PG_DSN"));
    export_cfg.replica_id = replica_id;
    return export_start(&export_cfg);
}
/* ---- end of exports ---- */

static int billing_start(svcrt_def_t *def)
{
    if (push_start(pusher) != 0)
        return -1;
    if (billing_export_start() != 0) {
        push_destroy(&pusher);
        return -1;
    }
    return 0;
}

static void billing_stop(svcrt_def_t *def)
{
    export_join();
    push_destroy(&pusher);
}

static bool billing_admin(svcrt_worker_t *w, svc_call_t *call, const Kooisv__AdminRequest *req)
{
    return billingadmin_handle(w, call, req) || pushadmin_handle(w, call, req) ||
           export_admin(w, call, req);
}

int main(int argc, char **argv)
{
    const pg_stmt_t *const groups[] = {billingadmin_stmts, pushadmin_stmts, export_stmts};
    const size_t counts[] = {billingadmin_stmts_count, pushadmin_stmts_count, export_stmts_count};
    svcrt_def_t billing = {
        .name = "billing",
        .summary = "billing service: order events -> ledger, usage intake (schema billing)",
        .vars = billing_vars,
        .nvars = sizeof billing_vars / sizeof billing_vars[0],
        .schema = "billing",
        .migrations = service_migrations,
        .nmigrations = service_migrations_count,
        .session_sql = SVCRT_KIT_SESSION_SQL("billing"),
        .workers_max = 64,
        .log_calls = true,
        .groups = groups,
        .counts = counts,
        .ngroups = sizeof groups / sizeof groups[0],
        .handle = billing_handle,
        .admin = billing_admin,
        .configure = billing_push_configure,
        .start = billing_start,
        .stop = billing_stop,
        .svc = &billing_state,
    };
    return svcrt_run(&billing, argc, argv);
}
