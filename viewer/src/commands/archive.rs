//! `tally-view trail archive [--server-key HEX]... [--json]`: moves the records a trusted
//! validation server vouched for out of the working trail (\[0094\]), so a fresh
//! ValidateTrail reads only what came after. The rules — where the cut may be, the
//! archive file, the anchor that later validations need — are
//! `tally_core::trail::Trail::archive`; this command picks the keys and prints.
//!
//! Exit 0 when records were archived; 1 when the trail is invalid or nothing may be
//! archived (no trusted validator after the last cut); 2 when a file can't be read.

use super::{Outcome, trail_failure};
use crate::commands::trail::VerifyArgs;
use anyhow::Context as _;
use tally_core::home::{CardSpec, Home};
use tally_core::trail::Trail;

/// Runs `trail archive`.
pub fn run(args: &VerifyArgs, home: &Home, spec: &CardSpec) -> Outcome {
    let keys = super::trail::validators(home, &args.server_keys)?;
    let mut card = spec.open(home)?;
    let id = card.identity().context("reading the card")?;
    drop(card);
    let path = home.trail_path(&id.serial);
    let a = Trail::archive(&path, &id, keys).map_err(trail_failure)?;
    // The working trail was rewritten: the mirror follows it now, not at the next Write.
    if let Some(mirror) = home
        .mirror_path(&id.serial)
        .map_err(|e| super::Failure::Usage(anyhow::anyhow!(e)))?
    {
        match Trail::open(&path, &id) {
            Ok(mut t) => {
                t.set_mirror_now(Some(mirror));
                super::warn_mirror(&t);
            }
            Err(e) => eprintln!("warning: the mirror copy of the trail was not updated: {e}"),
        }
    }
    if args.json {
        println!(
            "{:#}",
            serde_json::json!({
                "archived": a.records,
                "archive": a.path,
                "first": a.first,
                "upto": a.upto,
                "kept": a.kept,
                "trail": path,
            })
        );
    } else {
        println!(
            "archived {} to {}; {} in the working trail",
            super::records_with_counters(a.records, a.first, a.upto),
            a.path.display(),
            match a.kept {
                1 => "1 record stays".to_string(),
                n => format!("{n} records stay"),
            }
        );
    }
    Ok(())
}
