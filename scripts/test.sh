#!/usr/bin/env bash
# THE test command (README, .ci/run). In order:
#   setup.sh → cargo fmt --check (the workspace and fuzz/) → cargo clippy -D warnings (and tally-core without PC/SC)
#   → start pcscd and Xvfb
#   → cargo test (every test, doc tests included) → the benches build (dev profile, cheap)
#   → fuzz smoke (scripts/fuzz.sh 3 dev: every fuzz target built and run for 3 s)
#   → cargo doc (warnings are errors) → the working tree is as it was (tests regenerate nothing).
# Every step runs even when an earlier one failed, so one run reports everything; the exit code
# is 0 only if all passed (1 = a check failed, 2 = set-up failed). The last line printed is
# always `N passed, N failed`, summed over cargo's `test result:` lines, for CI to read.
#
# What the tests get (exported for cargo test only):
#   TALLY_PCSCD=1           a pcscd with the vsmartcard vpcd readers is up for this run (one this
#                           script started, unless one was already running).
#   TALLY_XVFB_DISPLAY=:99  an Xvfb for real-window tests (the next free display if :99 is
#                           taken). DISPLAY itself is not set: tests pass it to what they spawn.
#   TALLY_PG_URL=postgres://postgres@127.0.0.1:PORT/postgres
#                           a throwaway PostgreSQL cluster (initdb into a temporary folder, trust
#                           auth, loopback only, first free port from 54329); tests create and
#                           drop their own databases on it. Stopped and deleted on exit.
#   plus scripts/env.sh: TALLY_PDFIUM_DIR and WGPU_BACKEND (the pinned snapshot renderer).
# pcscd, Xvfb and PostgreSQL, when started here, are stopped on exit, on failure and on Ctrl-C too.
set -uo pipefail # no -e: a failing step is recorded and the next one still runs

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
LOG_DIR="$ROOT/target/test-logs"
START=$SECONDS

passed=0
failed=0
failed_steps=()
PCSCD_PID=""
XVFB_PID=""
RUNTIME_DIR=""
PG_DIR=""
PG_BIN=""
PG_AS=()

say() { printf 'test: %s\n' "$*"; }

# True while $1 is a live (not zombie) process.
alive() { [ -n "$1" ] && [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status"; }

# Stops a child this script started: SIGTERM, then wait for it to go (SIGKILL after 10 s).
stop_child() {
    local pid=$1 name=$2
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null
    # (its output goes nowhere, so a left-over sleep never holds a CI pipe open)
    (sleep 10 && kill -KILL "$pid") >/dev/null 2>&1 &
    local watchdog=$!
    wait "$pid" 2>/dev/null
    kill "$watchdog" 2>/dev/null
    wait "$watchdog" 2>/dev/null
    say "$name (pid $pid) stopped"
}

finish() {
    local rc=$?
    trap - EXIT INT TERM
    stop_child "$XVFB_PID" Xvfb
    stop_child "$PCSCD_PID" pcscd
    stop_postgres
    [ -n "$RUNTIME_DIR" ] && rm -rf "$RUNTIME_DIR"
    if [ ${#failed_steps[@]} -gt 0 ]; then
        say "FAILED: ${failed_steps[*]} (logs in target/test-logs/)"
        [ "$rc" -eq 0 ] && rc=1
    elif [ "$rc" -eq 0 ]; then
        say "all steps passed in $(((SECONDS - START) / 60)) min $(((SECONDS - START) % 60)) s"
    fi
    printf '%d passed, %d failed\n' "$passed" "$failed"
    exit "$rc"
}
trap finish EXIT
trap 'say "interrupted"; exit 130' INT
trap 'say "terminated"; exit 143' TERM

# step NAME COMMAND...: runs it, prints its outcome and time, records a failure.
step() {
    local name=$1
    shift
    local t0=$SECONDS
    say "$name: $*"
    if "$@"; then
        say "$name: ok ($((SECONDS - t0)) s)"
    else
        say "$name: FAILED ($((SECONDS - t0)) s)"
        failed_steps+=("$name")
    fi
}

start_pcscd() {
    local sock=/run/pcscd/pcscd.comm
    if pgrep -x pcscd >/dev/null; then
        say "pcscd: already running (pid $(pgrep -x pcscd | head -n1)), using it"
    else
        # A socket left by a killed pcscd would look ready before ours is: remove it first.
        rm -f "$sock"
        pcscd -f >"$LOG_DIR/pcscd.log" 2>&1 9>&- &
        PCSCD_PID=$!
        local i
        for i in $(seq 100); do
            [ -S "$sock" ] && break
            alive "$PCSCD_PID" || break
            sleep 0.1
        done
        if ! [ -S "$sock" ] || ! alive "$PCSCD_PID"; then
            say "pcscd: did not come up within 10 s (see target/test-logs/pcscd.log)"
            return 1
        fi
        # bind() comes just before listen(): give it a moment before the first client.
        sleep 0.2
        say "pcscd: started (pid $PCSCD_PID), $sock ready"
    fi
    export TALLY_PCSCD=1
}

start_xvfb() {
    local n i
    for n in $(seq 99 119); do
        [ -e "/tmp/.X$n-lock" ] && continue
        Xvfb ":$n" -screen 0 1280x1024x24 -nolisten tcp -noreset >"$LOG_DIR/xvfb.log" 2>&1 9>&- &
        XVFB_PID=$!
        for i in $(seq 100); do
            alive "$XVFB_PID" || break
            if DISPLAY=":$n" xdotool getdisplaygeometry >/dev/null 2>&1; then
                export TALLY_XVFB_DISPLAY=":$n"
                say "Xvfb: started on :$n (pid $XVFB_PID)"
                return 0
            fi
            sleep 0.1
        done
        stop_child "$XVFB_PID" Xvfb
        XVFB_PID=""
    done
    say "Xvfb: could not start on any display :99..:119 (see target/test-logs/xvfb.log)"
    return 1
}

# A throwaway PostgreSQL cluster for the server tests: initdb into a temporary folder (as the
# `postgres` user when run as root: PostgreSQL refuses to run as root), on the first free port
# from 54329, loopback only, trust auth, fsync off (nothing in it outlives the run).
start_postgres() {
    PG_BIN="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n1)"
    if ! [ -x "$PG_BIN/initdb" ]; then
        say "postgres: no initdb under /usr/lib/postgresql/*/bin (setup.sh installs postgresql)"
        return 1
    fi
    local port
    for port in $(seq 54329 54399); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || break
    done
    PG_DIR="$(mktemp -d /tmp/tally-pg.XXXXXX)"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres "$PG_DIR"
        PG_AS=(runuser -u postgres --)
    fi
    if ! "${PG_AS[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -A trust -U postgres >"$LOG_DIR/postgres-initdb.log" 2>&1; then
        say "postgres: initdb failed (see target/test-logs/postgres-initdb.log)"
        return 1
    fi
    if ! "${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w -t 30 \
        -o "-p $port -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" \
        start >/dev/null 9>&-; then
        cp "$PG_DIR/postgres.log" "$LOG_DIR/postgres.log" 2>/dev/null
        say "postgres: did not start (see target/test-logs/postgres.log)"
        return 1
    fi
    export TALLY_PG_URL="postgres://postgres@127.0.0.1:$port/postgres"
    say "postgres: started on 127.0.0.1:$port (cluster in $PG_DIR)"
}

stop_postgres() {
    [ -n "$PG_DIR" ] || return 0
    if [ -f "$PG_DIR/data/postmaster.pid" ]; then
        "${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1
        say "postgres: stopped"
    fi
    cp "$PG_DIR/postgres.log" "$LOG_DIR/postgres.log" 2>/dev/null
    rm -rf "$PG_DIR"
    PG_DIR=""
}

# Sums the `test result: ok. 12 passed; 0 failed; …` lines of a cargo test log.
count_results() {
    local counts
    counts="$(awk '/^test result: / {
            for (i = 1; i <= NF; i++) {
                if ($(i + 1) ~ /^passed;?$/) p += $i
                if ($(i + 1) ~ /^failed;?$/) f += $i
            }
        } END { printf "%d %d", p, f }' "$1")"
    passed=${counts% *}
    failed=${counts#* }
}

run_tests() {
    local log="$LOG_DIR/cargo-test.log" rc
    cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log"
    rc=$?
    count_results "$log"
    return "$rc"
}

# One run at a time per checkout: runs share pcscd, vpcd's ports and target/. A second run
# waits here instead of stopping the first one's pcscd under it.
mkdir -p "$LOG_DIR"
exec 9>"$LOG_DIR/.lock"
if ! flock -n 9; then
    say "waiting for another scripts/test.sh run in this checkout to finish"
    flock 9
fi

# What git sees before anything runs: the last step checks that the run changed none of it.
TREE_BEFORE="$(git status --porcelain 2>/dev/null)"

bash scripts/setup.sh || {
    say "set-up failed"
    exit 2
}
# shellcheck source=scripts/env.sh
. scripts/env.sh

step fmt cargo fmt --all -- --check
# fuzz/ is a workspace of its own, outside the one above.
step fmt-fuzz cargo fmt --manifest-path fuzz/Cargo.toml -- --check
step clippy cargo clippy --workspace --all-targets --locked -- -D warnings
# tally-core without its default `pcsc` feature (a viewer for the emulated card only) builds too.
step no-pcsc cargo clippy -p tally-core --no-default-features --locked -- -D warnings

# Mesa's lavapipe complains without a runtime dir; give the tests a private one.
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
    RUNTIME_DIR="$(mktemp -d)"
    chmod 700 "$RUNTIME_DIR"
    export XDG_RUNTIME_DIR="$RUNTIME_DIR"
fi
step pcscd start_pcscd
step xvfb start_xvfb
step postgres start_postgres

step test run_tests
# The benches must build; they are built the cheap way, in the dev profile, on the artifacts
# the test step already built (seconds instead of a 12-minute cold release build: CI's time
# limit). `--bench '*'`: only the bench targets. The numbers in the docs come from
# `cargo bench`, which builds them in release.
step bench cargo bench --workspace --bench '*' --no-run --locked --profile dev
# Fuzz smoke (issue 7): builds every target of fuzz/ (unoptimised: the cheap build) and runs
# each for 3 s. The long run and its counts are in docs/security.md (scripts/fuzz-long.sh).
step fuzz bash scripts/fuzz.sh 3 dev
# The crate docs (tally-core's are what another viewer reads) build without a warning.
step doc env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
# Tests leave nothing regenerated behind: no tracked file changed, no stray file added.
tree_unchanged() {
    local now
    now="$(git status --porcelain 2>/dev/null)"
    if [ "$now" != "$TREE_BEFORE" ]; then
        say "the run changed the working tree:"
        diff <(printf '%s\n' "$TREE_BEFORE") <(printf '%s\n' "$now") | sed 's/^/    /'
        return 1
    fi
}
step clean-tree tree_unchanged
