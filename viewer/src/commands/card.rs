//! `tally-view card init | info | export`.

use super::{Failure, Outcome};
use crate::cli::{CardCommand, CardInitArgs, ServeVirtualArgs};
use anyhow::Context as _;
use tally_core::card::CardExport;
use tally_core::card::applet::CardState;
use tally_core::card::attestation::{Attestation, IssuerSecret};
use tally_core::card::emulated::EmulatedCard;
use tally_core::card::virtual_card::{Event, VirtualCard};
use tally_core::home::{CardSpec, Home};

/// Runs a card subcommand.
pub fn run(cmd: &CardCommand, home: &Home, spec: &CardSpec) -> Outcome {
    match cmd {
        CardCommand::Init(args) => init(args, home, spec),
        CardCommand::Info(a) => info(a.json, home, spec),
        CardCommand::ServeVirtual(a) => serve_virtual(a, home, spec),
        CardCommand::Export(a) => {
            let mut card = spec.open(home)?;
            let presented = card.presented().context("reading the card")?;
            let id = presented.identity.clone();
            let label = spec
                .emulated_path(home)
                .and_then(|p| EmulatedCard::open(p).ok()?.load().ok())
                .map(|s| s.label);
            let text = CardExport {
                identity: presented.identity,
                agreement_key: Some(presented.agreement_key),
                attestation: presented.attestation,
                label,
            }
            .to_text();
            std::fs::write(&a.output, text)
                .with_context(|| format!("writing {}", a.output.display()))?;
            println!("card {} exported to {}", id.serial, a.output.display());
            Ok(())
        }
    }
}

fn init(args: &CardInitArgs, home: &Home, spec: &CardSpec) -> Outcome {
    let Some(path) = spec.emulated_path(home) else {
        return Err(Failure::Usage(anyhow::anyhow!(
            "a real card is personalised by its issuer; `card init` makes emulated cards only"
        )));
    };
    // T10: a random origin, as a real card's counter need not start at zero ([0095]).
    let origin = args
        .origin
        .unwrap_or_else(|| u64::from(rand_core::RngCore::next_u32(&mut tally_core::crypto::OsRng)));
    let mut state = CardState::generate(&mut tally_core::crypto::OsRng, origin, &args.label);
    let issuer = match &args.attest_with {
        None => None,
        Some(file) => {
            let bytes = tally_core::files::read_bounded(
                file,
                tally_core::card::attestation::ISSUER_FILE_MAX_BYTES as u64,
            )
            .with_context(|| format!("reading {}", file.display()))?;
            let issuer = IssuerSecret::from_export(&bytes)
                .map_err(|e| Failure::Usage(anyhow::anyhow!("{}: {e}", file.display())))?;
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let until = now + i64::from(args.attest_days) * 86_400;
            state.attestation = Some(issuer.attest(&state.attested_card(), now, until));
            Some(issuer.public().name().to_string())
        }
    };
    EmulatedCard::create(&path, &state)
        .with_context(|| format!("creating the card at {}", path.display()))?;
    println!(
        "created emulated card {} at {} (counter starts at {origin})",
        state.serial,
        path.display()
    );
    match issuer {
        Some(name) => println!(
            "attested by card issuer `{name}` (a virtual card for tests: its file can still be copied)"
        ),
        None => println!(
            "note: an emulated card is for demos and tests; restoring its file together with the trail defeats metering"
        ),
    }
    Ok(())
}

fn info(json: bool, home: &Home, spec: &CardSpec) -> Outcome {
    let mut card = spec.open(home)?;
    let (id, counter, last, agreement, attestation) = {
        let mut s = card.session().context("opening the card")?;
        let id = s.identity()?;
        let counter = s.get_counter()?;
        let last = s.get_last_signature()?;
        let agreement = s.get_agreement_key()?;
        let attestation = s.get_attestation()?;
        (id, counter, last, agreement, attestation)
    };
    // Only shown, never trusted here: the publisher and every opening verify it against
    // the issuers they accept.
    let attested = match attestation.as_deref().map(Attestation::parse) {
        None => "none (an emulated card)".to_string(),
        Some(Err(e)) => format!("unreadable: {e}"),
        Some(Ok(a)) => format!(
            "by issuer {} (unverified here)",
            hex::encode(&a.issuer_fingerprint()[..8])
        ),
    };
    let agreement_fp = hex::encode(agreement.fingerprint());
    let label = spec
        .emulated_path(home)
        .and_then(|p| EmulatedCard::open(p).ok()?.load().ok())
        .map(|s| s.label);
    let fp = hex::encode(id.public_key.fingerprint());
    if json {
        let v = serde_json::json!({
            "card": card.describe(),
            "serial": id.serial.to_hex(),
            "origin": id.origin,
            "counter": counter,
            "records_signed": counter - id.origin,
            "key_fingerprint": fp,
            "last_signature_counter": last.map(|l| l.counter),
            "label": label,
            "exhausted": counter == u64::MAX,
            "agreement_key_fingerprint": agreement_fp,
            "attestation": attested,
        });
        println!("{v:#}");
    } else {
        println!("card:            {}", card.describe());
        println!("serial:          {}", id.serial);
        println!("key fingerprint: {fp}");
        println!("agreement key:   {agreement_fp}");
        println!("attestation:     {attested}");
        println!("origin:          {}", id.origin);
        println!(
            "counter:         {counter} ({} records signed)",
            counter - id.origin
        );
        if let Some(l) = label {
            println!("label:           {l}");
        }
    }
    Ok(())
}

fn serve_virtual(args: &ServeVirtualArgs, home: &Home, spec: &CardSpec) -> Outcome {
    let path = args
        .state
        .clone()
        .or_else(|| spec.emulated_path(home))
        .unwrap_or_else(|| home.card_path());
    let server = VirtualCard::new(&path, args.vpcd.as_str())
        .with_context(|| format!("opening the card at {}", path.display()))?;
    let serial = EmulatedCard::open(&path)?.load()?.serial;
    eprintln!(
        "serving emulated card {serial} ({}) to vpcd at {}; Ctrl-C to stop",
        path.display(),
        args.vpcd
    );
    server.run(&mut |event| match event {
        Event::Connected(peer) => {
            eprintln!("connected to vpcd at {peer}: the card is in the reader")
        }
        Event::Disconnected(why) => eprintln!("vpcd connection ended ({why}); reconnecting"),
        Event::StateError(e) => eprintln!("card state: {e}"),
        _ => {}
    })?;
    Ok(())
}
