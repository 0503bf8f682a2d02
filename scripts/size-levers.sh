#!/usr/bin/env bash
# What each feature and build option costs the release binary (docs/PERFORMANCE.md, "Budgets").
# Builds `picoclaw` (and `picoclaw-gateway`) once per feature set with the release profile,
# unstripped so that `cargo bloat` can read the same binaries, and prints each one's size
# after `strip` (what the profile's `strip = true` gives). The packed-relocation build uses its
# own target directory (RUSTFLAGS change every crate's fingerprint).
# Usage: bash scripts/size-levers.sh [OUT_DIR]   (about 4 minutes per line on 2 cores, warm)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/picoclaw-target}"
export CARGO_PROFILE_RELEASE_STRIP=false
out="${1:-$(mktemp -d)}"
mkdir -p "$out"
printf '%-12s %12s %9s  %s\n' build bytes MiB features
one() { # name package binary [cargo args...]
  local name=$1 pkg=$2 bin=$3
  shift 3
  cargo build --release --locked -q -p "$pkg" "$@" >"$out/$name.log" 2>&1 || {
    echo "$name: build failed, see $out/$name.log" >&2
    return 1
  }
  local dir="${TARGET_DIR_OVERRIDE:-$CARGO_TARGET_DIR}"
  cp "$dir/release/$bin" "$out/$name"
  strip -o "$out/$name.stripped" "$out/$name"
  local bytes
  bytes=$(stat -c %s "$out/$name.stripped")
  printf '%-12s %12d %9.2f  %s\n' "$name" "$bytes" "$(echo "$bytes / 1048576" | bc -l)" "${*:-default}"
}
one default picoclaw-cli picoclaw
one gateway picoclaw-gateway-bin picoclaw-gateway
one -discord picoclaw-cli picoclaw --no-default-features --features telegram,slack,pico,mcp,web
one -slack picoclaw-cli picoclaw --no-default-features --features telegram,discord,pico,mcp,web
one -telegram picoclaw-cli picoclaw --no-default-features --features discord,slack,pico,mcp,web
one -mcp picoclaw-cli picoclaw --no-default-features --features telegram,discord,slack,pico,web
one -web picoclaw-cli picoclaw --no-default-features --features telegram,discord,slack,pico,mcp
one +mcp-server picoclaw-cli picoclaw --features mcp-server
one none picoclaw-cli picoclaw --no-default-features
one full picoclaw-cli picoclaw --features full
# Packed relative relocations (DT_RELR): binutils >= 2.38 to link, glibc >= 2.36 to run.
relr_dir="$CARGO_TARGET_DIR-relr"
TARGET_DIR_OVERRIDE="$relr_dir" CARGO_TARGET_DIR="$relr_dir" \
  RUSTFLAGS="-C link-arg=-Wl,-z,pack-relative-relocs" one default+relr picoclaw-cli picoclaw
echo "binaries in $out"
