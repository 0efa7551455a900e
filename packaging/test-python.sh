#!/usr/bin/env bash
# Follows bindings/python/README.md's Install section verbatim, from fresh
# virtualenvs outside the checkout:
#   1. `pip install ./bindings/python` (run in the checkout, into a new venv
#      in a temporary directory): cargo builds libllmux into the package;
#   2. `pip install build && python -m build ./bindings/python` (in a second
#      new venv): an sdist and a py3-none platform wheel built from it; the
#      wheel is checked (tag, bundled libllmux.so with its SONAME) and
#      installed into a third new venv;
# and each time runs the README quickstart, from the temporary directory,
# against the mock fleet (its two base URLs replaced by the fleet's; nothing
# else changed); finally `mypy --strict` checks the quickstart and
# tests/typing/check_types.py against the installed wheel's type hints.
# Prints the wheel's and the bundled library's sizes.
# The cargo target directory is shared with the checkout
# (CARGO_TARGET_DIR) so the sdist build reuses compiled dependencies.
source "$(dirname "$0")/lib.sh"
readme="$root/bindings/python/README.md"
new_tmp
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

start_fleet openai fastco
readme_block "$readme" "## Quickstart" python \
  | sed -e "s|https://api.openai.com/v1|${fleet_url[openai]}/v1|" \
        -e "s|https://fast.example.com/v1|${fleet_url[fastco]}/v1|" > "$tmp/quickstart.py"
grep -q "${fleet_url[fastco]}" "$tmp/quickstart.py" || die "the quickstart's config changed: update this test"

# quickstart VENV: runs it from $tmp (not the checkout) with that venv.
quickstart() {
  (cd "$tmp" && "$1/bin/python" quickstart.py) > "$tmp/out.txt"
  cat "$tmp/out.txt"
  local lib
  lib=$(cd "$tmp" && "$1/bin/python" -c 'import llmux._ffi as f; print(f.lib()._name)')
  case "$lib" in
    "$1"/lib/python3*/site-packages/llmux/libllmux.so) ;;
    *) die "loaded $lib, not the bundled library" ;;
  esac
  [ "$(grep -oE 'Hello from (openai|fastco)\.' "$tmp/out.txt" | wc -l)" -ge 3 ] || die "quickstart: want three answers"
  grep -q "Routing(model='meta/llama-3.1-70b', endpoint='fastco/default'" "$tmp/out.txt" || die "quickstart: no stream routing"
}

step "1. pip install ./bindings/python (README, in the checkout) into $tmp/venv"
python3 -m venv "$tmp/venv"
(source "$tmp/venv/bin/activate" && cd "$root" && bash -euo pipefail -c "$(readme_block "$readme" "## Install" sh 1)")
rm -rf "$root/bindings/python/build" "$root/bindings/python/src/llmux.egg-info"
quickstart "$tmp/venv"

step "2. python -m build ./bindings/python (README) in $tmp/venv-build"
dist="$root/bindings/python/dist"
rm -f "$dist"/llmux-*
python3 -m venv "$tmp/venv-build"
(source "$tmp/venv-build/bin/activate" && cd "$root" && bash -euo pipefail -c "$(readme_block "$readme" "## Install" sh 2)")
mkdir -p "$tmp/dist"
mv "$dist"/llmux-* "$tmp/dist/"
rmdir "$dist" 2>/dev/null || true
rm -rf "$root/bindings/python/build" "$root/bindings/python/src/llmux.egg-info"
ls -l "$tmp/dist"
wheel=$(ls "$tmp"/dist/llmux-*-py3-none-linux_*.whl) || die "no py3-none-linux wheel"
ls "$tmp"/dist/llmux-*.tar.gz >/dev/null || die "no sdist"
tar -tzf "$tmp"/dist/llmux-*.tar.gz | grep -q "/rust/src/lib.rs$" || die "the sdist lacks the crate"
(cd "$tmp" && python3 -m zipfile -e "$wheel" wheel-contents)
so="$tmp/wheel-contents/llmux/libllmux.so"
[ -f "$so" ] || die "the wheel has no llmux/libllmux.so"
readelf -d "$so" | grep -q "(SONAME).*\[libllmux.so.0\]" || die "bundled libllmux.so has no SONAME"
file "$so" | grep -q ", stripped" || die "bundled libllmux.so is not stripped"
echo "wheel $(basename "$wheel"): $(stat -c %s "$wheel") bytes; bundled libllmux.so: $(stat -c %s "$so") bytes"

step "3. the wheel, installed into a new venv $tmp/venv-wheel"
python3 -m venv "$tmp/venv-wheel"
"$tmp/venv-wheel/bin/pip" install -q "$wheel"
quickstart "$tmp/venv-wheel"

step "mypy --strict follows the installed package's types (quickstart, tests/typing/check_types.py)"
"$tmp/venv-wheel/bin/pip" install -q mypy
cp "$root/bindings/python/tests/typing/check_types.py" "$tmp/"
(cd "$tmp" && venv-wheel/bin/mypy --strict --no-incremental quickstart.py check_types.py)
step "ok"
