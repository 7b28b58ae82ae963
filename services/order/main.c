/* kooisv-order: the order service. Serves the basic interfaces (spec §3) that the gateway
 * forwards as envelopes, runs provisioning in background job threads, and answers operators'
 * admin requests. State: schema "orders" (migrations/), applied at start under an advisory lock
 * so that replicas may start together. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "cryptoutil.h"
#include "log.h"
#include "migrations.h"
#include "order.h"
#include "sealbox.h"
#include "svc.h"
#include "timeutil.h"
#include "xmalloc.h"
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
     "32-byte key (64 hex or base64) sealing credentials at rest and signing licenses"},
    {"KOOISV_MARKETPLACE_URL", NULL, CONFIG_REQUIRED,
     "marketplace API base URL for Query Order, e.g. https://mkt.myhuaweicloud.com"},
    {"KOOISV_MARKETPLACE_AK", NULL, CONFIG_REQUIRED | CONFIG_SECRET,
     "access key id for the marketplace API (SDK-HMAC-SHA256)"},
    {"KOOISV_MARKETPLACE_SK", NULL, CONFIG_REQUIRED | CONFIG_SECRET,
     "secret key for the marketplace API"},
    {"KOOISV_MARKETPLACE_CA_FILE", "", 0, "PEM CA bundle for the marketplace (empty = system)"},
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
     "job poll interval (new jobs also wake the threads at once through NOTIFY)"},
    {"KOOISV_PROVISION_LEASE_MS", "20000", 0,
     "job lease; a dead replica's job is taken over after it runs out"},
    {"KOOISV_PROVISION_BACKOFF_MS", "1000", 0, "first retry delay, doubled per attempt"},
    {"KOOISV_PROVISION_BACKOFF_MAX_MS", "300000", 0, "longest retry delay"},
    {"KOOISV_PROVISION_MAX_ATTEMPTS", "20", 0,
     "attempts before a job is marked failed (operators redrive it: jobs.redrive)"},
};

static void die(const char *name, const char *why)
{
    fprintf(stderr, "kooisv-order: %s: %s\n", name, why);
    exit(2);
}

static order_config_t cfg;

static void config_build(void)
{
    cfg.dsn = config_get("KOOISV_PG_DSN");
    if (sealbox_parse_key(config_get("KOOISV_DATA_KEY"), cfg.data_key) != 0)
        die("KOOISV_DATA_KEY", "must be 32 bytes as 64 hex characters or base64");
    /* A separate key for licenses: a license never helps to open a sealed credential. */
    static const char label[] = "kooisv-order license v1";
    hmac_sha256(cfg.data_key, sizeof cfg.data_key, label, sizeof label - 1, cfg.license_key);
    cfg.basic_key = config_get("KOOISV_BASIC_KEY");
    cfg.encrypt_type = config_get("KOOISV_ENCRYPT_TYPE");
    if (strcmp(cfg.encrypt_type, "1") != 0 && strcmp(cfg.encrypt_type, "2") != 0)
        die("KOOISV_ENCRYPT_TYPE", "must be 1 or 2");

    cfg.market.url = config_get("KOOISV_MARKETPLACE_URL");
    if (strncmp(cfg.market.url, "https://", 8) != 0 && strncmp(cfg.market.url, "http://", 7) != 0)
        die("KOOISV_MARKETPLACE_URL", "must be an http(s) URL");
    cfg.market.ak = config_get("KOOISV_MARKETPLACE_AK");
    cfg.market.sk = config_get("KOOISV_MARKETPLACE_SK");
    cfg.market.ca_file = config_get("KOOISV_MARKETPLACE_CA_FILE");
    cfg.market.timeout_ms = (int)config_get_long("KOOISV_MARKETPLACE_TIMEOUT_MS", 100, 60000);
    char zone_why[256];
    if (!(cfg.market.zone =
              time_zone_new(config_get("KOOISV_MARKETPLACE_TIME_ZONE"), zone_why, sizeof zone_why)))
        die("KOOISV_MARKETPLACE_TIME_ZONE", zone_why);

    if (!provisioner_kind_parse(config_get("KOOISV_PROVISIONER"), &cfg.prov.kind))
        die("KOOISV_PROVISIONER", "must be builtin or webhook");
    cfg.prov.frontend_template = config_get("KOOISV_FRONTEND_URL_TEMPLATE");
    cfg.prov.admin_template = config_get("KOOISV_ADMIN_URL_TEMPLATE");
    cfg.prov.memo = config_get("KOOISV_PROVISION_MEMO");
    cfg.prov.webhook_url = config_get("KOOISV_WEBHOOK_URL");
    cfg.prov.webhook_secret = config_get("KOOISV_WEBHOOK_SECRET");
    cfg.prov.webhook_ca_file = config_get("KOOISV_WEBHOOK_CA_FILE");
    cfg.prov.webhook_timeout_ms = (int)config_get_long("KOOISV_WEBHOOK_TIMEOUT_MS", 100, 60000);
    if (strncmp(cfg.prov.frontend_template, "https://", 8) != 0 &&
        strncmp(cfg.prov.frontend_template, "http://", 7) != 0)
        die("KOOISV_FRONTEND_URL_TEMPLATE", "must be an http(s) URL");
    if (cfg.prov.kind == PROVISIONER_WEBHOOK) {
        const char *why = NULL;
        if (strncmp(cfg.prov.webhook_url, "https://", 8) != 0 &&
            strncmp(cfg.prov.webhook_url, "http://", 7) != 0)
            die("KOOISV_WEBHOOK_URL", "required (an http(s) URL) with KOOISV_PROVISIONER=webhook");
        if (!config_key_is_strong(cfg.prov.webhook_secret, &why))
            die("KOOISV_WEBHOOK_SECRET", why ? why : "missing or weak");
    }

    cfg.job_threads = (int)config_get_long("KOOISV_PROVISION_THREADS", 1, 32);
    cfg.poll_ms = (int)config_get_long("KOOISV_PROVISION_POLL_MS", 50, 600000);
    cfg.lease_ms = (int)config_get_long("KOOISV_PROVISION_LEASE_MS", 1000, 3600000);
    cfg.backoff_ms = (int)config_get_long("KOOISV_PROVISION_BACKOFF_MS", 10, 3600000);
    cfg.backoff_max_ms = (int)config_get_long("KOOISV_PROVISION_BACKOFF_MAX_MS", 10, 86400000);
    cfg.max_attempts = (int)config_get_long("KOOISV_PROVISION_MAX_ATTEMPTS", 1, 1000);
    /* A lease must outlive the slowest step, or a healthy job would be taken over mid-flight. */
    int slowest = cfg.market.timeout_ms > cfg.prov.webhook_timeout_ms ? cfg.market.timeout_ms
                                                                      : cfg.prov.webhook_timeout_ms;
    if (cfg.lease_ms < slowest + 2000)
        die("KOOISV_PROVISION_LEASE_MS", "must exceed the longest HTTP timeout by 2000 ms");

    char host[64] = "localhost";
    gethostname(host, sizeof host - 1);
    snprintf(cfg.replica_id, sizeof cfg.replica_id, "%s:%d", host, (int)getpid());
}

static void *worker_init(int index, void *arg)
{
    order_worker_t *w = xcalloc(1, sizeof *w);
    w->cfg = arg;
    w->index = index;
    w->conn = orderdb_connect(w->cfg, "kooisv-order", 30);
    if (!w->conn) {
        free(w);
        return NULL;
    }
    return w;
}

static void worker_fini(void *state)
{
    order_worker_t *w = state;
    if (!w)
        return;
    PQfinish(w->conn);
    free(w);
}

static void handle(void *state, svc_call_t *call)
{
    order_worker_t *w = state;
    const Kooisv__Envelope *env = svc_call_request(call);
    const char *rid = svc_call_rid(call);
    if (env->deadline_ms > 0 && time_now_ms() > env->deadline_ms) {
        /* The caller gave up; the marketplace retries, and every call is idempotent. */
        log_warn(rid, "deadline passed before the call was served; skipped");
        svc_call_result(call, RC_INTERNAL, "deadline exceeded");
        return;
    }
    if (!orderdb_ensure(w->conn)) {
        log_error(rid, "database unavailable");
        svc_call_result(call, RC_INTERNAL, "database unavailable; please retry");
        return;
    }
    switch (env->body_case) {
    case KOOISV__ENVELOPE__BODY_PING:
        svc_call_result(call, RC_OK, "pong");
        break;
    case KOOISV__ENVELOPE__BODY_NEW_INSTANCE:
        lifecycle_new(w, call);
        break;
    case KOOISV__ENVELOPE__BODY_QUERY_INSTANCE:
        query_instances(w, call);
        break;
    case KOOISV__ENVELOPE__BODY_REFRESH_INSTANCE:
        lifecycle_refresh(w, call);
        break;
    case KOOISV__ENVELOPE__BODY_UPDATE_INSTANCE_STATUS:
        lifecycle_status(w, call);
        break;
    case KOOISV__ENVELOPE__BODY_RELEASE_INSTANCE:
        lifecycle_release(w, call);
        break;
    case KOOISV__ENVELOPE__BODY_UPGRADE_INSTANCE:
        lifecycle_upgrade(w, call);
        break;
    case KOOISV__ENVELOPE__BODY_CHANGE_INSTANCE_CHECK:
        lifecycle_change_check(w, call);
        break;
    case KOOISV__ENVELOPE__BODY_GET_LICENSE_ASYNC:
        license_issue(w, call);
        break;
    case KOOISV__ENVELOPE__BODY_ADMIN:
        admin_handle(w, call);
        break;
    default:
        svc_call_result(call, RC_INVALID, "the order service does not serve this request");
        break;
    }
}

int main(int argc, char **argv)
{
    config_load("kooisv-order",
                "order service: instance life cycle, idempotency, provisioning, order events", vars,
                sizeof vars / sizeof vars[0], argc, argv);
    log_init("order");
    config_build();
    zmqauth_config_server("kooisv-order");

    /* Migrate before anything serves; replicas starting together queue on the advisory lock. */
    PGconn *conn = pg_connect(cfg.dsn, "kooisv-order-migrate", 60);
    size_t nstmts;
    const pg_stmt_t *stmts = orderdb_statements(&nstmts);
    if (!conn || pg_migrate(conn, "orders", service_migrations, service_migrations_count) != 0 ||
        pg_prepare_all(conn, stmts, nstmts) != 0 ||
        zonemark_reconcile(conn, cfg.market.zone) != 0) {
        log_error(NULL, "cannot migrate schema orders; exiting");
        if (conn)
            PQfinish(conn);
        return 1;
    }
    PQfinish(conn);

    /* Every later connection (and reconnection) bounds its statements, so that a stuck
     * database turns into a quick 000005 instead of a hung gateway call. */
    char *opts =
        xasprintf("%s%s-c statement_timeout=%ld -c lock_timeout=%ld "
                  "-c idle_in_transaction_session_timeout=60000",
                  getenv("PGOPTIONS") ? getenv("PGOPTIONS") : "", getenv("PGOPTIONS") ? " " : "",
                  config_get_long("KOOISV_PG_STATEMENT_TIMEOUT_MS", 100, 600000),
                  config_get_long("KOOISV_PG_STATEMENT_TIMEOUT_MS", 100, 600000));
    setenv("PGOPTIONS", opts, 1);
    free(opts);

    if (jobs_start(&cfg) != 0)
        return 1;
    svc_def_t def = {.name = "order",
                     .bind = config_get("KOOISV_BIND"),
                     .workers = (int)config_get_long("KOOISV_WORKERS", 1, 256),
                     .worker_init = worker_init,
                     .worker_fini = worker_fini,
                     .handle = handle,
                     .arg = &cfg};
    int rc = svc_run(&def);
    svc_stop(); /* also when svc_run failed early: the job threads must end */
    jobs_join();
    log_info(NULL, "stopped");
    return rc;
}
