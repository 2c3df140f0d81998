//! `tally-pack`: the publisher's command line (EP 0 895 148 [0064]–[0074], claims 25–30).
//!
//! Parse → dispatch → exit code. Every rule lives in `tally-core`; this binary only
//! reads files, asks for the password, keeps the registry and prints.
//! Exit codes: 0 ok, 1 a check failed (a file does not verify, a wrong password, an
//! input refused), 2 usage or I/O.

mod cli;
mod commands;
mod password;
mod pdf;
mod registry;
mod server;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("tally-pack: {e:#}");
            ExitCode::from(commands::exit_code(&e))
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
