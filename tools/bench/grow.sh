#!/usr/bin/env bash
# tools/bench/grow.sh ENV_FILE BUILD [REQUESTS] [INSTANCES]: grows the database of a running
# kooisv for "Cost as data grows" (README): REQUESTS (5,000,000) synthetic audited requests, an
# intent and an outcome each (so 10 million entries, chained and verifiable), and INSTANCES
# (1,000,000) order instances, then ANALYZE. ENV_FILE is the suite's (<build>/suite/suite.env)
# or the local runner's (.state/kooisv.env); the secrets (DSNs, the chain key) are read from its
# KOOISV_STATE_DIR. Then VACUUM ANALYZE as the tables' owners. Only ever for a throwaway cluster: the rows are made up, and the trail is
# append-only, so they stay. A second run with the same sizes adds nothing; a larger size adds
# the difference. Prints how long each step took.
set -euo pipefail
env_file=${1:?usage: grow.sh ENV_FILE BUILD [REQUESTS] [INSTANCES]}
build=${2:?usage: grow.sh ENV_FILE BUILD [REQUESTS] [INSTANCES]}
requests=${3:-5000000}
instances=${4:-1000000}
state=$(sed -n "s/^KOOISV_STATE_DIR='\{0,1\}\([^']*\)'\{0,1\}$/\1/p" "$env_file")
[[ -n $state && -d $state/secrets ]] || { echo "grow.sh: no KOOISV_STATE_DIR with secrets in $env_file" >&2; exit 2; }
secrets=$state/secrets
owner=()
[[ -s $secrets/pg-kooisv_audit_owner.dsn ]] && owner=(--audit-owner-dsn-file "$secrets/pg-kooisv_audit_owner.dsn")
t0=$(date +%s)
"$build/tools/bench/kooisv-grow" --audit-dsn-file "$secrets/pg-kooisv_audit.dsn" \
    --key-file "$secrets/audit-chain-key" --pairs "$requests" \
    --order-dsn-file "$secrets/pg-kooisv_order.dsn" --instances "$instances" "${owner[@]}"
echo "grow.sh: done in $(($(date +%s) - t0)) s"
