#!/usr/bin/env bash
# The dashboard in a real headless browser: Debian's chromium and
# chromium-driver (scripts/setup installs them) driven by Selenium (pinned,
# in its own virtualenv under target/), against `llmux serve` in front of
# the mock fleet. See dashboard_test.py for what it checks.
set -euo pipefail
cd "$(dirname "$0")/../../.."
venv=target/dashboard-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check selenium==4.51.0
fi
command -v chromium >/dev/null || { echo "dashboard test: chromium is missing (run scripts/setup)" >&2; exit 1; }
command -v chromedriver >/dev/null || { echo "dashboard test: chromedriver is missing (run scripts/setup)" >&2; exit 1; }
cargo build -q --workspace
exec "$venv/bin/python" gateway/tests/dashboard/dashboard_test.py
