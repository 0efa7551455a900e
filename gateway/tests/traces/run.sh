#!/usr/bin/env bash
# Traces: `llmux serve` with telemetry.otlp exports to a collector that
# decodes the OTLP protobuf with the published definitions (pip
# opentelemetry-proto, pinned, in its own virtualenv under target/).
# See traces_test.py for what it checks.
set -euo pipefail
cd "$(dirname "$0")/../../.."
venv=target/otel-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check opentelemetry-proto==1.45.2
fi
cargo build -q --workspace
exec "$venv/bin/python" gateway/tests/traces/traces_test.py
