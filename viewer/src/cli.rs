//! Command-line arguments of `tally-view` (clap derive; doc comments are the help).

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use tally_core::home::CardSpec;

/// Tally's reader: opens rented documents and meters their use through your card.
#[derive(Parser, Debug)]
// Not `args_conflicts_with_subcommands`: with it, a global option before the subcommand
// (`tally-view --card pcsc card info`) made clap read `card info` as PACKAGE KEYFILE.
#[command(name = "tally-view", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// Folder holding your card state and trail [default: ~/.local/share/tally].
    #[arg(long, env = "TALLY_HOME", global = true)]
    pub home: Option<PathBuf>,

    /// Which card: emulated, emulated:PATH, pcsc or pcsc:READER.
    #[arg(long, env = "TALLY_CARD", global = true, default_value = "emulated")]
    pub card: CardSpec,

    /// Open the sample document with the demo licence on the demo card.
    #[arg(long)]
    pub demo: bool,

    /// The package to read (.tly).
    pub package: Option<PathBuf>,

    /// The keyfile (licence) for that package.
    pub keyfile: Option<PathBuf>,

    /// What to do; without a command, open the reading window.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Shown under `tally-view --help`: where things are, the window's keys, the exit codes.
const AFTER_HELP: &str = "Your card and trail live in TALLY_HOME (default ~/.local/share/tally):
card.state (an emulated card) and trails/<card serial>.trail (the trail a publisher audits).

In the window: arrows, Page Up/Down and Space turn pages; Ctrl+P prints; Ctrl+Q closes.

Exit codes:
  0  done (status: reading is allowed)
  1  a check failed (status: reading is not allowed); the message says which and why
  2  a usage error, or a file, the card or the network could not be read or written";

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Your card: create an emulated one, show it, export it for a publisher.
    #[command(subcommand)]
    Card(CardCommand),
    /// Your audit trail: verify it against the card, or list its records.
    #[command(subcommand)]
    Trail(TrailCommand),
    /// The checks of an opening, without a window: exit 0 when reading is allowed, 1 when not.
    Status(StatusArgs),
    /// The publishers whose licences this viewer opens.
    #[command(subcommand)]
    Trust(TrustCommand),
    /// Give a borrowed licence back early: it never opens again on this card, and the
    /// publisher gets a receipt that frees the loan (sent to its server, or as a file).
    #[command(name = "return")]
    Return(crate::commands::returning::ReturnArgs),
    /// Validate this copy online with the publisher's server (exit 0 validated, 1 refused).
    Validate(crate::commands::validate::ValidateArgs),
    /// Whether your reading record is backed up on its own while you read (on by default).
    Backup(crate::commands::backup::BackupArgs),
}

/// Arguments of `status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The package (.tly).
    pub package: PathBuf,
    /// Its keyfile.
    pub keyfile: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Use the demo card and trust the demo publisher (as `tally-view --demo` does).
    #[arg(long)]
    pub demo: bool,
}

/// `tally-view trust …`
#[derive(Subcommand, Debug)]
pub enum TrustCommand {
    /// Trust a publisher: give the public file the publisher sent you.
    Add {
        /// The publisher's public file.
        file: PathBuf,
    },
    /// List the trusted publishers.
    List,
    /// Stop trusting a publisher.
    Remove {
        /// Its fingerprint (64 hex digits, from `trust list`).
        fingerprint: String,
    },
}

/// `tally-view card …`
#[derive(Subcommand, Debug)]
pub enum CardCommand {
    /// Create an emulated card (for demos and tests only); refuses to overwrite one.
    Init(CardInitArgs),
    /// Show the card's serial, counter and key fingerprint.
    Info(JsonArg),
    /// Write the card's public file (serial, public key, origin) for a publisher to register.
    Export(ExportArgs),
    /// Serve an emulated card to pcscd through vsmartcard's vpcd, as a virtual card in the
    /// reader "Virtual PCD 00 00" (demos and tests: then use `--card pcsc`). Runs until killed.
    ServeVirtual(ServeVirtualArgs),
}

/// Arguments of `card serve-virtual`.
#[derive(Args, Debug)]
pub struct ServeVirtualArgs {
    /// The emulated card's state file [default: the card of --card emulated:PATH, else the home folder's].
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Where vpcd listens (it listens on all interfaces: keep it off untrusted networks).
    #[arg(long, default_value = tally_core::card::virtual_card::DEFAULT_VPCD)]
    pub vpcd: String,
}

/// Arguments of `card init`.
#[derive(Args, Debug)]
pub struct CardInitArgs {
    /// The counter value the card starts at [default: random, as real cards need not start at 0].
    #[arg(long)]
    pub origin: Option<u64>,
    /// A label stored on the card and shown by `card info`.
    #[arg(long, default_value = "emulated card (demos and tests only)")]
    pub label: String,
    /// Have the card issuer whose secret file this is attest the new card, as an issuer
    /// does at personalisation (tests and demos: the test issuer's secret is in the test
    /// fixtures). Without it the card is emulated: no issuer vouches for it.
    #[arg(long, value_name = "ISSUER_SECRET")]
    pub attest_with: Option<PathBuf>,
    /// How many days the attestation is valid, from today.
    #[arg(long, default_value_t = 3650, requires = "attest_with")]
    pub attest_days: u32,
}

/// Arguments of `card export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Where to write the card file.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
}

/// `--json` alone.
#[derive(Args, Debug)]
pub struct JsonArg {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `tally-view trail …`
#[derive(Subcommand, Debug)]
pub enum TrailCommand {
    /// Check every record of the trail against the card (the card signs one record more,
    /// so a trail cut short or restored from an old copy shows).
    Verify(crate::commands::trail::VerifyArgs),
    /// List the records of the trail.
    Show(JsonArg),
    /// Have the publisher's validation server check the trail and vouch for it (later checks
    /// start there); the server also keeps an encrypted backup of the trail.
    Vouch(crate::commands::vouch::VouchArgs),
    /// Answer your publisher's challenge, if one is pending: the card signs its nonce on the
    /// trail and the server keeps the trail (the window does this on its own when it opens
    /// a licence that names a server).
    Answer(crate::commands::answer::AnswerArgs),
    /// Recover a lost trail from the validation server's backup; use lost since the backup
    /// is charged as the publisher's policy says (you are told what, before and after).
    Restore(crate::commands::restore::RestoreArgs),
    /// Move the records a validation server vouched for out of the working trail into
    /// `<trail>.archive-<first>-<last>`; later checks start after them.
    Archive(crate::commands::trail::VerifyArgs),
    /// Keep a mirror copy of the trail in a folder on another disk, stop it (`--off`), or
    /// say where it is.
    Mirror(crate::commands::mirror::MirrorArgs),
}
