#!/usr/bin/env bash
# bench_smoke <build>: kooisv-bench against the test suite, two seconds of the mix over four
# connections: every call, signed afresh, must be answered 000000 (a mistake in signing, nonces,
# bodies or the pool of instances shows as another code), and the CPU lines must be there.
set -euo pipefail
build=$1
out=$("$build/tools/bench/kooisv-bench" --env-file "$build/suite/suite.env" --workload mix \
    --conns 4 --seconds 2 --no-nginx)
printf '%s\n' "$out"
answers=$(grep -o 'answers .*' <<<"$out" | head -n 1)
if [[ ! $answers =~ ^answers\ 000000:[0-9]+$ ]]; then
    echo "bench_smoke: FAIL: expected only 000000 answers, got: $answers" >&2
    exit 1
fi
grep -q 'CPU µs/call: total' <<<"$out" || { echo "bench_smoke: FAIL: no CPU line" >&2; exit 1; }
echo "bench_smoke: ok"
