#!/usr/bin/env bash
# What each chat channel adds to the binary: the sizes of the symbols of an unstripped release
# build of the `full` gateway, summed by the channel module whose name they carry (generic code
# instantiated for a channel's types counts for it), and the stripped size of the whole. A
# symbol-level estimate: code the linker merged across modules counts once, for one of them.
# Usage: bash scripts/size-channels.sh [BINARY]  (without BINARY, builds it unstripped first)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/picoclaw-target}"
bin="${1:-}"
if [ -z "$bin" ]; then
  CARGO_PROFILE_RELEASE_STRIP=false cargo build --release --locked -p picoclaw-gateway-bin --features full >&2
  bin="$CARGO_TARGET_DIR/release/picoclaw-gateway"
fi
stripped=$(mktemp)
trap 'rm -f "$stripped"' EXIT
strip -o "$stripped" "$bin"
echo "binary (full, stripped): $(stat -c %s "$stripped") bytes"
nm -S -C "$bin" | python3 -c '
import collections, re, sys
groups = {
  "whatsapp": ["picoclaw_channels::whatsapp::"],
  "line": ["picoclaw_channels::line::"],
  "feishu": ["picoclaw_channels::feishu::"],
  "dingtalk": ["picoclaw_channels::dingtalk::"],
  "qq": ["picoclaw_channels::qq::"],
  "onebot": ["picoclaw_channels::onebot::"],
  "wecom": ["picoclaw_channels::wecom::", "roxmltree::"],
  "shared by the messengers": ["picoclaw_channels::wsclient::", "picoclaw_channels::listener::",
                               "picoclaw_channels::group::", "aes::", "cbc::"],
  "telegram": ["picoclaw_channels::telegram::", "teloxide"],
  "discord": ["picoclaw_channels::discord::", "serenity::"],
  "slack": ["picoclaw_channels::slack::", "slack_morphism::"],
}
sizes = collections.Counter()
for line in sys.stdin:
  parts = line.split(None, 3)
  if len(parts) < 4 or parts[2].lower() not in "tdrb":
    continue
  size, name = int(parts[1], 16), parts[3]
  for group, needles in groups.items():
    if any(n in name for n in needles):
      sizes[group] += size
      break
for group in groups:
  print(f"{group:26} {sizes[group] / 1024:8.1f} KiB")
'
