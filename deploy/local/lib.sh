# shellcheck shell=bash
# lib.sh: what the local runner (deploy/local/kooisv-local) and the test harness
# (tests/harness/suite.sh) share: packages, build, a private PostgreSQL cluster, dev keys and
# certificates, and the life cycle of the kooisv processes under one state folder.
#
# State folder layout (KV_STATE; <repo>/.state for the runner, <build>/suite for the harness):
#   ports.env           chosen ports (kept, so a second `up` reuses them)
#   pg/data pg/sock     the cluster (owned by the PostgreSQL run user) and its Unix socket dir
#   pg/postgres.log     server log
#   secrets/            0700: keys, passwords, DSNs, tokens, TLS and RSA private keys (0600 each)
#   tls/ca.crt tls/server.crt   dev CA and leaf certificate (public)
#   keys/rsa-public.pem         public half of the clientSecret key pair
#   keys/license-public.pem     public half of the license signing key (Ed25519)
#   logs/<proc>.log run/<proc>.pid
#   audit/head          the audit chain head (seq:hash) the audit service writes after each commit
# Sourced with `set -euo pipefail` in effect; every function keeps to that.

KV_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
KV_PACKAGES=(build-essential cmake pkg-config libevent-dev libzmq3-dev libprotobuf-c-dev
    protobuf-c-compiler libjansson-dev libcmocka-dev libpq-dev libssl-dev postgresql openssl
    ca-certificates curl tzdata)
# What `test` needs beyond that: clang's libFuzzer for the fuzz tests (tests/fuzz), promtool
# for the alert rules (tests/alerts; Debian's prometheus package), haproxy to check the load
# balancer's configuration (deploy/docker/check-compose.sh); headless Chromium, its WebDriver and
# Python for the web console's browser test (tests/integration/console). The Kubernetes
# manifests' schema check (tests/kubernetes) uses node and npm where the machine has them
# (skipped otherwise: a node from elsewhere conflicts with Debian's npm package).
KV_TEST_PACKAGES=(clang libclang-rt-14-dev prometheus haproxy chromium chromium-driver python3)
KV_SERVICES=(order tenant app audit billing)
KV_PG_ROLES=(kooisv_order kooisv_tenant kooisv_app kooisv_billing kooisv_audit kooisv_audit_owner
    kooisv_auditor)
# Start order: the marketplace stand-in, audit (everything is recorded there first), the other
# services, then the gateways that depend on all of them.
KV_PROCS_LOCAL=(emulator audit order tenant app billing gateway)
KV_PROCS_SUITE=(emulator audit order tenant app billing gateway gateway2)
KV_PG_SUPERUSER=postgres

# shellcheck source=deploy/local/env.sh
. "$KV_REPO/deploy/local/env.sh"

kv_log() { printf '[kooisv] %s\n' "$*" >&2; }
kv_die() {
    printf '[kooisv] error: %s\n' "$*" >&2
    exit 1
}

# ---------------------------------------------------------------- privileges, packages, build

kv_is_root() { [[ $EUID -eq 0 ]]; }

# Run a command as root: directly, or through sudo when available.
kv_as_root() {
    if kv_is_root; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        kv_die "'$*' needs root and sudo is not installed; run this command as root"
    fi
}

# Print the packages of KV_PACKAGES that are not installed.
kv_packages_missing() {
    local p status
    for p in "${KV_PACKAGES[@]}"; do
        status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
        [[ $status == "install ok installed" ]] || printf '%s\n' "$p"
    done
}

# Install missing packages with apt-get (update first); a no-op when everything is there.
kv_install_packages() {
    command -v dpkg-query >/dev/null 2>&1 || kv_die "not a Debian system (no dpkg-query)"
    local -a missing
    mapfile -t missing < <(kv_packages_missing)
    if ((${#missing[@]} == 0)); then
        return 0
    fi
    kv_log "installing missing packages: ${missing[*]}"
    kv_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    kv_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${missing[@]}"
}

# kv_build <build dir> [cmake -D options...]: configure and build. With KV_BUILD_TARGETS set,
# only those targets (the runner needs no test to compile in order to start).
kv_build() {
    local dir=$1
    shift
    kv_log "building in $dir"
    mkdir -p "$dir"
    cmake -S "$KV_REPO" -B "$dir" -DCMAKE_BUILD_TYPE="${KOOISV_BUILD_TYPE:-RelWithDebInfo}" "$@" \
        >"$dir/configure.log" 2>&1 || {
        tail -n 40 "$dir/configure.log" >&2
        kv_die "cmake configure failed (full log: $dir/configure.log)"
    }
    local -a targets=()
    [[ -n ${KV_BUILD_TARGETS:-} ]] && read -r -a targets <<<"$KV_BUILD_TARGETS"
    cmake --build "$dir" -j "$(nproc)" ${targets[@]:+--target "${targets[@]}"} || kv_die "build failed"
}

# The CMake targets of the processes in KV_PROCS, and kooisvctl.
kv_proc_targets() {
    local p t=()
    for p in "${KV_PROCS[@]}"; do
        case $p in
        gateway2) ;;
        *) t+=("$(basename "$(kv_bin "$p")")") ;;
        esac
    done
    t+=(kooisvctl)
    printf '%s\n' "${t[*]}"
}

# Path of a process's binary in build dir KV_BUILD.
kv_bin() {
    case $1 in
    gateway | gateway2) printf '%s\n' "$KV_BUILD/gateway/kooisv-gateway" ;;
    kooisvctl) printf '%s\n' "$KV_BUILD/gateway/kooisvctl" ;;
    emulator) printf '%s\n' "$KV_BUILD/tests/emulator/kooisv-emulator" ;;
    *) printf '%s\n' "$KV_BUILD/services/$1/kooisv-$1" ;;
    esac
}

# Fail unless every process binary exists in KV_BUILD.
kv_check_binaries() {
    local p missing=()
    for p in "${KV_PROCS[@]}"; do
        [[ -x $(kv_bin "$p") ]] || missing+=("$(kv_bin "$p")")
    done
    ((${#missing[@]} == 0)) || kv_die "not built: ${missing[*]}"
}

# ---------------------------------------------------------------- state folder and run users

# kv_state_init <state dir> <build dir> <mode: local|suite>: set the KV_* paths and run users.
kv_state_init() {
    KV_STATE=$1
    KV_BUILD=$2
    KV_MODE=$3
    KV_SECRETS=$KV_STATE/secrets
    KV_TLS=$KV_STATE/tls
    KV_KEYS=$KV_STATE/keys
    KV_LOGS=$KV_STATE/logs
    KV_RUN=$KV_STATE/run
    KV_AUDIT_HEAD=$KV_STATE/audit/head
    kv_pg_paths "$KV_STATE/pg"
    if [[ $KV_MODE == suite ]]; then
        KV_PROCS=("${KV_PROCS_SUITE[@]}")
        KV_BIND_ADDR=127.0.0.1
    else
        KV_PROCS=("${KV_PROCS_LOCAL[@]}")
        KV_BIND_ADDR=${KOOISV_LOCAL_BIND:-127.0.0.1}
    fi
    # initdb refuses root, and nothing reachable from outside may run as root: as root,
    # PostgreSQL runs as `postgres` and the kooisv processes as an unprivileged system user.
    if kv_is_root; then
        KV_PG_USER=postgres
        KV_SVC_USER=${KOOISV_LOCAL_USER:-kooisv}
        getent passwd "$KV_SVC_USER" >/dev/null && kv_svc_user_check quiet
    else
        KV_PG_USER=$(id -un)
        KV_SVC_USER=$KV_PG_USER
    fi
    return 0
}

# The processes must reach the binaries; a clone under a private home (e.g. /root) cannot be
# entered by another user, so then they run as root, bound to loopback only.
kv_svc_user_check() {
    setpriv --reuid="$KV_SVC_USER" --regid="$KV_SVC_USER" --clear-groups test -x "$KV_BUILD" \
        2>/dev/null && return 0
    if [[ $KV_BIND_ADDR != 127.0.0.1 ]]; then
        kv_die "user $KV_SVC_USER cannot reach $KV_BUILD; move the clone to a readable place"
    fi
    [[ ${1:-} == quiet ]] ||
        kv_log "warning: user $KV_SVC_USER cannot reach $KV_BUILD; processes run as root (loopback only)"
    KV_SVC_USER=root
}

# kv_pg_paths <dir>: the cluster's folders. pg may be a symlink (see kv_state_dirs): PostgreSQL
# gets the real path, which its user can reach.
kv_pg_paths() {
    KV_PG=$1
    [[ -L $KV_PG ]] && KV_PG=$(readlink -f "$KV_PG")
    KV_PG_DATA=$KV_PG/data
    KV_PG_SOCK=$KV_PG/sock
    # The socket path must fit sockaddr_un (107 bytes); a deep checkout moves it to /tmp.
    if ((${#KV_PG_SOCK} > 80)); then
        KV_PG_SOCK=/tmp/kooisv-pg-$(printf '%s' "$KV_STATE" | sha256sum | cut -c1-12)
    fi
}

# Create the folders; as root also the users that run PostgreSQL and the kooisv processes.
kv_state_dirs() {
    umask 077
    mkdir -p "$KV_STATE" "$KV_SECRETS" "$KV_TLS" "$KV_KEYS" "$KV_LOGS" "$KV_RUN" "$KV_PG"
    chmod 0755 "$KV_STATE" "$KV_TLS" "$KV_KEYS"
    chmod 0700 "$KV_SECRETS" "$KV_LOGS" "$KV_RUN"
    # The audit service writes its chain head here; anyone may read it (seq and hash only).
    mkdir -p "${KV_AUDIT_HEAD%/*}"
    chmod 0755 "${KV_AUDIT_HEAD%/*}"
    if kv_is_root; then
        getent passwd "$KV_PG_USER" >/dev/null ||
            kv_die "user $KV_PG_USER missing (is the postgresql package installed?)"
        if ! getent passwd "$KV_SVC_USER" >/dev/null; then
            kv_log "creating system user $KV_SVC_USER for the kooisv processes"
            useradd --system --no-create-home --home-dir /nonexistent \
                --shell /usr/sbin/nologin "$KV_SVC_USER"
        fi
        KV_SVC_USER=${KOOISV_LOCAL_USER:-kooisv}
        kv_svc_user_check
        # Likewise PostgreSQL: when its user cannot enter the state folder, the cluster lives
        # in /var/lib/kooisv-local/ and the state folder's pg is a symlink to it.
        if [[ ! -L $KV_STATE/pg ]] &&
            ! setpriv --reuid="$KV_PG_USER" --regid="$KV_PG_USER" --clear-groups \
                test -x "$KV_STATE" 2>/dev/null; then
            local ext
            ext=/var/lib/kooisv-local/pg-$(printf '%s' "$KV_STATE" | sha256sum | cut -c1-12)
            kv_log "user $KV_PG_USER cannot reach $KV_STATE; the cluster lives in $ext"
            rm -rf "$KV_STATE/pg" "$ext"
            mkdir -p "$ext"
            chmod 0755 /var/lib/kooisv-local
            ln -s "$ext" "$KV_STATE/pg"
            kv_pg_paths "$KV_STATE/pg"
        fi
        # The secrets folder stays root's (0711): the service user reaches the files handed to
        # it by name, read-only, and can neither list, create, replace nor remove any.
        chown 0:0 "$KV_SECRETS"
        chmod 0711 "$KV_SECRETS"
        kv_secrets_sweep
        chown "$KV_PG_USER:" "$KV_PG"
        chmod 0755 "$KV_PG"
        chown "$KV_SVC_USER:" "${KV_AUDIT_HEAD%/*}"
    fi
    return 0
}

# Run a command as user (no-op switch when it is us). cwd is / so any user can start there.
kv_run_as() {
    local user=$1
    shift
    if [[ $user == "$(id -un)" ]]; then
        (cd / && "$@")
    else
        (cd / && setpriv --reuid="$user" --regid="$user" --init-groups -- "$@")
    fi
}

# ---------------------------------------------------------------- ports

# True when something listens on TCP port (any address, IPv4 or IPv6).
kv_port_busy() {
    local hex
    hex=$(printf '%04X' "$1")
    awk -v p="$hex" 'FNR > 1 && $4 == "0A" { split($2, a, ":"); if (a[2] == p) found = 1 }
        END { exit !found }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# kv_ports_assign <name=default ...>: set KV_PORT_<NAME> for each, keeping values already in
# ports.env, moving to the next free port when one is taken, and save ports.env.
# Ports listed in KV_PORTS_KEEP (names) are kept even when busy (our own running PostgreSQL).
kv_ports_assign() {
    local file=$KV_STATE/ports.env spec name port want var taken=" "
    # shellcheck disable=SC1090
    [[ -f $file ]] && . "$file"
    : >"$file.new"
    for spec in "$@"; do
        name=${spec%%=*}
        var=KV_PORT_${name^^}
        want=${!var:-${spec#*=}}
        port=$want
        if [[ " ${KV_PORTS_KEEP:-} " != *" $name "* ]]; then
            while [[ $taken == *" $port "* ]] || kv_port_busy "$port"; do
                port=$((port + 1))
            done
        fi
        if [[ $KV_MODE != suite && $want != "$port" ]]; then
            kv_log "port $want for $name is taken; using $port"
        fi
        printf -v "$var" '%s' "$port"
        taken+="$port "
        printf '%s=%s\n' "$var" "$port" >>"$file.new"
    done
    mv "$file.new" "$file"
}

# Default ports of the runner (ARCHITECTURE.md) or, for the harness, a block of free ports
# below the kernel's ephemeral range, offset by pid so that parallel suites do not collide.
kv_ports_init() {
    local -a names=(gateway admin metrics order tenant app audit emulator pg billing)
    if [[ $KV_MODE == suite ]]; then
        local base=$((20000 + ($$ % 400) * 25)) i=0 n specs=()
        names+=(gateway2 admin2 metrics2)
        for n in "${names[@]}"; do
            specs+=("$n=$((base + i))")
            i=$((i + 1))
        done
        kv_ports_assign "${specs[@]}"
    else
        kv_ports_assign gateway=8443 admin=8444 metrics=9100 order=7101 tenant=7102 app=7103 \
            audit=7104 emulator=9443 pg=15432 billing=7105
    fi
}

# ---------------------------------------------------------------- secrets

# kv_rand_alnum N, kv_rand_hex N (shared with deploy/docker/gen-secrets.sh).
# shellcheck source=deploy/rand-secret.sh
. "$KV_REPO/deploy/rand-secret.sh"

# kv_secret_write <name>: standard input into secrets/<name> (0600), atomically: a fresh file
# from mktemp renamed over the name, so nothing is ever written through a path that exists.
kv_secret_write() {
    local tmp
    tmp=$(mktemp "$KV_SECRETS/.new.XXXXXX") || kv_die "cannot create a file in $KV_SECRETS"
    if ! cat >"$tmp" || ! mv -f -T "$tmp" "$KV_SECRETS/$1"; then
        rm -f "$tmp"
        kv_die "cannot write $KV_SECRETS/$1"
    fi
}

# kv_secret_put <name> <value...>: write secrets/<name> unless it exists. The value goes
# through printf (a builtin), so it never shows on a command line.
kv_secret_put() {
    local name=$1
    shift
    [[ -f $KV_SECRETS/$name && ! -L $KV_SECRETS/$name && -s $KV_SECRETS/$name ]] && return 0
    printf '%s\n' "$*" | kv_secret_write "$name"
}

# Create every dev key, password, token, certificate and key pair that does not exist yet.
kv_secrets_init() {
    local r t tok
    kv_secret_put basic-key "$(kv_rand_alnum 32)"
    kv_secret_put kit-key "$(kv_rand_alnum 32)"
    kv_secret_put data-key "$(kv_rand_hex 32)"
    kv_secret_put webhook-secret "$(kv_rand_alnum 40)"
    kv_secret_put audit-chain-key "$(kv_rand_alnum 40)"
    kv_secret_put marketplace-ak "$(kv_rand_alnum 20 | tr '[:lower:]' '[:upper:]')"
    kv_secret_put marketplace-sk "$(kv_rand_alnum 40)"
    kv_secret_put pg-super.password "$(kv_rand_hex 24)"
    for r in "${KV_PG_ROLES[@]}"; do
        kv_secret_put "pg-$r.password" "$(kv_rand_hex 24)"
    done
    # meter: the seller application's usage intake token (POST /v1/usage only); added to an
    # older state folder's tokens file too.
    if [[ ! -s $KV_SECRETS/admin-tokens ]] || ! grep -q '^meter meter ' "$KV_SECRETS/admin-tokens"; then
        for t in admin operator auditor meter; do
            kv_secret_put "token-$t" "$(kv_rand_hex 32)"
        done
        # "name role sha256hex": the gateway stores only hashes of operator tokens.
        for t in admin operator auditor meter; do
            tok=$(<"$KV_SECRETS/token-$t")
            printf '%s %s %s\n' "$t" "$t" "$(printf '%s' "$tok" | openssl dgst -sha256 -r | cut -d' ' -f1)"
        done | kv_secret_write admin-tokens
    fi
    if [[ ! -s $KV_SECRETS/rsa-private.pem ]]; then
        kv_log "generating the 3072-bit RSA key pair for clientSecret"
        openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:3072 |
            kv_secret_write rsa-private.pem
    fi
    openssl pkey -in "$KV_SECRETS/rsa-private.pem" -pubout -out "$KV_KEYS/rsa-public.pem"
    chmod 0644 "$KV_KEYS/rsa-public.pem"
    if [[ ! -s $KV_SECRETS/license-private.pem ]]; then
        openssl genpkey -algorithm ed25519 | kv_secret_write license-private.pem
    fi
    openssl pkey -in "$KV_SECRETS/license-private.pem" -pubout -out "$KV_KEYS/license-public.pem"
    chmod 0644 "$KV_KEYS/license-public.pem"
    # The ZeroMQ plane's CURVE key pairs: secret in secrets/curve-<p>.key, public in keys/.
    for t in gateway "${KV_SERVICES[@]}"; do
        "$KV_REPO/deploy/curve-keygen.sh" "$KV_SECRETS/curve-$t.key" "$KV_KEYS/curve-$t.pub" ||
            kv_die "cannot make the CURVE key pair of $t"
    done
    kv_tls_init
    kv_secrets_own
}

# Dev CA and leaf (ECDSA P-256, SAN IP:127.0.0.1 and DNS:localhost plus KOOISV_LOCAL_TLS_SAN);
# the leaf is renewed when it expires within a day or the names changed.
kv_tls_init() {
    local san="IP:127.0.0.1,DNS:localhost${KOOISV_LOCAL_TLS_SAN:+,$KOOISV_LOCAL_TLS_SAN}"
    local cakey=$KV_SECRETS/tls-ca.key key=$KV_SECRETS/tls-server.key
    if [[ ! -s $cakey || ! -s $KV_TLS/ca.crt ]]; then
        openssl genpkey -quiet -algorithm EC -pkeyopt ec_paramgen_curve:P-256 |
            kv_secret_write tls-ca.key
        openssl req -x509 -new -key "$cakey" -sha256 -days 3650 -subj "/CN=kooisv local dev CA" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$KV_TLS/ca.crt" 2>/dev/null
        rm -f "$KV_TLS/server.crt"
    fi
    if [[ -s $KV_TLS/server.crt && -s $key ]] &&
        openssl x509 -in "$KV_TLS/server.crt" -noout -checkend 86400 >/dev/null &&
        [[ -f $KV_TLS/server.san && $(<"$KV_TLS/server.san") == "$san" ]]; then
        return 0
    fi
    [[ -s $key ]] || openssl genpkey -quiet -algorithm EC -pkeyopt ec_paramgen_curve:P-256 |
        kv_secret_write tls-server.key
    printf '%s\n' "subjectAltName=$san" "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >"$KV_TLS/server.ext"
    openssl req -new -key "$key" -subj "/CN=localhost" -out "$KV_TLS/server.csr" 2>/dev/null
    openssl x509 -req -in "$KV_TLS/server.csr" -CA "$KV_TLS/ca.crt" -CAkey "$cakey" \
        -set_serial "0x$(openssl rand -hex 16)" -days 397 -sha256 -extfile "$KV_TLS/server.ext" \
        -out "$KV_TLS/server.crt" 2>/dev/null
    cat "$KV_TLS/server.crt" "$KV_TLS/ca.crt" >"$KV_TLS/server-chain.crt"
    printf '%s' "$san" >"$KV_TLS/server.san"
    rm -f "$KV_TLS/server.csr" "$KV_TLS/server.ext"
    chmod 0644 "$KV_TLS"/*.crt
}

# Secrets the kooisv processes read (pg-<role> means that role's .dsn file). Not the audit
# schema owner's: audit migrations run as the invoking user (kv_audit_migrate).
kv_svc_secret_names() {
    local s
    printf '%s\n' basic-key kit-key data-key webhook-secret marketplace-ak marketplace-sk \
        admin-tokens rsa-private.pem license-private.pem tls-server.key audit-chain-key \
        curve-gateway.key
    for s in "${KV_SERVICES[@]}"; do
        printf 'pg-kooisv_%s.dsn\ncurve-%s.key\n' "$s" "$s"
    done
}

# The processes' user may read what they need and change nothing: those files are root's, in
# the service user's group, mode 0640. The CA key, the passwords, the superuser's and
# auditor's access and the plain operator tokens stay with root alone.
kv_secrets_own() {
    [[ $KV_SVC_USER == "$(id -un)" ]] && return 0
    local f group
    group=$(id -gn "$KV_SVC_USER")
    while read -r f; do
        f=$KV_SECRETS/$f
        if [[ -f $f && ! -L $f ]]; then
            chown -h "0:$group" "$f"
            chmod 0640 "$f"
        fi
    done < <(kv_svc_secret_names)
}

# Remove from the secrets folder what this runner did not write: links, folders, and files
# owned by anyone but root (an earlier version let the service user own the folder, so it may
# have planted some). Files handed to the service user by an earlier version come back to root.
kv_secrets_sweep() {
    local f name handed
    handed=" $(kv_svc_secret_names | tr '\n' ' ') "
    for f in "$KV_SECRETS"/* "$KV_SECRETS"/.[!.]*; do
        [[ -e $f || -L $f ]] || continue
        name=${f##*/}
        if [[ -f $f && ! -L $f && $(stat -c %u "$f") == 0 ]]; then
            # Handed to the service user by an earlier version and no longer (the audit
            # owner's connection): root's alone again.
            if [[ $handed != *" $name "* && $(stat -c '%g %a' "$f") != "0 600" ]]; then
                chown -h 0:0 "$f"
                chmod 0600 "$f"
            fi
            continue
        elif [[ -f $f && ! -L $f && $handed == *" $name "* ]]; then
            chown -h 0:0 "$f"
            chmod 0600 "$f"
        else
            kv_log "warning: removing $f from the secrets folder (not written by this runner)"
            rm -rf -- "$f"
        fi
    done
}

# Value of a secret (for the env files written for the invoking user).
kv_secret() { head -n 1 "$KV_SECRETS/$1"; }

# CURVE public key (Z85) of the gateway or a service (kv_secrets_init made it).
kv_curve_public() { head -n 1 "$KV_KEYS/curve-$1.pub"; }

# ---------------------------------------------------------------- PostgreSQL

kv_pg_bin() {
    local d
    for d in /usr/lib/postgresql/*/bin; do :; done
    [[ -x $d/initdb ]] || kv_die "PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin"
    printf '%s\n' "$d"
}

# libpq connection string over the Unix socket for role (password from the secrets folder).
kv_pg_dsn() {
    local role=$1 pwfile=$KV_SECRETS/pg-$1.password
    [[ $role == "$KV_PG_SUPERUSER" ]] && pwfile=$KV_SECRETS/pg-super.password
    # libpq quoting: the socket path may hold spaces or quotes.
    local host=${KV_PG_SOCK//\\/\\\\}
    host=${host//\'/\\\'}
    printf "host='%s' port=%s dbname=kooisv user=%s password=%s" "$host" "$KV_PORT_PG" "$role" \
        "$(head -n 1 "$pwfile")"
}

# Create the cluster if there is none (superuser password from secrets, scram everywhere).
kv_pg_init() {
    local bin
    bin=$(kv_pg_bin)
    mkdir -p "$KV_PG_SOCK"
    [[ $KV_PG_USER == "$(id -un)" ]] || chown "$KV_PG_USER:" "$KV_PG_SOCK"
    chmod 0755 "$KV_PG_SOCK"
    [[ -f $KV_PG_DATA/PG_VERSION ]] && return 0
    kv_log "creating the PostgreSQL cluster in $KV_PG_DATA"
    rm -rf "$KV_PG_DATA"
    # initdb reads the password as the PostgreSQL user: hand it a private copy.
    local pwfile
    pwfile=$(mktemp "$KV_PG/.pwfile.XXXXXX") || kv_die "cannot create a file in $KV_PG"
    cat "$KV_SECRETS/pg-super.password" >"$pwfile"
    [[ $KV_PG_USER == "$(id -un)" ]] || chown "$KV_PG_USER:" "$pwfile"
    if ! kv_run_as "$KV_PG_USER" "$bin/initdb" -D "$KV_PG_DATA" -U "$KV_PG_SUPERUSER" \
        --pwfile="$pwfile" --auth-local=scram-sha-256 --auth-host=scram-sha-256 \
        -E UTF8 --no-locale >"$KV_PG/initdb.log" 2>&1; then
        rm -f "$pwfile"
        cat "$KV_PG/initdb.log" >&2
        kv_die "initdb failed"
    fi
    rm -f "$pwfile"
    # shellcheck disable=SC2016 # $1 and $2 are the inner shell's
    kv_run_as "$KV_PG_USER" sh -c 'printf "%s\n" "$2" >>"$1/postgresql.conf"' sh "$KV_PG_DATA" \
        "include_if_exists = 'kooisv.conf'"
}

kv_pg_running() {
    [[ -f $KV_PG_DATA/postmaster.pid ]] &&
        kv_run_as "$KV_PG_USER" "$(kv_pg_bin)/pg_ctl" -D "$KV_PG_DATA" status >/dev/null 2>&1
}

# Start the cluster on KV_PORT_PG (listening on 127.0.0.1 and the socket dir).
kv_pg_start() {
    local bin durable=on
    bin=$(kv_pg_bin)
    kv_pg_running && return 0
    # The suite is thrown away after the run, so it skips fsync (only an OS crash loses data
    # without it). It keeps synchronous_commit: a commit has reached the kernel before it is
    # acknowledged, so a killed PostgreSQL (the fault test's kill -9) loses nothing it confirmed.
    [[ $KV_MODE == suite ]] && durable=off
    # shared_buffers: an eighth of the memory, between 128 MB (PostgreSQL's default) and 1 GB.
    # With 128 MB the trail's and the orders' indexes did not fit (README "Changes and their
    # effect": less PostgreSQL CPU per call of the steady mix).
    local mem_kb shared_mb
    mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo 2>/dev/null || echo 0)
    shared_mb=$((${mem_kb:-0} / 8 / 1024))
    ((shared_mb < 128)) && shared_mb=128
    ((shared_mb > 1024)) && shared_mb=1024
    # shellcheck disable=SC2016 # $1 is the inner shell's
    kv_run_as "$KV_PG_USER" sh -c 'cat >"$1/kooisv.conf"' sh "$KV_PG_DATA" <<EOF
# written by deploy/local/lib.sh on every start
listen_addresses = '127.0.0.1'
port = $KV_PORT_PG
unix_socket_directories = '$KV_PG_SOCK'
unix_socket_permissions = 0777
max_connections = 300
shared_buffers = ${shared_mb}MB
password_encryption = 'scram-sha-256'
fsync = $durable
synchronous_commit = on
full_page_writes = $durable
log_min_messages = warning
log_line_prefix = '%m [%p] %u@%d '
EOF
    kv_log "starting PostgreSQL on 127.0.0.1:$KV_PORT_PG"
    if ! kv_run_as "$KV_PG_USER" "$bin/pg_ctl" -D "$KV_PG_DATA" -l "$KV_PG/postgres.log" -w -t 60 \
        start >/dev/null; then
        tail -n 30 "$KV_PG/postgres.log" >&2 || true
        kv_die "PostgreSQL did not start"
    fi
}

kv_pg_stop() {
    [[ -f $KV_PG_DATA/postmaster.pid ]] || return 0
    kv_log "stopping PostgreSQL"
    kv_run_as "$KV_PG_USER" "$(kv_pg_bin)/pg_ctl" -D "$KV_PG_DATA" -m fast -w -t 60 stop \
        >/dev/null 2>&1 || true
}

# psql as the superuser, password from a private pgpass file (never on a command line).
kv_psql() {
    local pass=$KV_SECRETS/pgpass
    if [[ ! -f $pass || -L $pass || ! -s $pass || $(stat -c %u "$pass") != "$(id -u)" ]]; then
        printf '*:*:*:%s:%s\n' "$KV_PG_SUPERUSER" "$(kv_secret pg-super.password)" |
            kv_secret_write pgpass
    fi
    PGPASSFILE=$pass PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 -h "$KV_PG_SOCK" -p "$KV_PORT_PG" \
        -U "$KV_PG_SUPERUSER" "$@"
}

# Database, roles, schemas and grants (idempotent), then the audit schema's own DDL, then
# every service's connection string into secrets/pg-<role>.dsn.
kv_pg_bootstrap() {
    local r audit_sql=$KV_REPO/services/audit/bootstrap.sql
    kv_psql -d postgres -c "SELECT 1" >/dev/null
    if [[ -z $(kv_psql -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = 'kooisv'") ]]; then
        kv_psql -d postgres -c "CREATE DATABASE kooisv"
    fi
    kv_psql -d kooisv -v secrets_dir="$KV_SECRETS" -f "$KV_REPO/deploy/local/pg-bootstrap.sql" >/dev/null
    if [[ -f $audit_sql ]]; then
        kv_psql -d kooisv -f "$audit_sql" >/dev/null
    fi
    for r in "${KV_PG_ROLES[@]}"; do
        kv_pg_dsn "$r" | kv_secret_write "pg-$r.dsn"
    done
    kv_secrets_own
}

# ---------------------------------------------------------------- processes

kv_pidfile() { printf '%s\n' "$KV_RUN/$1.pid"; }

# True while pid runs (a zombie, exited but not yet reaped, counts as gone).
kv_pid_alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]]
}

# Pid of a running process we started (its pid file names a live process running our binary).
kv_proc_pid() {
    local pidfile pid exe
    pidfile=$(kv_pidfile "$1")
    [[ -s $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
    # A rebuilt binary shows as "path (deleted)" while the old process still runs it; one
    # started from another KOOISV_BUILD_DIR is ours too (same binary name).
    exe=${exe% (deleted)}
    local want
    want=$(kv_bin "$1")
    [[ ${exe##*/} == "${want##*/}" ]] || return 1
    printf '%s\n' "$pid"
}

# kv_proc_start <proc>: start one process in the background (env from env.sh, secrets by file),
# log to logs/<proc>.log, pid in run/<proc>.pid. A running instance is stopped first.
kv_proc_start() {
    local proc=$1 bin pid
    bin=$(kv_bin "$proc")
    [[ -x $bin ]] || kv_die "$proc: $bin is not built"
    kv_proc_stop "$proc"
    if [[ $proc == audit ]]; then
        kv_audit_migrate || return 1
    fi
    kv_env_for "$proc"
    local -a run_as=()
    if [[ $KV_SVC_USER != "$(id -un)" ]]; then
        run_as=(setpriv --reuid="$KV_SVC_USER" --regid="$KV_SVC_USER" --init-groups --)
    fi
    printf '%s starting %s\n' "$(date -u +%FT%TZ)" "$proc" >>"$KV_LOGS/$proc.log"
    # setsid: no terminal signals reach it; setpriv and env exec, so $! is the process itself.
    (cd / && exec setsid "${run_as[@]}" env -i "${KV_ENV[@]}" "$bin" \
        >>"$KV_LOGS/$proc.log" 2>&1 </dev/null) &
    pid=$!
    printf '%s\n' "$pid" >"$(kv_pidfile "$proc")"
}

# kv_audit_migrate: kooisv-audit --migrate in the foreground, as the invoking user (who alone
# reads the schema owner's connection), logged to logs/audit.log. The audit service that starts
# afterwards is never given that connection and refuses to serve with it.
kv_audit_migrate() {
    kv_env_for audit-migrate
    printf '%s migrating audit\n' "$(date -u +%FT%TZ)" >>"$KV_LOGS/audit.log"
    if ! (cd / && exec env -i "${KV_ENV[@]}" "$(kv_bin audit)" --migrate \
        >>"$KV_LOGS/audit.log" 2>&1 </dev/null); then
        kv_proc_log_tail audit
        kv_log "audit: migrations failed"
        return 1
    fi
}

# kv_proc_stop <proc> [signal]: TERM (or the given signal), wait up to 15 s, then KILL.
kv_proc_stop() { kv_procs_stop_some "${2:-TERM}" "$1"; }

# kv_procs_stop_some <signal> <proc...>: signal them all at once, wait up to 15 s for all,
# KILL those still running, remove their pid files.
kv_procs_stop_some() {
    local sig=$1 proc pid i left
    shift
    local -A pids=()
    for proc in "$@"; do
        if pid=$(kv_proc_pid "$proc"); then
            pids[$proc]=$pid
            kill "-$sig" "$pid" 2>/dev/null || true
        fi
    done
    for ((i = 0; i < 150; i++)); do
        left=0
        for proc in "${!pids[@]}"; do
            kv_pid_alive "${pids[$proc]}" && left=1
        done
        ((left)) || break
        sleep 0.1
    done
    for proc in "${!pids[@]}"; do
        if kv_pid_alive "${pids[$proc]}"; then
            kv_log "$proc (pid ${pids[$proc]}) did not stop in 15 s; killing it"
            kill -KILL "${pids[$proc]}" 2>/dev/null || true
        fi
    done
    for proc in "$@"; do
        rm -f "$(kv_pidfile "$proc")"
    done
}

# The port that shows a process is up.
kv_proc_port() {
    case $1 in
    gateway) printf '%s\n' "$KV_PORT_METRICS" ;;
    gateway2) printf '%s\n' "$KV_PORT_METRICS2" ;;
    *)
        local v=KV_PORT_${1^^}
        printf '%s\n' "${!v}"
        ;;
    esac
}

# Print the last lines of a process's log (after a failure).
kv_proc_log_tail() {
    printf -- '---- last lines of %s ----\n' "$KV_LOGS/$1.log" >&2
    tail -n "${2:-40}" "$KV_LOGS/$1.log" >&2 2>/dev/null || true
    printf -- '----\n' >&2
}

# kv_proc_wait <proc> [timeout s]: until it is ready (gateways: /healthz answers 200; others:
# their port listens). Fails early, with the log tail, if the process exits.
kv_proc_wait() {
    local proc=$1 timeout=${2:-60} port i pid
    port=$(kv_proc_port "$proc")
    pid=$(<"$(kv_pidfile "$proc")")
    for ((i = 0; i < timeout * 5; i++)); do
        # Not kv_proc_pid: right after the start the pid may still be running setsid/setpriv/env.
        if ! kv_pid_alive "$pid"; then
            kv_proc_log_tail "$proc"
            kv_log "$proc exited during start-up"
            return 1
        fi
        case $proc in
        gateway | gateway2)
            curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port/healthz" 2>/dev/null && return 0
            ;;
        *) kv_port_busy "$port" && return 0 ;;
        esac
        sleep 0.2
    done
    kv_proc_log_tail "$proc"
    kv_log "$proc not ready after ${timeout}s"
    return 1
}

# "service count" lines of a gateway's /healthz: how many of its sockets (one per gateway thread
# and the admin API) are connected to each service.
kv_gateway_links() {
    curl -fsS --max-time 2 "http://127.0.0.1:$(kv_proc_port "$1")/healthz" 2>/dev/null |
        awk '$1 == "service" { split($4, a, "="); print $2, a[2] }'
}

# True when the links name every service of KV_PROCS as connected.
kv_links_complete() {
    local p
    for p in "${KV_PROCS[@]}"; do
        case $p in gateway* | emulator) continue ;; esac
        grep -qE "^$p [1-9]" <<<"$1" || return 1
    done
}

# kv_gateway_settle <gateway> [timeout s]: wait until the gateway is connected to every service
# we run and the counts hold still for a moment (a request may land on any gateway thread, so
# one connected thread is not enough); print the counts.
kv_gateway_settle() {
    local gw=$1 timeout=${2:-30} i links="" prev=""
    for ((i = 0; i < timeout * 4; i++)); do
        links=$(kv_gateway_links "$gw")
        if [[ -n $links && $links == "$prev" ]] && kv_links_complete "$links"; then
            printf '%s\n' "$links"
            return 0
        fi
        prev=$links
        sleep 0.25
    done
    kv_log "$gw did not connect to every service in ${timeout}s: ${links//$'\n'/, }"
    return 1
}

# kv_proc_ready <proc>: wait until proc serves (kv_proc_wait) and the running gateways are
# connected to it as fully as when the suite came up (run/<gateway>.links); a gateway, until it
# is connected to every service.
kv_proc_ready() {
    local proc=$1 timeout=${KOOISV_START_TIMEOUT:-90} gw want
    kv_proc_wait "$proc" "$timeout" || return 1
    case $proc in
    emulator) return 0 ;;
    gateway*)
        kv_gateway_settle "$proc" "$timeout" >"$KV_RUN/$proc.links.new" || return 1
        # The first settle is the reference; later ones must reach it again.
        [[ -s $KV_RUN/$proc.links ]] || mv "$KV_RUN/$proc.links.new" "$KV_RUN/$proc.links"
        rm -f "$KV_RUN/$proc.links.new"
        [[ -s $KV_RUN/$proc.links ]] || return 0
        local svc
        while read -r svc want; do
            kv_links_wait "$proc" "$svc" "$want" "$timeout" || return 1
        done <"$KV_RUN/$proc.links"
        ;;
    *)
        for gw in "${KV_PROCS[@]}"; do
            [[ $gw == gateway* && -s $KV_RUN/$gw.links ]] || continue
            kv_proc_pid "$gw" >/dev/null || continue
            want=$(awk -v s="$proc" '$1 == s { print $2 }' "$KV_RUN/$gw.links")
            kv_links_wait "$gw" "$proc" "${want:-1}" "$timeout" || return 1
        done
        ;;
    esac
}

# kv_links_wait <gateway> <service> <count> <timeout s>: until the gateway has that many
# connections to the service.
kv_links_wait() {
    local gw=$1 svc=$2 want=$3 timeout=$4 i have=0
    for ((i = 0; i < timeout * 5; i++)); do
        have=$(kv_gateway_links "$gw" | awk -v s="$svc" '$1 == s { print $2 }')
        ((${have:-0} >= want)) && return 0
        sleep 0.2
    done
    kv_log "$gw has $have of $want connections to $svc after ${timeout}s"
    return 1
}

# Start every process of KV_PROCS in order and wait for each to be ready.
kv_procs_start() {
    local p
    rm -f "$KV_RUN"/*.links
    for p in "${KV_PROCS[@]}"; do
        kv_proc_start "$p" || return 1
        kv_proc_ready "$p" || return 1
    done
}

# Stop every process: the gateways first, so that nothing new comes in, then the rest at once.
kv_procs_stop() {
    local p gateways=() others=()
    for p in "${KV_PROCS[@]}"; do
        if [[ $p == gateway* ]]; then gateways+=("$p"); else others+=("$p"); fi
    done
    kv_procs_stop_some TERM "${gateways[@]}"
    kv_procs_stop_some TERM "${others[@]}"
}

# One line per process: name, pid or "stopped", ready port.
kv_procs_status() {
    local p pid
    for p in "${KV_PROCS[@]}"; do
        if pid=$(kv_proc_pid "$p"); then
            printf '%-9s running  pid %-7s port %s\n' "$p" "$pid" "$(kv_proc_port "$p")"
        else
            printf '%-9s stopped\n' "$p"
        fi
    done
    if kv_pg_running; then
        printf '%-9s running  pid %-7s port %s\n' postgres "$(head -n 1 "$KV_PG_DATA/postmaster.pid")" "$KV_PORT_PG"
    else
        printf '%-9s stopped\n' postgres
    fi
}

# kv_env_line <name> <value>: NAME='value' as a shell sources it (every value single-quoted,
# a quote inside as '\''), which config_env_line() in common/config.c reads back the same.
kv_env_line() {
    local q=\'
    printf "%s='%s'\n" "$1" "${2//$q/$q\\$q$q}"
}

# kv_write_client_env <file>: NAME='value' lines for clients, tests and kooisvctl (mode 0600);
# `set -a; . file; set +a` gives exactly these variables.
kv_write_client_env() {
    local file=$1 host=127.0.0.1
    (
        umask 077
        {
            kv_env_line KOOISV_URL "https://$host:$KV_PORT_GATEWAY/produce"
            kv_env_line KOOISV_ADMIN_URL "https://$host:$KV_PORT_ADMIN"
            kv_env_line KOOISV_METRICS_URL "http://$host:$KV_PORT_METRICS"
            kv_env_line KOOISV_CA_FILE "$KV_TLS/ca.crt"
            kv_env_line KOOISV_BASIC_KEY "$(kv_secret basic-key)"
            kv_env_line KOOISV_KIT_KEY "$(kv_secret kit-key)"
            kv_env_line KOOISV_OPERATOR_TOKEN "$(kv_secret token-admin)"
            kv_env_line KOOISV_OPERATOR_ROLE_TOKEN "$(kv_secret token-operator)"
            kv_env_line KOOISV_AUDITOR_TOKEN "$(kv_secret token-auditor)"
            kv_env_line KOOISV_METER_TOKEN "$(kv_secret token-meter)"
            kv_env_line KOOISV_EMULATOR_URL "https://$host:$KV_PORT_EMULATOR"
            kv_env_line KOOISV_RSA_PUBLIC_KEY_FILE "$KV_KEYS/rsa-public.pem"
            kv_env_line KOOISV_LICENSE_PUBLIC_KEY_FILE "$KV_KEYS/license-public.pem"
            kv_env_line KOOISV_PG_SUPER_DSN "$(kv_pg_dsn "$KV_PG_SUPERUSER")"
            kv_env_line KOOISV_PG_AUDITOR_DSN "$(kv_pg_dsn kooisv_auditor)"
            kv_env_line KOOISV_ORDER_ENDPOINTS "tcp://127.0.0.1:$KV_PORT_ORDER"
            kv_env_line KOOISV_TENANT_ENDPOINTS "tcp://127.0.0.1:$KV_PORT_TENANT"
            kv_env_line KOOISV_APP_ENDPOINTS "tcp://127.0.0.1:$KV_PORT_APP"
            kv_env_line KOOISV_AUDIT_ENDPOINTS "tcp://127.0.0.1:$KV_PORT_AUDIT"
            kv_env_line KOOISV_BILLING_ENDPOINTS "tcp://127.0.0.1:$KV_PORT_BILLING"
            for s in "${KV_SERVICES[@]}"; do
                kv_env_line "KOOISV_${s^^}_SERVER_KEY" "$(kv_curve_public "$s")"
            done
            kv_env_line KOOISV_STATE_DIR "$KV_STATE"
            if [[ $KV_MODE == suite ]]; then
                kv_env_line KOOISV_GATEWAY2_URL "https://$host:$KV_PORT_GATEWAY2/produce"
                kv_env_line KOOISV_GATEWAY2_ADMIN_URL "https://$host:$KV_PORT_ADMIN2"
                kv_env_line KOOISV_GATEWAY2_METRICS_URL "http://$host:$KV_PORT_METRICS2"
                kv_env_line KOOISV_SUITE_DIR "$KV_STATE"
                kv_env_line KOOISV_SUITE_SH "$KV_REPO/tests/harness/suite.sh"
                kv_env_line KOOISV_BUILD_DIR "$KV_BUILD"
                # The tests forge entries as a key holder would, and compare with the head file.
                kv_env_line KOOISV_AUDIT_CHAIN_KEY "$(kv_secret audit-chain-key)"
                kv_env_line KOOISV_AUDIT_HEAD_PATH "$KV_AUDIT_HEAD"
                kv_env_line KOOISV_CURVE_SECRET_KEY_FILE "$KV_SECRETS/curve-gateway.key"
                # ...and as billing calls order (a system client: test zmqauth).
                kv_env_line KOOISV_BILLING_CURVE_SECRET_KEY_FILE "$KV_SECRETS/curve-billing.key"
            fi
        } >"$file.tmp"
        mv "$file.tmp" "$file"
    )
}
