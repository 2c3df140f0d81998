#!/usr/bin/env bash
# Fuzz every target of fuzz/ for SECONDS each (default 5).
#   bash scripts/fuzz.sh 3 dev     the smoke run of scripts/test.sh: every target built without
#                                  optimisations (1.5 min cold instead of 6: CI's time limit)
#                                  and run; slower per execution, enough to show each runs.
#   bash scripts/fuzz.sh 1800      a long run, optimised, as recorded in docs/security.md.
# Needs cargo-fuzz (installed here if missing); the stable toolchain runs it with RUSTC_BOOTSTRAP=1.
set -euo pipefail
SECS=${1:-5}
case "${2:-release}" in
dev) MODE=--dev ;;
release) MODE=-O ;;
*)
    echo "fuzz.sh: the second argument is dev or release, not '$2'" >&2
    exit 2
    ;;
esac
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT/fuzz"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --version 0.13.2
export RUSTC_BOOTSTRAP=1
cargo fuzz build "$MODE"
status=0
for t in $(cargo fuzz list); do
    out=$(cargo fuzz run "$MODE" "$t" -- -max_total_time="$SECS" 2>&1) || { echo "fuzz $t: CRASH"; echo "$out" | tail -30; status=1; continue; }
    echo "fuzz $t: $(echo "$out" | grep -oE 'Done [0-9]+ runs in [0-9]+ second\(s\)' | tail -1)"
done
exit $status
