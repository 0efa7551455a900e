#!/usr/bin/env bash
# Runs every cargo-fuzz target under fuzz/ for a bounded time and prints a
# summary table (target, runs, execs/s, corpus size, result).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]      (default 60)
#
# Environment:
#   FUZZ_TARGETS   space-separated subset of targets (default: all)
#   FUZZ_JOBS      libFuzzer -fork=N workers per target (default: 1, no fork)
#   FUZZ_BUILD     extra `cargo fuzz build` flags (e.g. "--codegen-units 16"
#                  for a faster build, "-s none" without AddressSanitizer)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`) and a nightly
# toolchain; without nightly it tries stable with RUSTC_BOOTSTRAP=1.
# The corpus grows in fuzz/corpus/<target>/ (only the seed-* files are
# tracked); a crash leaves its input in fuzz/artifacts/<target>/ and the log
# in fuzz/logs/<target>.log. Exit status: 0 when no target crashed, 1 when
# one did, 2 when the build failed.
set -uo pipefail

secs=${1:-60}
case $secs in '' | *[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET]" >&2; exit 2 ;; esac

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 2

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is not installed: cargo install cargo-fuzz --locked" >&2
    exit 2
fi
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    fuzz=(cargo +nightly fuzz)
else
    echo "no nightly toolchain: trying stable with RUSTC_BOOTSTRAP=1" >&2
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
fi

all_targets=$("${fuzz[@]}" list 2>/dev/null) || all_targets=""
targets=${FUZZ_TARGETS:-$all_targets}
if [ -z "$targets" ]; then
    echo "no fuzz targets found" >&2
    exit 2
fi

echo "building fuzz targets..." >&2
# shellcheck disable=SC2086 # FUZZ_BUILD is a list of flags
if ! "${fuzz[@]}" build ${FUZZ_BUILD:-} >&2; then
    echo "build failed" >&2
    exit 2
fi

mkdir -p fuzz/logs
dict=fuzz/llmux.dict
jobs=${FUZZ_JOBS:-1}
rows=()
failed=0
for t in $targets; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    log=fuzz/logs/$t.log
    echo "fuzzing $t for ${secs}s..." >&2
    args=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -dict="$dict")
    if [ "$jobs" -gt 1 ]; then
        args+=(-fork="$jobs" -ignore_crashes=0)
    fi
    # shellcheck disable=SC2086
    "${fuzz[@]}" run ${FUZZ_BUILD:-} "$t" -- "${args[@]}" >"$log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    [ -n "$runs" ] || runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n1)
    [ -n "$runs" ] || runs=$(sed -n 's/^#\([0-9]*\).*/\1/p' "$log" | tail -n1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)
    corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
    if [ "$rc" -eq 0 ]; then
        result=ok
    else
        failed=1
        artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n1)
        kind=$(grep -o -m1 -E 'deadly signal|panicked at [^ ]*|ERROR: AddressSanitizer: [a-z-]*|ERROR: libFuzzer: [a-z-]*' "$log" || true)
        result="CRASH (${kind:-exit $rc}) ${artifact:-see $log}"
    fi
    rows+=("$(printf '%-20s %12s %10s %8s  %s' "$t" "${runs:-?}" "${speed:-?}" "$corpus" "$result")")
done

printf '\n%-20s %12s %10s %8s  %s\n' target runs execs/s corpus result
printf '%s\n' "${rows[@]}"
exit "$failed"
