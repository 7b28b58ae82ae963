#!/usr/bin/env bash
# bench_smoke <build>: kooisv-bench against the test suite, two seconds of the mix over four
# connections: every call, signed afresh, must be answered 000000 (a mistake in signing, nonces,
# bodies or the pool of instances shows as another code), and the CPU lines must be there. Then
# the whole table without nginx (one second a run): every newInstance it made, in whichever
# run, created an instance of its own (a run repeating an earlier run's orders is answered as
# repeats, which measures the wrong thing).
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
grep -Eq '^    machine: CPU [0-9]+ % busy' <<<"$out" || { echo "bench_smoke: FAIL: no machine line" >&2; exit 1; }
# a fixed rate: the seconds' own p99, each over a --tail-ms of 1 µs
out=$("$build/tools/bench/kooisv-bench" --env-file "$build/suite/suite.env" --workload query \
    --conns 4 --seconds 2 --rate 40 --tail-ms 0.001 --no-nginx)
printf '%s\n' "$out"
grep -Eq '^    per second \(by when calls were due\): p99 median [0-9.]+ ms, worst [0-9.]+ ms \(second [01]\); 2 of 2 seconds with a p99 over 0.001 ms$' <<<"$out" ||
    { echo "bench_smoke: FAIL: no per-second line for two seconds at a fixed rate" >&2; exit 1; }
# a bad value is refused before any call, with the usage
for bad in 0 -5 x; do
    if "$build/tools/bench/kooisv-bench" --env-file "$build/suite/suite.env" --tail-ms "$bad" \
        --no-nginx >/dev/null 2>&1; then
        echo "bench_smoke: FAIL: --tail-ms $bad was taken" >&2
        exit 1
    fi
done

log=$(mktemp)
trap 'rm -f "$log"' EXIT
out=$("$build/tools/bench/kooisv-bench" --env-file "$build/suite/suite.env" --table --no-nginx \
    --conns 4 --seconds 1 --log "$log")
run=$(sed -n 's/^kooisv-bench: run \([A-Z0-9]*\),.*/\1/p' <<<"$out")
[[ -n $run ]] || { echo "bench_smoke: FAIL: no run id in the table's output" >&2; exit 1; }
# every line: answer call nonce id due_ms latency_us, due within the 1 s run, a latency > 0
malformed=$(awk 'NF != 6 || $5 !~ /^[0-9]+$/ || $5 > 1000 || $6 !~ /^[1-9][0-9]*$/' "$log" | head -n 3)
[[ -s $log && -z $malformed ]] ||
    { echo "bench_smoke: FAIL: --log lines not 'answer call nonce id due_ms latency_us': $malformed" >&2; exit 1; }
news=$(awk '$1 == "000000" && $2 == "newInstance" { print $4 }' "$log" | sort -u | wc -l)
calls=$(awk '$1 == "000000" && $2 == "newInstance"' "$log" | wc -l)
set -a
# shellcheck disable=SC1091
. "$build/suite/suite.env"
set +a
made=$(psql "$KOOISV_PG_SUPER_DSN" -qAtc \
    "SELECT count(*) FROM orders.instances WHERE order_id LIKE 'CSB${run}%' AND order_id NOT LIKE '%W99N%'")
echo "bench_smoke: table run $run: $calls newInstance answered 000000, $news distinct orders, $made instances (the pool's, worker 99, aside)"
# A call still in flight when its run ended is not in the log but may have made its instance:
# more instances than logged calls is fine, fewer means calls were answered as repeats.
if ((calls == 0 || news != calls || made < calls)); then
    echo "bench_smoke: FAIL: the table's runs repeated orders ($calls calls, $news distinct, $made made)" >&2
    exit 1
fi
echo "bench_smoke: ok"
