#!/usr/bin/env bash
# Measures what chat channels cost the gateway at rest: the idle RSS of the `full` gateway
# binary without channels, then with Telegram (long polling), Discord (Gateway WebSocket) and
# Slack (Socket Mode) connected to loopback fakes (the testkit's, through `api_base`), then with
# the six messengers of channels II connected to theirs (WhatsApp bridge, LINE, Feishu's long
# connection, DingTalk Stream, the QQ gateway, OneBot, the WeCom app).
# Usage: bash scripts/perf-channels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/picoclaw-target}"
cargo build --release --locked -p picoclaw-gateway-bin --features full >&2
cargo build --release --locked -p picoclaw-benches --bin fake-platforms >&2
bin="$CARGO_TARGET_DIR/release/picoclaw-gateway"
model_port=${PERF_MODEL_PORT:-18951}
gw_port=${PERF_GATEWAY_PORT:-18952}
work=$(mktemp -d)
cleanup() { kill "$model" "$fakes" "${gw:-}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
python3 scripts/fake_openai.py "$model_port" &
model=$!
"$CARGO_TARGET_DIR/release/fake-platforms" 1:PERF discord-perf xoxb-perf xapp-perf > "$work/fakes.json" &
fakes=$!
for _ in $(seq 100); do [ -s "$work/fakes.json" ] && break || sleep 0.1; done
export PICOCLAW_HOME="$work/home"
mkdir -p "$PICOCLAW_HOME"
unset OPENAI_API_KEY OPENAI_BASE_URL PICOCLAW_CONFIG || true

measure() { # $1: label, $2: channels JSON
  cat > "$PICOCLAW_HOME/config.json" <<JSON
{"agents": {"defaults": {"model": "openai/gpt-4o-mini", "workspace": "$work/ws"}},
 "providers": {"openai": {"api_key": "sk-perf", "api_base": "http://127.0.0.1:$model_port/v1"}},
 "gateway": {"host": "127.0.0.1", "port": $gw_port},
 "heartbeat": {"enabled": false},
 "channels": $2}
JSON
  RUST_LOG=warn "$bin" 2>"$work/gw.log" &
  gw=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$gw_port/health" >/dev/null && break || sleep 0.1; done
  sleep 3
  local ready anon
  ready=$(curl -s "http://127.0.0.1:$gw_port/ready" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("channels"))')
  anon=$(awk '/RssAnon/ {print $2}' "/proc/$gw/status")
  echo "$1: RSS $(awk '/VmRSS/ {print $2}' "/proc/$gw/status") KiB (anonymous $anon KiB), threads $(ls /proc/$gw/task | wc -l); channels: $ready"
  kill "$gw"; wait "$gw" 2>/dev/null || true; gw=
}

echo "binary (full): $(stat -c %s "$bin") bytes"
measure "no channels" '{}'
channels=$(python3 - "$work/fakes.json" <<'PY'
import json, sys
f = json.load(open(sys.argv[1]))
print(json.dumps({
  "telegram": {"enabled": True, "token": "1:PERF", "allow_from": ["1"], "api_base": f["telegram"]},
  "discord": {"enabled": True, "token": "discord-perf", "allow_from": ["1"], "api_base": f["discord"]},
  "slack": {"enabled": True, "bot_token": "xoxb-perf", "app_token": "xapp-perf", "allow_from": ["U1"], "api_base": f["slack"]},
}))
PY
)
measure "Telegram + Discord + Slack connected" "$channels"
messengers=$(python3 - "$work/fakes.json" <<'PY'
import json, sys
f = json.load(open(sys.argv[1]))
print(json.dumps({
  "whatsapp": {"enabled": True, "bridge_url": f["whatsapp"], "allow_from": ["1"]},
  "line": {"enabled": True, "channel_secret": "line-secret", "channel_access_token": "line-token", "allow_from": ["U1"], "api_base": f["line"]},
  "feishu": {"enabled": True, "app_id": "cli_perf", "app_secret": "feishu-secret", "allow_from": ["ou_1"], "api_base": f["feishu"]},
  "dingtalk": {"enabled": True, "client_id": "ding-id", "client_secret": "ding-secret", "allow_from": ["1"], "api_base": f["dingtalk"]},
  "qq": {"enabled": True, "app_id": "102030", "app_secret": "qq-secret", "allow_from": ["1"], "api_base": f["qq"], "auth_base": f["qq"]},
  "onebot": {"enabled": True, "ws_url": f["onebot"], "access_token": "onebot-token", "allow_from": ["1"]},
  "wecom_app": {"enabled": True, "corp_id": "ww-perf", "corp_secret": "wecom-secret", "agent_id": 1000002, "token": "QDG6eK", "encoding_aes_key": "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C", "allow_from": ["1"], "api_base": f["wecom"]},
}))
PY
)
measure "the six messengers connected" "$messengers"
# Each messenger alone (what it holds at rest on its own).
for name in whatsapp line feishu dingtalk qq onebot wecom_app; do
  one=$(python3 -c 'import json,sys; m=json.loads(sys.argv[1]); print(json.dumps({sys.argv[2]: m[sys.argv[2]]}))' "$messengers" "$name")
  measure "$name alone" "$one"
done
