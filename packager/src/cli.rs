//! Command-line arguments (clap derive; doc comments are the help text).

use crate::commands;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Tally's publisher tool: vendor keys, customers, packages and keyfiles.
#[derive(Parser, Debug)]
#[command(name = "tally-pack", version, about, propagate_version = true)]
pub struct Cli {
    /// The vendor folder: encrypted keys, public file and customer registry.
    #[arg(long, global = true, env = "TALLY_VENDOR", value_name = "DIR")]
    pub vendor: Option<PathBuf>,
    /// Read the vendor password from the first line of FILE (otherwise
    /// TALLY_VENDOR_PASSWORD, otherwise a prompt).
    #[arg(long, global = true, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// The registry database: a PostgreSQL URL (`postgres://user:password@host/db`, shared
    /// by several `serve` nodes) or a SQLite file (default: `registry.sqlite` in the vendor
    /// folder).
    #[arg(long, global = true, env = "TALLY_DATABASE", value_name = "URL|PATH")]
    pub database: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands: one variant and one file in `commands/` each.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create the vendor's keys, or export the public file viewers trust.
    #[command(subcommand)]
    Vendor(commands::vendor::VendorCommand),
    /// Register customers (their cards) and list them.
    #[command(subcommand)]
    Customer(commands::customer::CustomerCommand),
    /// Encrypt a PDF into a package, identical for every customer (claim 30).
    Pack(commands::pack::PackArgs),
    /// Say what a Tally file is and whether it verifies.
    Inspect(commands::inspect::InspectArgs),
    /// Issue a customer a keyfile for a package: a bounded rental ([0064]–[0069]).
    Issue(commands::issue::IssueArgs),
    /// Name the owner of a leaked keyfile ([0069]).
    Trace(commands::trace::TraceArgs),
    /// Verify a customer's trail and report use per licence, for billing ([0041], [0104]).
    Audit(commands::audit::AuditArgs),
    /// Run the validation server (WO 98/33296): VAL_REQ in, signed VAL_OK out.
    Serve(commands::serve::ServeArgs),
    /// Revoke a copy or every copy of a customer: refused at its next validation.
    Revoke(commands::revoke::RevokeArgs),
    /// List issued copies: status, flags, validations (time, date, frequency).
    Copies(commands::copies::CopiesArgs),
    /// Register released viewer builds (their ICVs).
    #[command(subcommand)]
    Viewer(commands::viewer::ViewerCommand),
}
