//! Opening the reading window (`tally-view PACKAGE KEYFILE`, `tally-view --demo`, or
//! `tally-view` alone for the open dialog).

use super::{Failure, Outcome};
use crate::app::{InputsFactory, ReaderApp};
use crate::cli::Cli;
use std::path::PathBuf;
use std::sync::Arc;
use tally_core::home::{CardSpec, Home};
use tally_core::policy::SystemClock;
use tally_core::rental::OpenInputs;

/// Opens the reading window and returns when it is closed.
pub fn run(cli: &Cli, home: &Home) -> Outcome {
    let mut trusted = super::trust::trusted(home);
    let mut card = cli.card.clone();
    let initial = if cli.demo {
        let d = crate::demo::prepare(home.root())?;
        trusted.push(d.vendor);
        card = CardSpec::Emulated(Some(d.card));
        Some((d.package, d.keyfile))
    } else {
        match (&cli.package, &cli.keyfile) {
            (Some(p), Some(k)) => Some((p.clone(), k.clone())),
            (None, None) => None,
            _ => {
                return Err(Failure::Usage(anyhow::anyhow!(
                    "give both the package and its keyfile: tally-view PACKAGE KEYFILE"
                )));
            }
        }
    };
    let home2 = home.clone();
    let factory: InputsFactory = Box::new(move |package: PathBuf, keyfile: PathBuf| OpenInputs {
        package,
        keyfile,
        home: home2.clone(),
        card: card.clone(),
        trusted: trusted.clone(),
        clock: Arc::new(SystemClock),
        transport: Arc::new(crate::online::Http),
    });
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Tally reader")
            .with_inner_size([1100.0, 800.0])
            .with_drag_and_drop(true),
        ..Default::default()
    };
    let root = home.root().to_path_buf();
    let demo = cli.demo;
    eframe::run_native(
        "Tally reader",
        options,
        Box::new(move |cc| {
            let mut app = ReaderApp::new(&cc.egui_ctx, Some(factory), Some(&root), initial);
            app.demo = demo;
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| Failure::Usage(anyhow::anyhow!("cannot open a window: {e}")))
}
