//! One module per subcommand, and what they share: the vendor folder, the password,
//! and how errors become exit codes.
//!
//! Adding a subcommand: a variant in `cli::Command`, a file here, an arm in [`run`].

pub mod audit;
pub mod challenge;
pub mod copies;
pub mod customer;
pub mod inspect;
pub mod issue;
pub mod loans;
pub mod pack;
pub mod renew;
pub mod returns;
pub mod revoke;
pub mod serve;
pub mod trace;
pub mod vendor;
pub mod viewer;

use crate::cli::{Cli, Command};
use crate::registry::Registry;
use anyhow::{Context, Result, anyhow};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tally_core::vendor::{VendorPublic, VendorSecret};

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    let ctx = Ctx {
        vendor: cli.vendor,
        password_file: cli.password_file,
        database: cli.database,
    };
    match cli.command {
        Command::Vendor(c) => vendor::run(&ctx, c),
        Command::Customer(c) => customer::run(&ctx, c),
        Command::Pack(a) => pack::run(&ctx, a),
        Command::Inspect(a) => inspect::run(&ctx, a),
        Command::Issue(a) => issue::run(&ctx, *a),
        Command::Renew(a) => renew::run(&ctx, *a),
        Command::Returns(a) => returns::run(&ctx, a),
        Command::Loans(a) => loans::run(&ctx, a),
        Command::Trace(a) => trace::run(&ctx, a),
        Command::Audit(a) => audit::run(&ctx, a),
        Command::Challenge(a) => challenge::run(&ctx, a),
        Command::Serve(a) => serve::run_serve(&ctx, a),
        Command::Revoke(a) => revoke::run(&ctx, a),
        Command::Copies(a) => copies::run(&ctx, a),
        Command::Viewer(c) => viewer::run(&ctx, c),
    }
}

/// An input refused by a check (exit code 1), with the reason.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// An error meaning "a check failed" (exit code 1).
pub fn refused(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Refused(msg.into()))
}

/// `--server`'s value: an http(s) URL, the only kind a viewer ever sends anything to — a
/// keyfile naming another would leave its reader with no server to validate with or send a
/// return receipt to, so `issue` refuses it at once.
pub fn server_url(url: &str) -> std::result::Result<String, String> {
    tally_core::rental::http_url(url)
        .map(str::to_string)
        .map_err(|e| e.to_string())
}

/// Refuses to write a keyfile over an existing `output` unless `force` (`issue`, `renew`):
/// a keyfile already handed out must not be lost by a mistyped name.
pub fn may_write(output: &Path, force: bool) -> Result<()> {
    if output.exists() && !force {
        anyhow::bail!("{} exists; pass --force to replace it", output.display());
    }
    Ok(())
}

/// 1 when a check failed (a refused input, a file that does not verify, a wrong
/// password), 2 for usage and I/O errors.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    let check = e.chain().any(|c| {
        c.is::<Refused>()
            || c.is::<tally_core::vendor::VendorError>()
            || c.is::<tally_core::package::PackageError>()
            || c.is::<tally_core::card::IdentityError>()
            || c.is::<tally_core::keyfile::KeyfileError>()
            || c.is::<tally_core::policy::PolicyError>()
    });
    // An I/O error inside a core error is still I/O.
    let io = e.chain().any(|c| {
        c.is::<std::io::Error>()
            || matches!(
                c.downcast_ref::<tally_core::package::PackageError>(),
                Some(tally_core::package::PackageError::Io(_))
            )
    });
    if check && !io { 1 } else { 2 }
}

/// What every command may need: the vendor folder and how to get the password.
pub struct Ctx {
    vendor: Option<PathBuf>,
    password_file: Option<PathBuf>,
    database: Option<String>,
}

/// File names inside the vendor folder.
pub const SECRET_FILE: &str = "vendor.secret";
/// The public file, written by `vendor init` beside the secret one.
pub const PUBLIC_FILE: &str = "vendor.pub";

impl Ctx {
    /// The vendor folder, or a usage error naming `--vendor` / `TALLY_VENDOR`.
    pub fn vendor_dir(&self) -> Result<&Path> {
        self.vendor
            .as_deref()
            .ok_or_else(|| anyhow!("no vendor folder: pass --vendor DIR or set TALLY_VENDOR"))
    }

    /// The vendor folder, which must hold initialised keys.
    pub fn existing_vendor_dir(&self) -> Result<&Path> {
        let dir = self.vendor_dir()?;
        if !dir.join(SECRET_FILE).is_file() {
            return Err(anyhow!(
                "{} holds no vendor keys (run `tally-pack vendor init --vendor {}`)",
                dir.display(),
                dir.display()
            ));
        }
        Ok(dir)
    }

    /// Reads the password (see [`crate::password`]).
    pub fn password(&self, confirm: bool) -> Result<zeroize::Zeroizing<String>> {
        crate::password::read(self.password_file.as_deref(), confirm)
    }

    /// Opens the vendor's secret keys with the password.
    pub fn open_vendor(&self) -> Result<VendorSecret> {
        let dir = self.existing_vendor_dir()?;
        let path = dir.join(SECRET_FILE);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let password = self.password(false)?;
        VendorSecret::open(&bytes, password.as_bytes())
            .with_context(|| format!("opening {}", path.display()))
    }

    /// The vendor's public file, if the folder has one (no password needed).
    pub fn vendor_public(&self) -> Result<Option<VendorPublic>> {
        let Some(dir) = self.vendor.as_deref() else {
            return Ok(None);
        };
        let path = dir.join(PUBLIC_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let p = VendorPublic::from_export(&bytes)
            .with_context(|| format!("parsing {}", path.display()))?;
        Ok(Some(p))
    }

    /// Where the registry is: `--database` / `TALLY_DATABASE`, else the vendor folder's
    /// SQLite file.
    pub fn database(&self) -> Result<crate::sql::Target> {
        Ok(match &self.database {
            Some(d) => crate::sql::Target::parse(d),
            None => crate::sql::default_target(self.existing_vendor_dir()?),
        })
    }

    /// Opens (creating or migrating) the registry.
    pub fn registry(&self) -> Result<Registry> {
        let target = self.database()?;
        Registry::open_target(&target)
    }
}

/// A customer name as it is typed in a command shown to the publisher: quoted when it holds
/// anything but letters, digits, `.`, `_` and `-` ("Ada Reader" needs quotes, Ada does not).
pub fn shell_word(name: &str) -> String {
    if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// The current time as RFC 3339 UTC, for registry rows.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_quoted_for_the_shell_when_needed() {
        assert_eq!(super::shell_word("Ada"), "Ada");
        assert_eq!(super::shell_word("ada.b-c_d"), "ada.b-c_d");
        assert_eq!(super::shell_word("Ada Reader"), "\"Ada Reader\"");
        assert_eq!(super::shell_word("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(super::shell_word(""), "\"\"");
    }
}
