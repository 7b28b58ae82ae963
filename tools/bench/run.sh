#!/usr/bin/env bash
# tools/bench/run.sh [kooisv-bench options]: the whole benchmark table (README "Benchmark")
# against what `deploy/local/kooisv-local up` started: builds kooisv-bench into the runner's
# build folder, installs nginx (Debian package) when it is missing, and runs
#   kooisv-bench --env-file <state>/kooisv.env --table [options]
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
state=${KOOISV_STATE_DIR:-$repo/.state}
build=${KOOISV_BUILD_DIR:-$repo/build}
[[ -f $state/kooisv.env ]] || { echo "run.sh: no $state/kooisv.env: run deploy/local/kooisv-local up first" >&2; exit 2; }
if [[ ! -x /usr/sbin/nginx ]]; then
    sudo_=(); ((EUID == 0)) || sudo_=(sudo)
    "${sudo_[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nginx
fi
cmake -S "$repo" -B "$build" >/dev/null
cmake --build "$build" -j 2 --target kooisv-bench >/dev/null
exec "$build/tools/bench/kooisv-bench" --env-file "$state/kooisv.env" --table "$@"
