# Sourced (not run) by scripts/test.sh and scripts/demo.sh after scripts/setup.sh:
# the environment Tally builds, tests and runs in. Sets only the variables below.

TALLY_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# rustup installs into ~/.cargo/bin; a fresh login shell may not have it on PATH yet.
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi

# libpdfium.so from the pinned pypdfium2 wheel, put there and checked by setup.sh.
export TALLY_PDFIUM_DIR="$TALLY_ROOT/.deps/pdfium"

# One renderer for every snapshot: wgpu on Vulkan. On a machine without a GPU that is
# Mesa's lavapipe (mesa-vulkan-drivers), a CPU rasteriser, checked here to give wgpu an
# adapter and a device (wgpu 30, Mesa 22.3.6). egui_kittest prefers CPU adapters, so a
# machine with a GPU still renders snapshots on lavapipe. Vulkan needs no
# LIBGL_ALWAYS_SOFTWARE; that would only matter if this were pinned to `gl`.
export WGPU_BACKEND=vulkan
