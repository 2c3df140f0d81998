//! Command-line arguments (clap derive; doc comments are the help text).

use crate::commands;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Tally's publisher tool: vendor keys, customers, packages and keyfiles.
#[derive(Parser, Debug)]
#[command(
    name = "tally-pack",
    version,
    about,
    propagate_version = true,
    after_help = EXIT_CODES
)]
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

/// Exit codes, shown under `tally-pack --help` (`main` maps errors to them).
const EXIT_CODES: &str = "Exit codes:
  0  done
  1  a check failed: a file does not verify, a wrong password, an input refused
  2  a usage error, or a file or the network could not be read or written";

/// The subcommands: one variant and one file in `commands/` each.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create the vendor's keys, or export the public file viewers trust.
    #[command(subcommand)]
    Vendor(commands::vendor::VendorCommand),
    /// Register customers (their cards) and list them.
    #[command(subcommand)]
    Customer(commands::customer::CustomerCommand),
    /// Encrypt a PDF into a package, the same file for every customer.
    Pack(commands::pack::PackArgs),
    /// Say what a Tally file is and whether it verifies.
    Inspect(commands::inspect::InspectArgs),
    /// Issue a customer a keyfile (licence) for a package: what they may use, and how much.
    Issue(Box<commands::issue::IssueArgs>),
    /// Renew a licence: the same licence with new limits or dates and the next version; the
    /// use so far counts on, and older versions are refused once the new one is used.
    Renew(Box<commands::renew::RenewArgs>),
    /// Verify readers' return receipts and list every verified return (a verified return
    /// frees the loan's place).
    Returns(commands::returns::ReturnsArgs),
    /// Cap a document's concurrent loans, or list them.
    Loans(commands::loans::LoansArgs),
    /// Name the customer a leaked keyfile was issued to.
    Trace(commands::trace::TraceArgs),
    /// Report the use of each licence of a customer, for billing: from the trail backup your
    /// validation server holds, or from a trail file the customer sent.
    Audit(commands::audit::AuditArgs),
    /// Challenge a customer's card: their viewer signs the nonce onto the trail and sends
    /// it to your validation server, so `audit` needs no file from them.
    Challenge(commands::challenge::ChallengeArgs),
    /// Run the validation server: it checks each copy online, keeps readers' trail backups,
    /// and refuses revoked copies, clones and unregistered viewer builds.
    Serve(commands::serve::ServeArgs),
    /// Revoke a copy or every copy of a customer: refused at its next validation.
    Revoke(commands::revoke::RevokeArgs),
    /// List issued copies: status, flags, validations (time, date, frequency).
    Copies(commands::copies::CopiesArgs),
    /// Register the viewer builds your readers run (the server refuses any other build).
    #[command(subcommand)]
    Viewer(commands::viewer::ViewerCommand),
}
