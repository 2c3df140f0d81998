//! `tally-view`: parse → dispatch → exit code. All rental rules live in tally-core.

use clap::Parser;
use std::process::ExitCode;
use tally_viewer::cli::{Cli, Command};
use tally_viewer::commands;

fn main() -> ExitCode {
    exit_quietly_on_broken_pipe();
    let cli = Cli::parse();
    let result = (|| {
        if cli.command.is_some() && (cli.package.is_some() || cli.keyfile.is_some() || cli.demo) {
            return Err(commands::Failure::Usage(anyhow::anyhow!(
                "PACKAGE, KEYFILE and --demo open the reading window; they can't be combined with a command"
            )));
        }
        let home = commands::home(&cli.home)?;
        match &cli.command {
            Some(Command::Card(c)) => commands::card::run(c, &home, &cli.card),
            Some(Command::Trail(t)) => commands::trail::run(t, &home, &cli.card),
            Some(Command::Status(s)) => commands::status::run(s, &home, &cli.card, s.demo),
            Some(Command::Trust(t)) => commands::trust::run(t, &home),
            Some(Command::Validate(v)) => commands::validate::run(v, &home, &cli.card),
            Some(Command::Return(r)) => commands::returning::run(r, &home, &cli.card),
            Some(Command::Backup(b)) => commands::backup::run(b, &home),
            None => commands::open::run(&cli, &home),
        }
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("tally-view: {:#}", f.error());
            ExitCode::from(f.code())
        }
    }
}

/// `println!` panics when stdout is a closed pipe (`tally-view … | head`); a broken pipe is
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
