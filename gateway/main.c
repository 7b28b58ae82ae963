/* kooisv-gateway: the marketplace-facing HTTPS server (ARCHITECTURE.md "Processes"). */
#include <event2/thread.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "config.h"
#include "gateway.h"
#include "log.h"
#include "metrics.h"
#include "peer.h"
#include "proxyproto.h"
#include "readiness.h"
#include "srclimit.h"
#include "zmqauth.h"

static const config_var_t config_vars[] = {
    {"KOOISV_LISTEN", "0.0.0.0:8443", 0, "HTTPS listen address host:port (marketplace calls)"},
    {"KOOISV_GATEWAY_THREADS", "2", 0, "worker threads, each with its own SO_REUSEPORT listener"},
    {"KOOISV_TLS_CERT_FILE", NULL, CONFIG_REQUIRED, "PEM certificate chain for HTTPS"},
    {"KOOISV_TLS_KEY_FILE", NULL, CONFIG_REQUIRED, "PEM private key for HTTPS"},
    {"KOOISV_PRODUCE_PATH", "/produce", 0,
     "production URL path; kit calls arrive at <path>/produceAPI/v2/<name>"},
    {"KOOISV_BASIC_KEY", NULL, CONFIG_REQUIRED | CONFIG_SECRET | CONFIG_KEY,
     "seller key: verifies basic-interface signatures and signs their answers"},
    {"KOOISV_KIT_KEY", NULL, CONFIG_REQUIRED | CONFIG_SECRET | CONFIG_KEY,
     "kit key: verifies kit sync signatures and signs their answers"},
    {"KOOISV_MAX_BODY_BYTES", "1048576", 0, "largest request body; larger ones get HTTP 413"},
    {"KOOISV_MAX_HEADER_BYTES", "16384", 0, "largest request header block"},
    {"KOOISV_IDLE_TIMEOUT_S", "30", 0,
     "read/write inactivity timeout, and time allowed between keep-alive requests"},
    {"KOOISV_HEADER_TIMEOUT_S", "10", 0,
     "time a new connection has to complete TLS and deliver its first request"},
    {"KOOISV_MAX_CONNECTIONS", "1024", 0, "open client connections; more are refused"},
    {"KOOISV_REQUEST_DEADLINE_MS", "3000", 0,
     "per-request budget for audit + service; past it the answer is 000005"},
    {"KOOISV_AUTH_FAIL_RATE", "10", 0,
     "refused unauthenticated calls per second a source may make before it is throttled (0 = "
     "no limit)"},
    {"KOOISV_AUTH_FAIL_BURST", "100", 0,
     "refused unauthenticated calls a source may make at once before the rate applies"},
    {"KOOISV_REJECT_RECORDS_PER_MINUTE", "120", 0,
     "refused unauthenticated calls of one source recorded one by one per minute; the rest "
     "as one summary entry (0 = all)"},
    {"KOOISV_TRUSTED_PROXIES", "", 0,
     "comma list of proxy IPs whose X-Forwarded-For names the client"},
    {"KOOISV_PROXY_PROTOCOL_FROM", "", 0,
     "comma list of CIDRs or addresses (load balancers) whose PROXY protocol v2 header names "
     "the client on the marketplace and admin ports; a header from any other peer is refused "
     "(empty = none accepted)"},
    {"KOOISV_ORDER_ENDPOINTS", "tcp://127.0.0.1:7101", 0, "order service replicas (comma list)"},
    {"KOOISV_TENANT_ENDPOINTS", "tcp://127.0.0.1:7102", 0, "tenant service replicas"},
    {"KOOISV_APP_ENDPOINTS", "tcp://127.0.0.1:7103", 0, "app service replicas"},
    {"KOOISV_AUDIT_ENDPOINTS", "tcp://127.0.0.1:7104", 0,
     "audit service replicas (every call is recorded there first)"},
    {"KOOISV_BILLING_ENDPOINTS", "", 0,
     "billing service replicas (empty = none: usage intake, usage status and exports answer 503)"},
    ZMQAUTH_KEY_CONFIG_VAR,
    {"KOOISV_ORDER_SERVER_KEY", NULL, CONFIG_SECRET,
     "CURVE public key (Z85) the order replicas share; required with their endpoints (public: "
     "the file twin is for Docker secrets)"},
    {"KOOISV_TENANT_SERVER_KEY", NULL, CONFIG_SECRET,
     "CURVE public key of the tenant replicas; required with their endpoints"},
    {"KOOISV_APP_SERVER_KEY", NULL, CONFIG_SECRET,
     "CURVE public key of the app replicas; required with their endpoints"},
    {"KOOISV_AUDIT_SERVER_KEY", NULL, CONFIG_SECRET,
     "CURVE public key of the audit replicas; required"},
    {"KOOISV_BILLING_SERVER_KEY", NULL, CONFIG_SECRET,
     "CURVE public key of the billing replicas; required with their endpoints"},
    {"KOOISV_METRICS_LISTEN", "127.0.0.1:9100", 0, "plain-HTTP /metrics and /healthz address"},
    {"KOOISV_ADMIN_LISTEN", "127.0.0.1:8444", 0, "admin HTTPS API address (operators)"},
    {"KOOISV_ADMIN_TOKENS_FILE", "", 0, "file of operator tokens for the admin API"},
    {"KOOISV_ADMIN_MAX_CALLS", "16", 0,
     "admin API calls in progress at once, all tokens together (more get 429)"},
    {"KOOISV_ADMIN_MAX_CALLS_PER_TOKEN", "4", 0,
     "admin API calls in progress at once per token (an export or follow holds one)"},
    {"KOOISV_ADMIN_SESSION_S", "1800", 0,
     "lifetime of a web console session (cookie), seconds (60..86400)"},
    {"KOOISV_ADMIN_TLS_CERT_FILE", "", 0,
     "PEM certificate for the admin API (empty: KOOISV_TLS_CERT_FILE)"},
    {"KOOISV_ADMIN_TLS_KEY_FILE", "", 0,
     "PEM private key for the admin API (empty: KOOISV_TLS_KEY_FILE)"},
    {"KOOISV_LOG_LEVEL", "info", 0, "debug | info | warn | error"},
};

/* Settings from the loaded configuration into gw (before any thread exists). */
static void settings_load(void)
{
    gw.listen = config_get("KOOISV_LISTEN");
    gw.threads = (int)config_get_long("KOOISV_GATEWAY_THREADS", 1, 64);
    gw.basic_key = config_get("KOOISV_BASIC_KEY");
    gw.kit_key = config_get("KOOISV_KIT_KEY");
    peer_key_id(gw.basic_key, gw.basic_key_id);
    peer_key_id(gw.kit_key, gw.kit_key_id);
    const char *path = config_get("KOOISV_PRODUCE_PATH");
    size_t plen = strlen(path);
    if (path[0] != '/' || plen >= sizeof gw.produce_path - 1 || strpbrk(path, "?# \t"))
        config_die("KOOISV_PRODUCE_PATH: must be an absolute URL path");
    while (plen > 1 && path[plen - 1] == '/')
        plen--;
    snprintf(gw.produce_path, sizeof gw.produce_path, "%.*s", (int)plen, path);
    snprintf(gw.kit_prefix, sizeof gw.kit_prefix, "%s/produceAPI/v2/",
             strcmp(gw.produce_path, "/") == 0 ? "" : gw.produce_path);
    gw.max_body = config_get_long("KOOISV_MAX_BODY_BYTES", 1024, 64L * 1024 * 1024);
    gw.max_headers = config_get_long("KOOISV_MAX_HEADER_BYTES", 1024, 1024 * 1024);
    gw.idle_timeout_s = (int)config_get_long("KOOISV_IDLE_TIMEOUT_S", 1, 3600);
    gw.header_timeout_s = (int)config_get_long("KOOISV_HEADER_TIMEOUT_S", 1, 600);
    gw.max_connections = config_get_long("KOOISV_MAX_CONNECTIONS", 1, 1000000);
    gw.deadline_ms = (int)config_get_long("KOOISV_REQUEST_DEADLINE_MS", 100, 60000);
    gw.srclimit =
        srclimit_new((double)config_get_long("KOOISV_AUTH_FAIL_RATE", 0, 1000000),
                     (int)config_get_long("KOOISV_AUTH_FAIL_BURST", 1, 1000000),
                     (int)config_get_long("KOOISV_REJECT_RECORDS_PER_MINUTE", 0, 1000000), 60000);
    static const char *const endpoint_vars[SVC__COUNT] = {
        [SVC_ORDER] = "KOOISV_ORDER_ENDPOINTS",     [SVC_TENANT] = "KOOISV_TENANT_ENDPOINTS",
        [SVC_APP] = "KOOISV_APP_ENDPOINTS",         [SVC_AUDIT] = "KOOISV_AUDIT_ENDPOINTS",
        [SVC_BILLING] = "KOOISV_BILLING_ENDPOINTS",
    };
    static const char *const server_key_vars[SVC__COUNT] = {
        [SVC_ORDER] = "KOOISV_ORDER_SERVER_KEY",     [SVC_TENANT] = "KOOISV_TENANT_SERVER_KEY",
        [SVC_APP] = "KOOISV_APP_SERVER_KEY",         [SVC_AUDIT] = "KOOISV_AUDIT_SERVER_KEY",
        [SVC_BILLING] = "KOOISV_BILLING_SERVER_KEY",
    };
    for (int s = 0; s < SVC__COUNT; s++) {
        gw.endpoints[s] = config_get(endpoint_vars[s]);
        gw.server_keys[s] = config_get(server_key_vars[s]);
        if (*gw.endpoints[s] && !zmqauth_key_valid(gw.server_keys[s]))
            config_die(
                "%s: required with %s: the CURVE public key (Z85, 40 characters) of its replicas",
                server_key_vars[s], endpoint_vars[s]);
    }
    if (!*gw.endpoints[SVC_AUDIT])
        config_die("KOOISV_AUDIT_ENDPOINTS: required (no call may run unrecorded)");
    if (strcmp(gw.basic_key, gw.kit_key) == 0)
        log_warn(NULL, "KOOISV_BASIC_KEY and KOOISV_KIT_KEY are the same key");
    char err[256];
    gw.trusted = peer_trust_new(config_get("KOOISV_TRUSTED_PROXIES"), err, sizeof err);
    if (!gw.trusted)
        config_die("KOOISV_TRUSTED_PROXIES: %s", err);
    gw.proxy_trust =
        proxyproto_trust_new(config_get("KOOISV_PROXY_PROTOCOL_FROM"), err, sizeof err);
    if (!gw.proxy_trust)
        config_die("KOOISV_PROXY_PROTOCOL_FROM: %s", err);
    gw.tls = tlsctx_new(config_get("KOOISV_TLS_CERT_FILE"), config_get("KOOISV_TLS_KEY_FILE"), err,
                        sizeof err);
    if (!gw.tls)
        config_die("TLS: %s", err);
    proxyproto_enable(gw.tls, gw.proxy_trust, "");
    metrics_set_cert_expiry(false, tlsctx_not_after(gw.tls));
}

int main(int argc, char **argv)
{
    config_load("kooisv-gateway",
                "Answers the marketplace's signed HTTPS calls, records each with the audit "
                "service and routes it to the owning service over ZeroMQ.",
                config_vars, sizeof config_vars / sizeof config_vars[0], argc, argv);
    log_init("gateway");
    settings_load();
    zmqauth_config_client("kooisv-gateway");

    /* Signals go to the main thread only: block them before any thread starts. */
    signal(SIGPIPE, SIG_IGN);
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    if (evthread_use_pthreads() != 0)
        config_die("libevent without thread support");

    if (metrics_listener_start(config_get("KOOISV_METRICS_LISTEN"), gw.endpoints,
                               gw.server_keys) != 0)
        return 1;
    if (server_start() != 0)
        return 1;
    if (admin_start() != 0) {
        log_error(NULL, "admin API did not start");
        server_stop();
        metrics_listener_stop();
        return 1;
    }
    if (readiness_start(gw.endpoints[SVC_AUDIT], gw.server_keys[SVC_AUDIT], 1000) != 0) {
        admin_stop();
        server_stop();
        metrics_listener_stop();
        return 1;
    }
    metrics_set_serving(true);
    log_info(NULL, "gateway ready");

    int sig = 0;
    sigwait(&stop, &sig);
    log_info(NULL, "signal %d: stopping", sig);
    metrics_set_serving(false);
    admin_stop();
    server_stop();
    readiness_stop();
    metrics_listener_stop();
    SSL_CTX_free(gw.tls);
    peer_trust_destroy(&gw.trusted);
    proxyproto_trust_destroy(&gw.proxy_trust);
    srclimit_destroy(&gw.srclimit);
    log_info(NULL, "gateway stopped");
    return 0;
}
