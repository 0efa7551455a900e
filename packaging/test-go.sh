#!/usr/bin/env bash
# Follows bindings/go/README.md's Install section verbatim, from outside the
# checkout: scripts/install.sh into a temporary $HOME/.local, then a new Go
# module in a temporary directory (not inside the repository) whose main.go
# is the README's quickstart, built the default way (pkg-config, libllmux.so)
# and with -tags llmux_static, and run against the mock fleet through the
# config file the quickstart reads (llmux.json). Then checks that neither
# binary refers to the checkout, and that the static one still runs with
# the installed library removed: nothing depends on target/ (cargo clean).
source "$(dirname "$0")/lib.sh"
readme="$root/bindings/go/README.md"
new_tmp

# A private HOME for the README's "$HOME/.local"; the toolchains keep theirs.
# A private Go build cache too: Go's cache does not track what pkg-config
# says, so a shared one would keep the link flags of an earlier run's prefix.
export CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}" RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}"
export GOPATH="$(go env GOPATH)" GOMODCACHE="$(go env GOMODCACHE)" GOCACHE="$tmp/go-build"
export HOME="$tmp/home" LLMUX_CHECKOUT="$root" GOFLAGS=-mod=mod
mkdir -p "$HOME"

step "install (README, in the checkout)"
(cd "$root" && bash -euo pipefail -c "$(readme_block "$readme" "## Install" sh 1)")

step "a new module in $tmp/app with the quickstart as main.go"
mkdir -p "$tmp/app"
cd "$tmp/app"
go mod init example.com/app
readme_block "$readme" "## Quickstart" go > main.go
[ -s main.go ] || die "no quickstart in $readme"
start_fleet openai fastco
write_config llmux.json

step "build and run (README)"
bash -euo pipefail -c "$(readme_block "$readme" "## Install" sh 2)" | tee run.log
# Each binary: the answer, its routing line, the streamed answer, its routing.
[ "$(grep -cE '^served by (openai|fastco)/default after 1 attempt\(s\)$' run.log)" = 2 ] || die "no routing lines"
[ "$(grep -cE '^(openai|fastco)/default, \$0\.[0-9]{6}$' run.log)" = 2 ] || die "no stream routing lines"
[ "$(grep -cE '^Hello from (openai|fastco)\.$' run.log)" = 4 ] || die "want the answer twice from each binary"

step "nothing refers to the checkout; the static binary needs no libllmux"
for exe in app app-static; do
  if readelf -d "$exe" | grep -E "RPATH|RUNPATH" | grep -q "$root"; then die "$exe has an rpath into $root"; fi
done
readelf -d app | grep -q "(NEEDED).*\[libllmux.so.0\]" || die "app does not need libllmux.so.0"
if readelf -d app-static | grep -q "libllmux"; then die "app-static needs libllmux"; fi
rm -rf "$HOME/.local"
out=$(./app-static) || die "app-static failed without the installed library"
grep -qE "Hello from (openai|fastco)\." <<< "$out" || die "app-static printed no answer"
step "ok"
