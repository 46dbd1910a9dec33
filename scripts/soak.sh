#!/usr/bin/env bash
# Crash-injection soak: SIGKILL the agent at random points for SECONDS (default 600) while it
# reconciles a changing host and serves claims; after every kill the database must pass
# SQLite's integrity check and the tracker's invariants and keep every acknowledged claim.
# Prints the number of kills survived. Not part of CI's default run (CI runs 20 s of it).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN="${1:-600}"
PCITRACK_SOAK_SECS="$SECONDS_TO_RUN" cargo test --release -p pcitrack --test crash_soak -- --nocapture 2>&1 \
  | grep -E "^soak:|test result|panicked|violated|lost" 
