# Shared by packaging/test-*.sh (sourced): a temporary directory outside the
# checkout, the mock fleet, a config pointing at it, and README code blocks.
# shellcheck shell=bash

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

step() { echo "== $(basename "$0" .sh): $*"; }
die() { echo "$(basename "$0"): $*" >&2; exit 1; }

# A temporary directory under /tmp (never inside the checkout), removed on
# exit unless LLMUX_KEEP_TMP=1; cleanup also stops the fleet.
new_tmp() {
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/llmux-$(basename "$0" .sh).XXXXXX")
  case "$tmp" in "$root"/*) die "temporary directory $tmp is inside the checkout" ;; esac
  trap cleanup EXIT
}
cleanup() {
  stop_fleet
  if [ "${LLMUX_KEEP_TMP:-0}" = 1 ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}

# start_fleet NAME...: llmux-fleet with one default server per name; sets
# fleet_url[NAME] to its base URL. The fleet exits when its stdin closes.
declare -A fleet_url=()
fleet_pid=
start_fleet() {
  local bin=${LLMUX_FLEET:-$root/target/debug/llmux-fleet} names listing
  [ -x "$bin" ] || die "no $bin: run 'cargo build -p llmux-fleet'"
  names=$(IFS=,; echo "$*")
  mkfifo "$tmp/fleet.in"
  "$bin" --servers "$names" --exit-on-stdin-eof < "$tmp/fleet.in" > "$tmp/fleet.out" &
  fleet_pid=$!
  exec {fleet_in}> "$tmp/fleet.in"
  for _ in $(seq 100); do
    [ -s "$tmp/fleet.out" ] && break
    sleep 0.1
  done
  listing=$(head -n 1 "$tmp/fleet.out")
  [ -n "$listing" ] || die "llmux-fleet printed nothing"
  while read -r name url; do fleet_url[$name]=$url; done < <(
    python3 -c 'import json,sys; [print(s["name"], s["base_url"]) for s in json.loads(sys.argv[1])["servers"]]' "$listing")
}
stop_fleet() {
  if [ -n "$fleet_pid" ]; then
    exec {fleet_in}>&-
    wait "$fleet_pid" 2>/dev/null || true
    fleet_pid=
  fi
}

# write_config PATH: the main README's example catalog (providers openai and
# fastco, model meta/llama-3.1-70b) with its base URLs on the mock fleet.
write_config() {
  cat > "$1" <<JSON
{"providers": [
  {"slug": "openai", "protocol": "openai", "base_url": "${fleet_url[openai]}/v1", "api_key_env": "OPENAI_API_KEY"},
  {"slug": "fastco", "protocol": "openai", "base_url": "${fleet_url[fastco]}/v1", "api_key_env": "FASTCO_KEY"}],
 "models": [{"slug": "meta/llama-3.1-70b", "endpoints": [
  {"provider": "fastco", "upstream_model": "llama-3.1-70b-turbo", "price": {"prompt": 0.88, "completion": 0.88}},
  {"provider": "openai", "upstream_model": "llama-70b", "price": {"prompt": 0.6, "completion": 0.8}}]}]}
JSON
}
# Obviously fake keys for the configs above.
export OPENAI_API_KEY=test-key-not-secret FASTCO_KEY=test-key-not-secret

# readme_block FILE HEADING LANG [N]: the Nth (default 1st) ```LANG block
# after the line HEADING in FILE, verbatim.
readme_block() {
  awk -v heading="$2" -v fence="\`\`\`$3" -v want="${4:-1}" '
    $0 == heading { found = 1; next }
    found && !inside && $0 == fence { n++; if (n == want) { inside = 1; next } }
    inside && $0 == "```" { exit }
    inside { print }
  ' "$1"
}
