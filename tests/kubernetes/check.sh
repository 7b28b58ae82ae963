#!/usr/bin/env bash
# k8s_manifests: deploy/kubernetes validated offline against the Kubernetes API schemas and
# kooisv's rules (validate.mjs), with the validator pinned by package-lock.json and installed
# into <build>/k8s-validate (npm ci; once); every variable a built binary's --help marks
# [required] set in its manifest and every /run/secrets file it names mounted. Then the same validator must refuse broken copies
# (a wrong type, a Service that is not headless, a container without probes), so that it cannot
# pass by validating nothing. Exit 77 (skip) without node/npm or when npm cannot install.
#   tests/kubernetes/check.sh <build dir>
set -uo pipefail
build=${1:?usage: check.sh <build dir>}
here=$(cd "$(dirname "$0")" && pwd)
manifests=$(cd "$here/../../deploy/kubernetes" && pwd)
tool=$build/k8s-validate
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "k8s: SKIP: node and npm are not installed (apt-get install nodejs npm)"
    exit 77
fi
mkdir -p "$tool"
cp "$here/package.json" "$here/package-lock.json" "$here/validate.mjs" "$tool/"
if ! cmp -s "$here/package-lock.json" "$tool/.installed-lock" 2>/dev/null; then
    if ! (cd "$tool" && npm ci --no-audit --no-fund --loglevel=error >npm.log 2>&1); then
        echo "k8s: SKIP: npm ci failed (no registry?): $(tail -3 "$tool/npm.log")"
        exit 77
    fi
    cp "$here/package-lock.json" "$tool/.installed-lock"
fi
node "$tool/validate.mjs" "$manifests" || exit 1

# Every variable a process requires (its --help says [required]) is set in its manifest, as
# itself or as its _FILE twin: a pod missing one would refuse to start on a real cluster.
missing=0
for p in gateway audit order tenant app billing; do
    bin=$build/services/$p/kooisv-$p
    [ "$p" = gateway ] && bin=$build/gateway/kooisv-gateway
    if [ ! -x "$bin" ]; then
        echo "k8s: FAIL: $bin is not built"
        exit 1
    fi
    required=$("$bin" --help | awk '/^  KOOISV_/ {name=$1} /\[required\]$/ && name {print name; name=""}')
    for v in $required; do
        if ! grep -Eq "^ *- name: ${v}(_FILE)?\$" "$manifests/$p.yaml"; then
            echo "k8s: FAIL: $p.yaml does not set $v (required by kooisv-$p)"
            missing=1
        fi
    done
    # and every secret file a variable names is mounted from the pod's Secret
    for f in $(grep -Eo "value: /run/secrets/[A-Za-z0-9._-]+" "$manifests/$p.yaml" | sed 's|.*/||' | sort -u); do
        if ! grep -Eq "^ *path: ${f}\$" "$manifests/$p.yaml"; then
            echo "k8s: FAIL: $p.yaml names /run/secrets/$f but does not mount it"
            missing=1
        fi
    done
done
[ "$missing" = 0 ] || exit 1
echo "k8s: ok: every required variable is set in its manifest, every secret file it names mounted"

bad=$(mktemp -d)
trap 'rm -rf "$bad"' EXIT
refuse() { # <what> <sed expression> <file>
    rm -rf "$bad/m" && cp -r "$manifests" "$bad/m"
    sed -i "$2" "$bad/m/$3"
    if node "$tool/validate.mjs" "$bad/m" >"$bad/out"; then
        echo "k8s: FAIL: the validator accepted $1"
        exit 1
    fi
    echo "k8s: ok: refused $1: $(grep -m1 FAIL "$bad/out")"
}
refuse "replicas: two" '0,/replicas: 2/s//replicas: two/' order.yaml
refuse "a Service that is not headless" 's/clusterIP: None/clusterIP: ""/' tenant.yaml
refuse "a container without a readiness probe" 's/readinessProbe:/startupProbeX:/' app.yaml
refuse "a writable root filesystem" '0,/readOnlyRootFilesystem: true/s//readOnlyRootFilesystem: false/' gateway.yaml
echo "k8s: all checks passed"
