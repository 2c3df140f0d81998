//! Regenerates the DEMO publisher, card, package and licence in `samples/` from
//! `samples/sample.pdf` (run by `samples/make-samples.sh`).

fn main() -> anyhow::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "samples".into());
    tally_viewer::demo::make_samples(&dir)?;
    println!("DEMO samples written to {}", dir.display());
    Ok(())
}
