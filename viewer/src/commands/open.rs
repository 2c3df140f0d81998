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
    .map_err(|e| {
        Failure::Usage(anyhow::anyhow!(
            "cannot open a window: {}",
            window_error(&e)
        ))
    })
}

/// Why the window could not open, in the reader's words: no display named, or the windowing
/// library's reason without the source path it embeds (`os error at /…/mod.rs:765: …`).
fn window_error(e: &eframe::Error) -> String {
    let unset = |v: &str| std::env::var_os(v).is_none_or(|s| s.is_empty());
    if unset("DISPLAY") && unset("WAYLAND_DISPLAY") && unset("WAYLAND_SOCKET") {
        return "no display is set (DISPLAY and WAYLAND_DISPLAY are empty): run it in a desktop \
                session or under an X server such as Xvfb"
            .to_string();
    }
    without_source_paths(&e.to_string())
}

/// `text` with every ` at /path/file.rs:LINE` removed.
fn without_source_paths(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(" at /") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 4..];
        // The path ends at the first `:` followed by digits (the line number).
        let end = after.char_indices().find_map(|(j, c)| {
            let digits = after[j + 1..]
                .chars()
                .take_while(char::is_ascii_digit)
                .count();
            (c == ':' && digits > 0).then_some(j + 1 + digits)
        });
        match end {
            Some(end) => rest = &after[end..],
            None => {
                out.push_str(&rest[i..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn source_paths_are_dropped() {
        assert_eq!(
            super::without_source_paths(
                "winit EventLoopError: os error at /root/.cargo/registry/src/x/winit-0.30.13/src/platform_impl/linux/mod.rs:765: neither WAYLAND_DISPLAY nor DISPLAY is set."
            ),
            "winit EventLoopError: os error: neither WAYLAND_DISPLAY nor DISPLAY is set."
        );
        assert_eq!(super::without_source_paths("no path here"), "no path here");
        assert_eq!(super::without_source_paths("at /x y"), "at /x y");
    }
}
