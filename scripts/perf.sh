#!/usr/bin/env bash
# Measures what docs/PERFORMANCE.md reports: release binary size, `picoclaw version` wall time,
# one-shot `agent -m` turns (plain and with one tool call) against a loopback endpoint that
# answers at once (time and peak RSS), and the bytes of the first request. Needs hyperfine and
# GNU time (apt-get install -y hyperfine time). Usage: bash scripts/perf.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/picoclaw-target}"
cargo build --release -p picoclaw-cli --locked
bin="$CARGO_TARGET_DIR/release/picoclaw"
port=${PERF_PORT:-18931}
work=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
python3 scripts/fake_openai.py "$port" "$work/requests.log" &
server=$!
export PICOCLAW_HOME="$work/home"
mkdir -p "$PICOCLAW_HOME"
unset OPENAI_API_KEY OPENAI_BASE_URL PICOCLAW_CONFIG || true
"$bin" onboard --non-interactive --model openai/gpt-4o-mini >/dev/null 2>&1
python3 - "$PICOCLAW_HOME/config.json" "$port" <<'PY'
import json, sys
p, port = sys.argv[1], sys.argv[2]
c = json.load(open(p))
c.setdefault("providers", {}).setdefault("openai", {})
c["providers"]["openai"]["api_key"] = "sk-perf"
c["providers"]["openai"]["api_base"] = f"http://127.0.0.1:{port}/v1"
json.dump(c, open(p, "w"), indent=2)
PY
for _ in $(seq 50); do curl -s "http://127.0.0.1:$port" >/dev/null 2>&1 && break || sleep 0.1; done

echo "## binary"
ls -l "$bin" | awk '{printf "release binary (stripped, opt-level z, LTO): %.2f MiB (%d bytes)\n", $5/1048576, $5}'

echo "## version"
hyperfine -N --warmup 20 --runs 300 "$bin version" 2>/dev/null | grep -E "Time|Range"
hyperfine -N --warmup 20 --runs 300 "/bin/true" 2>/dev/null | grep -E "Time" | sed 's/^/spawn baseline (\/bin\/true): /'

echo "## one-shot plain turn"
: > "$work/requests.log"
"$bin" agent -s perf:first -m "hi" >/dev/null
echo "first request of a one-line turn with the default tools: $(head -1 "$work/requests.log") bytes"
hyperfine -N --warmup 5 --runs 100 "$bin agent -s perf:plain -m hi" 2>/dev/null | grep -E "Time|Range"
/usr/bin/time -v "$bin" agent -s perf:rss -m hi 2>&1 >/dev/null | grep "Maximum resident" 

echo "## one-shot turn with one tool call (two model requests)"
hyperfine -N --warmup 5 --runs 100 "$bin agent -s perf:tool -m 'please use a tool'" 2>/dev/null | grep -E "Time|Range"
/usr/bin/time -v "$bin" agent -s perf:toolrss -m "please use a tool" 2>&1 >/dev/null | grep "Maximum resident"
