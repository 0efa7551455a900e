#!/usr/bin/env bash
# Validates every payload llmux emits against the official `openai`,
# `anthropic` and `google-genai` Python packages (versions pinned in
# requirements.txt).
#
# Creates or reuses a venv at target/sdk-venv, then runs the Rust test
# tests/sdk_payloads.rs with LLMUX_SDK_PYTHON pointing at it: the test drives
# the engine against the mock fleet, writes target/sdk-payloads.jsonl and
# runs tests/python/validate_sdk.py on it. Finally the validator's self-test
# checks that damaged payloads are caught. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/../.."

venv=target/sdk-venv
req=tests/python/requirements.txt
stamp="$venv/.requirements"

if [ ! -x "$venv/bin/python" ]; then
  mkdir -p target
  python3 -m venv "$venv"
fi
# Reinstall only when the pins changed since the last install.
if ! cmp -s "$req" "$stamp"; then
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req"
  cp "$req" "$stamp"
fi

LLMUX_SDK_PYTHON="$PWD/$venv/bin/python" cargo test --workspace --test sdk_payloads -- --nocapture
"$venv/bin/python" tests/python/validate_sdk.py --self-test target/sdk-payloads.jsonl
