//! `tally-pack copies`: every issued copy with its status, flags and validations
//! ("the time, date and frequency of use of individual programs may be monitored",
//! seed 2).

use super::Ctx;
use crate::server::db;
use anyhow::Result;
use clap::Args;
use std::process::ExitCode;

/// Arguments of `copies`.
#[derive(Args, Debug)]
pub struct CopiesArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `copies`.
pub fn run(ctx: &Ctx, args: CopiesArgs) -> Result<ExitCode> {
    let mut registry = ctx.registry()?;
    let all = db::copies(registry.connection())?;
    if args.json {
        let v: Vec<_> = all
            .iter()
            .map(|c| {
                serde_json::json!({
                    "licence": c.row.licence,
                    "customer": c.row.customer,
                    "document": c.row.document,
                    "status": if c.row.state.revoked { "revoked" } else { "active" },
                    "flags": c.row.flags.split(',').filter(|f| !f.is_empty()).collect::<Vec<_>>(),
                    "ui": c.row.state.ui.to_hex(),
                    "vssi": c.row.state.vssi,
                    "last_psi": c.row.state.last_psi,
                    "validations": c.validations,
                    "validations_ok": c.ok,
                    "first_validation": c.first,
                    "last_validation": c.last,
                    "validations_per_day": c.per_day,
                    "created": c.row.created,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    if all.is_empty() {
        println!("no copies issued");
    }
    for c in &all {
        println!(
            "{}  {}  {}{}  validations {} ({} ok), last {}, {:.2}/day",
            c.row.licence,
            c.row.customer,
            if c.row.state.revoked {
                "revoked"
            } else {
                "active"
            },
            if c.row.flags.is_empty() {
                String::new()
            } else {
                format!(" [{}]", c.row.flags)
            },
            c.validations,
            c.ok,
            c.last.as_deref().unwrap_or("never"),
            c.per_day
        );
    }
    Ok(ExitCode::SUCCESS)
}
