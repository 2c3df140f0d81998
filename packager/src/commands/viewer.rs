//! `tally-pack viewer register BINARY`: records the ICV of a released viewer build, so
//! the validation server refuses a modified viewer (seed 2: software "operating in an
//! unaltered manner").

use super::Ctx;
use crate::server::db;
use anyhow::{Context, Result};
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

/// `viewer` subcommands.
#[derive(Subcommand, Debug)]
pub enum ViewerCommand {
    /// Register a released viewer executable.
    Register {
        /// The executable.
        binary: PathBuf,
        /// A name for the build (default: the file name).
        #[arg(long)]
        name: Option<String>,
    },
}

/// Runs `viewer …`.
pub fn run(ctx: &Ctx, cmd: ViewerCommand) -> Result<ExitCode> {
    match cmd {
        ViewerCommand::Register { binary, name } => {
            let f = std::fs::File::open(&binary)
                .with_context(|| format!("opening {}", binary.display()))?;
            let size = f.metadata()?.len();
            let icv = tally_core::icv::executable_icv(f)
                .with_context(|| format!("reading {}", binary.display()))?;
            let name = name.unwrap_or_else(|| {
                binary
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "viewer".into())
            });
            let mut registry = ctx.registry()?;
            let new = db::register_viewer(registry.connection(), &icv, &name, size)?;
            println!(
                "viewer build {name}: ICV {}{}",
                hex::encode(icv.0),
                if new { "" } else { " (already registered)" }
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
