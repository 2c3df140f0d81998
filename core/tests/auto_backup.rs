//! The automatic backup of a reading session (issue 13), through `tally_core::rental`
//! alone: the session's own thread vouches for the trail with the licence's server (the
//! server's real rules — `trail::validator::vouch` and `validation::extend_backup` — run
//! in process behind a `Transport`), writes the answer through the session's meter, and
//! archives the vouched records once the trail passes a size while reading goes on; a
//! second handle on the trail (another process) follows the archive. Real card signatures
//! on an emulated card, a real trail file, real AES-GCM packages and ECIES envelopes.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use rand_core::OsRng;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tally_core::card::applet::CardState;
use tally_core::card::emulated::EmulatedCard;
use tally_core::card::{Card, CardIdentity};
use tally_core::home::{CardSpec, Home};
use tally_core::keyfile::{Cis, Keyfile, ServerInfo};
use tally_core::package::{PackOptions, seal_package};
use tally_core::policy::{Limits, SystemClock};
use tally_core::rental::{
    BackupOutcome, BackupPolicy, BackupStatus, OpenInputs, Session, Transport, open_rental,
};
use tally_core::trail::{Body, LicenceId, Trail, Usage};
use tally_core::validation::{ServerSecret, extend_backup};
use tally_core::vendor::VendorSecret;

const PDF: &[u8] = b"%PDF-1.4 not rendered here: the engine only decrypts and meters\n%%EOF\n";
const LIC: LicenceId = LicenceId([7; 16]);

/// The validation server's trail endpoints, in process: the same rules as `tally-pack
/// serve` (vouch, keep the trail as the backup, extend it by the answer). Anything else is
/// unreachable. Counts what it was asked.
struct InProcess {
    secret: ServerSecret,
    identity: CardIdentity,
    backup: Mutex<Option<Vec<u8>>>,
    asked: Mutex<Vec<String>>,
}

impl Transport for InProcess {
    fn post(
        &self,
        endpoint: &str,
        body: &[u8],
        _: Duration,
        _: u64,
    ) -> Result<(u16, Vec<u8>), String> {
        self.asked.lock().unwrap().push(endpoint.to_string());
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        if endpoint.ends_with("/v1/trail/validate") {
            let req = self
                .secret
                .open_trail_request(body)
                .map_err(|e| e.to_string())?;
            return match tally_core::trail::validator::vouch(
                &self.secret,
                &self.identity,
                &req.trail,
                now,
            ) {
                Ok(v) => {
                    *self.backup.lock().unwrap() = Some(req.trail.to_vec());
                    Ok((200, v.encode()))
                }
                Err(e) => Ok((422, e.to_string().into_bytes())),
            };
        }
        if endpoint.ends_with("/v1/trail/extend") {
            let req = self
                .secret
                .open_backup_extension(body)
                .map_err(|e| e.to_string())?;
            let mut backup = self.backup.lock().unwrap();
            let Some(b) = backup.as_ref() else {
                return Ok((404, b"no backup".to_vec()));
            };
            return match extend_backup(&self.secret, &self.identity, b, &req.trail) {
                Ok(x) => {
                    *backup = Some(x.trail.to_vec());
                    Ok((200, b"extended".to_vec()))
                }
                Err(e) => Ok((409, e.to_string().into_bytes())),
            };
        }
        Err(format!("nothing answers at {endpoint}"))
    }
}

struct Fx {
    _dir: tempfile::TempDir,
    home: Home,
    identity: CardIdentity,
    package: std::path::PathBuf,
    keyfile: std::path::PathBuf,
    vendor: VendorSecret,
    server: Arc<InProcess>,
}

fn fx() -> Fx {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_path_buf();
    let home = Home::new(dir.join("home"));
    let card = CardState::generate(&mut OsRng, 5_000, "backup test card");
    EmulatedCard::create(home.card_path(), &card).unwrap();
    let identity = CardIdentity {
        serial: card.serial,
        public_key: tally_core::PublicKey::from_verifying_key(card.key.verifying_key()),
        origin: card.origin,
    };
    let vendor = VendorSecret::generate("Acme Books", false, &mut OsRng).unwrap();
    let mut pkg = Vec::new();
    let (header, key) = seal_package(
        &vendor,
        &PackOptions::new("Sonnets", 40),
        PDF.len() as u64,
        PDF,
        std::io::Cursor::new(&mut pkg),
        &mut OsRng,
        &mut |_| {},
    )
    .unwrap();
    let package = dir.join("book.tly");
    std::fs::write(&package, pkg).unwrap();
    let server = Arc::new(InProcess {
        secret: ServerSecret::random(&mut OsRng),
        identity: identity.clone(),
        backup: Mutex::new(None),
        asked: Mutex::new(Vec::new()),
    });
    let cis = Cis {
        licence: LIC,
        document: header.document_id(),
        card: identity.clone(),
        card_agreement_key: card.agreement_key(),
        issuers: Vec::new(),
        customer_name: "Ada Reader".into(),
        content_key: key,
        limits: Limits {
            pages: Some(400),
            ..Limits::default()
        },
        allow_emulated_card: true,
        server: Some(ServerInfo {
            url: "http://publisher.invalid".into(),
            public_key: server.secret.public().clone(),
            require_online_every_days: None,
        }),
        issued_at: time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap()
            - time::Duration::days(1),
    };
    let keyfile = dir.join("book.tkey");
    std::fs::write(&keyfile, Keyfile::issue(&vendor, &cis, &mut OsRng).unwrap()).unwrap();
    Fx {
        _dir: d,
        home,
        identity,
        package,
        keyfile,
        vendor,
        server,
    }
}

impl Fx {
    fn inputs(&self) -> OpenInputs {
        OpenInputs {
            package: self.package.clone(),
            keyfile: self.keyfile.clone(),
            home: self.home.clone(),
            card: CardSpec::Emulated(None),
            trusted: vec![self.vendor.public().clone()],
            clock: Arc::new(SystemClock),
            transport: self.server.clone(),
        }
    }

    fn trail(&self) -> Trail {
        let mut t =
            Trail::open(self.home.trail_path(&self.identity.serial), &self.identity).unwrap();
        t.set_trusted_validators(vec![self.server.secret.public().clone()]);
        t
    }
}

/// Takes the meter's answers until `done` says so (at most 60 s).
fn until(s: &mut Session, what: &str, done: impl Fn(&mut Session) -> bool) {
    let t0 = Instant::now();
    loop {
        s.tick(Instant::now(), true);
        if !s.busy() && done(s) {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{what}: {:?} {:?}",
            s.mode(),
            s.backup_status()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn archived(s: &Session) -> Option<u64> {
    match s.backup_status()?.last? {
        (_, BackupOutcome::Done { archived, .. }) => archived.ok().flatten(),
        _ => None,
    }
}

#[test]
fn a_session_vouches_through_its_meter_and_archives_past_a_size_while_reading_goes_on() {
    let f = fx();
    let mut opened = open_rental(&f.inputs()).unwrap();
    let plan = opened.backup.as_mut().expect("the licence names a server");
    assert_eq!(plan.server.key, *f.server.secret.public());
    plan.policy = BackupPolicy {
        first_check: Duration::from_millis(10),
        poll: Duration::from_millis(20),
        // The trail holds about eight records once vouched for: archived at once.
        archive_above: 3,
        ..BackupPolicy::default()
    };
    // Another process holding the trail open (a second window on another document).
    let mut other = f.trail();
    other.verify_offline().unwrap();
    let (mut s, _) = opened.start(Box::new(|| {})).unwrap();
    // Reading: a page block per few pages, while the backup runs beside it.
    for _ in 0..12 {
        s.next();
        until(&mut s, "a page turn", |s| s.page_shown());
    }
    until(&mut s, "an archive after a backup", |s| {
        archived(s).is_some()
    });
    let status = s.backup_status().unwrap();
    let Some((_, BackupOutcome::Done { report, .. })) = &status.last else {
        panic!("{status:?}")
    };
    assert_eq!(report.backup, Ok(report.validator_counter), "{status:?}");
    // Reading goes on after the archive: the meter went on with the archived trail.
    for _ in 0..12 {
        s.next();
        until(&mut s, "a page turn after the archive", |s| s.page_shown());
    }
    assert!(matches!(s.mode(), tally_core::rental::Mode::Reading));
    drop(s);
    // The working trail starts after its anchor, the archive beside it, and it validates
    // with the card, trusting the licence's server.
    let mut t = f.trail();
    assert!(t.header().first_counter > f.identity.origin);
    let mut card = Card::new(Box::new(EmulatedCard::open(f.home.card_path()).unwrap()));
    t.verify(&mut card).unwrap();
    assert!(t.vouched().is_some());
    let tally = tally_core::rental::tally_of(&t, LIC, &[f.server.secret.public().fingerprint()]);
    assert_eq!(tally.opens, 1);
    assert!(tally.page_views >= 24, "{tally:?}");
    // The other handle follows the archive at its next Write instead of failing.
    other
        .write(&mut card, &Body::now(Usage::Open { licence: LIC }))
        .unwrap();
    assert_eq!(other.generation(), 1);
    assert_eq!(other.header().first_counter, t.header().first_counter);
    // Only the trail endpoints of the keyfile's server were asked (the opening's online
    // round found nothing at /v1/validate).
    for e in f.server.asked.lock().unwrap().iter() {
        assert!(e.starts_with("http://publisher.invalid/v1/"), "{e}");
    }
    // The status noted for `tally-view status` reads back the same.
    let noted = BackupStatus::load(&f.home.backup_status_path(&f.identity.serial)).unwrap();
    assert!(noted.lines()[0].starts_with("Reading record backed up by http://publisher.invalid"));
    // The server's key joined the home's trusted validation servers (for the trail
    // commands), as after `tally-view trail vouch`.
    assert!(
        f.home
            .trusted_validators()
            .unwrap()
            .contains(f.server.secret.public())
    );
}

#[test]
fn a_replaced_trail_that_is_not_an_archive_of_it_is_refused() {
    let f = fx();
    let opened = open_rental(&f.inputs()).unwrap();
    drop(opened);
    let mut t = f.trail();
    t.verify_offline().unwrap();
    // The file swapped for another one (a copy with its last record dropped): not an
    // archive of this trail, so this handle refuses to go on.
    let path = f.home.trail_path(&f.identity.serial);
    let bytes = std::fs::read(&path).unwrap();
    let frames = tally_core::trail::file::parse_frames(
        &bytes[tally_core::trail::file::HEADER_LEN..],
        tally_core::trail::file::HEADER_LEN as u64,
        0,
    )
    .unwrap();
    let mut shorter = bytes[..tally_core::trail::file::HEADER_LEN].to_vec();
    for r in &frames.records[..frames.records.len() - 1] {
        shorter.extend(tally_core::trail::file::encode_frame(r));
    }
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, shorter).unwrap();
    let mut card = Card::new(Box::new(EmulatedCard::open(f.home.card_path()).unwrap()));
    let e = t
        .write(&mut card, &Body::now(Usage::Open { licence: LIC }))
        .unwrap_err();
    assert_eq!(e.check(), "replaced", "{e}");
}

#[test]
fn the_readers_opt_out_starts_no_backup_and_a_keyfile_without_a_server_has_none() {
    let f = fx();
    f.home.set_auto_backup(false).unwrap();
    assert!(open_rental(&f.inputs()).unwrap().backup.is_none());
    f.home.set_auto_backup(true).unwrap();
    assert!(open_rental(&f.inputs()).unwrap().backup.is_some());
    std::fs::write(f.home.backup_setting_path(), "sometimes\n").unwrap();
    assert!(f.home.auto_backup().is_err());
    assert!(open_rental(&f.inputs()).unwrap().backup.is_none());
}
