#!/usr/bin/env bash
# Runs the Python binding's tests against target/{release,debug}/libllmux.so
# and target/debug/llmux-fleet. Builds nothing: run `cargo build` and
# `cargo build -p llmux-fleet` first.
#
# Installs the package (not editable) into a virtualenv at target/py-venv,
# created with --system-site-packages so an already installed pytest is used
# and nothing needs the network; pytest is installed from PyPI only if
# missing. Extra arguments go to pytest.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
python="${PYTHON:-python3}"
venv="$root/target/py-venv"

if [[ ! -f "$root/target/debug/libllmux.so" && ! -f "$root/target/release/libllmux.so" && -z "${LLMUX_LIBRARY:-}" ]]; then
    echo "run-tests.sh: no libllmux.so in $root/target/{release,debug}: run 'cargo build' first" >&2
    exit 2
fi
if [[ ! -x "${LLMUX_FLEET:-$root/target/debug/llmux-fleet}" ]]; then
    echo "run-tests.sh: no llmux-fleet binary: run 'cargo build -p llmux-fleet' first" >&2
    exit 2
fi

if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv --system-site-packages "$venv"
fi
vpy="$venv/bin/python"

# Offline install when the interpreter already has a usable build backend
# (setuptools >= 70, or >= 61 with wheel); otherwise pip fetches it.
if "$vpy" -c '
import sys, setuptools
major = int(setuptools.__version__.split(".")[0])
if major < 70:
    import wheel
sys.exit(major < 61)' 2>/dev/null; then
    "$vpy" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation --force-reinstall "$here"
else
    "$vpy" -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall "$here"
fi
if ! "$vpy" -c 'import pytest' 2>/dev/null; then
    "$vpy" -m pip install --quiet --disable-pip-version-check pytest
fi
# Clean the in-tree build artefacts setuptools leaves behind.
rm -rf "$here/build" "$here/src/llmux.egg-info"

export LLMUX_ROOT="$root"
cd "$here"
exec "$vpy" -m pytest -p no:cacheprovider -q "$here/tests" "$@"
