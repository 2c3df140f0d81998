#!/usr/bin/env bash
# The long fuzz run recorded in docs/security.md: every target of fuzz/ until RUNS
# executions (default 10 million) or SECONDS of wall time (default 200), two targets at a
# time (the build machine has 2 cores). Prints one line per target with the exact count.
#   bash scripts/fuzz-long.sh [RUNS] [SECONDS] [TARGET...]   (default: every target)
set -euo pipefail
RUNS=${1:-10000000}
SECS=${2:-200}
shift $(($# < 2 ? $# : 2))
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT/fuzz"
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O
LOGS=$(mktemp -d)
run() {
    local t=$1
    if cargo fuzz run -O "$t" -- -runs="$RUNS" -max_total_time="$SECS" -print_final_stats=1 \
        >"$LOGS/$t.log" 2>&1; then
        echo "fuzz $t: $(grep -oE 'Done [0-9]+ runs in [0-9]+ second\(s\)' "$LOGS/$t.log" | tail -1)"
    else
        echo "fuzz $t: CRASH (log: $LOGS/$t.log)"
        tail -30 "$LOGS/$t.log"
        return 1
    fi
}
status=0
if [ $# -gt 0 ]; then targets=("$@"); else targets=($(cargo fuzz list)); fi
for ((i = 0; i < ${#targets[@]}; i += 2)); do
    run "${targets[i]}" &
    a=$!
    b=
    if ((i + 1 < ${#targets[@]})); then
        run "${targets[i + 1]}" &
        b=$!
    fi
    wait $a || status=1
    if [ -n "$b" ]; then wait $b || status=1; fi
done
exit $status
