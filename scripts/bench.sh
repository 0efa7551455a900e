#!/usr/bin/env bash
# Builds and runs the llmux benchmark suite (benches/llmux.rs) and the host
# benches (Python: bindings/python/bench/bench_host.py; Go: TestHostBench in
# bindings/go; C++: bindings/cpp/bench/bench_host.cpp, each skipped when its
# toolchain is absent), then merges the results and prints the table.
#
#   scripts/bench.sh                 # every case, a few minutes on 2 cores
#   scripts/bench.sh --quick         # fewer samples
#   scripts/bench.sh latency memory  # only these Rust cases (soak, or latency host allocs throughput
#                                    # chunks routing memory memory-h2 failover quality shared preferences gateway
#                                    # gateway-stream gateway-memory-noscrape)
#   scripts/bench.sh --docs ...      # also rewrite the bench table in docs/benchmarks.md
#                                    # (--readme: the same, its older name; README.md is not touched)
#
# The mock fleet runs as the release `llmux-fleet` binary, pinned to CPU 1;
# the bench thread, the engine, the direct baseline and the `llmux serve`
# gateway (the gateway cases) run on CPU 0. The
# memory cases (HTTP/1.1, then HTTP/2) run in processes of their own, so
# their per-stream figures do not depend on what ran before. Results: target/llmux-bench.json (one object
# per case) and a table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=() docs=() cases=()
for a in "$@"; do
    case "$a" in
        --quick) quick=(--quick) ;;
        --docs | --readme) docs=(--docs docs/benchmarks.md) ;;
        *) cases+=("$a") ;;
    esac
done
t="${CARGO_TARGET_DIR:-target}"

# The library, and the binaries the bench starts: llmux-fleet (the mock)
# and llmux (the gateway cases run `llmux serve`).
cargo build --release -p llmux -p llmux-fleet -p llmux-gateway --lib --bins
cargo bench --bench llmux --no-run
t="$(cd "$t" && pwd)"
if [[ ${#cases[@]} -gt 0 ]]; then
    LLMUX_BENCH_JSON="$t/bench-rust.json" cargo bench --bench llmux -- "${quick[@]}" "${cases[@]}"
    python3 scripts/bench-report.py "$t/llmux-bench.json" "$t/bench-rust.json" "${docs[@]}" >/dev/null
    echo "JSON results: $t/llmux-bench.json"
    exit 0
fi
LLMUX_BENCH_JSON="$t/bench-rust.json" cargo bench --bench llmux -- "${quick[@]}" \
    latency host allocs throughput chunks routing failover quality shared preferences gateway gateway-memory \
    gateway-stream gateway-memory-noscrape
LLMUX_BENCH_JSON="$t/bench-memory.json" cargo bench --bench llmux -- "${quick[@]}" memory
# The same over HTTP/2 (h2c), also in a process of its own.
LLMUX_BENCH_JSON="$t/bench-memory-h2.json" cargo bench --bench llmux -- "${quick[@]}" memory-h2
py=("$t/bench-memory-h2.json")
if command -v python3 >/dev/null; then
    LLMUX_LIBRARY="$t/release/libllmux.so" PYTHONPATH=bindings/python/src \
        python3 bindings/python/bench/bench_host.py "${quick[@]}" --json "$t/bench-python.json"
    py+=("$t/bench-python.json")
fi
if command -v go >/dev/null; then
    # The checkout's library (-tags llmux_dev), and at run time the release
    # one: LD_LIBRARY_PATH comes before the rpath to target/debug.
    (cd bindings/go && CGO_LDFLAGS="-L$t/release" LD_LIBRARY_PATH="$t/release" \
        LLMUX_FLEET="$t/release/llmux-fleet" LLMUX_BENCH_GO=1 \
        LLMUX_BENCH_GO_JSON="$t/bench-go.json" go test -tags llmux_dev -count=1 -run TestHostBench .)
    py+=("$t/bench-go.json")
fi
if command -v cmake >/dev/null && command -v g++ >/dev/null; then
    # llmux.hpp and the C ABI against target/release/libllmux.so, built -O2.
    # A fresh configure: a cache left by another checkout sharing the
    # target directory would refuse this source tree.
    rm -rf "$t/cpp-bench"
    cmake -S bindings/cpp -B "$t/cpp-bench" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=g++ \
        -DLLMUX_LIB_DIR="$t/release" -DLLMUX_BUILD_TESTS=OFF -DLLMUX_BUILD_EXAMPLES=OFF \
        -DLLMUX_BUILD_BENCH=ON >/dev/null
    cmake --build "$t/cpp-bench" --target llmux_bench_host
    LLMUX_FLEET_BIN="$t/release/llmux-fleet" "$t/cpp-bench/llmux_bench_host" "${quick[@]}" \
        --json "$t/bench-cpp.json"
    py+=("$t/bench-cpp.json")
fi
echo
python3 scripts/bench-report.py "$t/llmux-bench.json" "$t/bench-rust.json" "$t/bench-memory.json" "${py[@]}" "${docs[@]}"
echo
echo "JSON results: $t/llmux-bench.json"
