# shellcheck shell=bash
# env.sh: the one place that maps the state folder (lib.sh: KV_STATE, KV_SECRETS, KV_PORT_*)
# into each process's environment. Secrets are always passed as NAME_FILE paths into the
# secrets folder, never as values and never on a command line. Sourced by lib.sh.

# kv_env_for <proc>: fill KV_ENV with NAME=VALUE words for `env -i` (nothing else is inherited
# except the few variables below, so a key exported in the caller's shell never leaks in).
# Then KEY=VALUE lines of <state>/env/all.env and <state>/env/<proc>.env are added on top: the
# place for settings such as KOOISV_FRONTEND_URL_TEMPLATE (secrets there as *_FILE paths).
kv_env_for() {
    local proc=$1 v
    KV_ENV=("PATH=/usr/local/bin:/usr/bin:/bin" "KOOISV_LOG_LEVEL=${KOOISV_LOG_LEVEL:-info}")
    for v in TZ LANG LC_ALL ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS; do
        [[ -n ${!v:-} ]] && KV_ENV+=("$v=${!v}")
    done
    local endpoints=(
        "KOOISV_ORDER_ENDPOINTS=tcp://127.0.0.1:$KV_PORT_ORDER"
        "KOOISV_TENANT_ENDPOINTS=tcp://127.0.0.1:$KV_PORT_TENANT"
        "KOOISV_APP_ENDPOINTS=tcp://127.0.0.1:$KV_PORT_APP"
        "KOOISV_AUDIT_ENDPOINTS=tcp://127.0.0.1:$KV_PORT_AUDIT"
        "KOOISV_BILLING_ENDPOINTS=tcp://127.0.0.1:$KV_PORT_BILLING"
    )
    # CURVE on the ZeroMQ plane: the gateway knows every service's public key; a service admits
    # the gateway's (KOOISV_CURVE_CLIENTS), and order also billing's as a system client that may
    # only pull the order events (events.pending / events.ack).
    local s server_keys=()
    for s in "${KV_SERVICES[@]}"; do
        server_keys+=("KOOISV_${s^^}_SERVER_KEY=$(kv_curve_public "$s")")
    done
    local curve=("KOOISV_CURVE_SECRET_KEY_FILE=$KV_SECRETS/curve-${proc%2}.key")
    [[ $proc == gateway* ]] || curve+=("KOOISV_CURVE_CLIENTS=$(kv_curve_public gateway)")
    [[ $proc == order ]] && curve+=("KOOISV_CURVE_SYSTEM_CLIENTS=$(kv_curve_public billing)")
    local marketplace=(
        "KOOISV_MARKETPLACE_URL=https://127.0.0.1:$KV_PORT_EMULATOR"
        "KOOISV_MARKETPLACE_AK_FILE=$KV_SECRETS/marketplace-ak"
        "KOOISV_MARKETPLACE_SK_FILE=$KV_SECRETS/marketplace-sk"
        "KOOISV_MARKETPLACE_CA_FILE=$KV_TLS/ca.crt"
    )
    # The order service and the emulator must read the marketplace's compact times alike.
    local zone=()
    [[ -n ${KOOISV_MARKETPLACE_TIME_ZONE:-} ]] &&
        zone=("KOOISV_MARKETPLACE_TIME_ZONE=$KOOISV_MARKETPLACE_TIME_ZONE")
    case $proc in
    gateway | gateway2)
        local sfx=""
        [[ $proc == gateway2 ]] && sfx=2
        local listen=KV_PORT_GATEWAY$sfx admin=KV_PORT_ADMIN$sfx metrics=KV_PORT_METRICS$sfx
        KV_ENV+=(
            "KOOISV_LISTEN=$KV_BIND_ADDR:${!listen}"
            "KOOISV_ADMIN_LISTEN=127.0.0.1:${!admin}"
            "KOOISV_METRICS_LISTEN=127.0.0.1:${!metrics}"
            "KOOISV_TLS_CERT_FILE=$KV_TLS/server.crt"
            "KOOISV_TLS_KEY_FILE=$KV_SECRETS/tls-server.key"
            "KOOISV_BASIC_KEY_FILE=$KV_SECRETS/basic-key"
            "KOOISV_KIT_KEY_FILE=$KV_SECRETS/kit-key"
            "KOOISV_ADMIN_TOKENS_FILE=$KV_SECRETS/admin-tokens"
            "${endpoints[@]}" "${server_keys[@]}" "${curve[@]}"
        )
        # The suite's second gateway stands behind a load balancer on 127.0.0.1 (test proxyproto).
        [[ $proc == gateway2 ]] && KV_ENV+=("KOOISV_PROXY_PROTOCOL_FROM=127.0.0.1/32")
        ;;
    order)
        KV_ENV+=(
            "KOOISV_BIND=tcp://127.0.0.1:$KV_PORT_ORDER"
            "${curve[@]}"
            "KOOISV_PG_DSN_FILE=$KV_SECRETS/pg-kooisv_order.dsn"
            "KOOISV_BASIC_KEY_FILE=$KV_SECRETS/basic-key"
            "KOOISV_DATA_KEY_FILE=$KV_SECRETS/data-key"
            "KOOISV_LICENSE_KEY_FILE=$KV_SECRETS/license-private.pem"
            "${endpoints[@]}" "${marketplace[@]}" "${zone[@]}"
        )
        ;;
    tenant)
        KV_ENV+=(
            "KOOISV_BIND=tcp://127.0.0.1:$KV_PORT_TENANT"
            "${curve[@]}"
            "KOOISV_PG_DSN_FILE=$KV_SECRETS/pg-kooisv_tenant.dsn"
            "KOOISV_MARKETPLACE_CA_FILE=$KV_TLS/ca.crt"
        )
        ;;
    app)
        KV_ENV+=(
            "KOOISV_BIND=tcp://127.0.0.1:$KV_PORT_APP"
            "${curve[@]}"
            "KOOISV_PG_DSN_FILE=$KV_SECRETS/pg-kooisv_app.dsn"
            "KOOISV_DATA_KEY_FILE=$KV_SECRETS/data-key"
            "KOOISV_APP_RSA_PRIVATE_KEY_FILE=$KV_SECRETS/rsa-private.pem"
            "KOOISV_MARKETPLACE_CA_FILE=$KV_TLS/ca.crt"
        )
        ;;
    billing)
        KV_ENV+=(
            "KOOISV_BIND=tcp://127.0.0.1:$KV_PORT_BILLING"
            "${curve[@]}"
            "KOOISV_PG_DSN_FILE=$KV_SECRETS/pg-kooisv_billing.dsn"
            "KOOISV_BASIC_KEY_FILE=$KV_SECRETS/basic-key"
            "KOOISV_MARKETPLACE_URL=https://127.0.0.1:$KV_PORT_EMULATOR"
            "KOOISV_MARKETPLACE_CA_FILE=$KV_TLS/ca.crt"
            "KOOISV_ORDER_ENDPOINTS=tcp://127.0.0.1:$KV_PORT_ORDER"
            "KOOISV_ORDER_SERVER_KEY=$(kv_curve_public order)"
            # products whose usage is pushed per UTC day (empty = all hourly)
            "KOOISV_BILLING_DAILY_PRODUCTS=${KOOISV_BILLING_DAILY_PRODUCTS:-}"
        )
        ;;
    audit)
        KV_ENV+=(
            "KOOISV_BIND=tcp://127.0.0.1:$KV_PORT_AUDIT"
            "${curve[@]}"
            "KOOISV_PG_DSN_FILE=$KV_SECRETS/pg-kooisv_audit.dsn"
            "KOOISV_AUDIT_CHAIN_KEY_FILE=$KV_SECRETS/audit-chain-key"
            "KOOISV_AUDIT_HEAD_PATH=$KV_AUDIT_HEAD"
        )
        ;;
    audit-migrate)
        # kooisv-audit --migrate, run by the runner itself before audit starts: the only
        # process that is given the schema owner's connection.
        KV_ENV+=(
            "KOOISV_PG_MIGRATE_DSN_FILE=$KV_SECRETS/pg-kooisv_audit_owner.dsn"
            "KOOISV_AUDIT_CHAIN_KEY_FILE=$KV_SECRETS/audit-chain-key"
        )
        ;;
    emulator)
        KV_ENV+=(
            "KOOISV_EMULATOR_LISTEN=127.0.0.1:$KV_PORT_EMULATOR"
            "KOOISV_TLS_CERT_FILE=$KV_TLS/server.crt"
            "KOOISV_TLS_KEY_FILE=$KV_SECRETS/tls-server.key"
            "KOOISV_BASIC_KEY_FILE=$KV_SECRETS/basic-key"
            "KOOISV_MARKETPLACE_AK_FILE=$KV_SECRETS/marketplace-ak"
            "KOOISV_MARKETPLACE_SK_FILE=$KV_SECRETS/marketplace-sk"
            "KOOISV_EMULATOR_WEBHOOK_SECRET_FILE=$KV_SECRETS/webhook-secret"
            "${zone[@]}"
        )
        ;;
    *) kv_die "unknown process $proc" ;;
    esac
    local f line
    for f in "$KV_STATE/env/all.env" "$KV_STATE/env/$proc.env"; do
        [[ -f $f ]] || continue
        while IFS= read -r line || [[ -n $line ]]; do
            [[ $line =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] && KV_ENV+=("$line")
        done <"$f"
    done
}
