//! A second reader on tally-core's public API alone: headless, no rental logic of its own.
//!
//! ```text
//! cargo run -p tally-core --example reader -- HOME PACKAGE KEYFILE < commands
//! ```
//!
//! It opens PACKAGE with KEYFILE on the emulated card in HOME (`HOME/card.state`, as
//! `tally-view card init` makes it), trusting the publishers in `HOME/vendors/`, with no
//! network. Then it reads one command per line from stdin — `next`, `prev`, `go N`
//! (1-based), `copy N` (a selection of N characters), `print N`, `left`, `quit` — forwards each to the session, and prints
//! what is shown and what is left. Every check, charge and refusal is the session's.

use std::io::BufRead as _;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally_core::home::{CardSpec, Home};
use tally_core::policy::SystemClock;
use tally_core::rental::{Mode, NoNetwork, OpenInputs, Session, open_rental};

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("reader: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

/// Lets the session take its meter's answers until nothing is in flight.
fn settle(session: &mut Session) -> Result<(), String> {
    let t0 = Instant::now();
    loop {
        session.tick(Instant::now(), true);
        if !session.busy() {
            return Ok(());
        }
        if t0.elapsed() > Duration::from_secs(30) {
            return Err("the card did not answer within 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Prints the page shown (or why none is) and any notice.
fn show(session: &mut Session) {
    if let Some(n) = session.take_notice() {
        println!("notice: {n}");
    }
    match session.mode() {
        Mode::Reading if session.page_shown() => println!(
            "showing page {} of {}",
            session.current() + 1,
            session.page_count()
        ),
        Mode::Reading => println!("no page shown"),
        Mode::Limited(reason) => println!("cover only: {reason}"),
        Mode::Stopped(problem) => println!("stopped: {problem}"),
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [home, package, keyfile] = args.as_slice() else {
        return Err("usage: reader HOME PACKAGE KEYFILE < commands".into());
    };
    let home = Home::new(home);
    let (trusted, warnings) = home.trusted_vendors();
    for w in warnings {
        eprintln!("warning: {w}");
    }
    let inputs = OpenInputs {
        package: package.into(),
        keyfile: keyfile.into(),
        card: CardSpec::Emulated(None),
        trusted,
        clock: Arc::new(SystemClock),
        transport: Arc::new(NoNetwork),
        home,
    };
    let opened = open_rental(&inputs).map_err(|p| format!("cannot open: {p}"))?;
    println!(
        "opened “{}” for {}",
        opened.info.title, opened.info.customer
    );
    // The document (memory only) would go to a renderer; this reader only counts it.
    let (mut session, document) = opened.start(Box::new(|| {})).map_err(|p| p.to_string())?;
    println!("document: {} bytes in memory", document.len());
    settle(&mut session)?;
    show(&mut session);
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| format!("reading stdin: {e}"))?;
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [] => continue,
            ["quit"] => break,
            ["next"] => session.next(),
            ["prev"] => session.previous(),
            ["go", n] => match n.parse::<usize>() {
                Ok(n) if n >= 1 => session.go_to(n - 1),
                _ => println!("go takes a page number from 1"),
            },
            ["left"] => {}
            ["copy", n] => match n.parse::<usize>() {
                Ok(n) => session.request_copy(n),
                Err(_) => println!("copy takes the number of characters selected"),
            },
            ["print", n] => match n.parse::<u32>() {
                Ok(n) => session.request_print(n),
                Err(_) => println!("print takes a number of pages"),
            },
            _ => println!("unknown command: {line}"),
        }
        settle(&mut session)?;
        if session.take_copy_ready() {
            println!(
                "copy allowed and recorded: the selection on page {} may be copied",
                session.current() + 1
            );
        }
        if let Some(n) = session.take_print_ready() {
            println!("print allowed: {n} page(s) may be printed");
        }
        show(&mut session);
        println!(
            "left: {}",
            session
                .left_lines(time::OffsetDateTime::now_utc())
                .join(" · ")
        );
    }
    Ok(())
}
