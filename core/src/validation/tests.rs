//! Client and server rules end to end in memory: the HTTP tests in the packager drive
//! the same code through a real server and SQLite.

use super::*;
use crate::card::applet::CardState;
use crate::card::emulated::EmulatedCard;
use crate::card::{Card, CardIdentity};
use crate::home::Home;
use crate::icv;
use crate::policy::TestClock;
use crate::trail::{Body, LicenceId};
use rand_core::OsRng;
use time::Duration;

const PACKAGE: &[u8] = b"%TALLY package bytes, identical for every customer (claim 30)";
const VIEWER: Icv = Icv([0x5a; 32]);
const T0: i64 = 2_000_000_000;
const DAY: i64 = 86_400;

/// A reader's emulated card and its trail: VAL_REQs are signed through Write, as the
/// rental's meter signs them (T32).
struct TestCard {
    _dir: tempfile::TempDir,
    signer: TrailSigner,
    identity: CardIdentity,
}

impl TestCard {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("card.state");
        EmulatedCard::create(&path, &CardState::generate(&mut OsRng, 100, "test card")).unwrap();
        let mut card = Card::new(Box::new(EmulatedCard::open(&path).unwrap()));
        let identity = card.identity().unwrap();
        let signer = TrailSigner::open(card, &dir.path().join("card.trail")).unwrap();
        Self {
            _dir: dir,
            signer,
            identity,
        }
    }

    fn records(&self) -> &[crate::trail::Record] {
        self.signer.trail().records()
    }

    fn progress(&self, licence: LicenceId) -> CardProgress {
        CardProgress::of(self.records(), licence)
    }
}

impl RequestSigner for TestCard {
    fn sign_request(&mut self, body: &Body) -> Result<CardProof, String> {
        self.signer.sign_request(body)
    }
}

/// A server that keeps one copy's state in memory, applying [`decide`] like `serve`, and
/// the reader's card registered for the copy.
struct MemServer {
    key: ServerSecret,
    state: CopyState,
    superseded: Vec<Ui>,
    clock: TestClock,
    terms: Terms,
    card: TestCard,
}

impl MemServer {
    fn new(licence: LicenceId) -> Self {
        Self {
            key: ServerSecret::random(&mut OsRng),
            state: CopyState::new(licence),
            superseded: Vec::new(),
            clock: TestClock::at_unix(T0),
            terms: Terms {
                lifetime: 7 * DAY,
                offline_records: 50,
            },
            card: TestCard::new(),
        }
    }

    /// The reader's next request, signed by the registered card.
    fn prep(&mut self, c: &mut ClientState, variant: IcvVariant, package: &[u8]) -> Vec<u8> {
        self.prep_with(c, variant, package, VIEWER)
    }

    fn prep_with(
        &mut self,
        c: &mut ClientState,
        variant: IcvVariant,
        package: &[u8],
        viewer: Icv,
    ) -> Vec<u8> {
        let pk = self.key.public().clone();
        c.prepare(
            variant,
            package,
            &pk,
            viewer,
            &self.clock,
            &mut self.card,
            &mut OsRng,
        )
        .unwrap()
    }

    fn handle(&mut self, envelope: &[u8]) -> Vec<u8> {
        let (req, hash, proof) = self.key.open_request(envelope).unwrap();
        let card = CardCheck::of(&req, &hash, proof.as_ref(), Some(&self.card.identity));
        let lookup = if req.ui == self.state.ui {
            Lookup::Current
        } else if self.state.pending.is_some_and(|(u, _, _)| u == req.ui) {
            Lookup::Pending
        } else if self.superseded.contains(&req.ui) {
            Lookup::Superseded
        } else {
            Lookup::Unknown
        };
        let p = Presented {
            req: &req,
            request_hash: hash,
            lookup,
            expected_icv: Some(icv::compute(req.variant, PACKAGE, &req.ui, &req.iv)),
            viewer_registered: req.viewer_icv == VIEWER,
            variant_accepted: matches!(req.variant, IcvVariant::V7 | IcvVariant::V8),
            card,
        };
        let mut iv = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut OsRng, &mut iv);
        let d = decide(
            &self.key,
            Some(&self.state),
            p,
            self.clock.now().unix_timestamp(),
            self.terms,
            Iv(iv),
        );
        if let Some(s) = d.new_state {
            self.state = s;
        }
        self.superseded.extend(d.retired);
        self.key.sign(&d.verdict)
    }
}

use crate::policy::Clock as _;

fn client() -> (ClientState, MemServer) {
    let licence = LicenceId([9; 16]);
    (ClientState::new(licence), MemServer::new(licence))
}

fn round(c: &mut ClientState, s: &mut MemServer) -> Result<Verdict, ValidationError> {
    round_with(c, s, IcvVariant::V7)
}

fn round_with(
    c: &mut ClientState,
    s: &mut MemServer,
    variant: IcvVariant,
) -> Result<Verdict, ValidationError> {
    let pk = s.key.public().clone();
    let env = s.prep(c, variant, PACKAGE);
    let answer = s.handle(&env);
    c.accept(&answer, &pk)
}

/// The card's progress now, for offline checks.
fn progress(c: &ClientState, s: &MemServer) -> CardProgress {
    s.card.progress(c.licence())
}

#[test]
fn validations_roll_the_ui_and_move_both_sequences() {
    let (mut c, mut s) = client();
    let ui0 = c.ui();
    for k in 1..=5u64 {
        let v = round(&mut c, &mut s).unwrap();
        assert_eq!(v.status, Status::Ok);
        assert_eq!(v.psi, k);
        assert_eq!(v.vssi, k);
        assert_eq!(c.vssi(), k);
        assert_ne!(c.ui(), ui0);
        assert_eq!(c.iv(), v.iv);
    }
    let st = c
        .check_offline(s.key.public(), Some(3), &s.clock, &progress(&c, &s))
        .unwrap();
    assert_eq!(st.last_validated.unix_timestamp(), T0);
    assert_eq!(st.valid_until.unix_timestamp(), T0 + 3 * DAY);
}

#[test]
fn t17_every_replayed_val_ok_is_rejected() {
    let (mut c, mut s) = client();
    let pk = s.key.public().clone();
    // An old VAL_OK replayed after the copy moved on.
    let env1 = s.prep(&mut c, IcvVariant::V7, PACKAGE);
    let ok1 = s.handle(&env1);
    c.accept(&ok1, &pk).unwrap();
    let env2 = s.prep(&mut c, IcvVariant::V7, PACKAGE);
    let ok2 = s.handle(&env2);
    let before = c.clone();
    // ok1 again while request 2 is pending: its UI is no longer ours.
    assert_eq!(c.accept(&ok1, &pk), Err(ValidationError::OtherCopy));
    assert_eq!(c, before, "a rejected ticket changes nothing");
    c.accept(&ok2, &pk).unwrap();
    // ok2 again after it was accepted: nothing pending, and not newer.
    assert!(matches!(
        c.accept(&ok2, &pk),
        Err(ValidationError::OtherCopy | ValidationError::OldTicket { .. })
    ));
    // A VAL_OK for another copy (another licence) with a valid signature.
    let mut other = ClientState::new(LicenceId([7; 16]));
    let mut s2 = MemServer::new(LicenceId([7; 16]));
    s2.key = ServerSecret::from_scalar(&[0x42; 32]).unwrap();
    s.key = ServerSecret::from_scalar(&[0x42; 32]).unwrap();
    let pk = s.key.public().clone();
    let env = s2.prep(&mut other, IcvVariant::V7, PACKAGE);
    let foreign = s2.handle(&env);
    s.prep(&mut c, IcvVariant::V7, PACKAGE);
    assert!(matches!(
        c.accept(&foreign, &pk),
        Err(ValidationError::OtherLicence { .. })
    ));
    // A ticket for this copy and UI that is older than the newest seen.
    let (mut c3, mut s3) = client();
    let pk3 = s3.key.public().clone();
    let e = s3.prep(&mut c3, IcvVariant::V7, PACKAGE);
    let first = s3.handle(&e);
    // The answer is lost; the copy retries from the same UI and gets a newer ticket.
    let e = s3.prep(&mut c3, IcvVariant::V7, PACKAGE);
    let second = s3.handle(&e);
    c3.accept(&second, &pk3).unwrap();
    // The first (older) answer arrives late: refused.
    assert!(c3.accept(&first, &pk3).is_err());
    // And a ticket answering another request of the same copy with the same UI.
    let (mut c4, mut s4) = client();
    let pk4 = s4.key.public().clone();
    let e = s4.prep(&mut c4, IcvVariant::V7, PACKAGE);
    let a = s4.handle(&e);
    let e = s4.prep(&mut c4, IcvVariant::V7, PACKAGE);
    let _b = s4.handle(&e);
    assert_eq!(c4.accept(&a, &pk4), Err(ValidationError::NotOurRequest));
}

#[test]
fn t17_replayed_requests_are_refused_by_the_server() {
    let (mut c, mut s) = client();
    let pk = s.key.public().clone();
    let env = s.prep(&mut c, IcvVariant::V7, PACKAGE);
    let ok = s.handle(&env);
    c.accept(&ok, &pk).unwrap();
    let again = s.handle(&env);
    let v = Verdict::open(&again, &pk).unwrap();
    assert_eq!(v.status, Status::Replay);
}

#[test]
fn t19_a_huge_sequence_jump_is_refused_without_bricking() {
    let (mut c, mut s) = client();
    round(&mut c, &mut s).unwrap();
    // The server signs a ticket with a VSSI far ahead (a bug or a stolen key).
    let pk = s.key.public().clone();
    let env = s.prep(&mut c, IcvVariant::V7, PACKAGE);
    let (req, hash, proof) = s.key.open_request(&env).unwrap();
    let forged = Verdict {
        status: Status::Ok,
        licence: c.licence(),
        ui: req.ui,
        psi: req.psi,
        vssi: u64::MAX - 1,
        card_counter: proof.unwrap().counter,
        dt: T0,
        vsi: s.key.vsi(),
        iv: Iv([1; 32]),
        expires: T0 + DAY,
        offline_records: 50,
        request: hash,
    };
    let before = c.clone();
    assert!(matches!(
        c.accept(&s.key.sign(&forged), &pk),
        Err(ValidationError::SequenceJump { .. })
    ));
    assert_eq!(c, before);
    // Not bricked: the next honest validation (a retry from the same UI) succeeds.
    round(&mut c, &mut s).unwrap();
    // A request whose PSI jumps far ahead is refused by the server and not adopted.
    let mut jumper = c.clone();
    jumper.force_psi(u64::MAX - 5);
    let env = s.prep(&mut jumper, IcvVariant::V7, PACKAGE);
    assert_eq!(
        jumper.accept(&s.handle(&env), &pk),
        Err(ValidationError::Refused(Status::SequenceJump))
    );
    round(&mut c, &mut s).unwrap();
}

#[test]
fn t18_tickets_expire_and_the_grace_is_bounded_by_the_keyfile() {
    let (mut c, mut s) = client();
    let pk = s.key.public().clone();
    let p = progress(&c, &s);
    assert_eq!(
        c.check_offline(&pk, Some(3), &s.clock, &p),
        Err(ValidationError::NeverValidated)
    );
    round(&mut c, &mut s).unwrap();
    let p = progress(&c, &s);
    let clock = TestClock::at_unix(T0);
    assert!(c.check_offline(&pk, Some(3), &clock, &p).is_ok());
    clock.advance(Duration::seconds(3 * DAY - 1));
    assert!(c.check_offline(&pk, Some(3), &clock, &p).is_ok());
    clock.advance(Duration::seconds(1));
    assert!(matches!(
        c.check_offline(&pk, Some(3), &clock, &p),
        Err(ValidationError::OfflineTooLong { days: 3, .. })
    ));
    // Without a keyfile bound the ticket's own expiry (7 days) applies.
    assert!(c.check_offline(&pk, None, &clock, &p).is_ok());
    clock.advance(Duration::seconds(4 * DAY));
    assert!(matches!(
        c.check_offline(&pk, None, &clock, &p),
        Err(ValidationError::TicketExpired { .. })
    ));
    // A clock set back before the ticket's date.
    let back = TestClock::at_unix(T0 - DAY);
    assert!(matches!(
        c.check_offline(&pk, None, &back, &p),
        Err(ValidationError::ClockBehind { .. })
    ));
}

#[test]
fn t15_an_old_ui_presented_again_is_a_clone_and_revokes() {
    let (mut a, mut s) = client();
    round(&mut a, &mut s).unwrap();
    let mut b = a.clone(); // the installed copy is cloned
    round(&mut a, &mut s).unwrap();
    round(&mut a, &mut s).unwrap();
    assert_eq!(
        round(&mut b, &mut s),
        Err(ValidationError::Refused(Status::Clone))
    );
    assert!(s.state.revoked);
    assert_eq!(
        round(&mut a, &mut s),
        Err(ValidationError::Refused(Status::Revoked))
    );
    assert_eq!(
        a.check_offline(s.key.public(), None, &s.clock, &progress(&a, &s)),
        Err(ValidationError::Refused(Status::Revoked))
    );
}

#[test]
fn refusals_for_a_modified_viewer_package_or_variant() {
    let (mut c, mut s) = client();
    let pk = s.key.public().clone();
    let env = s.prep_with(&mut c, IcvVariant::V7, PACKAGE, Icv([0; 32]));
    assert_eq!(
        c.accept(&s.handle(&env), &pk),
        Err(ValidationError::Refused(Status::ModifiedViewer))
    );
    let env = s.prep(&mut c, IcvVariant::V7, b"patched");
    assert_eq!(
        c.accept(&s.handle(&env), &pk),
        Err(ValidationError::Refused(Status::IcvMismatch))
    );
    let env = s.prep(&mut c, IcvVariant::V1, PACKAGE);
    assert_eq!(
        c.accept(&s.handle(&env), &pk),
        Err(ValidationError::Refused(Status::VariantRefused))
    );
    // A later VAL_OK clears the refusal.
    round(&mut c, &mut s).unwrap();
    assert!(c.refusal().is_none());
}

#[test]
fn a_ticket_under_another_key_is_refused() {
    let (mut c, mut s) = client();
    let env = s.prep(&mut c, IcvVariant::V7, PACKAGE);
    let ok = s.handle(&env);
    let other = ServerSecret::random(&mut OsRng);
    assert_eq!(
        c.accept(&ok, other.public()),
        Err(ValidationError::BadSignature)
    );
    // A request sealed to another server does not open.
    let env = c
        .prepare(
            IcvVariant::V7,
            PACKAGE,
            other.public(),
            VIEWER,
            &s.clock,
            &mut s.card,
            &mut OsRng,
        )
        .unwrap();
    assert_eq!(s.key.open_request(&env), Err(ValidationError::Decrypt));
}

#[test]
fn every_mutation_and_truncation_of_each_message_is_refused_without_panic() {
    let (mut c, mut s) = client();
    let pk = s.key.public().clone();
    let env = s.prep(&mut c, IcvVariant::V7, PACKAGE);
    assert_eq!(env.len(), ENVELOPE_LEN);
    let ok = s.handle(&env);
    assert_eq!(ok.len(), VERDICT_LEN);
    for i in 0..env.len() {
        let mut e = env.clone();
        e[i] ^= 0x01;
        assert!(s.key.open_request(&e).is_err(), "envelope byte {i}");
        assert!(
            s.key.open_request(&env[..i]).is_err(),
            "envelope cut at {i}"
        );
    }
    let mut longer = env.clone();
    longer.push(0);
    assert!(s.key.open_request(&longer).is_err());
    for i in 0..ok.len() {
        let mut v = ok.clone();
        v[i] ^= 0x01;
        assert!(Verdict::open(&v, &pk).is_err(), "verdict byte {i}");
        assert!(Verdict::open(&ok[..i], &pk).is_err(), "verdict cut at {i}");
    }
    c.accept(&ok, &pk).unwrap();
    let st = c.encode();
    assert_eq!(st.len(), STATE_LEN);
    assert_eq!(ClientState::parse(&st).unwrap(), c);
    for i in 0..st.len() {
        let mut v = st.clone();
        v[i] ^= 0x01;
        assert!(ClientState::parse(&v).is_err(), "state byte {i}");
        assert!(ClientState::parse(&st[..i]).is_err(), "state cut at {i}");
    }
    // Plaintext parsing: a bad version or variant is refused.
    let env = s.prep(&mut c, IcvVariant::V7, PACKAGE);
    let (req, _, _) = s.key.open_request(&env).unwrap();
    let mut plain = req.encode();
    assert_eq!(ValReq::parse(&plain).unwrap(), req);
    for bad in [0, 9, 255] {
        plain[1] = bad;
        assert!(ValReq::parse(&plain).is_err(), "variant {bad}");
    }
    plain[1] = 8; // V8, the chunk-digest form of V7
    assert_eq!(ValReq::parse(&plain).unwrap().variant, IcvVariant::V8);
    plain[1] = 7;
    plain[0] = 2;
    assert!(ValReq::parse(&plain).is_err());
}

#[test]
fn state_persists_atomically_in_tally_home() {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::new(dir.path());
    let (mut c, mut s) = client();
    assert_eq!(ClientState::load(&home, &c.licence()).unwrap(), None);
    round(&mut c, &mut s).unwrap();
    c.save(&home).unwrap();
    let back = ClientState::load(&home, &c.licence()).unwrap().unwrap();
    assert_eq!(back, c);
    // A state file copied under another licence's name is refused.
    let other = LicenceId([1; 16]);
    std::fs::copy(state_path(&home, &c.licence()), state_path(&home, &other)).unwrap();
    assert_eq!(
        ClientState::load(&home, &other),
        Err(ValidationError::WrongLicence)
    );
}

#[test]
fn the_server_key_is_derived_from_the_vendor_and_stable() {
    let v = crate::vendor::VendorSecret::generate("Test Press", false, &mut OsRng).unwrap();
    let a = ServerSecret::derive(&v).unwrap();
    let b = ServerSecret::derive(&v).unwrap();
    assert_eq!(a.public(), b.public());
    assert_ne!(a.public(), v.public().signing_key());
    let w = crate::vendor::VendorSecret::generate("Other Press", false, &mut OsRng).unwrap();
    assert_ne!(ServerSecret::derive(&w).unwrap().public(), a.public());
}

#[test]
fn when_a_due_round_fails_the_keyfile_decides_and_a_refusal_stands() {
    use super::{Status, WhenDue, when_round_failed};
    let (c, s) = client();
    // Never validated: a round is due.
    let p = CardProgress::default();
    assert_eq!(
        ClientState::standing(None, s.key.public(), Some(3), &s.clock, &p),
        Err(ValidationError::NeverValidated)
    );
    assert!(ClientState::standing(Some(&c), s.key.public(), None, &s.clock, &p).is_err());
    // The round failed (server unreachable): open only without a requirement.
    let never = ValidationError::NeverValidated;
    assert_eq!(when_round_failed(&never, None), WhenDue::Open);
    assert_eq!(when_round_failed(&never, Some(7)), WhenDue::Refuse);
    // A refusal remembered from an earlier round stops the copy either way (T23).
    for days in [None, Some(7)] {
        assert_eq!(
            when_round_failed(&ValidationError::Refused(Status::Revoked), days),
            WhenDue::Revoked
        );
    }
}

/// The bytes of `c`'s state with its ticket replaced by `ticket` and the checksum
/// recomputed: what a reader who edits `<home>/validation/<licence>.state` can do (T33).
fn with_ticket(c: &ClientState, ticket: &[u8]) -> Vec<u8> {
    let mut st = c.encode();
    let at = 8 + 1 + 16 + 16 + 32 + 8 + 8 + 1 + 8 + 32 + 8;
    st[at] = 1;
    st[at + 1..at + 1 + VERDICT_LEN].copy_from_slice(ticket);
    let n = st.len() - 32;
    let sum = crate::crypto::sha256(&st[..n]);
    st[n..].copy_from_slice(&sum);
    st
}

#[test]
fn t32_requests_without_the_registered_cards_signature_change_nothing() {
    let (mut c, mut s) = client();
    round(&mut c, &mut s).unwrap();
    round(&mut c, &mut s).unwrap();
    assert!(s.superseded.contains(&Ui::initial(&c.licence())));
    let before = s.state.clone();
    let pk = s.key.public().clone();
    // A third party who knows the copy's identifiers builds a request: no card proof.
    let req = |c: &ClientState, ui: Ui, iv: Iv| ValReq {
        variant: IcvVariant::V7,
        ui,
        icv: icv::compute(IcvVariant::V7, PACKAGE, &ui, &iv),
        psi: c.psi() + 1,
        vssi: c.vssi(),
        dt: T0,
        vsi: pk.fingerprint(),
        iv,
        viewer_icv: VIEWER,
    };
    let unsigned = req(&c, c.ui(), c.iv()).seal_unsigned(&pk, &mut OsRng);
    assert_eq!(unsigned.len(), ENVELOPE_V1_LEN);
    let v = Verdict::open(&s.handle(&unsigned), &pk).unwrap();
    assert_eq!(v.status, Status::NotCardSigned);
    // The copy's first UI, superseded since: unsigned, it revokes nothing (it would be a
    // clone if a card had signed it).
    let ui0 = Ui::initial(&c.licence());
    let old = req(&c, ui0, Iv::first(&ui0)).seal_unsigned(&pk, &mut OsRng);
    assert_eq!(
        Verdict::open(&s.handle(&old), &pk).unwrap().status,
        Status::NotCardSigned
    );
    // Signed by another card (the attacker's own), or with a signature that does not verify.
    let mut theirs = TestCard::new();
    let r = req(&c, ui0, Iv::first(&ui0));
    let hash = request_hash(&r.encode());
    let mut proof = theirs
        .sign_request(&request_record_body(&hash, r.dt))
        .unwrap();
    let foreign = r.seal(&proof, &pk, &mut OsRng);
    assert_eq!(
        Verdict::open(&s.handle(&foreign), &pk).unwrap().status,
        Status::NotCardSigned
    );
    proof.serial = s.card.identity.serial;
    let forged = r.seal(&proof, &pk, &mut OsRng);
    assert_eq!(
        Verdict::open(&s.handle(&forged), &pk).unwrap().status,
        Status::NotCardSigned
    );
    // The card's signature of one request does not carry over to an edited one.
    let env = s.prep(&mut c.clone(), IcvVariant::V7, PACKAGE);
    let (mut edited, _, proof) = s.key.open_request(&env).unwrap();
    edited.psi += 1;
    let moved = edited.seal(&proof.unwrap(), &pk, &mut OsRng);
    assert_eq!(
        Verdict::open(&s.handle(&moved), &pk).unwrap().status,
        Status::NotCardSigned
    );
    assert_eq!(s.state, before, "nothing changed");
    assert!(!s.state.revoked);
    // The honest reader carries on.
    round(&mut c, &mut s).unwrap();
}

#[test]
fn t32_a_captured_request_replayed_after_the_next_validation_does_nothing() {
    let (mut c, mut s) = client();
    let pk = s.key.public().clone();
    let captured = s.prep(&mut c, IcvVariant::V7, PACKAGE);
    c.accept(&s.handle(&captured), &pk).unwrap();
    round(&mut c, &mut s).unwrap();
    round(&mut c, &mut s).unwrap();
    let before = s.state.clone();
    // Its UI is superseded: without the counter order it would be taken for a clone.
    let v = Verdict::open(&s.handle(&captured), &pk).unwrap();
    assert_eq!(v.status, Status::Replay);
    assert_eq!(s.state, before);
    assert!(!s.state.revoked);
    round(&mut c, &mut s).unwrap();
    // A clone that really runs with the card (a fresh card-signed request from an old UI)
    // is still caught (T15).
    let mut clone = c.clone();
    round(&mut c, &mut s).unwrap();
    round(&mut c, &mut s).unwrap();
    assert_eq!(
        round(&mut clone, &mut s),
        Err(ValidationError::Refused(Status::Clone))
    );
}

#[test]
fn t32_the_request_is_a_record_of_the_cards_trail() {
    let (mut c, mut s) = client();
    let n = s.card.records().len();
    let v = round(&mut c, &mut s).unwrap();
    let records = s.card.records();
    assert_eq!(records.len(), n + 1, "one record per request, no gap");
    let last = records.last().unwrap();
    assert_eq!(last.counter, v.card_counter);
    let body = Body::parse(&last.body).unwrap();
    assert!(
        matches!(&body.usage, crate::trail::Usage::Nonce { value } if value.starts_with("val:")),
        "{body:?}"
    );
    assert_eq!(v.licence, c.licence());
}

#[test]
fn t33_another_copys_ticket_pasted_into_the_state_is_refused_offline() {
    // Two licences validated by one server key: a good copy and a revoked one.
    let key = [0x42; 32];
    let (mut good, mut s1) = client();
    s1.key = ServerSecret::from_scalar(&key).unwrap();
    let mut bad = ClientState::new(LicenceId([7; 16]));
    let mut s2 = MemServer::new(LicenceId([7; 16]));
    s2.key = ServerSecret::from_scalar(&key).unwrap();
    let pk = s1.key.public().clone();
    round(&mut good, &mut s1).unwrap();
    round(&mut bad, &mut s2).unwrap();
    let p = progress(&bad, &s2);
    assert!(bad.check_offline(&pk, Some(3), &s2.clock, &p).is_ok());
    // The good copy's fresh ticket, pasted into the other copy's state file.
    let pasted = ClientState::parse(&with_ticket(&bad, good.ticket_bytes().unwrap())).unwrap();
    let e = pasted
        .check_offline(&pk, Some(3), &s2.clock, &p)
        .unwrap_err();
    assert!(matches!(e, ValidationError::OtherLicence { .. }), "{e:?}");
    assert!(e.to_string().contains("is for licence 0909"), "{e}");
    // This licence's own older ticket, pasted after the copy moved on: not this copy's.
    let older = bad.ticket_bytes().unwrap().to_vec();
    round(&mut bad, &mut s2).unwrap();
    let stale = ClientState::parse(&with_ticket(&bad, &older)).unwrap();
    assert_eq!(
        stale.check_offline(&pk, Some(3), &s2.clock, &progress(&bad, &s2)),
        Err(ValidationError::NotThisCopysTicket)
    );
    // Online too: a VAL_OK answering another licence's request is refused.
    let env = s1.prep(&mut good, IcvVariant::V7, PACKAGE);
    let theirs = s1.handle(&env);
    s2.prep(&mut bad, IcvVariant::V7, PACKAGE);
    assert!(matches!(
        bad.accept(&theirs, &pk),
        Err(ValidationError::OtherLicence { .. })
    ));
}

#[test]
fn t34_a_frozen_clock_is_bounded_by_the_cards_progress() {
    let (mut c, mut s) = client();
    let pk = s.key.public().clone();
    round(&mut c, &mut s).unwrap();
    // The clock stays just after the ticket; the card keeps signing.
    let frozen = TestClock::at_unix(T0 + 60);
    let lic = c.licence();
    assert!(
        c.check_offline(&pk, None, &frozen, &progress(&c, &s))
            .is_ok()
    );
    // Reading time charged since the ticket is time that passed: 7 days of it expire the
    // ticket however the clock reads.
    for _ in 0..7 {
        s.card
            .sign_request(&Body::at_unix(
                crate::trail::Usage::Time {
                    licence: lic,
                    seconds: DAY as u32,
                },
                T0 + 60,
            ))
            .unwrap();
    }
    assert!(matches!(
        c.check_offline(&pk, None, &frozen, &progress(&c, &s)),
        Err(ValidationError::TicketExpired { .. })
    ));
    // And whatever is charged, the card's records since the ticket are bounded (the
    // ticket allows 50 here).
    let (mut c, mut s) = client();
    let pk = s.key.public().clone();
    round(&mut c, &mut s).unwrap();
    for _ in 0..50 {
        s.card
            .sign_request(&Body::at_unix(
                crate::trail::Usage::Open {
                    licence: LicenceId([1; 16]),
                },
                T0 + 60,
            ))
            .unwrap();
    }
    assert!(
        c.check_offline(&pk, None, &frozen, &progress(&c, &s))
            .is_ok()
    );
    s.card
        .sign_request(&Body::at_unix(
            crate::trail::Usage::Nonce { value: "x".into() },
            T0 + 60,
        ))
        .unwrap();
    assert_eq!(
        c.check_offline(&pk, None, &frozen, &progress(&c, &s)),
        Err(ValidationError::OfflineRecords {
            records: 51,
            limit: 50
        })
    );
    // A newer record's date counts as "now" too.
    let (mut c, mut s) = client();
    let pk = s.key.public().clone();
    round(&mut c, &mut s).unwrap();
    s.card
        .sign_request(&Body::at_unix(
            crate::trail::Usage::Nonce { value: "y".into() },
            T0 + 8 * DAY,
        ))
        .unwrap();
    assert!(matches!(
        c.check_offline(&pk, None, &frozen, &progress(&c, &s)),
        Err(ValidationError::TicketExpired { .. })
    ));
}

#[test]
fn v7_and_v8_requests_are_both_served() {
    let (mut c, mut s) = client();
    assert_eq!(
        round_with(&mut c, &mut s, IcvVariant::V8).unwrap().status,
        Status::Ok
    );
    assert_eq!(
        round_with(&mut c, &mut s, IcvVariant::V7).unwrap().status,
        Status::Ok
    );
    assert_eq!(
        round_with(&mut c, &mut s, IcvVariant::V8).unwrap().status,
        Status::Ok
    );
}

#[test]
fn a_version_1_state_keeps_the_copys_identifiers_and_drops_its_ticket() {
    let (mut c, mut s) = client();
    round(&mut c, &mut s).unwrap();
    // Build the 382-byte version 1 layout from the version 2 fields.
    let v2 = c.encode();
    let mut v1 = Vec::new();
    v1.extend_from_slice(&v2[..8]);
    v1.push(1);
    v1.extend_from_slice(&v2[9..9 + 16 + 16 + 32 + 8 + 8]);
    v1.extend_from_slice(&[0; 1 + 8 + 32]); // no pending request
    v1.push(1);
    v1.extend_from_slice(&[0xab; 218]); // a version 1 ticket
    v1.push(0xff);
    let sum = crate::crypto::sha256(&v1);
    v1.extend_from_slice(&sum);
    assert_eq!(v1.len(), 382);
    let back = ClientState::parse(&v1).unwrap();
    assert_eq!(
        (back.ui(), back.iv(), back.psi(), back.vssi()),
        (c.ui(), c.iv(), c.psi(), c.vssi())
    );
    assert!(back.ticket_bytes().is_none());
    // The server still knows the copy: the next round goes on from its UI.
    let mut back = back;
    round(&mut back, &mut s).unwrap();
}
