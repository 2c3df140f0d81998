//! `tally-pack`: the publisher's command line (EP 0 895 148 \[0064\]–\[0074\], claims 25–30).
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
mod sql;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    exit_quietly_on_broken_pipe();
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

/// `println!` panics when stdout is a closed pipe (`tally-pack … | head`); a broken pipe is
/// not an error for a CLI, so exit quietly instead of printing a panic.
fn exit_quietly_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}
