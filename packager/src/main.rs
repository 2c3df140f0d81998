//! `tally-pack`: the publisher's command line.
use clap::Parser;

/// Tally's publisher tool.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {}

fn main() {
    let _ = Cli::parse();
}
