//! Opening the reading window (`tally-view PACKAGE KEYFILE`, `tally-view --demo`).
//! The window itself is being built (issue 4); until it lands this command says so.

use super::{Failure, Outcome};
use crate::cli::Cli;
use tally_core::home::Home;

/// Opens the reading window.
pub fn run(_cli: &Cli, _home: &Home) -> Outcome {
    Err(Failure::Usage(anyhow::anyhow!(
        "the reading window is not part of this build yet; use `tally-view card …` and `tally-view trail …`"
    )))
}
