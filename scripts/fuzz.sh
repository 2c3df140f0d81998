#!/usr/bin/env bash
# Fuzz every target of fuzz/ for SECONDS each (default 5: the smoke run of scripts/test.sh).
# A long run, as recorded in docs/security.md:  bash scripts/fuzz.sh 1800
# Needs cargo-fuzz (installed here if missing); the stable toolchain runs it with RUSTC_BOOTSTRAP=1.
set -euo pipefail
SECS=${1:-5}
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT/fuzz"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --version 0.13.2
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O
status=0
for t in $(cargo fuzz list); do
    out=$(cargo fuzz run -O "$t" -- -max_total_time="$SECS" 2>&1) || { echo "fuzz $t: CRASH"; echo "$out" | tail -30; status=1; continue; }
    echo "fuzz $t: $(echo "$out" | grep -oE 'Done [0-9]+ runs in [0-9]+ second\(s\)' | tail -1)"
done
exit $status
