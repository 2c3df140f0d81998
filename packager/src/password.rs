//! Where the vendor password comes from: `--password-file`, then
//! `TALLY_VENDOR_PASSWORD`, then a prompt on the terminal.

use anyhow::{Context, Result, bail};
use std::io::Read;
use std::path::Path;
use zeroize::Zeroizing;

/// Environment variable holding the vendor password (for scripts and tests).
pub const ENV: &str = "TALLY_VENDOR_PASSWORD";
const MAX_FILE: u64 = 4096;

/// Reads the password. `confirm` asks twice at a prompt (when creating keys).
pub fn read(file: Option<&Path>, confirm: bool) -> Result<Zeroizing<String>> {
    if let Some(path) = file {
        let mut raw = Zeroizing::new(Vec::new());
        std::fs::File::open(path)
            .with_context(|| format!("opening password file {}", path.display()))?
            .take(MAX_FILE + 1)
            .read_to_end(&mut raw)
            .with_context(|| format!("reading password file {}", path.display()))?;
        if raw.len() as u64 > MAX_FILE {
            bail!(
                "password file {} is larger than {MAX_FILE} bytes",
                path.display()
            );
        }
        let text = std::str::from_utf8(&raw)
            .with_context(|| format!("password file {} is not UTF-8", path.display()))?;
        let first = text.lines().next().unwrap_or("");
        return Ok(Zeroizing::new(first.to_string()));
    }
    if let Ok(p) = std::env::var(ENV) {
        return Ok(Zeroizing::new(p));
    }
    let p = Zeroizing::new(rpassword::prompt_password("Vendor password: ").context(
        "no vendor password: set TALLY_VENDOR_PASSWORD, pass --password-file, or run in a terminal",
    )?);
    if confirm {
        let again = Zeroizing::new(
            rpassword::prompt_password("Repeat the password: ").context("reading the password")?,
        );
        if *again != *p {
            bail!("the two passwords differ");
        }
    }
    Ok(p)
}
