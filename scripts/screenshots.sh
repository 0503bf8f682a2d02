#!/usr/bin/env bash
# Takes the dashboard's screenshots (every page, desktop and phone widths) with the browser test
# (apps/picoclaw/tests/dashboard.rs: real headless Chromium, the real gateway, a scripted model)
# and copies them into docs/images/, where docs/dashboard.md shows them.
# Needs Debian's chromium and chromium-driver (scripts/test.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/picoclaw-target}"
shots="$(mktemp -d)"
trap 'rm -rf "$shots"' EXIT
PICOCLAW_SCREENSHOTS="$shots" cargo test --locked -p picoclaw-cli --test dashboard -- --nocapture >&2
mkdir -p docs/images
cp "$shots"/dashboard-*.png docs/images/
ls -1 docs/images/dashboard-*.png
