#!/usr/bin/env bash
# secrets.sh <build dir>: the runner's secrets folder against its own service user, inside the
# `suite` fixture (which the runner's lib.sh set up as `up` does). As root only: without a
# separate service user there is no one to keep out (exit 77, counted as skipped).
#  - the folder is root's, 0711: the service user can neither list it nor create, replace or
#    remove a file in it; it reads the files handed to it and cannot change them; it cannot
#    read the superuser's password or pgpass, nor the audit schema owner's connection (audit
#    migrates in a separate step as root);
#  - files an earlier version let the service user plant are removed on the next start, links
#    included, one it handed and no longer does is root's alone again, and a secret is never
#    written through a path that exists.
set -euo pipefail
build=$(readlink -f "$1")
repo=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../..
. "$repo/deploy/local/lib.sh"
fail() {
    printf 'runner_secrets: FAIL: %s\n' "$*" >&2
    exit 1
}
kv_is_root || {
    echo "runner_secrets: SKIP: not root (no separate service user to keep out)"
    exit 77
}
kv_state_init "$build/suite" "$build" suite
[[ $KV_SVC_USER != root ]] || {
    echo "runner_secrets: SKIP: the service user cannot reach $build, processes run as root"
    exit 77
}
as_svc() { setpriv --reuid="$KV_SVC_USER" --regid="$KV_SVC_USER" --init-groups -- "$@"; }

dir=$KV_SECRETS
[[ $(stat -c '%u %a' "$dir") == "0 711" ]] || fail "$dir is $(stat -c '%U %a' "$dir"), not root 0711"
as_svc ls "$dir" >/dev/null 2>&1 && fail "$KV_SVC_USER can list $dir"
as_svc sh -c ': >"$1/planted"' sh "$dir" 2>/dev/null && fail "$KV_SVC_USER can create a file in $dir"
as_svc mv "$dir/admin-tokens" "$dir/moved" 2>/dev/null && fail "$KV_SVC_USER can rename a secret"
as_svc cat "$dir/admin-tokens" >/dev/null || fail "$KV_SVC_USER cannot read admin-tokens"
as_svc sh -c 'echo "x admin 00" >>"$1/admin-tokens"' sh "$dir" 2>/dev/null &&
    fail "$KV_SVC_USER can add a token to admin-tokens"
# Nor the audit schema owner's access: only the runner's one-shot --migrate step uses it.
for f in pg-kooisv_audit_owner.dsn pg-kooisv_audit_owner.password; do
    [[ -e $dir/$f ]] || fail "$f missing (the runner writes it)"
    as_svc cat "$dir/$f" >/dev/null 2>&1 && fail "$KV_SVC_USER can read $f"
done
as_svc cat "$dir/audit-chain-key" >/dev/null || fail "$KV_SVC_USER cannot read audit-chain-key"
for f in pg-super.password pgpass tls-ca.key token-admin; do
    [[ -e $dir/$f ]] || continue
    as_svc cat "$dir/$f" >/dev/null 2>&1 && fail "$KV_SVC_USER can read $f"
done

# An earlier version's folder, in a scratch state: the service user owned it and planted an
# empty pgpass and a link; the next start removes both and keeps the handed secrets.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
KV_SECRETS=$scratch/secrets
mkdir -p "$KV_SECRETS"
printf 'k\n' >"$KV_SECRETS/basic-key"
# An earlier version handed the audit owner's connection to the service user's group.
printf 'dsn\n' >"$KV_SECRETS/pg-kooisv_audit_owner.dsn"
: >"$KV_SECRETS/pgpass"
printf 'mine\n' >"$scratch/target"
ln -s "$scratch/target" "$KV_SECRETS/pg-super.password"
chown -R "$KV_SVC_USER:" "$KV_SECRETS"
chown "0:$(id -gn "$KV_SVC_USER")" "$KV_SECRETS/pg-kooisv_audit_owner.dsn"
chmod 0640 "$KV_SECRETS/pg-kooisv_audit_owner.dsn"
kv_secrets_sweep 2>/dev/null
[[ -e $KV_SECRETS/pgpass ]] && fail "a pgpass planted by $KV_SVC_USER survives the sweep"
[[ -L $KV_SECRETS/pg-super.password ]] && fail "a planted link survives the sweep"
[[ $(stat -c %u "$KV_SECRETS/basic-key") == 0 ]] || fail "a handed secret stays $KV_SVC_USER's"
[[ $(stat -c '%u %g %a' "$KV_SECRETS/pg-kooisv_audit_owner.dsn") == "0 0 600" ]] ||
    fail "the audit owner's connection stays readable by $KV_SVC_USER's group after the sweep"
ln -s "$scratch/target" "$KV_SECRETS/data-key"
printf 'new\n' | kv_secret_write data-key
[[ $(<"$scratch/target") == mine ]] || fail "kv_secret_write wrote through a link"
[[ -f $KV_SECRETS/data-key && ! -L $KV_SECRETS/data-key ]] || fail "kv_secret_write left a link"
echo "runner_secrets: ok"
