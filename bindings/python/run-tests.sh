#!/usr/bin/env bash
# Runs the Python binding's tests against target/debug/llmux-fleet (build it
# first: `cargo build -p llmux-fleet`).
#
# Installs the package as a user would (`pip install`, not editable) into a
# virtualenv at target/py-venv: that builds libllmux with cargo (release,
# through setuptools-rust, fetched from PyPI into pip's isolated build
# environment) and bundles it into the package, so the tests run against
# the bundled library. The venv is created with --system-site-packages so an
# already installed pytest is used; pytest is installed from PyPI only if
# missing. Extra arguments go to pytest.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
python="${PYTHON:-python3}"
venv="$root/target/py-venv"

if [[ ! -x "${LLMUX_FLEET:-$root/target/debug/llmux-fleet}" ]]; then
    echo "run-tests.sh: no llmux-fleet binary: run 'cargo build -p llmux-fleet' first" >&2
    exit 2
fi

if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv --system-site-packages "$venv"
fi
vpy="$venv/bin/python"

"$vpy" -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall "$here"
if ! "$vpy" -c 'import pytest' 2>/dev/null; then
    "$vpy" -m pip install --quiet --disable-pip-version-check pytest
fi
# Clean the in-tree build artefacts setuptools leaves behind.
rm -rf "$here/build" "$here/src/llmux.egg-info"
if [[ ! -f "$("$vpy" -c 'import llmux, os; print(os.path.dirname(llmux.__file__))')/libllmux.so" ]]; then
    echo "run-tests.sh: the installed package has no bundled libllmux.so" >&2
    exit 1
fi

# Static types: the package and tests/typing/check_types.py under mypy --strict.
if ! "$vpy" -c 'import mypy' 2>/dev/null; then
    "$vpy" -m pip install --quiet --disable-pip-version-check mypy
fi
(cd "$here" && MYPYPATH="$here/src" "$vpy" -m mypy --strict --no-incremental src/llmux tests/typing/check_types.py)

export LLMUX_ROOT="$root"
cd "$here"
exec "$vpy" -m pytest -p no:cacheprovider -q "$here/tests" "$@"
