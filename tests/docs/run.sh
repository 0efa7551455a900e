#!/usr/bin/env bash
# Runs every offline snippet of README.md and docs/*.md that is marked
# runnable (see tests/docs/run_snippets.py for the markers), as a user
# would: the mock fleet and `llmux serve` started as the pages say.
#
# `cargo install --path gateway` / `--path fleet` are stood in for by
# target/debug on PATH (a debug `cargo build --workspace`); `pip install
# openai` by the SDK virtualenv target/sdk-venv (made as tests/python/run.sh
# makes it); `pip install ./bindings/python` by the binding's source on
# PYTHONPATH with LLMUX_LIBRARY=target/debug/libllmux.so.
#
#   tests/docs/run.sh [GROUP...]
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
target=${CARGO_TARGET_DIR:-$root/target}

cargo build -q --workspace

venv=$root/target/sdk-venv
req=tests/python/requirements.txt
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! cmp -s "$req" "$venv/.requirements"; then
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req"
  cp "$req" "$venv/.requirements"
fi

export PATH="$target/debug:$venv/bin:$PATH"
export LLMUX_LIBRARY="$target/debug/libllmux.so"
export PYTHONPATH="$root/bindings/python/src${PYTHONPATH:+:$PYTHONPATH}"
# examples/gateway/demo.sh keeps its config here instead of a new /tmp directory.
LLMUX_DEMO_DIR=$(mktemp -d)
export LLMUX_DEMO_DIR
trap 'rm -rf "$LLMUX_DEMO_DIR"' EXIT
python3 tests/docs/run_snippets.py "$@"
