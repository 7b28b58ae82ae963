/* orderconf: the order service's settings beyond the runtime's (main.c lists the variables):
 * keys, the marketplace, the provisioner, the job threads, the session timeouts. */
#include "order.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "cryptoutil.h"
#include "sealbox.h"

void orderconf_load(order_config_t *cfg)
{
    cfg->dsn = config_get("KOOISV_PG_DSN");
    if (sealbox_parse_key(config_get("KOOISV_DATA_KEY"), cfg->data_key) != 0)
        svcrt_die("KOOISV_DATA_KEY", "must be 32 bytes as 64 hex characters or base64");
    char license_why[160];
    if (!(cfg->license_signer =
              licensesig_new(config_get("KOOISV_LICENSE_KEY"), license_why, sizeof license_why)))
        svcrt_die("KOOISV_LICENSE_KEY", license_why);
    /* Credentials in events are sealed under a key derived from the webhook secret, which the
     * seller's application holds (README "Order events"). */
    const char *event_secret = config_get("KOOISV_SYNC_WEBHOOK_SECRET");
    if (event_secret && *event_secret) {
        static const char label[] = "kooisv-order-credentials";
        hmac_sha256(event_secret, strlen(event_secret), label, sizeof label - 1, cfg->event_key);
        cfg->event_key_set = true;
    }
    cfg->basic_key = config_get("KOOISV_BASIC_KEY");
    cfg->encrypt_type = config_get("KOOISV_ENCRYPT_TYPE");
    if (strcmp(cfg->encrypt_type, "1") != 0 && strcmp(cfg->encrypt_type, "2") != 0)
        svcrt_die("KOOISV_ENCRYPT_TYPE", "must be 1 or 2");

    cfg->market.url = config_get("KOOISV_MARKETPLACE_URL");
    if (strncmp(cfg->market.url, "https://", 8) != 0 && strncmp(cfg->market.url, "http://", 7) != 0)
        svcrt_die("KOOISV_MARKETPLACE_URL", "must be an http(s) URL");
    cfg->market.ak = config_get("KOOISV_MARKETPLACE_AK");
    cfg->market.sk = config_get("KOOISV_MARKETPLACE_SK");
    cfg->market.ca_file = config_get("KOOISV_MARKETPLACE_CA_FILE");
    cfg->market.timeout_ms = (int)config_get_long("KOOISV_MARKETPLACE_TIMEOUT_MS", 100, 60000);
    char zone_why[256];
    if (!(cfg->market.zone =
              time_zone_new(config_get("KOOISV_MARKETPLACE_TIME_ZONE"), zone_why, sizeof zone_why)))
        svcrt_die("KOOISV_MARKETPLACE_TIME_ZONE", zone_why);

    if (!provisioner_kind_parse(config_get("KOOISV_PROVISIONER"), &cfg->prov.kind))
        svcrt_die("KOOISV_PROVISIONER", "must be builtin or webhook");
    cfg->prov.frontend_template = config_get("KOOISV_FRONTEND_URL_TEMPLATE");
    cfg->prov.admin_template = config_get("KOOISV_ADMIN_URL_TEMPLATE");
    cfg->prov.memo = config_get("KOOISV_PROVISION_MEMO");
    cfg->prov.webhook_url = config_get("KOOISV_WEBHOOK_URL");
    cfg->prov.webhook_secret = config_get("KOOISV_WEBHOOK_SECRET");
    cfg->prov.webhook_ca_file = config_get("KOOISV_WEBHOOK_CA_FILE");
    cfg->prov.webhook_timeout_ms = (int)config_get_long("KOOISV_WEBHOOK_TIMEOUT_MS", 100, 60000);
    if (strncmp(cfg->prov.frontend_template, "https://", 8) != 0 &&
        strncmp(cfg->prov.frontend_template, "http://", 7) != 0)
        svcrt_die("KOOISV_FRONTEND_URL_TEMPLATE", "must be an http(s) URL");
    if (cfg->prov.kind == PROVISIONER_WEBHOOK) {
        const char *why = NULL;
        if (strncmp(cfg->prov.webhook_url, "https://", 8) != 0 &&
            strncmp(cfg->prov.webhook_url, "http://", 7) != 0)
            svcrt_die("KOOISV_WEBHOOK_URL",
                      "required (an http(s) URL) with KOOISV_PROVISIONER=webhook");
        if (!config_key_is_strong(cfg->prov.webhook_secret, &why))
            svcrt_die("KOOISV_WEBHOOK_SECRET", why ? why : "missing or weak");
    }

    cfg->job_threads = (int)config_get_long("KOOISV_PROVISION_THREADS", 1, 32);
    cfg->poll_ms = (int)config_get_long("KOOISV_PROVISION_POLL_MS", 50, 600000);
    cfg->lease_ms = (int)config_get_long("KOOISV_PROVISION_LEASE_MS", 1000, 3600000);
    cfg->backoff_ms = (int)config_get_long("KOOISV_PROVISION_BACKOFF_MS", 10, 3600000);
    cfg->backoff_max_ms = (int)config_get_long("KOOISV_PROVISION_BACKOFF_MAX_MS", 10, 86400000);
    cfg->max_attempts = (int)config_get_long("KOOISV_PROVISION_MAX_ATTEMPTS", 1, 1000);
    /* A lease must outlive the slowest step, or a healthy job would be taken over mid-flight. */
    int slowest = cfg->market.timeout_ms > cfg->prov.webhook_timeout_ms
                      ? cfg->market.timeout_ms
                      : cfg->prov.webhook_timeout_ms;
    cfg->job_step_ms = slowest + 2000;
    if (cfg->lease_ms < cfg->job_step_ms)
        svcrt_die("KOOISV_PROVISION_LEASE_MS", "must exceed the longest HTTP timeout by 2000 ms");

    char host[64] = "localhost";
    gethostname(host, sizeof host - 1);
    snprintf(cfg->replica_id, sizeof cfg->replica_id, "%s:%d", host, (int)getpid());

    /* Every connection (and reconnection) bounds its statements, so that a stuck database
     * turns into a quick 000005 instead of a hung gateway call. */
    static char session_sql[200];
    long timeout_ms = config_get_long("KOOISV_PG_STATEMENT_TIMEOUT_MS", 100, 600000);
    snprintf(session_sql, sizeof session_sql,
             "SET search_path = orders; SET statement_timeout = %ld; SET lock_timeout = %ld;"
             " SET idle_in_transaction_session_timeout = 60000",
             timeout_ms, timeout_ms);
    cfg->session_sql = session_sql;
}
