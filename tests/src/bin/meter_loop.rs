//! `tally-meter-loop HOME COUNT [LICENCE_HEX]`: writes COUNT page records (0 = until killed)
//! through the real Write path onto the trail of the emulated card in HOME, printing each
//! counter it wrote on stdout. Used by the crash (SIGKILL) and concurrency tests.

use std::io::Write as _;
use tally_core::home::{CardSpec, Home};
use tally_core::trail::{Body, LicenceId, Trail, Usage};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: tally-meter-loop HOME COUNT [LICENCE_HEX]");
        std::process::exit(2);
    }
    let home = Home::new(&args[1]);
    let count: u64 = args[2].parse().unwrap_or(0);
    let licence = args
        .get(3)
        .and_then(|h| LicenceId::from_hex(h))
        .unwrap_or(LicenceId([1; 16]));
    let run = || -> Result<(), Box<dyn std::error::Error>> {
        let mut card = CardSpec::Emulated(None).open(&home)?;
        let id = card.identity()?;
        let mut trail = Trail::open_or_create(home.trail_path(&id.serial), &mut card, &id)?;
        let out = std::io::stdout();
        let mut i = 0u64;
        while count == 0 || i < count {
            let rec = trail.write(
                &mut card,
                &Body::now(Usage::Pages {
                    licence,
                    first: (i % 500) as u32 + 1,
                    count: 10,
                }),
            )?;
            writeln!(out.lock(), "{}", rec.counter)?;
            i += 1;
        }
        Ok(())
    };
    if let Err(e) = run() {
        eprintln!("tally-meter-loop: {e}");
        std::process::exit(1);
    }
}
