//! `tally-pack revoke`: sets a copy's validity flag to false ("disabled remotely by
//! setting a validity indicator at the central server", seed 2). The copy is refused at
//! its next validation (T23); it works while the server runs (shared SQLite, WAL).

use super::{Ctx, refused};
use crate::server::db;
use anyhow::Result;
use clap::Args;
use std::process::ExitCode;

/// Arguments of `revoke`.
#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["copy", "customer"]))]
pub struct RevokeArgs {
    /// The copy: its licence id (its first UI) or any UI it has presented.
    #[arg(long, value_name = "UI")]
    pub copy: Option<String>,
    /// Every copy issued to this customer.
    #[arg(long, value_name = "NAME")]
    pub customer: Option<String>,
}

/// Runs `revoke`.
pub fn run(ctx: &Ctx, args: RevokeArgs) -> Result<ExitCode> {
    let mut registry = ctx.registry()?;
    let copy = args.copy.as_deref().map(|s| s.trim().to_ascii_lowercase());
    let revoked = db::revoke(
        registry.connection(),
        copy.as_deref(),
        args.customer.as_deref(),
    )?;
    if revoked.is_empty() {
        return Err(refused(match (&copy, &args.customer) {
            (Some(c), _) => format!("no copy has the UI or licence id {c}"),
            (_, Some(n)) => format!("customer `{n}` has no issued copies"),
            _ => "nothing to revoke".into(),
        }));
    }
    for l in &revoked {
        println!("revoked copy {l}");
    }
    Ok(ExitCode::SUCCESS)
}
