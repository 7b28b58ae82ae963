#!/usr/bin/env bash
# deploy: the Compose stack built from Debian packages, at scale, under faults (issue 10).
# Builds the images (build-base-image.sh: debootstrap base, then every image), checks that no
# image carries a private key, starts the stack with three gateways behind the load balancer,
# two replicas of every service, the emulator as the marketplace and the monitoring profile
# (Prometheus). Rolling restart: a steady signed load (kooisv-bench from the build folder, at a
# fixed rate through the balancer's published port) runs while each gateway and then each
# replica of order, tenant, app, audit and billing is restarted one at a time (SIGTERM, graceful
# stop); no call may fail (no HTTP error, no cut or refused connection, no answer but 000000),
# except that the marketplace's contract
# allows 000005 "retry later": such an answer is retried (kooisv-bench --retry, as the
# marketplace does) and the retry must be answered 000000, and at most 1 call in 50 may need
# one; every call answered 000000 has its intent and 000000 outcome in the audit trail, and every
# order, renewal and tenant is stored exactly once (a retried call is not applied twice).
# Monitoring: Prometheus scrapes every gateway replica (`up` = 1) and has loaded the alert
# rules. Then it drives signed order lifecycle calls and tenant syncs through the balancer from
# a client container with a known address, kills one gateway and one order replica midway, and
# checks that every call answered 000000 is in the database exactly once, that the audit trail
# shows the client's address (not the balancer's), that kooisvctl works through the balancer's
# admin port (instance list, audit verify), that usage reported there with the meter token is
# stored once (billing), and that a backup taken with `exec -T pg_dump` restores with the
# guide's command. Compose: `docker compose` (v2) when the engine's CLI has it, else
# docker-compose (v1, Debian 12's).
# Opt-in (it builds every image): KOOISV_DEPLOY_TEST=1 on a machine with an engine, or
# KOOISV_DEPLOY_START_ENGINE=1 (set by .ci/run and the runner's `deploy-test` verb), which as root
# first installs docker.io, docker-compose and debootstrap and starts dockerd in the background.
# Exit 77 (a counted skip) when not opted in or when no Docker engine answers (`docker info`).
# The debootstrap base image is reused when present (KOOISV_DEPLOY_REBUILD_BASE=1 rebuilds it).
#   tests/deploy/run.sh <build dir>
set -uo pipefail
build=${1:?usage: run.sh <build dir>}
repo=$(cd "$(dirname "$0")/../.." && pwd)
t_start=$(date +%s)
say() { printf '[deploy] %4ds %s\n' "$(($(date +%s) - t_start))" "$*"; }
die() {
    say "FAIL: $*"
    if [ "${stack_started:-0}" = 1 ]; then
        dc ps >"$work/ps.log" 2>&1
        dc logs --no-color >"$work/compose.log" 2>&1
        say "container states: $work/ps.log, logs: $work/compose.log"
        tail -n 30 "$work/ps.log"
    fi
    exit 1
}

# Opt-in: it builds every image (minutes of CPU), so a developer's `kooisv-local test` skips it even
# where an engine answers. CI (.ci/run) and the runner's deploy-test verb set
# KOOISV_DEPLOY_START_ENGINE=1; KOOISV_DEPLOY_TEST=1 runs it on an engine that is already there.
if [ "${KOOISV_DEPLOY_TEST:-0}" != 1 ] && [ "${KOOISV_DEPLOY_START_ENGINE:-0}" != 1 ]; then
    say "SKIP: opt-in (KOOISV_DEPLOY_TEST=1, or deploy/local/kooisv-local deploy-test as root)"
    exit 77
fi
engine_up() { docker info >/dev/null 2>&1; }
if ! engine_up && [ "${KOOISV_DEPLOY_START_ENGINE:-0}" = 1 ] && [ "$(id -u)" = 0 ]; then
    say "installing docker.io docker-compose debootstrap and starting dockerd"
    pkgs=(docker.io docker-compose debootstrap)
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${pkgs[@]}" >"$build/deploy-apt.log" 2>&1 ||
        { apt-get update >>"$build/deploy-apt.log" 2>&1 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y "${pkgs[@]}" >>"$build/deploy-apt.log" 2>&1; } ||
        say "apt-get install failed (see $build/deploy-apt.log)"
    if command -v dockerd >/dev/null; then
        # Detached from the test's output pipes; it outlives the test (a CI machine is thrown away).
        setsid nohup dockerd </dev/null >"$build/dockerd.log" 2>&1 &
        for _ in $(seq 1 60); do engine_up && break; sleep 1; done
        engine_up || say "dockerd did not answer within 60 s; its log: $(tail -n 3 "$build/dockerd.log")"
    fi
fi
if ! engine_up; then
    say "SKIP: no Docker engine answers (docker info); run deploy/local/kooisv-local deploy-test as root to install and start one"
    exit 77
fi
compose=(docker compose)
docker compose version >/dev/null 2>&1 || compose=(docker-compose)
"${compose[@]}" version >/dev/null 2>&1 || { say "SKIP: neither docker compose nor docker-compose"; exit 77; }
say "compose: ${compose[*]} ($("${compose[@]}" version --short 2>/dev/null || echo '?'))"
bench=$build/tools/bench/kooisv-bench
[ -x "$bench" ] || { say "FAIL: $bench is not built (the rolling restart's load)"; exit 1; }

work=$build/deploy-test
rm -rf "$work" && mkdir -p "$work"
cp -r "$repo/deploy/docker/." "$work/"
rm -rf "$work/secrets"
export COMPOSE_PROJECT_NAME=kooisvdeploytest KOOISV_HTTPS_PORT=18443 KOOISV_ADMIN_PORT=18444
export KOOISV_MARKETPLACE_URL=https://emulator:9443 KOOISV_MARKETPLACE_CA_FILE=/run/secrets/ca.crt
cd "$work" || exit 1
dc() { "${compose[@]}" -f "$work/docker-compose.yml" --profile emulator --profile monitoring "$@"; }
# The client container first: while it is attached to the frontend network, `down` cannot remove
# that network and stops before the volumes (the next run then meets the old database).
# `down` also stops before the volumes when the engine holds a stale endpoint on one of the networks
# (left by a container killed at the wrong moment: "has active endpoints" with none listed), so
# the project's volumes are removed by their label as well, and a network that cannot go is said.
cleanup() {
    docker rm -f kooisv-deploy-client >/dev/null 2>&1
    dc down -v --remove-orphans >/dev/null 2>&1
    local label=com.docker.compose.project=$COMPOSE_PROJECT_NAME net
    docker volume ls -q --filter "label=$label" | xargs -r docker volume rm -f >/dev/null 2>&1
    for net in $(docker network ls -q --filter "label=$label"); do
        docker network rm "$net" >/dev/null 2>&1 ||
            say "note: the engine keeps network $(docker network inspect -f '{{.Name}}' "$net" 2>/dev/null) (a stale endpoint); compose reuses it"
    done
}
cleanup # what an interrupted run left behind
trap cleanup EXIT

# The base image (debootstrap) is built once per engine; KOOISV_DEPLOY_REBUILD_BASE=1 rebuilds it.
# The process images are always rebuilt (Docker's cache keeps unchanged layers).
build_args=()
if [ "${KOOISV_DEPLOY_REBUILD_BASE:-0}" != 1 ] && docker image inspect kooisv/debian:12 >/dev/null 2>&1; then
    build_args=(--images-only)
fi
say "building the images from Debian packages ${build_args[*]}"
t0=$(date +%s)
"$repo/deploy/docker/build-base-image.sh" "${build_args[@]}" >"$work/build.log" 2>&1 ||
    die "image build (see $work/build.log)"
say "images built in $(($(date +%s) - t0)) s"
for img in $(docker image ls --format '{{.Repository}}:{{.Tag}}' 'kooisv/*' | grep ':latest$'); do
    keys=$(docker run --rm --entrypoint bash "$img" -c \
        'grep -rlsI -e "PRIVATE KEY-----" /etc /usr /opt /var /root 2>/dev/null | head -5')
    [ -z "$keys" ] || die "$img carries private keys: $keys"
done
say "no image carries a private key"

# The client calls https://kooisv.test:8443 (a name in the gateway's certificate) at the balancer.
KOOISV_TLS_SAN=DNS:kooisv.test KOOISV_SECRETS_DIR="$work/secrets" "$repo/deploy/docker/gen-secrets.sh" >"$work/secrets.log" 2>&1 || die "gen-secrets.sh"
stack_started=1
gateways=3
up_stack() {
    dc up -d --scale gateway=$gateways --scale order=2 --scale tenant=2 --scale app=2 \
        --scale audit=2 --scale billing=2 >>"$work/up.log" 2>&1
}
# Right after an earlier stack's networks were removed the engine can still hold their address
# pools for a moment ("Pool overlaps"): one more try after a pause.
if ! up_stack; then
    grep -q "Pool overlaps" "$work/up.log" || die "compose up (see $work/up.log)"
    say "compose up: the engine still held an earlier network's addresses; again in 10 s"
    sleep 10
    up_stack || die "compose up (see $work/up.log)"
fi
healthy=0
for _ in $(seq 1 90); do
    if [ "$(docker inspect -f '{{.State.Health.Status}}' $(dc ps -q lb) 2>/dev/null)" = healthy ]; then
        healthy=1 && break
    fi
    sleep 2
done
dc ps >"$work/ps.log" 2>&1
[ "$healthy" = 1 ] || die "the balancer is not healthy after 180 s (see $work/ps.log, dc logs)"
say "stack up and healthy: $(grep -c 'healthy)' "$work/ps.log") containers healthy"
psql_q() { dc exec -T postgres psql -U postgres -d kooisv -XAtc "$1"; }
# $1's health status (healthy, starting, unhealthy) or its state when it has no health check.
health() { docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$1" 2>/dev/null; }
# Wait until container $1 is healthy (at most $2 s).
wait_healthy() {
    local id=$1 i
    for i in $(seq 1 "$2"); do
        [ "$(health "$id")" = healthy ] && return 0
        sleep 1
    done
    return 1
}

# ---- ROLLING RESTART under a steady signed load ----
# kooisv-bench from the build folder calls the balancer's published port from the host at a fixed
# rate (the mix: queryInstance, newInstance, refreshInstance, tenantSync; keep-alive connections),
# retries an answer 000005 up to 3 times 1 s apart (same ids, signed afresh) and logs every
# answer (answer, call, nonce, id). Its keys and CA come from the secrets folder.
mkdir -p "$work/bench-state"
(
    umask 077
    printf 'KOOISV_URL=https://localhost:%s/produce\nKOOISV_CA_FILE=%s\nKOOISV_STATE_DIR=%s\n' \
        "$KOOISV_HTTPS_PORT" "$work/secrets/ca.crt" "$work/bench-state"
    printf 'KOOISV_BASIC_KEY=%s\nKOOISV_KIT_KEY=%s\n' "$(cat "$work/secrets/basic-key")" \
        "$(cat "$work/secrets/kit-key")"
) >"$work/bench.env"
"$bench" --env-file "$work/bench.env" --workload mix --conns 4 --rate 12 --seconds 1200 \
    --retry 3 --no-nginx --log "$work/bench-calls.log" >"$work/bench.out" 2>"$work/bench.err" &
bench_pid=$!
stop_bench() {
    [ -n "${bench_pid:-}" ] || return 0
    kill -INT "$bench_pid" 2>/dev/null
    local i
    for i in $(seq 1 30); do kill -0 "$bench_pid" 2>/dev/null || break; sleep 1; done
    kill -KILL "$bench_pid" 2>/dev/null
    wait "$bench_pid"
    local rc=$?
    bench_pid=
    return $rc
}
trap 'stop_bench; cleanup' EXIT
# The load runs once its pool of instances is provisioned and calls are logged.
for _ in $(seq 1 120); do
    [ "$(wc -l <"$work/bench-calls.log" 2>/dev/null || echo 0)" -ge 20 ] && break
    kill -0 "$bench_pid" 2>/dev/null || die "kooisv-bench ended early: $(tail -n 3 "$work/bench.err")"
    sleep 1
done
[ "$(wc -l <"$work/bench-calls.log")" -ge 20 ] || die "no steady load after 120 s (see $work/bench.err)"
say "rolling restart: load running (12 calls/s, 4 keep-alive connections through the balancer)"
# Restart every replica of service $1 one at a time: SIGTERM (graceful stop, the compose file's
# grace period), start, wait until healthy, then $2 s more (the balancer's rise checks).
roll() {
    local svc=$1 settle=$2 id t
    for id in $(dc ps -q "$svc"); do
        t=$(date +%s)
        docker restart -t 30 "$id" >/dev/null || die "docker restart $svc $id"
        wait_healthy "$id" 150 || die "$svc $id not healthy 150 s after its restart"
        say "  $svc ${id:0:12} restarted, healthy again in $(($(date +%s) - t)) s"
        sleep "$settle"
    done
}
roll_t0=$(date +%s)
roll gateway 5
for svc in order tenant app audit billing; do
    roll "$svc" 3
done
sleep 3
stop_bench || die "kooisv-bench failed (see $work/bench.err)"
say "rolling restart of $gateways gateways and 2 replicas each of order, tenant, app, audit and billing in $(($(date +%s) - roll_t0)) s"
summary=$(grep -m1 'latency ms' "$work/bench.out") || die "kooisv-bench printed no result (see $work/bench.out)"
calls=$(awk '$1 != "000005-retried"' "$work/bench-calls.log" | wc -l)
retried=$(awk '$1 == "000005-retried"' "$work/bench-calls.log" | wc -l)
say "  load: $calls calls ($(awk '$1 != "000005-retried" {print $2}' "$work/bench-calls.log" | sort | uniq -c |
    awk '{printf "%s%s %s", s, $2, $1; s=", "}')), $retried answers 000005 retried"
say "  ${summary# }"
# No call may fail: every final answer is 000000 (no HTTP error, no cut or refused connection, no
# 000005 left after the retries). A gateway that stops closes its listener, answers what it
# holds with Connection: close and keeps its connections for a moment, so a keep-alive client's
# next call is answered too; the balancer retries a refused connection on another gateway; the
# gateway resends a call that a stopping service replica dropped to another replica. 000005 is
# the marketplace's "retry later" (spec: it retries): allowed for at most 1 call in 50 (on a
# loaded machine an audit intent can miss its third of the deadline), and its retry must succeed.
failed=$(awk '$1 != "000000" && $1 != "000005-retried"' "$work/bench-calls.log" | wc -l)
if [ "$failed" != 0 ]; then
    awk '$1 != "000000" && $1 != "000005-retried"' "$work/bench-calls.log" | head -n 10 | sed 's/^/[deploy]   /'
    die "$failed of $calls calls failed during the rolling restart"
fi
if [ $((retried * 50)) -gt "$calls" ]; then
    grep '^000005-retried' "$work/bench-calls.log" | head -n 10 | sed 's/^/[deploy]   /'
    die "$retried answers 000005 in $calls calls during the rolling restart (at most 1 in 50)"
fi
# Every acknowledged call has its intent and its 000000 outcome in the audit trail (outcomes
# are queued by the gateway: give them a few seconds), and every newInstance, refreshInstance
# and tenantSync is stored exactly once.
check_sql="CREATE TEMP TABLE calls (answer text, call text, nonce text, id text, due_ms bigint,
    latency_us bigint);
COPY calls FROM STDIN (DELIMITER ' ');
$(cat "$work/bench-calls.log")
\\.
SELECT count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM audit.intents i
        JOIN audit.outcomes o ON o.request_id = i.request_id AND o.result_code = '000000'
        WHERE i.nonce = c.nonce)) || ' ' ||
    count(*) FILTER (WHERE c.call = 'newInstance' AND (SELECT count(*) FROM orders.instances n
        WHERE n.order_id = c.id) <> 1) || ' ' ||
    count(*) FILTER (WHERE c.call = 'refreshInstance' AND (SELECT count(*)
        FROM orders.order_applications a WHERE a.order_id = c.id) <> 1) || ' ' ||
    count(*) FILTER (WHERE c.call = 'tenantSync' AND (SELECT count(*) FROM tenants.tenants t
        WHERE t.tenant_id = c.id) <> 1)
  FROM calls c WHERE c.answer = '000000';"
for _ in $(seq 1 15); do
    bad=$(printf '%s\n' "$check_sql" | dc exec -T postgres psql -U postgres -d kooisv -XAtq -v ON_ERROR_STOP=1) ||
        die "checking the calls against the database: $bad"
    [ "$bad" = "0 0 0 0" ] && break
    sleep 2
done
read -r no_audit bad_new bad_renew bad_tenant <<<"$bad"
[ "$no_audit" = 0 ] || die "$no_audit acknowledged calls have no intent with a 000000 outcome in the audit trail"
[ "$bad_new$bad_renew$bad_tenant" = 000 ] ||
    die "acknowledged calls not stored exactly once: $bad_new orders, $bad_renew renewals, $bad_tenant tenants"
say "rolling restart: all $calls calls answered 000000 ($retried after a retry), each in the audit trail, each order, renewal and tenant stored once"
# The two audit replicas share the chain head's folder (a volume): neither may fail to write it.
head_errors=$(dc logs --no-color audit 2>&1 | grep -c 'audit chain head: cannot write')
[ "$head_errors" = 0 ] || die "an audit replica could not write the chain head file: $(dc logs --no-color audit 2>&1 | grep -m1 'cannot write')"
head=$(dc exec -T audit cat /var/lib/kooisv/audit/head 2>/dev/null | tr -d '\r')
[[ $head =~ ^[0-9]+:[0-9a-f]{64}$ ]] || die "the audit chain head file holds '$head'"
say "the audit replicas wrote the chain head ($head) without an error"

# ---- MONITORING: Prometheus (profile monitoring) scrapes every gateway and has the rules ----
# Its API over bash's /dev/tcp inside its container (the image has no curl; backend network only).
prom_get() {
    dc exec -T prometheus bash -c 'exec 3<>/dev/tcp/127.0.0.1/9090 &&
        printf "GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n" "$1" >&3 && cat <&3' _ "$1" |
        sed '1,/^\r\{0,1\}$/d'
}
up_ok=0
for _ in $(seq 1 60); do
    up=$(prom_get '/api/v1/query?query=up%7Bjob%3D%22kooisv-gateway%22%7D' | python3 -c '
import json, sys
r = json.load(sys.stdin)["data"]["result"]
print(sum(1 for x in r if x["value"][1] == "1"), len(r))' 2>/dev/null)
    [ "$up" = "$gateways $gateways" ] && up_ok=1 && break
    sleep 2
done
[ "$up_ok" = 1 ] || die "Prometheus: up{job=\"kooisv-gateway\"} = 1 for ${up%% *} of ${up##* } targets, not $gateways of $gateways"
served=$(prom_get '/api/v1/query?query=sum(kooisv_requests_total%7Bresult_code%3D%22000000%22%7D)' |
    python3 -c 'import json, sys; r = json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else 0)')
[ "${served%%.*}" -gt 0 ] 2>/dev/null || die "Prometheus has no kooisv_requests_total of the load (got '$served')"
rules=$(prom_get '/api/v1/rules' | python3 -c '
import json, sys
g = json.load(sys.stdin)["data"]["groups"]
print(sum(1 for x in g for r in x["rules"] if r["type"] == "alerting"))')
want=$(grep -c '^ *- alert:' "$repo/deploy/prometheus/kooisv-alerts.yml")
[ "$rules" = "$want" ] || die "Prometheus loaded $rules alert rules, deploy/prometheus/kooisv-alerts.yml has $want"
say "Prometheus: up = 1 for all $gateways gateways, ${served%%.*} answered calls counted, $rules alert rules loaded"

# The client: kooisvctl in the gateway image, on the frontend network with a fixed address.
net=${COMPOSE_PROJECT_NAME}_frontend
client_ip=$(docker network inspect -f '{{(index .IPAM.Config 0).Subnet}}' "$net" | sed 's|0/.*|77|')
lb_ip=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$net\").IPAddress}}" $(dc ps -q lb))
# One long-lived client container (docker exec per call is much cheaper than docker run).
docker run -d --name kooisv-deploy-client --network "$net" --ip "$client_ip" --no-healthcheck \
    --add-host "kooisv.test:$lb_ip" \
    -v "$work/secrets/basic-key:/s/basic-key:ro" -v "$work/secrets/kit-key:/s/kit-key:ro" \
    -v "$work/secrets/ca.crt:/s/ca.crt:ro" -v "$work/secrets/rsa-public.pem:/s/rsa-public.pem:ro" \
    -v "$work/secrets/token-operator:/s/token-operator:ro" \
    -v "$work/secrets/token-auditor:/s/token-auditor:ro" \
    -v "$work/secrets/token-meter:/s/token-meter:ro" \
    -e KOOISV_ADMIN_URL="https://kooisv.test:8444" \
    -e KOOISV_URL="https://kooisv.test:8443/produce" \
    -e KOOISV_BASIC_KEY_FILE=/s/basic-key -e KOOISV_KIT_KEY_FILE=/s/kit-key \
    -e KOOISV_CA_FILE=/s/ca.crt -e KOOISV_RSA_PUBLIC_KEY_FILE=/s/rsa-public.pem \
    --entrypoint sleep kooisv/gateway:latest infinity >/dev/null || die "client container"
client() {
    echo "== market $*" >>"$work/client.log"
    docker exec kooisv-deploy-client kooisvctl market "$@" >>"$work/client.log" 2>&1
}
# kooisvctl over the balancer's admin port, with the token of role $1.
admin() {
    local role=$1
    shift
    echo "== admin ($role) $*" >>"$work/client.log"
    docker exec -i -e KOOISV_OPERATOR_TOKEN_FILE="/s/token-$role" kooisv-deploy-client \
        kooisvctl "$@" 2>>"$work/client.log"
}
start_ms=$(($(date +%s) * 1000))
ok_orders=() ok_tenants=()
say "driving calls through the balancer from $client_ip; killing a gateway and an order replica midway"
for i in $(seq 1 40); do
    if [ "$i" = 15 ]; then docker kill "$(dc ps -q gateway | head -1)" >/dev/null; fi
    if [ "$i" = 25 ]; then docker kill "$(dc ps -q order | head -1)" >/dev/null; fi
    o=DT$$-$i
    if client newInstance --orderId "$o" --testFlag 1; then ok_orders+=("$o"); fi
    client queryInstance --instanceId "unknown-$o" || true
    t=dt$$-$i
    if client tenantSync --tenantId "$t" --orderId "$o" --tenantCode "code-$t" --name "deploy-test-$i" --flag 1; then
        ok_tenants+=("$t")
    fi
done
[ "${#ok_orders[@]}" -ge 20 ] || die "only ${#ok_orders[@]} of 40 newInstance calls answered 000000"
# Every id answered 000000 is stored exactly once (one query per table; offenders are printed).
sql_list() { local x out=""; for x in "$@"; do out+="${out:+,}'$x'"; done; printf '%s' "$out"; }
bad=$(psql_q "SELECT string_agg(w.id || ':' || (SELECT count(*) FROM orders.instances i
    WHERE i.order_id = w.id), ' ') FROM unnest(ARRAY[$(sql_list "${ok_orders[@]}")]) AS w(id)
    WHERE (SELECT count(*) FROM orders.instances i WHERE i.order_id = w.id) <> 1")
[ -z "$bad" ] || die "orders answered 000000 but not stored once (id:count): $bad"
if [ "${#ok_tenants[@]}" -gt 0 ]; then
    bad=$(psql_q "SELECT string_agg(w.id || ':' || (SELECT count(*) FROM tenants.tenants t
        WHERE t.tenant_id = w.id), ' ') FROM unnest(ARRAY[$(sql_list "${ok_tenants[@]}")]) AS w(id)
        WHERE (SELECT count(*) FROM tenants.tenants t WHERE t.tenant_id = w.id) <> 1")
    [ -z "$bad" ] || die "tenants answered 000000 but not stored once (id:count): $bad"
fi
[ "${#ok_tenants[@]}" -ge 20 ] || die "only ${#ok_tenants[@]} of 40 tenantSync calls answered 000000"
say "${#ok_orders[@]} orders and ${#ok_tenants[@]} tenants answered 000000, each stored once"
from_client=$(psql_q "SELECT count(*) FROM audit.intents WHERE source_addr = '$client_ip' AND received_ms >= $start_ms")
from_lb=$(psql_q "SELECT count(*) FROM audit.intents WHERE source_addr LIKE '172.31.250.%' AND received_ms >= $start_ms")
[ "$from_client" -ge $((${#ok_orders[@]} + ${#ok_tenants[@]})) ] || die "the trail has $from_client calls from $client_ip"
[ "$from_lb" = 0 ] || die "the trail names the balancer's network as the source of $from_lb calls"
say "the trail shows the client's address ($from_client calls), never the balancer's"

# The admin API through the balancer's admin port: an operator's listing, an auditor's verify of
# the chain the calls above (and the kills) wrote.
# An admin call whose audit intent is not stored in time is refused (HTTP 503 "audit
# unavailable", fail closed): on a loaded machine that happens, so such a refusal is retried.
admin_retry() {
    local i
    for i in 1 2 3; do
        admin "$@" && return 0
        tail -n 1 "$work/client.log" | grep 'audit unavailable' >/dev/null || return 1
        sleep 2
    done
    return 1
}
admin_retry operator instance list >"$work/instances.txt" || die "kooisvctl instance list over lb:8444"
grep -q "${ok_orders[0]:-none}" "$work/instances.txt" || die "instance list lacks order ${ok_orders[0]:-}"
admin_retry auditor audit verify >>"$work/client.log" || die "kooisvctl audit verify over lb:8444 (see client.log)"
say "kooisvctl over the balancer's admin port: instance list, audit verify"

# BILLING: usage reported through the balancer's admin port with the meter token, for a
# pay-per-use order (the emulator's MOCKONDEMAND); stored once, a repeat stores nothing.
od=$(docker exec kooisv-deploy-client kooisvctl market newInstance --orderId MOCKONDEMAND \
    --testFlag 1 --print instanceId 2>>"$work/client.log") || die "newInstance MOCKONDEMAND"
rec="[{\"instanceId\":\"$od\",\"recordId\":\"deploy-$$\",\"quantity\":\"2.5\",\"usedAt\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\"}]"
stored=0
for _ in $(seq 1 45); do # billing learns the instance from order's events
    if printf '%s' "$rec" | admin meter usage add - >>"$work/client.log"; then stored=1 && break; fi
    sleep 2
done
[ "$stored" = 1 ] || die "usage add with the meter token never accepted (see client.log)"
printf '%s' "$rec" | admin meter usage add - >>"$work/client.log" || die "repeated usage add refused"
n=$(psql_q "SELECT count(*) FROM billing.usage_records WHERE instance_id = '$od' AND client_record_id = 'deploy-$$'")
[ "$n" = 1 ] || die "usage record stored $n time(s)"
admin_retry operator instance list >/dev/null && ! admin meter instance list >/dev/null 2>&1 ||
    die "the meter token may call more than the usage intake"
say "usage through lb:8444 with the meter token: stored once, the repeat stored nothing"

dc exec -T postgres pg_dump -Fc -U postgres kooisv >"$work/kooisv.dump" || die "pg_dump"
dc exec -T postgres psql -U postgres -XAtc "CREATE DATABASE kooisv_restore" >/dev/null
dc exec -T postgres pg_restore --list <"$work/kooisv.dump" >/dev/null || die "pg_restore --list: unreadable dump"
# The guide's restore command (deploy/README.md, "Upgrading"), into a second database.
dc exec -T postgres pg_restore -U postgres -d kooisv_restore --clean --if-exists --no-owner \
    --role=postgres <"$work/kooisv.dump" ||
    die "pg_restore"
a=$(psql_q "SELECT count(*) FROM orders.instances")
b=$(dc exec -T postgres psql -U postgres -d kooisv_restore -XAtc "SELECT count(*) FROM orders.instances")
[ "$a" = "$b" ] || die "restored $b instances of $a"
say "backup (exec -T pg_dump) restored: $b instances"
say "all checks passed"
