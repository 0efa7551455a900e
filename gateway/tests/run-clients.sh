#!/usr/bin/env bash
# Real clients against a running `llmux serve` in front of the mock fleet:
# the official openai, anthropic and google-genai Python SDKs
# (tests/python/gateway_clients.py, and the openai SDK over TLS + HTTP/2:
# tests/python/gateway_tls.py), Gemini CLI (npm @google/gemini-cli) with
# its model served by a Gemini and a Chat Completions endpoint,
# Codex CLI (npm @openai/codex, which ships a native binary) with its model
# served by a Responses, a Chat Completions and an Anthropic endpoint, and
# Claude Code itself (npm @anthropic-ai/claude-code), once with its model
# served by an Anthropic-protocol endpoint and once by an OpenAI-protocol
# endpoint. Both are installed into a cache directory outside the repository.
#
# Needs: cargo, python3 with venv, npm (Codex and Claude Code are skipped,
# with the reason printed, only when npm cannot install them).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
target=${CARGO_TARGET_DIR:-$root/target}
cc_version=2.1.197
cc_cache=${LLMUX_CLIENT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llmux}/claude-code-$cc_version
codex_version=0.169.0
codex_cache=${LLMUX_CLIENT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llmux}/codex-$codex_version
gemini_version=0.61.0
gemini_cache=${LLMUX_CLIENT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llmux}/gemini-cli-$gemini_version

cargo build -q --workspace
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# --- the mock fleet ---------------------------------------------------------
turn2='{"text": "Done: the command printed llmux-gateway-check."}'
cc='{"text": "", "tool_calls": [{"name": "Bash", "arguments": "{\"command\": \"echo llmux-gateway-check\", \"description\": \"Print a marker\"}"}], "after_tool_result": '"$turn2"'}'
cx_turn2='{"text": "Done: the command printed llmux-codex-check."}'
cx='{"text": "", "tool_calls": [{"name": "exec_command", "arguments": "{\"cmd\": \"echo llmux-codex-check\"}"}], "after_tool_result": '"$cx_turn2"'}'
gc_turn2='{"text": "Done: the command printed llmux-gemini-check."}'
gc='{"text": "", "tool_calls": [{"name": "run_shell_command", "arguments": "{\"command\": \"echo llmux-gemini-check\"}"}], "after_tool_result": '"$gc_turn2"'}'
cat > "$work/fleet.json" <<JSON
{"servers": [
  {"name": "oa"}, {"name": "an"},
  {"name": "down", "behavior": {"status": 503}},
  {"name": "limited", "behavior": {"status": 429, "retry_after": "1"}},
  {"name": "broken", "behavior": {"status": 500}},
  {"name": "cc", "behavior": $cc},
  {"name": "cx", "behavior": $cx},
  {"name": "gm"}, {"name": "gc", "behavior": $gc}
]}
JSON
mkfifo "$work/fleet.in"
"$target/debug/llmux-fleet" --config-file "$work/fleet.json" --exit-on-stdin-eof <"$work/fleet.in" >"$work/fleet.out" &
pids+=($!)
exec 3>"$work/fleet.in"   # held open: the fleet exits when this script does
for _ in $(seq 100); do [ -s "$work/fleet.out" ] && break; sleep 0.05; done
fleet=$(head -n1 "$work/fleet.out")
url_of() { python3 -c 'import json,sys; print({s["name"]: s["base_url"] for s in json.loads(sys.argv[1])["servers"]}[sys.argv[2]])' "$fleet" "$1"; }

# --- the gateway ------------------------------------------------------------
provider() { echo "{\"slug\": \"$1\", \"protocol\": \"$2\", \"base_url\": \"$3\", \"api_key\": \"upstream-fake-key\"}"; }
endpoint() { echo "{\"provider\": \"$1\", \"name\": \"$2\", \"upstream_model\": \"up-$1\", \"price\": {\"prompt\": 1, \"completion\": 2}, \"expected_first_token_ms\": $3}"; }
cat > "$work/llmux.json" <<JSON
{"providers": [
  $(provider oa openai "$(url_of oa)/v1"), $(provider an anthropic "$(url_of an)"),
  $(provider down openai "$(url_of down)/v1"), $(provider limited openai "$(url_of limited)/v1"),
  $(provider broken anthropic "$(url_of broken)"),
  $(provider cc-an anthropic "$(url_of cc)"), $(provider cc-oa openai "$(url_of cc)/v1"),
  $(provider rs responses "$(url_of oa)/v1"),
  $(provider cx-rs responses "$(url_of cx)/v1"), $(provider cx-oa openai "$(url_of cx)/v1"),
  $(provider cx-an anthropic "$(url_of cx)"),
  $(provider gm gemini "$(url_of gm)"),
  $(provider gc-gm gemini "$(url_of gc)"), $(provider gc-oa openai "$(url_of gc)/v1")],
 "models": [
  {"slug": "demo/oa", "endpoints": [$(endpoint oa default 10)]},
  {"slug": "demo/an", "endpoints": [$(endpoint an default 10)]},
  {"slug": "demo/failover", "endpoints": [$(endpoint down failover 1), $(endpoint oa failover 50)]},
  {"slug": "demo/limited", "endpoints": [$(endpoint limited default 10)]},
  {"slug": "demo/broken", "endpoints": [$(endpoint broken default 10)]},
  {"slug": "demo/cc-an", "endpoints": [$(endpoint cc-an default 10)]},
  {"slug": "demo/cc-oa", "endpoints": [$(endpoint cc-oa default 10)]},
  {"slug": "demo/rs", "endpoints": [$(endpoint rs default 10)]},
  {"slug": "demo/cx-rs", "endpoints": [$(endpoint cx-rs default 10)]},
  {"slug": "demo/cx-oa", "endpoints": [$(endpoint cx-oa default 10)]},
  {"slug": "demo/cx-an", "endpoints": [$(endpoint cx-an default 10)]},
  {"slug": "demo/gm", "endpoints": [$(endpoint gm default 10)]},
  {"slug": "demo/gc-gm", "endpoints": [$(endpoint gc-gm default 10)]},
  {"slug": "demo/gc-oa", "endpoints": [$(endpoint gc-oa default 10)]}],
 "health": {"explore_ratio": 0, "failure_threshold": 1000},
 "retry": {"max_retries": 0},
 "gateway": {"keys": [{"env": "LLMUX_TEST_KEY", "name": "clients"},
   {"env": "LLMUX_TEST_KEY_MODELS", "name": "models", "models": ["demo/oa"]},
   {"env": "LLMUX_TEST_KEY_BROKE", "name": "broke", "budget": {"usd": 0, "period": "day"}},
   {"env": "LLMUX_TEST_KEY_RPM", "name": "rpm", "limits": {"rpm": 1}}]}}
JSON
export LLMUX_TEST_KEY=llmux-test-key-not-a-secret
# Key policies (docs/keys.md): fake values.
export LLMUX_TEST_KEY_MODELS=llmux-models-key-not-a-secret
export LLMUX_TEST_KEY_BROKE=llmux-broke-key-not-a-secret
export LLMUX_TEST_KEY_RPM=llmux-rpm-key-not-a-secret
"$target/debug/llmux" check --config "$work/llmux.json" >/dev/null
"$target/debug/llmux" serve --config "$work/llmux.json" --listen 127.0.0.1:0 --log-format json \
  >"$work/gw.out" 2>"$work/gw.log" &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/gw.out" ] && break; sleep 0.05; done
gw=$(sed -n 's/^llmux: listening on //p' "$work/gw.out")
[ -n "$gw" ] || { cat "$work/gw.log"; echo "the gateway did not start" >&2; exit 1; }
echo "gateway at $gw"

# --- the official SDKs ------------------------------------------------------
venv=$target/sdk-venv
req=tests/python/requirements.txt
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
if ! cmp -s "$req" "$venv/.requirements"; then
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req"
  cp "$req" "$venv/.requirements"
fi
LLMUX_GATEWAY_URL=$gw LLMUX_GATEWAY_KEY=$LLMUX_TEST_KEY LLMUX_FLEET=$fleet \
  LLMUX_GATEWAY_KEY_MODELS=$LLMUX_TEST_KEY_MODELS LLMUX_GATEWAY_KEY_BROKE=$LLMUX_TEST_KEY_BROKE \
  LLMUX_GATEWAY_KEY_RPM=$LLMUX_TEST_KEY_RPM \
  "$venv/bin/python" tests/python/gateway_clients.py

# --- the openai SDK over TLS and HTTP/2 (gateway.tls, issue 25) --------------
# A test CA and a certificate for 127.0.0.1 made now (openssl: scripts/setup).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -keyout "$work/ca.key" -out "$work/ca.pem" -subj "/CN=llmux test CA" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$work/tls.key" -out "$work/tls.csr" -subj "/CN=127.0.0.1" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$work/ext.cnf"
openssl x509 -req -in "$work/tls.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
  -days 2 -extfile "$work/ext.cnf" -out "$work/tls.pem" 2>/dev/null
python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); c["gateway"]["tls"]={"cert":sys.argv[2],"key":sys.argv[3]}; json.dump(c,open(sys.argv[4],"w"))' \
  "$work/llmux.json" "$work/tls.pem" "$work/tls.key" "$work/llmux-tls.json"
"$target/debug/llmux" serve --config "$work/llmux-tls.json" --listen 127.0.0.1:0 --log-format json \
  >"$work/gw-tls.out" 2>"$work/gw-tls.log" &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/gw-tls.out" ] && break; sleep 0.05; done
gw_tls=$(sed -n 's/^llmux: listening on //p' "$work/gw-tls.out")
[ -n "$gw_tls" ] || { cat "$work/gw-tls.log"; echo "the TLS gateway did not start" >&2; exit 1; }
LLMUX_GATEWAY_TLS_URL=$gw_tls LLMUX_GATEWAY_KEY=$LLMUX_TEST_KEY LLMUX_TEST_CA=$work/ca.pem \
  "$venv/bin/python" tests/python/gateway_tls.py

# --- Codex CLI ----------------------------------------------------------------
http() { python3 -c 'import sys, urllib.request as u; sys.stdout.write(u.urlopen(u.Request(sys.argv[1], method=sys.argv[2], data=b"" if sys.argv[2] == "POST" else None)).read().decode())' "$1" "$2"; }
codex_tests() {
  local codex=$codex_cache/node_modules/.bin/codex
  if [ ! -x "$codex" ] && ! command -v npm >/dev/null; then
    echo "SKIP Codex: npm is not installed"; return 0
  fi
  if [ ! -x "$codex" ]; then
    mkdir -p "$codex_cache"
    if ! npm install --prefix "$codex_cache" --no-audit --no-fund --loglevel=error \
        "@openai/codex@$codex_version" >"$work/npm-codex.log" 2>&1 || [ ! -x "$codex" ]; then
      echo "SKIP Codex: npm could not install @openai/codex@$codex_version:"
      tail -n 5 "$work/npm-codex.log"; return 0
    fi
  fi
  for model in demo/cx-rs demo/cx-oa demo/cx-an; do
    http "$(url_of cx)/_mock/reset" POST >/dev/null
    local home=$work/codex-${model#demo/}
    mkdir -p "$home/codex" "$home/project"
    # A custom provider at the gateway; no update check, analytics or
    # plugins (with plugins on, Codex reaches for the network).
    cat >"$home/codex/config.toml" <<TOML
model = "$model"
model_provider = "llmux"
check_for_update_on_startup = false
[features]
plugins = false
[analytics]
enabled = false
[model_providers.llmux]
name = "llmux gateway"
base_url = "$gw/api/v1"
wire_api = "responses"
env_key = "LLMUX_TEST_KEY"
TOML
    local out
    out=$(env -i PATH="$PATH" HOME="$home" CODEX_HOME="$home/codex" LLMUX_TEST_KEY="$LLMUX_TEST_KEY" \
        timeout 180 "$codex" exec --skip-git-repo-check --dangerously-bypass-approvals-and-sandbox \
        --ephemeral -C "$home/project" "Run the command echo llmux-codex-check and tell me what it printed." \
        </dev/null 2>"$work/codex.err") || {
      echo "FAIL Codex ($model) exited non-zero: $out"; tail -n 30 "$work/codex.err"; tail -n 20 "$work/gw.log"; exit 1; }
    case "$out" in
      *"Done: the command printed llmux-codex-check."*) ;;
      *) echo "FAIL Codex ($model): unexpected final text: $out"; tail -n 30 "$work/codex.err"; exit 1 ;;
    esac
    # Both turns crossed the gateway: the upstream saw the command's output
    # come back as a tool result in the protocol of its endpoint.
    if ! http "$(url_of cx)/_mock/requests" GET | python3 -c '
import json, sys
reqs = [r for r in json.load(sys.stdin) if r["body"].get("tools")]
def carries(r):
    b = r["body"]
    last = (b.get("input") or b.get("messages"))[-1]
    return "llmux-codex-check" in json.dumps(last) and (
        last.get("type") == "function_call_output" or last.get("role") in ("tool", "user"))
sys.exit(0 if len(reqs) >= 2 and carries(reqs[-1]) else 1)'; then
      echo "FAIL Codex ($model): the tool result did not reach the upstream"
      http "$(url_of cx)/_mock/requests" GET | head -c 3000; exit 1
    fi
    [ -z "${LLMUX_CLIENTS_DUMP:-}" ] || http "$(url_of cx)/_mock/requests" GET >"$LLMUX_CLIENTS_DUMP/codex-${model#demo/}.json"
    local n
    n=$(grep -c "\"model\":\"$model\".*\"status\":200" "$work/gw.log" || true)
    [ "$n" -ge 2 ] || { echo "FAIL Codex ($model): $n successful requests logged"; grep -F "$model" "$work/gw.log" | tail -n 5; exit 1; }
    echo "ok   Codex $codex_version with $model: exec_command call, tool output, final text ($n requests through the gateway)"
  done
}
codex_tests

# --- Gemini CLI ---------------------------------------------------------------
gemini_tests() {
  local gemini=$gemini_cache/node_modules/.bin/gemini
  if [ ! -x "$gemini" ] && ! command -v npm >/dev/null; then
    echo "SKIP Gemini CLI: npm is not installed"; return 0
  fi
  if [ ! -x "$gemini" ]; then
    mkdir -p "$gemini_cache"
    if ! npm install --prefix "$gemini_cache" --no-audit --no-fund --loglevel=error \
        "@google/gemini-cli@$gemini_version" >"$work/npm-gemini.log" 2>&1 || [ ! -x "$gemini" ]; then
      echo "SKIP Gemini CLI: npm could not install @google/gemini-cli@$gemini_version:"
      tail -n 5 "$work/npm-gemini.log"; return 0
    fi
  fi
  for model in demo/gc-gm demo/gc-oa; do
    http "$(url_of gc)/_mock/reset" POST >/dev/null
    local home=$work/gemini-${model#demo/}
    mkdir -p "$home/.gemini" "$home/project"
    # An API key at the gateway; no telemetry, usage statistics or updates.
    cat >"$home/.gemini/settings.json" <<SETTINGS
{"security": {"auth": {"selectedType": "gemini-api-key"}},
 "privacy": {"usageStatisticsEnabled": false}, "telemetry": {"enabled": false},
 "general": {"disableAutoUpdate": true, "disableUpdateNag": true}}
SETTINGS
    local out
    # --yolo runs the tool without asking; a headless run in a folder not
    # yet trusted needs GEMINI_CLI_TRUST_WORKSPACE (exit 55 otherwise).
    out=$(cd "$home/project" && env -i PATH="$PATH" HOME="$home" \
        GOOGLE_GEMINI_BASE_URL="$gw" GEMINI_API_KEY="$LLMUX_TEST_KEY" GEMINI_CLI_TRUST_WORKSPACE=true \
        timeout 240 "$gemini" -m "$model" --yolo \
        -p "Run the command echo llmux-gemini-check and tell me what it printed." \
        </dev/null 2>"$work/gemini.err") || {
      echo "FAIL Gemini CLI ($model) exited non-zero: $out"; tail -n 30 "$work/gemini.err"; tail -n 20 "$work/gw.log"; exit 1; }
    case "$out" in
      *"Done: the command printed llmux-gemini-check."*) ;;
      *) echo "FAIL Gemini CLI ($model): unexpected final text: $out"; tail -n 30 "$work/gemini.err"; exit 1 ;;
    esac
    # Both turns crossed the gateway: the command's output came back to the
    # upstream as a tool result in its own protocol.
    if ! http "$(url_of gc)/_mock/requests" GET | python3 -c '
import json, sys
reqs = [r for r in json.load(sys.stdin) if r["body"].get("tools")]
def carries(r):
    b = r["body"]
    last = (b.get("contents") or b.get("messages"))[-1]
    return "llmux-gemini-check" in json.dumps(last) and (
        "functionResponse" in json.dumps(last) or last.get("role") == "tool")
sys.exit(0 if len(reqs) >= 2 and carries(reqs[-1]) else 1)'; then
      echo "FAIL Gemini CLI ($model): the tool result did not reach the upstream"
      http "$(url_of gc)/_mock/requests" GET | head -c 3000; exit 1
    fi
    [ -z "${LLMUX_CLIENTS_DUMP:-}" ] || http "$(url_of gc)/_mock/requests" GET >"$LLMUX_CLIENTS_DUMP/gemini-${model#demo/}.json"
    local n
    n=$(grep -c "\"model\":\"$model\".*\"status\":200" "$work/gw.log" || true)
    [ "$n" -ge 2 ] || { echo "FAIL Gemini CLI ($model): $n successful requests logged"; grep -F "$model" "$work/gw.log" | tail -n 5; exit 1; }
    if grep -qF "$LLMUX_TEST_KEY" "$work/gw.log"; then echo "FAIL Gemini CLI: the key reached a log line"; exit 1; fi
    echo "ok   Gemini CLI $gemini_version with $model: run_shell_command call, tool output, final text ($n requests through the gateway)"
  done
}
gemini_tests

# --- Claude Code --------------------------------------------------------------
claude=$cc_cache/node_modules/.bin/claude
if [ ! -x "$claude" ] && ! command -v npm >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "installing npm (apt-get) for the Claude Code test"
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null || true
fi
if [ ! -x "$claude" ] && ! command -v npm >/dev/null; then
  echo "SKIP Claude Code: npm is not installed and could not be installed"
  echo "gateway client checks passed (Claude Code skipped)"
  exit 0
fi
if [ ! -x "$claude" ]; then
  mkdir -p "$cc_cache"
  if ! npm install --prefix "$cc_cache" --no-audit --no-fund --loglevel=error \
      "@anthropic-ai/claude-code@$cc_version" >"$work/npm.log" 2>&1 || [ ! -x "$claude" ]; then
    echo "SKIP Claude Code: npm could not install @anthropic-ai/claude-code@$cc_version:"
    tail -n 5 "$work/npm.log"
    echo "gateway client checks passed (Claude Code skipped)"
    exit 0
  fi
fi
requests_of() { http "$(url_of cc)/_mock/requests" GET; }
for model in demo/cc-an demo/cc-oa; do
  http "$(url_of cc)/_mock/reset" POST >/dev/null
  home=$work/home-${model#demo/}
  mkdir -p "$home/project"
  out=$(cd "$home/project" && env -i PATH="$PATH" HOME="$home" CLAUDE_CONFIG_DIR="$home/.claude" \
      ANTHROPIC_BASE_URL="$gw/api/anthropic" ANTHROPIC_AUTH_TOKEN="$LLMUX_TEST_KEY" \
      ANTHROPIC_MODEL="$model" ANTHROPIC_DEFAULT_HAIKU_MODEL="$model" \
      ANTHROPIC_DEFAULT_SONNET_MODEL="$model" ANTHROPIC_DEFAULT_OPUS_MODEL="$model" \
      ANTHROPIC_SMALL_FAST_MODEL="$model" \
      DISABLE_TELEMETRY=1 DISABLE_AUTOUPDATER=1 DISABLE_ERROR_REPORTING=1 DISABLE_BUG_COMMAND=1 \
      CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 \
      timeout 180 "$claude" -p "Run the command echo llmux-gateway-check and tell me what it printed." \
        --model "$model" --allowedTools Bash 2>"$work/claude.err") || {
    echo "FAIL Claude Code ($model) exited non-zero: $out"; cat "$work/claude.err"; tail -n 20 "$work/gw.log"; exit 1; }
  case "$out" in
    *"Done: the command printed llmux-gateway-check."*) ;;
    *) echo "FAIL Claude Code ($model): unexpected final text: $out"; exit 1 ;;
  esac
  # Both turns crossed the gateway: the upstream saw the tool call's output
  # come back as a tool result, and the gateway logged the model's requests.
  if ! requests_of | python3 -c '
import json, sys
reqs = json.load(sys.stdin)
def has_result(r):
    last = r["body"]["messages"][-1]
    if last.get("role") == "tool":
        return "llmux-gateway-check" in json.dumps(last)
    return any(b.get("type") == "tool_result" and "llmux-gateway-check" in json.dumps(b)
               for b in (last["content"] if isinstance(last["content"], list) else []))
turns = [r for r in reqs if r["body"].get("tools")]
sys.exit(0 if len(turns) >= 2 and has_result(turns[-1]) else 1)'; then
    echo "FAIL Claude Code ($model): the tool result did not reach the upstream"; requests_of | head -c 3000; exit 1
  fi
  # LLMUX_CLIENTS_DUMP=DIR keeps what Claude Code sent, for inspection.
  [ -z "${LLMUX_CLIENTS_DUMP:-}" ] || requests_of >"$LLMUX_CLIENTS_DUMP/claude-code-${model#demo/}.json"
  n=$(grep -c "\"model\":\"$model\".*\"status\":200" "$work/gw.log" || true)
  [ "$n" -ge 2 ] || { echo "FAIL Claude Code ($model): $n successful requests logged"; exit 1; }
  echo "ok   Claude Code $cc_version with $model: tool call, tool result, final text ($n requests through the gateway)"
done
# A key whose budget is spent (docs/keys.md): Claude Code shows the 402's
# message and stops instead of retrying.
home=$work/home-broke
mkdir -p "$home/project"
before=$(grep -c '"key":"broke".*"status":402' "$work/gw.log" || true)
rc=0
out=$(cd "$home/project" && env -i PATH="$PATH" HOME="$home" CLAUDE_CONFIG_DIR="$home/.claude" \
    ANTHROPIC_BASE_URL="$gw/api/anthropic" ANTHROPIC_AUTH_TOKEN="$LLMUX_TEST_KEY_BROKE" \
    ANTHROPIC_MODEL=demo/cc-an ANTHROPIC_SMALL_FAST_MODEL=demo/cc-an ANTHROPIC_DEFAULT_HAIKU_MODEL=demo/cc-an \
    DISABLE_TELEMETRY=1 DISABLE_AUTOUPDATER=1 DISABLE_ERROR_REPORTING=1 DISABLE_BUG_COMMAND=1 \
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 \
    timeout 120 "$claude" -p "Say hi." --model demo/cc-an 2>"$work/claude-broke.err") || rc=$?
[ "$rc" -ne 124 ] || { echo "FAIL Claude Code with a spent budget: still running after 120 s (retrying?)"; exit 1; }
case "$out $(cat "$work/claude-broke.err")" in
  *"budget exhausted"*) ;;
  *) echo "FAIL Claude Code with a spent budget: no budget message: $out"; cat "$work/claude-broke.err"; exit 1 ;;
esac
n=$(( $(grep -c '"key":"broke".*"status":402' "$work/gw.log" || true) - before ))
[ "$n" -le 4 ] || { echo "FAIL Claude Code with a spent budget: $n refused requests (it retried)"; exit 1; }
echo "ok   Claude Code with a spent budget: shows the message and stops (exit $rc, $n refused requests)"
echo "gateway client checks passed"
