#!/usr/bin/env bash
# Builds and runs the llmux benchmark suite (benches/llmux.rs).
#
#   scripts/bench.sh                 # every case, ~2-4 minutes on 2 cores
#   scripts/bench.sh --quick         # fewer samples
#   scripts/bench.sh latency memory  # only these cases (latency throughput
#                                    # chunks routing memory failover quality shared gateway)
#
# The mock fleet runs as the release `llmux-fleet` binary, pinned to CPU 1;
# the bench thread, the engine and the direct reqwest baseline run on CPU 0.
# Results: a table on stdout and target/llmux-bench.json.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p llmux-fleet -p llmux-gateway
cargo bench --bench llmux --no-run
cargo bench --bench llmux -- "$@"

out="${CARGO_TARGET_DIR:-target}/llmux-bench.json"
echo
echo "JSON results: $out"
