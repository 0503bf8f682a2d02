#!/usr/bin/env bash
# What each feature and build option costs the release binary (docs/PERFORMANCE.md, "Budgets").
# Builds `picoclaw` (and `picoclaw-gateway`) once per feature set with the release profile,
# unstripped so that `cargo bloat` can read the same binaries, and prints each one's size
# after `strip` (what the profile's `strip = true` gives). The packed-relocation build uses its
# own target directory (RUSTFLAGS change every crate's fingerprint).
# Usage: bash scripts/size-levers.sh [OUT_DIR]   (1.5 to 4 minutes per line on 2 cores, warm;
# the packed builds are cold the first time). A line whose build fails is reported, the rest
# run. ONLY='<regex>' builds only the lines whose name matches (ONLY='^minimal').
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
  [[ "$name" =~ ${ONLY:-.} ]] || return 0
  if ! cargo build --release --locked -q -p "$pkg" "$@" >"$out/$name.log" 2>&1; then
    echo "$name: build failed, see $out/$name.log" >&2
    failed=$((failed + 1))
    return 0
  fi
  cp "$CARGO_TARGET_DIR/release/$bin" "$out/$name"
  strip -o "$out/$name.stripped" "$out/$name"
  local bytes
  bytes=$(stat -c %s "$out/$name.stripped")
  printf '%-12s %12d %9.2f  %s\n' "$name" "$bytes" "$(awk "BEGIN {print $bytes / 1048576}")" "${*:-default}"
}
failed=0
# picoclaw-cli's default features (apps/picoclaw/Cargo.toml); a "-x" line is the default
# without x, a "minimal+x" line the minimal build with x.
DEFAULT="gateway,http2,anthropic,gemini,azure,browser-login,web-tools,telegram,discord,slack,pico,mcp,web"
without() { echo ",$DEFAULT," | sed "s/,$1,/,/; s/^,//; s/,$//"; }
one default picoclaw-cli picoclaw
one gateway picoclaw-gateway-bin picoclaw-gateway
for f in discord slack telegram mcp web; do
  one "-$f" picoclaw-cli picoclaw --no-default-features --features "$(without "$f")"
done
one +mcp-server picoclaw-cli picoclaw --features mcp-server
one full picoclaw-cli picoclaw --features full
one minimal picoclaw-cli picoclaw --no-default-features --features minimal
for f in gateway http2 anthropic,gemini azure browser-login web-tools mcp; do
  one "minimal+$f" picoclaw-cli picoclaw --no-default-features --features "minimal,$f"
done
# Packed relative relocations (DT_RELR): binutils >= 2.38 to link, glibc >= 2.36 to run.
export CARGO_TARGET_DIR="$CARGO_TARGET_DIR-relr" RUSTFLAGS="-C link-arg=-Wl,-z,pack-relative-relocs"
one default+relr picoclaw-cli picoclaw
one minimal+relr picoclaw-cli picoclaw --no-default-features --features minimal
echo "binaries in $out"
exit $((failed > 0))
