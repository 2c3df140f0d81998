//! The publisher's nonce challenge (\[0104\]) through `tally_core::rental::answer_challenge`,
//! the API every viewer links, against an in-memory validation server that runs the real
//! server rules (`ServerSecret::sign_challenge`, `validator::vouch`) behind a `Transport`;
//! and `Trail::from_backup`, how a publisher's audit reads the backup it keeps: a real
//! emulated card, a real trail file.
//!
//! What is written is only ever the licence's server's challenge for this card, once; a
//! backup is refused when any record was changed, when it is another card's, or when it
//! is cut; a backup can't be written to.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use rand_core::OsRng;
use std::sync::Mutex;
use std::time::Duration;
use tally_core::card::applet::CardState;
use tally_core::card::emulated::EmulatedCard;
use tally_core::card::{Card, Serial};
use tally_core::home::{CardSpec, Home};
use tally_core::keyfile::{Cis, Keyfile, ServerInfo, VerifiedKeyfile};
use tally_core::package::{ContentKey, DocumentId};
use tally_core::policy::{Limits, SystemClock};
use tally_core::rental::{ChallengeOutcome, ContactError, Transport, answer_challenge};
use tally_core::trail::file::{HEADER_LEN, Header, encode_frame, parse_frames};
use tally_core::trail::{Body, LicenceId, Trail, TrailError, Usage};
use tally_core::validation::{Challenge, ChallengeError, ServerSecret, answer_in};
use tally_core::vendor::VendorSecret;
use tally_core::{CardIdentity, PublicKey};

/// A validation server in memory: hands out `challenge` (already signed) on
/// `/v1/challenge`, vouches for trails on `/v1/trail/validate` with the real rules and
/// keeps each trail it vouched for.
struct MemoryServer {
    key: ServerSecret,
    card: CardIdentity,
    challenge: Mutex<Option<Vec<u8>>>,
    backups: Mutex<Vec<Vec<u8>>>,
    reachable: bool,
}

impl Transport for MemoryServer {
    fn post(
        &self,
        endpoint: &str,
        body: &[u8],
        _: Duration,
        _: u64,
    ) -> Result<(u16, Vec<u8>), String> {
        if !self.reachable {
            return Err("connection refused".into());
        }
        if endpoint.ends_with("/v1/challenge") {
            assert_eq!(body, &self.card.serial.0[..], "the card's serial is sent");
            return Ok(match self.challenge.lock().unwrap().clone() {
                Some(c) => (200, c),
                None => (204, Vec::new()),
            });
        }
        if endpoint.ends_with("/v1/trail/validate") {
            let req = self.key.open_trail_request(body).unwrap();
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            return Ok(
                match tally_core::trail::validator::vouch(&self.key, &self.card, &req.trail, now) {
                    Ok(b) => {
                        self.backups.lock().unwrap().push(req.trail.to_vec());
                        (200, b.encode())
                    }
                    Err(e) => (422, e.to_string().into_bytes()),
                },
            );
        }
        Ok((404, b"no such endpoint".to_vec()))
    }
}

struct Fx {
    _dir: tempfile::TempDir,
    home: Home,
    identity: CardIdentity,
    keyfile: VerifiedKeyfile,
    server: MemoryServer,
}

fn fx(reachable: bool) -> Fx {
    let d = tempfile::tempdir().unwrap();
    let home = Home::new(d.path().join("home"));
    let card = CardState::generate(&mut OsRng, 2_000, "challenge test card");
    EmulatedCard::create(home.card_path(), &card).unwrap();
    let identity = CardIdentity {
        serial: card.serial,
        public_key: PublicKey::from_verifying_key(card.key.verifying_key()),
        origin: card.origin,
    };
    let vendor = VendorSecret::generate("Acme Books", false, &mut OsRng).unwrap();
    let key = ServerSecret::random(&mut OsRng);
    let cis = Cis {
        licence: LicenceId([7; 16]),
        document: DocumentId([3; 16]),
        card: identity.clone(),
        card_agreement_key: card.agreement_key(),
        issuers: Vec::new(),
        customer_name: "Ada Reader".into(),
        content_key: ContentKey::generate(&mut OsRng),
        limits: Limits::default(),
        allow_emulated_card: true,
        server: Some(ServerInfo {
            url: "http://acme.invalid".into(),
            public_key: key.public().clone(),
            require_online_every_days: None,
        }),
        issued_at: time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap()
            - time::Duration::days(1),
    };
    let bytes = Keyfile::issue(&vendor, &cis, &mut OsRng).unwrap();
    let keyfile = Keyfile::open(&bytes, std::slice::from_ref(vendor.public())).unwrap();
    let server = MemoryServer {
        key,
        card: identity.clone(),
        challenge: Mutex::new(None),
        backups: Mutex::new(Vec::new()),
        reachable,
    };
    Fx {
        _dir: d,
        home,
        identity,
        keyfile,
        server,
    }
}

impl Fx {
    fn card(&self) -> Card {
        CardSpec::Emulated(None).open(&self.home).unwrap()
    }

    fn answer(&self) -> Result<ChallengeOutcome, ContactError> {
        answer_challenge(
            &self.home,
            &mut self.card(),
            &self.keyfile,
            None,
            &self.server,
            &SystemClock,
        )
    }

    /// Issues a challenge for `serial`, signed by `by`, and has the server hand it out.
    fn hand_out(&self, serial: Serial, by: &ServerSecret) -> Challenge {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let c = Challenge::new(serial, now, 3600, &mut OsRng).unwrap();
        *self.server.challenge.lock().unwrap() = Some(by.sign_challenge(&c));
        c
    }

    /// The usages on the trail, verified.
    fn usages(&self) -> Vec<Usage> {
        let path = self.home.trail_path(&self.identity.serial);
        if !path.exists() {
            return Vec::new();
        }
        let mut t = Trail::open(&path, &self.identity).unwrap();
        t.verify_offline().unwrap();
        t.verified_bodies().map(|(_, b)| b.usage).collect()
    }

    fn trail_bytes(&self) -> Vec<u8> {
        std::fs::read(self.home.trail_path(&self.identity.serial)).unwrap()
    }
}

fn challenges(usages: &[Usage]) -> usize {
    usages
        .iter()
        .filter(|u| matches!(u, Usage::Challenge { .. }))
        .count()
}

#[test]
fn a_challenge_is_answered_once_and_the_backup_holds_the_answer() {
    let f = fx(true);
    // Nothing pending: nothing written, not even a trail.
    assert!(matches!(f.answer(), Ok(ChallengeOutcome::NonePending)));
    assert!(f.usages().is_empty());

    let c = f.hand_out(f.identity.serial, &f.server.key);
    let Ok(ChallengeOutcome::Answered(a)) = f.answer() else {
        panic!("not answered")
    };
    assert!(a.newly_written);
    assert_eq!(a.challenge, c);
    let usages = f.usages();
    assert_eq!(challenges(&usages), 1);
    // The trail the server kept holds the answer at its counter, and vouches past it.
    let backup = f.server.backups.lock().unwrap().last().unwrap().clone();
    let t = Trail::from_backup(
        "backup",
        &backup,
        &f.identity,
        vec![f.server.key.public().clone()],
    )
    .unwrap();
    let found = answer_in(t.verified_bodies(), &f.server.key.vsi(), &c.nonce).unwrap();
    assert_eq!(found.counter, a.counter);
    assert!(a.vouched.upto > a.counter);

    // The same challenge handed out again (the server had not noted it, or someone replays
    // it): not written twice; the trail is only sent again.
    let Ok(ChallengeOutcome::Answered(again)) = f.answer() else {
        panic!("not answered")
    };
    assert!(!again.newly_written);
    assert_eq!(again.counter, a.counter);
    assert_eq!(challenges(&f.usages()), 1);
}

#[test]
fn only_the_licence_servers_challenge_for_this_card_is_written() {
    let f = fx(true);
    let before = {
        // A trail to compare with: the card has signed a few records.
        let mut card = f.card();
        let path = f.home.trail_path(&f.identity.serial);
        let mut t = Trail::create(&path, &mut card, &f.identity).unwrap();
        t.write(
            &mut card,
            &Body::now(Usage::Open {
                licence: LicenceId([7; 16]),
            }),
        )
        .unwrap();
        f.trail_bytes()
    };
    // Signed by another key (the reader's own server, or anyone in between).
    let other = ServerSecret::random(&mut OsRng);
    f.hand_out(f.identity.serial, &other);
    assert!(matches!(
        f.answer(),
        Err(ContactError::Challenge(ChallengeError::OtherServer))
    ));
    // The licence's server's, but for another card.
    f.hand_out(Serial([0xee; 16]), &f.server.key);
    assert!(matches!(
        f.answer(),
        Err(ContactError::Challenge(ChallengeError::OtherCard { .. }))
    ));
    // Not a challenge at all.
    *f.server.challenge.lock().unwrap() = Some(b"tally-challenge/1 card=00".to_vec());
    let e = f.answer().unwrap_err();
    assert!(matches!(e, ContactError::Challenge(_)), "{e}");
    assert!(e.is_check());
    assert_eq!(f.trail_bytes(), before, "nothing written");
    assert!(f.server.backups.lock().unwrap().is_empty(), "nothing sent");
}

#[test]
fn an_unreachable_server_changes_nothing() {
    let f = fx(false);
    let e = f.answer().unwrap_err();
    assert!(
        matches!(
            e,
            ContactError::Unreached(tally_core::rental::Unreached::Unreachable { .. })
        ),
        "{e}"
    );
    assert!(!e.is_check());
    assert!(f.usages().is_empty());
}

/// A trail of genesis and `n` openings on the fixture's card; its bytes.
fn trail_of(f: &Fx, n: usize) -> Vec<u8> {
    let mut card = f.card();
    let path = f.home.trail_path(&f.identity.serial);
    let mut t = Trail::create(&path, &mut card, &f.identity).unwrap();
    for _ in 0..n {
        t.write(
            &mut card,
            &Body::now(Usage::Open {
                licence: LicenceId([7; 16]),
            }),
        )
        .unwrap();
    }
    f.trail_bytes()
}

#[test]
fn a_backup_is_verified_in_full_and_cannot_be_written() {
    let f = fx(true);
    let bytes = trail_of(&f, 4);
    let mut t = Trail::from_backup("backup", &bytes, &f.identity, Vec::new()).unwrap();
    assert_eq!(t.verified_len(), 5);
    // Read-only: no Write, no ValidateTrail with the card, no file touched.
    let e = t
        .write(&mut f.card(), &Body::now(Usage::Genesis))
        .unwrap_err();
    assert!(e.to_string().contains("copy held in memory"), "{e}");
    assert!(t.verify(&mut f.card()).is_err());
    assert!(!std::path::Path::new("backup").exists());
    assert!(!std::path::Path::new("backup.lock").exists());

    // Any record's body, nonce, counter or signature changed: refused, naming it.
    let records = parse_frames(&bytes[HEADER_LEN..], HEADER_LEN as u64, 0)
        .unwrap()
        .records;
    let rebuild = |rs: &[tally_core::trail::Record]| {
        let mut out = Header::for_card(&f.identity, f.identity.origin)
            .encode()
            .to_vec();
        for r in rs {
            out.extend(encode_frame(r));
        }
        out
    };
    for i in 0..records.len() {
        let mut rs = records.clone();
        rs[i].nonce[0] ^= 1;
        assert!(Trail::from_backup("b", &rebuild(&rs), &f.identity, Vec::new()).is_err());
        let mut rs = records.clone();
        rs[i].signature.0[5] ^= 1;
        let e = Trail::from_backup("b", &rebuild(&rs), &f.identity, Vec::new()).unwrap_err();
        assert!(e.is_invalid(), "{e}");
        let mut rs = records.clone();
        rs[i].counter += 1;
        assert!(Trail::from_backup("b", &rebuild(&rs), &f.identity, Vec::new()).is_err());
    }
    // A record dropped (a hole), the tail cut mid-frame, another card's identity.
    let mut rs = records.clone();
    rs.remove(2);
    assert!(matches!(
        Trail::from_backup("b", &rebuild(&rs), &f.identity, Vec::new()),
        Err(TrailError::Gap { .. })
    ));
    assert!(matches!(
        Trail::from_backup("b", &bytes[..bytes.len() - 3], &f.identity, Vec::new()),
        Err(TrailError::TornTail { .. })
    ));
    let other = CardIdentity {
        serial: Serial([1; 16]),
        ..f.identity.clone()
    };
    assert!(matches!(
        Trail::from_backup("b", &bytes, &other, Vec::new()),
        Err(TrailError::WrongCard(_))
    ));
    assert!(Trail::from_backup("b", &bytes[..10], &f.identity, Vec::new()).is_err());
}
