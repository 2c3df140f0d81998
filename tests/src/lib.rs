//! Shared helpers for Tally's end-to-end tests (the tests live in `tests/tests/`).
