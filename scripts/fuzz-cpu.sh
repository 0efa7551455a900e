#!/usr/bin/env bash
# Runs one built cargo-fuzz target until its process has used a given
# amount of CPU time (user + system, all threads), then stops it with
# SIGINT so libFuzzer prints its final stats. On a shared machine this
# measures the work done, not how long other jobs kept it waiting.
#
#   scripts/fuzz-cpu.sh TARGET CPU_SECONDS [libFuzzer flags...]
#
# Build first: (cd fuzz && cargo +nightly fuzz build -s none). The run is
# niced (FUZZ_NICE, default 19). The log goes to target/fuzz-logs/TARGET.log
# and ends with a line `cpu_s=... wall_s=... rc=...`; the corpus grows in
# fuzz/corpus/TARGET, a crash input lands in fuzz/artifacts/TARGET/.
# Exit status: 0 when stopped at the CPU limit without a crash, else
# libFuzzer's (1 for a crash).
set -uo pipefail
t=${1:?usage: $0 TARGET CPU_SECONDS [flags]}
limit=${2:?usage: $0 TARGET CPU_SECONDS [flags]}
shift 2
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 2
bin=fuzz/target/x86_64-unknown-linux-gnu/release/$t
[ -x "$bin" ] || { echo "$bin is not built" >&2; exit 2; }
mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t" target/fuzz-logs
log=target/fuzz-logs/$t.log
tick=$(getconf CLK_TCK)
start=$(date +%s)
nice -n "${FUZZ_NICE:-19}" "$bin" -dict=fuzz/llmux.dict -timeout=60 -rss_limit_mb=4096 \
    -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" "$@" "fuzz/corpus/$t" \
    >"$log" 2>&1 &
pid=$!
cpu=0
stopped=0
while kill -0 "$pid" 2>/dev/null; do
    # Fields 14 and 15 of /proc/PID/stat (after the command name).
    ticks=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13}')
    [ -n "$ticks" ] && cpu=$((ticks / tick))
    if [ "$cpu" -ge "$limit" ]; then
        kill -INT "$pid"
        stopped=1
        break
    fi
    sleep 2
done
wait "$pid"
rc=$?
# libFuzzer exits 72 when interrupted.
[ "$stopped" = 1 ] && [ "$rc" = 72 ] && rc=0
echo "cpu_s=$cpu wall_s=$(($(date +%s) - start)) rc=$rc" >>"$log"
tail -n 25 "$log"
exit "$rc"
