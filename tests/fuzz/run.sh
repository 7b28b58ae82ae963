#!/usr/bin/env bash
# run.sh build <build dir>        configure and build the harnesses with clang into <build>/fuzz
# run.sh run <build dir> <name>   run fuzz_<name> for KOOISV_FUZZ_SECONDS (default 30) on a copy
#                                 of its seed corpus (tests/fuzz/corpus/<name>); a crash, leak
#                                 or sanitizer report fails, and the input is kept in
#                                 <build>/fuzz/artifacts/<name>/
# Exit 77 (CTest: skipped) when clang's libFuzzer is not installed.
set -euo pipefail
src=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
repo=$(readlink -f "$src/../..")
verb=${1:-}
build=$(readlink -f "${2:-}")/fuzz
have_libfuzzer() {
    command -v clang >/dev/null &&
        printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n){return 0;}\n' |
        clang -x c -fsanitize=fuzzer -o /dev/null - 2>/dev/null
}
case $verb in
build)
    have_libfuzzer || {
        echo "fuzz: SKIP: clang with libFuzzer is not installed (apt-get install clang libclang-rt-14-dev)"
        exit 77
    }
    # Debug keeps the harnesses' asserts (no NDEBUG); -O1 keeps them fast enough to explore.
    CC=clang CFLAGS=-O1 cmake -S "$repo" -B "$build" -DKOOISV_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
    targets=()
    for t in $(sed -n 's/^set(KOOISV_FUZZ_TARGETS \(.*\))$/\1/p' "$src/CMakeLists.txt"); do
        targets+=("fuzz_$t")
    done
    cmake --build "$build" -j "$(nproc)" --target "${targets[@]}" >"$build/build.log" 2>&1 || {
        tail -n 40 "$build/build.log"
        exit 1
    }
    echo "fuzz: harnesses built in $build"
    ;;
run)
    name=${3:?usage: run.sh run <build dir> <name>}
    bin=$build/tests/fuzz/fuzz_$name
    [[ -x $bin ]] || {
        echo "fuzz: SKIP: $bin not built"
        exit 77
    }
    work=$build/corpus/$name arts=$build/artifacts/$name
    rm -rf "$work"
    mkdir -p "$work" "$arts"
    cp "$src/corpus/$name"/* "$work/"
    seconds=${KOOISV_FUZZ_SECONDS:-30}
    echo "fuzz: fuzz_$name for ${seconds}s on $(ls "$work" | wc -l) seeds"
    # One job; -rss_limit_mb and -timeout turn memory blow-ups and hangs into failures too.
    # libFuzzer reports a crash with exit 77 by default, which CTest would count as a skip.
    "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -error_exitcode=1 -timeout_exitcode=1 \
        -print_final_stats=1 -artifact_prefix="$arts/" "$work" 2>&1 | tail -n 40
    ;;
*)
    sed -n '2,7p' "$0" >&2
    exit 2
    ;;
esac
