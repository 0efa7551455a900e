#!/bin/sh
# Vets and tests the Go binding (race detector on) and builds the example.
# Assumes the Rust side is built:
#   cargo build && cargo build -p llmux-fleet    (from the repository root)
# LLMUX_FLEET may point at another llmux-fleet binary.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

for f in "$root/target/debug/libllmux.so" "${LLMUX_FLEET:-$root/target/debug/llmux-fleet}"; do
    if [ ! -e "$f" ]; then
        echo "run-tests.sh: $f is missing; run 'cargo build && cargo build -p llmux-fleet' in $root" >&2
        exit 1
    fi
done

# Link the checkout's target/ (link_dev.go); every go command below, and the
# `go build` the tests run, sees the tag.
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-tags=llmux_dev"

cd "$here"
unformatted=$(gofmt -l . "$root/examples/go")
if [ -n "$unformatted" ]; then
    echo "run-tests.sh: gofmt needed: $unformatted" >&2
    exit 1
fi
go vet ./...
go test -race -count=1 ./...

cd "$root/examples/go"
go vet ./...
go build -o /dev/null ./stream
echo "run-tests.sh: ok"
