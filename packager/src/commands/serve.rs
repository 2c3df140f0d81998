//! `tally-pack serve`: the validation server of WO 98/33296 (see `crate::server`).

use super::Ctx;
use crate::server::{Config, run};
use anyhow::{Result, bail};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tally_core::icv::IcvVariant;
use tally_core::policy::SystemClock;
use tally_core::trail::body::LostCharge;
use tally_core::validation::{ServerSecret, Terms};

/// Arguments of `serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (port 0: any free port; the address is printed).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8680")]
    pub listen: String,
    /// A SQLite database file, overriding `--database` (default: the registry `--database`
    /// names, else the vendor folder's, shared with `issue`, `revoke` and `copies`).
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// A folder holding packages, to compute integrity checks (repeatable), searched when a
    /// package is not where `pack` wrote it (default `<vendor>/packages`). Files are matched
    /// to the registry by SHA-256.
    #[arg(long = "packages", value_name = "DIR")]
    pub packages: Vec<PathBuf>,
    /// How long a validation answer lets a copy work offline, in hours.
    #[arg(long, value_name = "HOURS", default_value_t = 24 * 7)]
    pub ticket_hours: u32,
    /// How many records a reader's card may sign after a validation before the copy must
    /// validate again, whatever the reader's clock says (a frozen clock buys nothing). The
    /// default is about a week of continuous reading at one-minute time units.
    #[arg(long, value_name = "N", default_value_t = tally_core::validation::DEFAULT_OFFLINE_RECORDS)]
    pub offline_records: u32,
    /// Integrity-check variant accepted (repeatable; default V7, the strongest over the
    /// package's bytes, and V8, the same walk over digests fixed at pack time, whose cost
    /// does not grow with the document).
    #[arg(long = "icv", value_name = "V1..V8")]
    pub icv: Vec<IcvVariant>,
    /// How the records lost between a reader's backup and a restore are charged: `full`
    /// (every licence of the card used up) or `forgive` (recorded, not charged).
    #[arg(long, value_name = "full|forgive", default_value = "full", value_parser = parse_lost)]
    pub lost_records: LostCharge,
    /// Database connections this node opens at most (PostgreSQL; SQLite uses one).
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub connections: usize,
    /// Requests one client address may have in flight at once; more get 429.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub max_per_client: usize,
    /// MiB of package files kept in memory for integrity checks (least recently used
    /// evicted).
    #[arg(long, value_name = "MIB", default_value_t = 512)]
    pub package_cache_mib: u64,
}

fn parse_lost(s: &str) -> Result<LostCharge, String> {
    match s {
        "full" => Ok(LostCharge::Full),
        "forgive" => Ok(LostCharge::Forgive),
        _ => Err("expected `full` or `forgive`".into()),
    }
}

/// Runs `serve`.
pub fn run_serve(ctx: &Ctx, args: ServeArgs) -> Result<ExitCode> {
    let vendor = ctx.open_vendor()?;
    let key = ServerSecret::derive(&vendor)?;
    drop(vendor);
    let dir = ctx.existing_vendor_dir()?;
    if args.ticket_hours == 0 || args.ticket_hours > 24 * 366 {
        bail!("--ticket-hours must be 1 to 8784");
    }
    if args.offline_records == 0 {
        bail!("--offline-records must be at least 1");
    }
    let db = match args.db {
        Some(path) => crate::sql::Target::Sqlite(path),
        None => ctx.database()?,
    };
    if args.connections == 0 || args.max_per_client == 0 {
        bail!("--connections and --max-per-client must be at least 1");
    }
    let mut package_dirs = args.packages;
    if package_dirs.is_empty() {
        package_dirs.push(dir.join("packages"));
    }
    let variants = if args.icv.is_empty() {
        vec![IcvVariant::V7, IcvVariant::V8]
    } else {
        args.icv
    };
    eprintln!(
        "validation server key {} (derived from the vendor secret); database {}",
        hex::encode(key.vsi()),
        db.display()
    );
    run(
        Config {
            key,
            db,
            pool_size: args.connections,
            max_per_client: args.max_per_client,
            package_cache: args.package_cache_mib.saturating_mul(1 << 20),
            package_dirs,
            terms: Terms {
                lifetime: i64::from(args.ticket_hours) * 3600,
                offline_records: args.offline_records,
            },
            variants,
            clock: Arc::new(SystemClock),
            lost_records: args.lost_records,
        },
        &args.listen,
    )?;
    Ok(ExitCode::SUCCESS)
}
