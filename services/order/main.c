/* kooisv-order: the order service. Serves the basic interfaces (spec §3) that the gateway
 * forwards as envelopes, runs provisioning in background job threads, and answers operators'
 * admin requests. State: schema "orders" (migrations/), applied at start under an advisory lock
 * so that replicas may start together. */

#include "config.h"
#include "log.h"
#include "migrations.h"
#include "order.h"
#include "zmqauth.h"

static const config_var_t vars[] = {
    {"KOOISV_BIND", "tcp://127.0.0.1:7101", 0, "ZeroMQ ROUTER endpoint the gateway connects to"},
    ZMQAUTH_SERVER_CONFIG_VARS,
    {"KOOISV_WORKERS", "4", 0, "request worker threads (each with its own database connection)"},
    {"KOOISV_PG_DSN", NULL, CONFIG_REQUIRED | CONFIG_SECRET,
     "PostgreSQL connection string of role kooisv_order (schema orders)"},
    {"KOOISV_PG_STATEMENT_TIMEOUT_MS", "3000", 0,
     "per-statement limit, so that a stuck database answers 000005 in time"},
    {"KOOISV_LOG_LEVEL", "info", 0, "debug | info | warn | error"},
    {"KOOISV_BASIC_KEY", NULL, CONFIG_REQUIRED | CONFIG_SECRET | CONFIG_KEY,
     "seller key of the basic interfaces: encrypts appInfo userName/password on the wire"},
    {"KOOISV_ENCRYPT_TYPE", "1", 0, "appInfo encryption: 1 = AES-256-CBC, 2 = AES-128-CBC"},
    {"KOOISV_DATA_KEY", NULL, CONFIG_REQUIRED | CONFIG_SECRET | CONFIG_KEY,
     "32-byte key (64 hex or base64) sealing credentials at rest"},
    {"KOOISV_LICENSE_KEY", NULL, CONFIG_REQUIRED | CONFIG_SECRET,
     "PEM Ed25519 private key signing licenses (openssl genpkey -algorithm ed25519)"},
    {"KOOISV_MARKETPLACE_URL", NULL, CONFIG_REQUIRED,
     "marketplace API base URL for Query Order, e.g. https://mkt.myhuaweicloud.com"},
    {"KOOISV_MARKETPLACE_AK", NULL, CONFIG_REQUIRED | CONFIG_SECRET,
     "access key id for the marketplace API (SDK-HMAC-SHA256)"},
    {"KOOISV_MARKETPLACE_SK", NULL, CONFIG_REQUIRED | CONFIG_SECRET,
     "secret key for the marketplace API"},
    {"KOOISV_MARKETPLACE_TIMEOUT_MS", "5000", 0, "Query Order request timeout"},
    {"KOOISV_MARKETPLACE_TIME_ZONE", "UTC", 0, TIME_ZONE_HELP},
    {"KOOISV_PROVISIONER", "builtin", 0,
     "builtin (URL templates, generated credentials) | webhook (ask the seller's application)"},
    {"KOOISV_FRONTEND_URL_TEMPLATE", "https://app.example.invalid/i/{instanceId}", 0,
     "builtin: appInfo.frontEndUrl; placeholders {instanceId} {orderId}"},
    {"KOOISV_ADMIN_URL_TEMPLATE", "https://app.example.invalid/admin/{instanceId}", 0,
     "builtin: appInfo.adminUrl (empty = none); placeholders {instanceId} {orderId}"},
    {"KOOISV_PROVISION_MEMO", "", 0, "builtin: appInfo.memo"},
    {"KOOISV_WEBHOOK_URL", "", 0, "webhook: the application's provisioning URL (https)"},
    {"KOOISV_WEBHOOK_SECRET", "", CONFIG_SECRET,
     "webhook: HMAC key of X-Kooisv-Signature (required with KOOISV_PROVISIONER=webhook)"},
    {"KOOISV_WEBHOOK_CA_FILE", "", 0, "webhook: PEM CA bundle (empty = system)"},
    {"KOOISV_WEBHOOK_TIMEOUT_MS", "10000", 0, "webhook: request timeout"},
    {"KOOISV_PROVISION_THREADS", "2", 0, "background job threads per replica"},
    {"KOOISV_PROVISION_POLL_MS", "1000", 0,
     "job poll interval: how often a job thread looks through the due jobs (retries, expired "
     "leases, other replicas' jobs; a new job is claimed by its key at once by a job thread of "
     "the replica that took the call, an idle one if it has one; an operator's redrive wakes "
     "every replica through NOTIFY)"},
    {"KOOISV_PROVISION_LEASE_MS", "20000", 0,
     "job lease; a dead replica's job is taken over after it runs out, a runner whose "
     "job was taken over meanwhile stores nothing more of it, and a job claimed with others "
     "starts only while its lease outlives the slowest HTTP timeout by 2 s (else it is given "
     "back)"},
    {"KOOISV_PROVISION_BACKOFF_MS", "1000", 0, "first retry delay, doubled per attempt"},
    {"KOOISV_PROVISION_BACKOFF_MAX_MS", "300000", 0, "longest retry delay"},
    {"KOOISV_PROVISION_MAX_ATTEMPTS", "20", 0,
     "attempts before a job is marked failed (operators redrive it: jobs.redrive)"},
    /* order events for the seller's application (README "Order events"); the CA bundle of
     * the marketplace is KOOISV_MARKETPLACE_CA_FILE, listed here */
    SVCRT_OUTBOX_CONFIG_VARS,
    SVCRT_RETENTION_CONFIG_VARS,
};

static order_config_t cfg;

static void order_configure(svcrt_def_t *def)
{
    orderconf_load(&cfg);
    def->session_sql = cfg.session_sql;
}

/* Which handler serves which request body; every one reads its message from the call. */
static const struct {
    Kooisv__Envelope__BodyCase body;
    void (*serve)(svcrt_worker_t *w, svc_call_t *call);
} order_routes[] = {
    {KOOISV__ENVELOPE__BODY_NEW_INSTANCE, lifecycle_new},
    {KOOISV__ENVELOPE__BODY_QUERY_INSTANCE, query_instances},
    {KOOISV__ENVELOPE__BODY_REFRESH_INSTANCE, lifecycle_refresh},
    {KOOISV__ENVELOPE__BODY_UPDATE_INSTANCE_STATUS, lifecycle_status},
    {KOOISV__ENVELOPE__BODY_RELEASE_INSTANCE, lifecycle_release},
    {KOOISV__ENVELOPE__BODY_UPGRADE_INSTANCE, lifecycle_upgrade},
    {KOOISV__ENVELOPE__BODY_CHANGE_INSTANCE_CHECK, lifecycle_change_check},
    {KOOISV__ENVELOPE__BODY_GET_LICENSE_ASYNC, license_issue},
    {KOOISV__ENVELOPE__BODY_ADMIN, admin_handle},
};

static bool order_handle(svcrt_worker_t *w, svc_call_t *call, const Kooisv__Envelope *env)
{
    for (size_t i = 0; i < sizeof order_routes / sizeof order_routes[0]; i++) {
        if (order_routes[i].body == env->body_case) {
            order_routes[i].serve(w, call);
            return true;
        }
    }
    return false;
}

/* Order events go to the runtime's outbox. Expiries stored by an earlier version (or under
 * another zone setting) are read again before anything serves; then the job threads start (they
 * take their own sessions; the request workers' are the runtime's). */
static int order_start(svcrt_def_t *def)
{
    order_config_t *c = def->svc;
    orderdb_use_outbox(svcrt_outbox());
    pg_session_t *db = orderdb_session(c, "kooisv-order-zonemark", 60);
    bool ok = db && zonemark_reconcile(db, c->market.zone) == 0;
    pg_session_destroy(&db);
    if (!ok) {
        log_error(NULL, "cannot reconcile the stored expiries with KOOISV_MARKETPLACE_TIME_ZONE");
        return -1;
    }
    if (queryreader_start(c) != 0)
        return -1;
    if (jobs_start(c) != 0) {
        queryreader_stop();
        return -1;
    }
    return 0;
}

static void order_stop(svcrt_def_t *def)
{
    queryreader_stop();
    jobs_join();
}

/* svcrt_def_t.handle_async: a queryInstance of one id goes to the query reader (queryreader.c);
 * the rest to the workers. */
static bool order_handle_async(void *svc, svc_call_t *call, const Kooisv__Envelope *env)
{
    (void)svc;
    (void)env;
    return queryreader_take(call);
}

int main(int argc, char **argv)
{
    size_t nstmts;
    const pg_stmt_t *const groups[] = {orderdb_statements(&nstmts)};
    svcrt_def_t order = {
        .name = "order",
        .summary = "order service: instance life cycle, idempotency, provisioning, order events",
        .vars = vars,
        .nvars = sizeof vars / sizeof vars[0],
        .schema = "orders",
        .outbox = true,
        .retention = order_retention_rules,
        .nretention = order_retention_rules_count,
        .migrations = service_migrations,
        .nmigrations = service_migrations_count,
        .workers_max = 256,
        .groups = groups,
        .counts = &nstmts,
        .ngroups = 1,
        .configure = order_configure,
        .start = order_start,
        .stop = order_stop,
        .handle = order_handle,
        .handle_async = order_handle_async,
        .metrics = admin_metrics,
        .system_actions = eventfeed_actions,
        .svc = &cfg,
    };
    return svcrt_run(&order, argc, argv);
}
