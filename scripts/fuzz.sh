#!/usr/bin/env bash
# Fuzzes every parser that takes outside input (libFuzzer through cargo-fuzz), each target for
# a bounded time, and prints executions and findings per target.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]      (default: 120 s, every target)
#
# Not part of CI's default run: it needs a nightly compiler (sanitizers) and minutes per
# target. The nightly is pinned (FUZZ_TOOLCHAIN) for the same reason the main toolchain is:
# a moving `nightly` would make last week's figures incomparable. Everything it needs is
# installed on first use: the toolchain, the wasm target the embedded policies build for
# (the `device_spec_in_policy` target runs the real matcher policy in wasmtime), cargo-fuzz.
#
# The corpus grows in fuzz/corpus/<target> (ignored by git), seeded from fuzz/seeds/<target>
# (kept). A crash leaves its input in fuzz/artifacts/<target>/ and fails the script; turn it
# into a regression test in the parser's own test suite (see README, "Reliability") and add
# the input to fuzz/seeds/<target> so every later run replays it first.
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLCHAIN="${FUZZ_TOOLCHAIN:-nightly-2026-05-20}"
CARGO_FUZZ_VERSION=0.13.2
SECONDS_PER_TARGET="${1:-120}"
shift || true
ALL_TARGETS=(vpd uevent pci_address device_spec device_spec_in_policy config api_request)
TARGETS=("${@:-${ALL_TARGETS[@]}}")

if ! [[ "$SECONDS_PER_TARGET" =~ ^[0-9]+$ ]] || [ "$SECONDS_PER_TARGET" -eq 0 ]; then
  echo "fuzz.sh: SECONDS_PER_TARGET must be a positive whole number, not '$SECONDS_PER_TARGET'" >&2
  exit 2
fi
for t in "${TARGETS[@]}"; do
  if ! [[ " ${ALL_TARGETS[*]} " == *" $t "* ]]; then
    echo "fuzz.sh: unknown target '$t' (targets: ${ALL_TARGETS[*]})" >&2
    exit 2
  fi
done

# `rustup toolchain install` of a channel name would update it: install only when missing.
if ! rustup run "$TOOLCHAIN" rustc --version >/dev/null 2>&1; then
  rustup toolchain install "$TOOLCHAIN" --profile minimal >&2
fi
rustup target add --toolchain "$TOOLCHAIN" wasm32-unknown-unknown >&2
if [ "$(cargo-fuzz --version 2>/dev/null | awk '{print $2}')" != "$CARGO_FUZZ_VERSION" ]; then
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked >&2
fi

cd fuzz
cargo "+$TOOLCHAIN" fuzz build -O >&2

# Inputs libFuzzer left in a target's artifacts directory (crashes, hangs, memory blow-ups).
findings() { find "artifacts/$1" -type f ! -name last-run.log | sort; }

status=0
printf '%-24s %12s %10s %8s %9s\n' target executions "exec/s" seconds findings
for t in "${TARGETS[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  before=$(findings "$t")
  log="artifacts/$t/last-run.log"
  # -max_total_time bounds the run; each input gets at most 10 s (a hang is a finding too),
  # except the first input of the policy target, which compiles the embedded matcher with
  # a sanitized Cranelift (tens of seconds): that target gets 120 s.
  per_input=10
  [ "$t" = device_spec_in_policy ] && per_input=120
  # The seeds are read-only inputs: new finds go to the corpus directory, listed first.
  if cargo "+$TOOLCHAIN" fuzz run -O "$t" "corpus/$t" "seeds/$t" -- \
      -max_total_time="$SECONDS_PER_TARGET" -timeout="$per_input" -rss_limit_mb=4096 \
      -print_final_stats=1 >"$log" 2>&1; then
    :
  else
    status=1
  fi
  runs=$(awk '/stat::number_of_executed_units:/ {print $2}' "$log" | tail -1 || true)
  secs=$(grep -oE 'Done [0-9]+ runs in [0-9]+ second' "$log" | awk '{print $5}' | tail -1 || true)
  new=$(comm -13 <(echo "$before") <(findings "$t") | sed '/^$/d')
  found=$(printf '%s' "$new" | grep -c . || true)
  rate="-"
  if [ -n "${runs:-}" ] && [ -n "${secs:-}" ] && [ "$secs" -gt 0 ]; then
    rate=$((runs / secs))
  fi
  printf '%-24s %12s %10s %8s %9s\n' "$t" "${runs:-?}" "$rate" "${secs:-?}" "$found"
  if [ "$found" -gt 0 ]; then
    status=1
    printf '  %s\n' $new
    echo "  (log: fuzz/$log)"
  fi
done
exit "$status"
