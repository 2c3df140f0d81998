#!/usr/bin/env bash
# Regenerates every sample file, byte for byte: the PDF (standard-library Python), then
# the DEMO publisher, DEMO card, package and DEMO licence (Rust, through tally-core).
# Needs libpdfium.so (scripts/setup.sh puts it in .deps/pdfium; or set TALLY_PDFIUM_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 samples/make_pdf.py samples/sample.pdf
cargo run --quiet -p tally-viewer --example make_samples -- samples
rm -f samples/demo-card.state.lock
