/* kooisv-billing: the billing service. Consumes the order service's events into its ledger
 * (one line per change, each event stored once by its id), takes usage from the seller's
 * application (usage.add through the gateway's admin API) and answers operators over ZeroMQ;
 * owns schema "billing". */
#include "billing.h"
#include "migrations.h"
#include "svcrt.h"

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
};

static billing_state_t billing_state;

/* Billing serves admin actions only: every request body is someone else's. */
static bool billing_handle(svcrt_worker_t *w, svc_call_t *call, const Kooisv__Envelope *env)
{
    return false;
}

int main(int argc, char **argv)
{
    const pg_stmt_t *const groups[] = {billingadmin_stmts};
    const size_t counts[] = {billingadmin_stmts_count};
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
        .admin = billingadmin_handle,
        .svc = &billing_state,
    };
    return svcrt_run(&billing, argc, argv);
}
