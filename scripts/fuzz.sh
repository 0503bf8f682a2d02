#!/usr/bin/env bash
# Builds the cargo-fuzz targets in fuzz/ (libFuzzer, instrumented, no sanitizer: the stable
# toolchain) and runs each for FUZZ_SECONDS on a copy of its committed corpus (fuzz/corpus/<target>),
# FUZZ_JOBS targets at a time. Fails when a target crashes, and says where the crashing input is.
# docs/fuzzing.md lists the targets.
#
# Usage: bash scripts/fuzz.sh [target...]          every target (or the ones named), 60 s each
#        FUZZ_SECONDS=600 bash scripts/fuzz.sh mcp  a long local run of one target
# Environment: FUZZ_SECONDS (default 60), FUZZ_JOBS (default: the number of cores),
# FUZZ_TARGET_DIR (the instrumented build's target folder, default ~/.cache/picoclaw-fuzz-target;
# CARGO_TARGET_DIR is not read: the normal build's folder must never get instrumented
# artefacts), FUZZ_WORK (where the corpus copies, logs and crash inputs go; default a new temp
# folder, kept after a failure).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/picoclaw-fuzz-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
CARGO_FUZZ_VERSION=0.13.2
FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
FUZZ_JOBS="${FUZZ_JOBS:-$(nproc)}"

if [ "$(cargo fuzz --version 2>/dev/null | awk '{print $2}')" != "$CARGO_FUZZ_VERSION" ]; then
  echo "==> installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cd fuzz && cargo fuzz list)
fi

echo "==> cargo fuzz build (${targets[*]})"
start=$(date +%s)
# Release (-O) with debug assertions (-a): overflow checks and debug_assert! fire as crashes.
# One target named: only it is built; otherwise all of them (they share every dependency).
one=()
if [ "${#targets[@]}" -eq 1 ]; then one=("${targets[0]}"); fi
if ! (cd fuzz && cargo fuzz build --sanitizer none -O -a --target-dir "$CARGO_TARGET_DIR" "${one[@]}"); then
  echo "the fuzz targets do not build"
  exit 1
fi
echo "    built in $(( $(date +%s) - start )) s"
bin_dir="$CARGO_TARGET_DIR/$(rustc -vV | sed -n 's/^host: //p')/release"

work="${FUZZ_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/picoclaw-fuzz.XXXXXX")}"
mkdir -p "$work"
echo "==> running each target for ${FUZZ_SECONDS} s, ${FUZZ_JOBS} at a time (work folder: $work)"

run_one() {
  local t=$1
  local corpus="$work/corpus/$t" artifacts="$work/artifacts/$t/"
  mkdir -p "$corpus" "$artifacts"
  # A copy: libFuzzer adds what it finds to the corpus folder, and CI must not dirty the clone.
  if [ -d "fuzz/corpus/$t" ]; then cp -R "fuzz/corpus/$t/." "$corpus/"; fi
  local dict=()
  if [ -f "fuzz/dict/$t.dict" ]; then dict=("-dict=fuzz/dict/$t.dict"); fi
  if "$bin_dir/$t" "$corpus" "${dict[@]}" \
      -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -timeout=20 -max_len=65536 \
      -artifact_prefix="$artifacts" -print_final_stats=1 >"$work/$t.log" 2>&1; then
    local execs speed
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log" | tail -n 1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/$t.log" | tail -n 1)
    echo "    $t: ok, ${execs:-?} inputs, ${speed:-?}/s"
  else
    echo "    $t: CRASHED; the input is in $artifacts (log: $work/$t.log). Reproduce with:"
    echo "      (cd fuzz && cargo fuzz run --sanitizer none -O -a $t $artifacts<file>)"
    grep -m 5 -E "panicked at|ERROR: libFuzzer|SUMMARY" "$work/$t.log" | sed 's/^/      /' || true
    return 1
  fi
}

failed=0
running=0
for t in "${targets[@]}"; do
  if [ "$running" -ge "$FUZZ_JOBS" ]; then
    wait -n || failed=1
    running=$((running - 1))
  fi
  run_one "$t" &
  running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
  wait -n || failed=1
  running=$((running - 1))
done

if [ "$failed" -ne 0 ]; then
  echo "==> a fuzz target crashed: fix the crate, add the input as a regression test (docs/fuzzing.md)"
  exit 1
fi
[ -z "${FUZZ_WORK:-}" ] && rm -rf "$work"
echo "==> no crash"
