#!/usr/bin/env bash
# THE run command (README): sets up, builds in release, and opens the sample document in the
# viewer on an emulated card: `tally-view --demo`. Extra arguments go to tally-view.
#   TALLY_HOME  the reader's folder (card state + trail); default ~/.local/share/tally-demo,
#               kept apart from a real reader's folder. Delete it to start over with a new card.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash scripts/setup.sh
# shellcheck source=scripts/env.sh
. scripts/env.sh

echo "demo: cargo build --release --locked --bins"
cargo build --release --locked --bins

export TALLY_HOME="${TALLY_HOME:-$HOME/.local/share/tally-demo}"
mkdir -p "$TALLY_HOME"

if [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
    echo "demo: no DISPLAY or WAYLAND_DISPLAY set: the viewer needs a desktop session (or an X server such as Xvfb)" >&2
fi
echo "demo: TALLY_HOME=$TALLY_HOME"
echo "demo: target/release/tally-view --demo $*"
exec "$ROOT/target/release/tally-view" --demo "$@"
