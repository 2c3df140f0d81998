//! `tally-view backup [on | off] [--json]`: the automatic backup of your reading record.
//!
//! While you read a document whose licence names its publisher's validation server, the
//! viewer has your trail vouched for and backed up by that server on its own, in the
//! background (`tally_core::rental::AutoBackup`): opening stays fast however long your
//! reading history grows, and a lost trail comes back from a recent backup. `off` stops
//! it; that costs only speed and backup safety — every rule of every licence stays the
//! same. Alone, the command says whether it is on. The setting is `<home>/backup`.

use super::{Failure, Outcome};
use anyhow::anyhow;
use clap::{Args, ValueEnum};
use tally_core::home::Home;

/// On or off.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Switch {
    /// Back the trail up while reading (the default).
    On,
    /// Do not: opening checks every record not vouched for, and a lost trail comes back
    /// only from the last backup you made with `tally-view trail vouch`.
    Off,
}

/// Arguments of `backup`.
#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Turn the automatic backup on or off.
    #[arg(value_enum)]
    pub switch: Option<Switch>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `backup`.
pub fn run(args: &BackupArgs, home: &Home) -> Outcome {
    if let Some(s) = args.switch {
        home.set_auto_backup(s == Switch::On)
            .map_err(|e| Failure::Usage(anyhow!(e)))?;
    }
    let on = home.auto_backup().map_err(|e| Failure::Usage(anyhow!(e)))?;
    if args.json {
        println!("{:#}", serde_json::json!({ "automatic_backup": on }));
    } else if on {
        println!(
            "automatic backup is on: while you read, your reading record is vouched for and backed up by the publisher's validation server your licence names"
        );
    } else {
        println!(
            "automatic backup is off: opening checks every record not vouched for, and a lost trail comes back only from your last `tally-view trail vouch` (no rule of any licence changes)"
        );
    }
    Ok(())
}
