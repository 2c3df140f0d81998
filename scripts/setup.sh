#!/usr/bin/env bash
# Installs what Tally's build, tests and demo need on Debian 12, idempotently:
#   1. apt packages (only when one is missing; then `apt-get update` + install, as root or via sudo),
#   2. a Rust toolchain with rustfmt and clippy (rustup, only when cargo is missing),
#   3. libpdfium.so from the pinned pypdfium2 wheel into .deps/pdfium/ (git-ignored), SHA-256 checked.
# Prints one line per step; exports nothing (scripts/env.sh holds the environment).
# When everything is present it runs in well under a second and touches no network.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
START_NS=$(date +%s%N)

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 2; }

# --- pins: libpdfium.so from the pypdfium2 wheel ----------------------------------------------
# No Debian package ships pdfium. The wheel holds pypdfium2_raw/libpdfium.so (pdfium build
# 8149), which needs only libc, libm, libpthread and libgcc_s. Both hashes were recorded
# when this script was written (2026-11-25); a different file is refused, never used.
PYPDFIUM2_VERSION=5.15.2
case "$(uname -m)" in
    x86_64)
        PLATFORM=manylinux_2_17_x86_64
        WHEEL_SHA256=dc31aea5b0fb9fefc9b537a65f4113980b2c40798445736a7e6565bc85161e37
        SO_SHA256=c76dc0f7839644bfa7c3e3107a6068df714e339c861bb7d4519907b821d427f9
        ;;
    aarch64)
        PLATFORM=manylinux_2_17_aarch64
        WHEEL_SHA256=dd46e93c0c3a73f6cea8489baff6d77a5d0759dd53fbbce0aeb49c91830176fc
        SO_SHA256=4378615ad9710397c96c112611be9018629bbfe38805d91a2663a534b99c28ca
        ;;
    *) die "no pinned pdfium for machine type $(uname -m) (x86_64 and aarch64 are pinned)" ;;
esac
PDFIUM_DIR="$ROOT/.deps/pdfium"
PDFIUM_SO="$PDFIUM_DIR/libpdfium.so"
sha256_of() { sha256sum "$1" | awk '{print $1}'; }
PDFIUM_OK=0
if [ -f "$PDFIUM_SO" ] && [ "$(sha256_of "$PDFIUM_SO")" = "$SO_SHA256" ]; then
    PDFIUM_OK=1
fi

# --- 1. apt packages ----------------------------------------------------------------------
# build: compiler, linker, pkg-config (finds libpcsclite and sqlite); python3 runs pip and zipfile.
# PC/SC: pcscd, the headers the pcsc crate links against, and the vpcd virtual reader driver.
# UI tests: Xvfb for a real window, xdotool to drive it, imagemagick (`import`) for screenshots;
# Mesa EGL/GL and lavapipe (Vulkan) give wgpu an adapter without a GPU; the X11 client libraries
# are what winit/eframe load at run time.
# Validation server: SQLite (embedded), and PostgreSQL (the server's shared database for several
# nodes; test.sh starts a throwaway cluster from its binaries).
APT_PACKAGES=(
    build-essential pkg-config curl ca-certificates python3
    pcscd libpcsclite-dev vsmartcard-vpcd
    xvfb xdotool imagemagick
    libegl1 libegl-mesa0 libgl1-mesa-dri mesa-vulkan-drivers
    libxkbcommon-x11-0 libx11-xcb1 libxcursor1 libxrandr2 libxi6
    libsqlite3-dev postgresql
)
# pip is needed only to fetch pdfium (step 3); asking python for it is slow, so only then.
if [ "$PDFIUM_OK" = 0 ] && ! python3 -m pip --version >/dev/null 2>&1; then
    APT_PACKAGES+=(python3-pip)
fi

missing=()
# dpkg-query exits 1 when a package is unknown; the status column tells us what we need.
installed="$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${APT_PACKAGES[@]}" 2>/dev/null || true)"
for pkg in "${APT_PACKAGES[@]}"; do
    if ! grep -qx "$pkg installed" <<<"$installed"; then
        missing+=("$pkg")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    say "apt packages: all ${#APT_PACKAGES[@]} present"
else
    say "apt packages: installing ${missing[*]}"
    if [ "$(id -u)" -eq 0 ]; then
        SUDO=()
    elif command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        die "missing apt packages (${missing[*]}) and not root; run this script as root"
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -qq
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    say "apt packages: installed ${#missing[@]}"
fi

if dpkg-query -W -f='${db:Status-Status}' cups-client 2>/dev/null | grep -qx installed; then
    say "optional cups-client: present (printing via lp)"
else
    say "optional cups-client: absent, printing via lp unavailable (apt-get install cups-client)"
fi

# --- 2. Rust toolchain ----------------------------------------------------------------------
# Debian's rustc is too old for edition 2024 (rust-version 1.95): use rustup's stable.
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
    say "rust: cargo missing, installing rustup's stable toolchain (minimal + rustfmt, clippy)"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
        sh -s -- -y -q --no-modify-path --profile minimal --component rustfmt,clippy >/dev/null
    PATH="$HOME/.cargo/bin:$PATH"
fi
need_components=()
cargo fmt --version >/dev/null 2>&1 || need_components+=(rustfmt)
cargo clippy --version >/dev/null 2>&1 || need_components+=(clippy)
if [ ${#need_components[@]} -gt 0 ]; then
    command -v rustup >/dev/null 2>&1 || die "cargo lacks ${need_components[*]} and rustup is not available"
    rustup component add "${need_components[@]}" >/dev/null
fi
rustc_version="$(rustc --version | awk '{print $2}')"
required="$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n1)"
if [ -n "$required" ] && [ "$(printf '%s\n%s\n' "$required" "$rustc_version" | sort -V | head -n1)" != "$required" ]; then
    die "rustc $rustc_version is older than the workspace's rust-version $required (rustup update stable)"
fi
say "rust: rustc $rustc_version with rustfmt and clippy"


# --- 3. libpdfium.so from the pinned pypdfium2 wheel (pins at the top) ---------------------
if [ "$PDFIUM_OK" = 1 ]; then
    say "pdfium: .deps/pdfium/libpdfium.so present, sha256 ok"
else
    [ -e "$PDFIUM_SO" ] && say "pdfium: .deps/pdfium/libpdfium.so has the wrong sha256, replacing it"
    mkdir -p "$PDFIUM_DIR"
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
        --platform "$PLATFORM" "pypdfium2==$PYPDFIUM2_VERSION" -d "$tmp" >/dev/null ||
        die "pip download of pypdfium2==$PYPDFIUM2_VERSION failed"
    wheels=("$tmp"/pypdfium2-"$PYPDFIUM2_VERSION"-*.whl)
    [ -f "${wheels[0]}" ] || die "pip downloaded no pypdfium2 wheel"
    [ "$(sha256_of "${wheels[0]}")" = "$WHEEL_SHA256" ] ||
        die "$(basename "${wheels[0]}") has sha256 $(sha256_of "${wheels[0]}"), expected $WHEEL_SHA256"
    # Extract to a temporary name in the same folder, check, then rename: never a half file.
    python3 - "${wheels[0]}" "$PDFIUM_SO.tmp" <<'PY'
import sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z, open(out, "wb") as f:
    f.write(z.read("pypdfium2_raw/libpdfium.so"))
PY
    got="$(sha256_of "$PDFIUM_SO.tmp")"
    if [ "$got" != "$SO_SHA256" ]; then
        rm -f "$PDFIUM_SO.tmp"
        die "extracted libpdfium.so has sha256 $got, expected $SO_SHA256"
    fi
    mv -f "$PDFIUM_SO.tmp" "$PDFIUM_SO"
    say "pdfium: extracted libpdfium.so from pypdfium2 $PYPDFIUM2_VERSION into .deps/pdfium, sha256 ok"
fi

say "done in $(( ($(date +%s%N) - START_NS) / 1000000 )) ms"
