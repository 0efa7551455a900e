#!/usr/bin/env bash
# Offline gateway demo: two mock providers (one OpenAI-protocol, one
# Anthropic-protocol) from the llmux fleet, `llmux serve` in front of them,
# and curl in both protocols. It prints the config it writes and keeps it
# (with the gateway's log) in a directory of its own, named at the start and
# the end; LLMUX_DEMO_DIR picks that directory. `--keep` leaves the gateway
# running until Ctrl-C so you can point an SDK or Claude Code at it.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build -q -p llmux-gateway -p llmux-fleet
bin=${CARGO_TARGET_DIR:-target}/debug
work=$(mktemp -d)                                   # the fleet's pipe and listing: removed at exit
keep=${LLMUX_DEMO_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/llmux-demo.XXXXXX")}   # the config and the log: kept
mkdir -p "$keep"
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; echo; echo "The config and the gateway log are kept in $keep (llmux.json, llmux.log)."' EXIT
echo "== writing the config to $keep/llmux.json"

mkfifo "$work/in"
"$bin/llmux-fleet" --config '{"servers": [{"name": "fastco", "behavior": {"first_token_delay_ms": 20}},
  {"name": "claudeco", "behavior": {"first_token_delay_ms": 80}}]}' --exit-on-stdin-eof <"$work/in" >"$work/fleet" &
pids+=($!); exec 3>"$work/in"
until [ -s "$work/fleet" ]; do sleep 0.05; done
port() { python3 -c 'import json,sys; print({s["name"]: s["port"] for s in json.load(open(sys.argv[1]))["servers"]}[sys.argv[2]])' "$work/fleet" "$1"; }

cat >"$keep/llmux.json" <<JSON
{"providers": [
  {"slug": "fastco", "protocol": "openai", "base_url": "http://127.0.0.1:$(port fastco)/v1", "api_key": "demo"},
  {"slug": "claudeco", "protocol": "anthropic", "base_url": "http://127.0.0.1:$(port claudeco)", "api_key": "demo"}],
 "models": [{"slug": "demo/chat", "endpoints": [
  {"provider": "fastco", "upstream_model": "fast-1", "price": {"prompt": 0.5, "completion": 1.5}},
  {"provider": "claudeco", "upstream_model": "claude-x", "price": {"prompt": 3, "completion": 15}}]}],
 "gateway": {"keys": [{"env": "LLMUX_DEMO_KEY", "name": "demo"}]}}
JSON
echo; echo "== the config: $keep/llmux.json (its gateway key is read from LLMUX_DEMO_KEY)"
cat "$keep/llmux.json"
export LLMUX_DEMO_KEY=demo-key
echo; echo "== llmux check --config $keep/llmux.json"
"$bin/llmux" check --config "$keep/llmux.json"
echo; echo "== llmux serve --config $keep/llmux.json --listen 127.0.0.1:0"
"$bin/llmux" serve --config "$keep/llmux.json" --listen 127.0.0.1:0 >"$work/out" 2>"$keep/llmux.log" &
pids+=($!)
until [ -s "$work/out" ]; do sleep 0.05; done
head -n1 "$work/out"
gw=$(sed -n 's/^llmux: listening on //p' "$work/out")

echo; echo "== OpenAI Chat Completions (non-streaming), routing record in the headers"
curl -sS -D - "$gw/api/v1/chat/completions" -H "Authorization: Bearer $LLMUX_DEMO_KEY" \
  -H 'content-type: application/json' -d '{"model": "demo/chat", "messages": [{"role": "user", "content": "Hi"}]}'
echo; echo; echo "== Anthropic Messages (streaming), pinned to the Anthropic-protocol provider"
curl -sS -N "$gw/api/anthropic/v1/messages" -H "x-api-key: $LLMUX_DEMO_KEY" -H 'anthropic-version: 2023-06-01' \
  -H 'content-type: application/json' \
  -d '{"model": "demo/chat:claudeco", "max_tokens": 100, "stream": true, "messages": [{"role": "user", "content": "Hi"}]}'
echo "== Anthropic caller, served by the price-ranked OpenAI-protocol provider (translated)"
curl -sS "$gw/api/anthropic/v1/messages" -H "x-api-key: $LLMUX_DEMO_KEY" -H 'content-type: application/json' \
  -d '{"model": "demo/chat", "max_tokens": 100, "provider": {"routing": {"type": "priority", "primary_factor": "price"}}, "messages": [{"role": "user", "content": "Hi"}]}'
echo; echo; echo "== a wrong key"
curl -sS -i "$gw/api/v1/chat/completions" -H "Authorization: Bearer nope" -d '{}' | grep -E '^HTTP|x-should-retry|error'
echo; echo "== the model list with live health"
curl -sS "$gw/api/v1/models" -H "Authorization: Bearer $LLMUX_DEMO_KEY"; echo
echo; echo "== llmux route: what a request would try now, and why"
"$bin/llmux" route --config "$keep/llmux.json" demo/chat
"$bin/llmux" route --config "$keep/llmux.json" demo/chat --routing '{"type": "priority", "primary_factor": "price"}'
echo; echo "== the gateway's log lines ($keep/llmux.log)"
cat "$keep/llmux.log"
if [ "${1:-}" = "--keep" ]; then
  echo; echo "Gateway at $gw (key: $LLMUX_DEMO_KEY). Ctrl-C stops it."
  wait "${pids[-1]}"
fi
