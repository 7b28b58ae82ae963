# shellcheck shell=bash
# rand-secret.sh: random keys and passwords with nothing but bash and openssl, sourced by
# deploy/local/lib.sh and deploy/docker/gen-secrets.sh (safe under `set -euo pipefail`).

# Random string of n letters and digits with at least one of each (config_key_is_strong).
kv_rand_alnum() {
    local n=$1 s=""
    while ((${#s} < n)) || [[ ! $s =~ [0-9] || ! $s =~ [A-Za-z] ]]; do
        s=$(openssl rand -base64 $((n * 2)) | LC_ALL=C tr -dc 'A-Za-z0-9')
        s=${s:0:n}
    done
    printf '%s' "$s"
}

# Random lowercase hex of n bytes, retried until it holds a letter and a digit.
kv_rand_hex() {
    local s=""
    while [[ ! $s =~ [0-9] || ! $s =~ [a-f] ]]; do
        s=$(openssl rand -hex "$1")
    done
    printf '%s' "$s"
}
