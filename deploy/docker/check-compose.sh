#!/usr/bin/env bash
# check-compose.sh: static checks of docker-compose.yml and the Dockerfile, no engine needed.
#   1. `docker compose config -q` (or docker-compose) when a compose tool is installed;
#   2. the deployment rules, by grep/awk over the files (spec §8 and ARCHITECTURE.md "Deploy"):
#      every long-running service runs as a fixed non-root uid with a health check, a restart
#      policy and memory, CPU and pids limits; only the load balancer (lb) publishes ports, its
#      admin port is on host loopback, and it sends the PROXY protocol v2 header that the gateways
#      accept only from the edge network; no
#      container_name (it breaks --scale); no privileged mode; secrets only through *_FILE
#      variables that point at /run/secrets; each *_FILE target is a declared secret of the
#      service; every declared secret file lives in the secrets folder; the Dockerfile's FROMs are
#      overridable, every runtime target has a non-root USER and a HEALTHCHECK, no secret is COPYed,
#      and every stage that installs Debian's ssl-cert (postgresql, haproxy, prometheus) removes
#      its snake-oil private key; no stage name is used twice; no uid >= 10000 user takes the name
#      of a package's system user; no key is given twice in a compose mapping; haproxy.cfg passes
#      `haproxy -c` when haproxy is installed.
# Exit 0 when all checks pass, 1 otherwise (each failure printed on one line).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
compose=$here/docker-compose.yml
dockerfile=$here/Dockerfile
fails=0
fail() {
    echo "check-compose: FAIL: $*"
    fails=$((fails + 1))
}
ok() { echo "check-compose: ok: $*"; }

[ -f "$compose" ] || { echo "check-compose: $compose missing"; exit 1; }

# ---- 1. the compose tool's own validation ----
tool=()
if docker compose version >/dev/null 2>&1; then
    tool=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    tool=(docker-compose)
fi
if ((${#tool[@]})); then
    if out=$(cd "$here" && KOOISV_SECRETS_DIR=${KOOISV_SECRETS_DIR:-./secrets} "${tool[@]}" -f "$compose" config -q 2>&1); then
        ok "${tool[*]} config"
    else
        fail "${tool[*]} config: $out"
    fi
else
    echo "check-compose: no compose tool installed; static checks only"
fi

# ---- 2. static checks ----
# A key given twice in a mapping: YAML loaders disagree (PyYAML keeps the last, others refuse).
dupkeys=$(awk '/^[^ #]/ { top = $1 } /^  [A-Za-z0-9_.-]+:/ { k = $1; if (seen[top k]++) print top k }' "$compose")
[ -z "$dupkeys" ] || fail "docker-compose.yml: key(s) given twice: $(echo $dupkeys)"
# Split the services: section into "service<TAB>line" records (2-space service keys).
records=$(awk '
    /^[^ #]/ { in_services = ($0 ~ /^services:/); next }
    in_services && /^  [a-z][a-z0-9_-]*:/ { svc = $1; sub(":", "", svc); next }
    in_services && svc != "" && !/^ *#/ { print svc "\t" $0 }
' "$compose")
services=$(printf '%s\n' "$records" | cut -f1 | sort -u)
[ -n "$services" ] || fail "no services found"

# grep reads to the end (no -q): with pipefail, a grep that quits at its first match can kill
# the writer with SIGPIPE and fail the pipeline although it matched.
has() { printf '%s\n' "$records" | awk -F'\t' -v s="$1" '$1 == s { print $2 }' | grep -E -- "$2" >/dev/null; }
# The shared settings come from the x-kooisv-service anchor (merged with <<:).
anchor=$(awk '/^x-kooisv-service:/ { on = 1; next } /^[^ ]/ { on = 0 } on' "$compose")
anchored() { has "$1" '<<: \*kooisv-service' && printf '%s\n' "$anchor" | grep -E -- "$2" >/dev/null; }

# One file for Compose v1 (1.29, Debian 12's: without a version: key it validates the file
# against the Compose Specification's schema in step 1) and v2, which reads that specification
# and warns that version: is obsolete.
grep -Eq '^version:' "$compose" && fail "a top-level version: key (the Compose Specification has none)"
grep -Eq '^[^#]*container_name:' "$compose" && fail "container_name is set (breaks docker compose --scale)"
grep -Eq '^[^#]*privileged: *true' "$compose" && fail "a service is privileged"
grep -Eq '^[^#]*network_mode: *"?host' "$compose" && fail "a service uses host networking"

for s in $services; do
    # user: a numeric non-zero uid
    if has "$s" '^ +user:' || anchored "$s" '^ +user:'; then
        if has "$s" 'user: *"?(0|root)[:"]' || { ! has "$s" '^ +user:' && anchored "$s" 'user: *"?(0|root)[:"]'; }; then
            fail "$s runs as root"
        fi
    else
        fail "$s has no user: (would run as the image's user; pin a non-root uid)"
    fi
    has "$s" '^ +restart:' || anchored "$s" '^ +restart:' || fail "$s has no restart policy"
    for lim in mem_limit cpus pids_limit; do
        has "$s" "^ +$lim:" || anchored "$s" "^ +$lim:" || fail "$s has no $lim"
    done
    # ports only on the load balancer
    if has "$s" '^ +ports:' && [ "$s" != lb ]; then fail "$s publishes ports (only lb may)"; fi
    # *_FILE variables point into /run/secrets and at a secret the service mounts
    while IFS= read -r line; do
        var=${line%%:*}
        var=${var// /}
        target=${line#*: }
        target=${target//\"/}
        case "$target" in
        /run/secrets/*) ;;
        *) fail "$s: $var=$target is not under /run/secrets"; continue ;;
        esac
        name=${target#/run/secrets/}
        has "$s" "[[ ,]${name//./\\.}[],]|^ +- (source: )?${name//./\\.}\$" ||
            fail "$s: $var names secret $name, which the service does not mount"
    done < <(printf '%s\n' "$records" | awk -F'\t' -v s="$s" '$1 == s { print $2 }' |
        grep -E '^ +[A-Z0-9_]+_FILE:' | sed 's/^ *//')
    # secret values never inline: any *_KEY/*_PASSWORD/*_SK/*_DSN/*_TOKEN(S) must be a _FILE
    printf '%s\n' "$records" | awk -F'\t' -v s="$s" '$1 == s { print $2 }' |
        grep -E '^ +[A-Z0-9_]*(KEY|PASSWORD|_SK|_AK|DSN|TOKENS?)(_[A-Z]+)?: ' | grep -Ev '_FILE:' |
        while IFS= read -r l; do echo "check-compose: FAIL: $s: inline secret variable: $(echo $l)"; done |
        grep . && fails=$((fails + 1))
    # health: from the compose file or the image (HEALTHCHECK in the Dockerfile target)
    if [ "$s" != dbinit ]; then
        if ! has "$s" '^ +healthcheck:' && ! awk -v t="$s" '
            /^FROM / { cur = $NF } cur == t && /^HEALTHCHECK/ { found = 1 } END { exit !found }' "$dockerfile"; then
            fail "$s has no health check (compose healthcheck: or Dockerfile HEALTHCHECK)"
        fi
    fi
done

# the load balancer: public port and loopback-only admin port; PROXY v2 towards the gateways,
# which believe it from the edge network only
if has lb '^ +ports:'; then
    has lb '"127\.0\.0\.1:[^"]*:8444"' || fail "lb admin port 8444 is not bound to host loopback"
    has lb ':8443"' || fail "lb does not publish 8443"
else
    fail "lb publishes no ports"
fi
has gateway '^ +ports:' && fail "gateway publishes ports (the load balancer does)"
has gateway 'KOOISV_PROXY_PROTOCOL_FROM: \$\{KOOISV_EDGE_SUBNET' ||
    fail "gateway does not limit PROXY headers to the edge network"
has gateway 'networks: \[edge, backend\]' || fail "gateway is not on the edge and backend networks only"
haproxy_cfg=$here/haproxy.cfg
if [ -f "$haproxy_cfg" ]; then
    for b in gateway:8443 gateway:8444; do
        grep -E "^ +server-template .* $b .*send-proxy-v2" "$haproxy_cfg" | grep 'check port 9100' >/dev/null ||
            fail "haproxy.cfg: $b without send-proxy-v2 and a check of /readyz on 9100"
    done
    if command -v haproxy >/dev/null; then
        out=$(haproxy -c -f "$haproxy_cfg" 2>&1) && ok "haproxy -c" || fail "haproxy -c: $out"
    fi
else
    fail "haproxy.cfg missing"
fi
# depends_on with conditions towards health / completion
has gateway 'condition: service_healthy' || fail "gateway does not wait for healthy services"
grep -q 'service_completed_successfully' "$compose" || fail "no service waits for dbinit to complete"

# every declared secret is a file in the secrets folder (default ./secrets, git-ignored)
awk '/^secrets:/ { on = 1; next } /^[^ ]/ { on = 0 } on && /file:/' "$compose" |
    grep -v 'KOOISV_SECRETS_DIR:-./secrets}/' | grep . &&
    fail "a secret file lives outside \${KOOISV_SECRETS_DIR:-./secrets}"
grep -qx '/secrets/' "$here/.gitignore" 2>/dev/null || fail "deploy/docker/.gitignore does not ignore /secrets/"

# ---- Dockerfile ----
if [ -f "$dockerfile" ]; then
    first_from=$(grep -n '^FROM ' "$dockerfile" | head -1 | cut -d: -f1)
    base_arg=$(grep -n '^ARG BASE_IMAGE=' "$dockerfile" | head -1 | cut -d: -f1)
    [ -n "$base_arg" ] && [ "$base_arg" -lt "$first_from" ] || fail "Dockerfile: ARG BASE_IMAGE must come before the first FROM"
    grep -E '^FROM ' "$dockerfile" | grep -Ev '^FROM (\$\{[A-Z_]+\}|build|runtime) ' | grep . &&
        fail "Dockerfile: a FROM line is not overridable (\${BASE_IMAGE})"
    # BuildKit refuses a stage name used twice (the legacy builder silently took the last one).
    dup=$(awk 'toupper($1) == "FROM" && toupper($(NF-1)) == "AS" { print $NF }' "$dockerfile" | sort | uniq -d)
    [ -z "$dup" ] || fail "Dockerfile: stage name(s) used twice: $(echo $dup)"
    # Debian's packages that create a system user refuse a name a non-system (uid > 999) user holds.
    sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$dockerfile" | sed 's/&&/\n/g' |
        grep -E '(useradd|groupadd) .*--(u|g)id 1[0-9]{4} .* (prometheus|postgres|haproxy) *\\? *$' >/dev/null &&
        fail "Dockerfile: a uid >= 10000 user named like a package's system user (its postinst exits 1)"
    grep -Eiq '^(COPY|ADD) .*secrets' "$dockerfile" && fail "Dockerfile copies a secrets folder into an image"
    grep -Eq '^ENV .*(PASSWORD|_KEY|_SK|DSN)=' "$dockerfile" && fail "Dockerfile sets a secret in ENV"
    # Debian's ssl-cert (pulled in by these) generates a private key at install: no image keeps it
    for pkg in postgresql-15 haproxy prometheus; do
        awk -v p="$pkg" '/^FROM / { if (st) exit; } $0 ~ "install .*" p { st = 1 }
            st && /ssl-cert-snakeoil\.key/ { found = 1 } END { exit !(st && found) }' "$dockerfile" ||
            fail "Dockerfile: the stage installing $pkg keeps the snake-oil private key"
    done
    # every final stage (not build/runtime) ends up non-root
    for t in $(awk '/^FROM / && $(NF-1) == "AS" { print $NF }' "$dockerfile"); do
        case "$t" in build | build-*) continue ;; esac
        u=$(awk -v t="$t" '/^FROM / { cur = $NF; if ($2 == "runtime") from_rt[cur] = 1 }
            cur == t && /^USER / { u = $2 } END { print u }' "$dockerfile")
        if [ -z "$u" ] && awk -v t="$t" '/^FROM / && $NF == t && $2 == "runtime" { f = 1 } END { exit !f }' "$dockerfile"; then
            u=$(awk '/^FROM / { cur = $NF } cur == "runtime" && /^USER / { u = $2 } END { print u }' "$dockerfile")
        fi
        case "$u" in
        "" | 0 | 0:* | root | root:*) fail "Dockerfile target $t runs as root (USER '$u')" ;;
        esac
    done
    ok "Dockerfile checked"
fi

if [ "$fails" -eq 0 ]; then
    ok "services: $(echo $services)"
    echo "check-compose: all checks passed"
    exit 0
fi
echo "check-compose: $fails check(s) failed"
exit 1
