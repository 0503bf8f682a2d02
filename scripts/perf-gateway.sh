#!/usr/bin/env bash
# Measures the gateway for docs/PERFORMANCE.md: idle RSS, /v1/chat/completions throughput and
# latency with wrk against a loopback model that answers at once (scripts/fake_openai.py), and
# the memory 1 000 sessions add. Needs wrk and python3 (apt-get install -y wrk).
# Usage: bash scripts/perf-gateway.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/picoclaw-target}"
cargo build --release -p picoclaw-gateway-bin --locked >&2
bin="$CARGO_TARGET_DIR/release/picoclaw-gateway"
model_port=${PERF_MODEL_PORT:-18941}
gw_port=${PERF_GATEWAY_PORT:-18942}
work=$(mktemp -d)
cleanup() { kill "$model" "$gw" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
python3 scripts/fake_openai.py "$model_port" &
model=$!
export PICOCLAW_HOME="$work/home"
mkdir -p "$PICOCLAW_HOME"
unset OPENAI_API_KEY OPENAI_BASE_URL PICOCLAW_CONFIG || true
cat > "$PICOCLAW_HOME/config.json" <<JSON
{"agents": {"defaults": {"model": "openai/gpt-4o-mini", "workspace": "$work/ws"}},
 "providers": {"openai": {"api_key": "sk-perf", "api_base": "http://127.0.0.1:$model_port/v1"}},
 "gateway": {"host": "127.0.0.1", "port": $gw_port},
 "heartbeat": {"enabled": false}}
JSON
RUST_LOG=warn "$bin" 2>"$work/gw.log" &
gw=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$gw_port/health" >/dev/null && break || sleep 0.1; done
sleep 1
key=$(cat "$PICOCLAW_HOME/gateway.key")   # made by the gateway at its first start
rss() { awk '/VmRSS/ {print $2}' "/proc/$gw/status"; }
echo "## idle gateway (no channels, heartbeat off)"
echo "binary: $(stat -c %s "$bin") bytes; idle RSS: $(rss) KiB, of it anonymous: $(awk '/RssAnon/ {print $2}' "/proc/$gw/status") KiB"

cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"messages": [{"role": "user", "content": "hi"}]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $key"
LUA
echo "## the model alone (fake_openai.py), for scale"
wrk -t2 -c16 -d5s -s "$work/post.lua" "http://127.0.0.1:$model_port/v1/chat/completions" | grep -E "Requests/sec|Latency"
echo "## POST /v1/chat/completions, stateless, 2 threads, 16 connections, 10 s"
wrk -t2 -c16 -d10s --latency -s "$work/post.lua" "http://127.0.0.1:$gw_port/v1/chat/completions" | grep -E "Requests/sec|Latency|50%|99%|Non-2xx"
echo "RSS after: $(rss) KiB"

echo "## 1 000 sessions (one turn each, X-Session-Key)"
before=$(rss)
python3 - "$gw_port" "$key" <<'PY'
import http.client, json, sys
port, key = int(sys.argv[1]), sys.argv[2]
conn = http.client.HTTPConnection("127.0.0.1", port)
body = json.dumps({"messages": [{"role": "user", "content": "hi"}]})
for i in range(1000):
    conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json", "Authorization": f"Bearer {key}", "X-Session-Key": f"perf:{i}"})
    r = conn.getresponse(); r.read()
    assert r.status == 200, r.status
PY
sleep 1
after=$(rss)
echo "RSS before: $before KiB, after: $after KiB, per idle session: $(( (after - before) * 1024 / 1000 )) bytes"
