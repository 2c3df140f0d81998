//! `tally-view`.
fn main() {}
