//! `tally-view trail mirror [DIR | --off] [--json]`: where the mirror copy of the trail is
//! kept (\[0062\]: "at least one backup audit trail on a separate medium"). With DIR, every
//! Write from then on also appends to `DIR/<serial>.trail` (a copy is made now); `--off`
//! stops it; alone, it says where the mirror is and whether it is in step. A lost trail
//! comes back from it with `tally-view trail restore --from-mirror`, which keeps it only
//! if nothing is missing. The rules are `tally_core::trail::Trail::set_mirror`.

use super::{Failure, Outcome, trail_failure};
use anyhow::{Context as _, anyhow};
use clap::Args;
use std::path::PathBuf;
use tally_core::home::{CardSpec, Home};
use tally_core::trail::Trail;

/// Arguments of `trail mirror`.
#[derive(Args, Debug)]
pub struct MirrorArgs {
    /// The folder, on another disk or medium, to keep the mirror copy in.
    #[arg(value_name = "DIR", conflicts_with = "off")]
    pub dir: Option<PathBuf>,
    /// Stop keeping a mirror copy (the copy already there is left as it is).
    #[arg(long)]
    pub off: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `trail mirror`.
pub fn run(args: &MirrorArgs, home: &Home, spec: &CardSpec) -> Outcome {
    let usage = |e: tally_core::home::SettingsError| Failure::Usage(anyhow!(e));
    if args.off {
        home.set_mirror_dir(None).map_err(usage)?;
        if args.json {
            println!("{:#}", serde_json::json!({ "mirror": null }));
        } else {
            println!("no mirror copy is kept any more");
        }
        return Ok(());
    }
    let mut card = spec.open(home)?;
    let id = card.identity().context("reading the card")?;
    let path = home.trail_path(&id.serial);
    if let Some(dir) = &args.dir {
        let dir = if dir.is_absolute() {
            dir.clone()
        } else {
            std::env::current_dir()
                .context("the current folder")?
                .join(dir)
        };
        home.set_mirror_dir(Some(&dir)).map_err(usage)?;
    }
    let mirror = home.mirror_path(&id.serial).map_err(usage)?;
    let Some(mirror) = mirror else {
        if args.json {
            println!("{:#}", serde_json::json!({ "mirror": null }));
        } else {
            println!("no mirror copy is kept (tally-view trail mirror DIR starts one)");
        }
        return Ok(());
    };
    let trail_bytes = path
        .exists()
        .then(|| std::fs::read(&path))
        .transpose()
        .with_context(|| format!("reading {}", path.display()))?;
    if args.dir.is_some() && trail_bytes.is_some() {
        // The copy now, so the mirror is complete before the next Write.
        let mut t = Trail::open(&path, &id).map_err(trail_failure)?;
        t.set_mirror(Some(mirror.clone()));
        t.sync_mirror().map_err(|e| {
            Failure::Usage(anyhow!(e).context(format!("copying the trail to {}", mirror.display())))
        })?;
    }
    let in_step = match &trail_bytes {
        Some(t) => std::fs::read(&mirror).is_ok_and(|m| m == *t),
        None => false,
    };
    drop(card);
    if args.json {
        println!(
            "{:#}",
            serde_json::json!({ "mirror": mirror, "trail": path, "in_step": in_step })
        );
    } else if in_step {
        println!("the trail is mirrored to {} (in step)", mirror.display());
    } else if trail_bytes.is_none() {
        println!(
            "the trail will be mirrored to {} (there is no trail yet)",
            mirror.display()
        );
    } else {
        println!(
            "the trail is mirrored to {}, which is not in step yet: the next record brings it up to date",
            mirror.display()
        );
    }
    Ok(())
}
