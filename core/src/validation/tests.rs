//! Client and server rules end to end in memory: the HTTP tests in the packager drive
//! the same code through a real server and SQLite.

use super::*;
use crate::home::Home;
use crate::icv;
use crate::policy::TestClock;
use crate::trail::LicenceId;
use rand_core::OsRng;
use time::Duration;

const PACKAGE: &[u8] = b"%TALLY package bytes, identical for every customer (claim 30)";
const VIEWER: Icv = Icv([0x5a; 32]);
const T0: i64 = 1_800_000_000;
const DAY: i64 = 86_400;

/// A server that keeps one copy's state in memory, applying [`decide`] like `serve`.
struct MemServer {
    key: ServerSecret,
    state: CopyState,
    superseded: Vec<Ui>,
    clock: TestClock,
    lifetime: i64,
}

impl MemServer {
    fn new(licence: LicenceId) -> Self {
        Self {
            key: ServerSecret::random(&mut OsRng),
            state: CopyState::new(Ui::initial(&licence)),
            superseded: Vec::new(),
            clock: TestClock::at_unix(T0),
            lifetime: 7 * DAY,
        }
    }

    fn handle(&mut self, envelope: &[u8]) -> Vec<u8> {
        let (req, hash) = self.key.open_request(envelope).unwrap();
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
            variant_accepted: req.variant == IcvVariant::V7,
        };
        let mut iv = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut OsRng, &mut iv);
        let d = decide(
            &self.key,
            Some(&self.state),
            p,
            self.clock.now().unix_timestamp(),
            self.lifetime,
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
    let pk = s.key.public().clone();
    let env = c.prepare(IcvVariant::V7, PACKAGE, &pk, VIEWER, &s.clock, &mut OsRng);
    let answer = s.handle(&env);
    c.accept(&answer, &pk)
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
    let st = c.check_offline(s.key.public(), Some(3), &s.clock).unwrap();
    assert_eq!(st.last_validated.unix_timestamp(), T0);
    assert_eq!(st.valid_until.unix_timestamp(), T0 + 3 * DAY);
}

#[test]
fn t17_every_replayed_val_ok_is_rejected() {
    let (mut c, mut s) = client();
    let pk = s.key.public().clone();
    // An old VAL_OK replayed after the copy moved on.
    let env1 = c.prepare(IcvVariant::V7, PACKAGE, &pk, VIEWER, &s.clock, &mut OsRng);
    let ok1 = s.handle(&env1);
    c.accept(&ok1, &pk).unwrap();
    let env2 = c.prepare(IcvVariant::V7, PACKAGE, &pk, VIEWER, &s.clock, &mut OsRng);
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
    let env = other.prepare(IcvVariant::V7, PACKAGE, &pk, VIEWER, &s2.clock, &mut OsRng);
    let foreign = s2.handle(&env);
    c.prepare(IcvVariant::V7, PACKAGE, &pk, VIEWER, &s.clock, &mut OsRng);
    assert_eq!(c.accept(&foreign, &pk), Err(ValidationError::OtherCopy));
    // A ticket for this copy and UI that is older than the newest seen.
    let (mut c3, mut s3) = client();
    let pk3 = s3.key.public().clone();
    let e = c3.prepare(IcvVariant::V7, PACKAGE, &pk3, VIEWER, &s3.clock, &mut OsRng);
    let first = s3.handle(&e);
    // The answer is lost; the copy retries from the same UI and gets a newer ticket.
    let e = c3.prepare(IcvVariant::V7, PACKAGE, &pk3, VIEWER, &s3.clock, &mut OsRng);
    let second = s3.handle(&e);
    c3.accept(&second, &pk3).unwrap();
    // The first (older) answer arrives late: refused.
    assert!(c3.accept(&first, &pk3).is_err());
    // And a ticket answering another request of the same copy with the same UI.
    let (mut c4, mut s4) = client();
    let pk4 = s4.key.public().clone();
    let e = c4.prepare(IcvVariant::V7, PACKAGE, &pk4, VIEWER, &s4.clock, &mut OsRng);
    let a = s4.handle(&e);
    let e = c4.prepare(IcvVariant::V7, PACKAGE, &pk4, VIEWER, &s4.clock, &mut OsRng);
    let _b = s4.handle(&e);
    assert_eq!(c4.accept(&a, &pk4), Err(ValidationError::NotOurRequest));
}

#[test]
fn t17_replayed_requests_are_refused_by_the_server() {
    let (mut c, mut s) = client();
    let pk = s.key.public().clone();
    let env = c.prepare(IcvVariant::V7, PACKAGE, &pk, VIEWER, &s.clock, &mut OsRng);
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
    let env = c.prepare(IcvVariant::V7, PACKAGE, &pk, VIEWER, &s.clock, &mut OsRng);
    let (req, hash) = s.key.open_request(&env).unwrap();
    let forged = Verdict {
        status: Status::Ok,
        ui: req.ui,
        psi: req.psi,
        vssi: u64::MAX - 1,
        dt: T0,
        vsi: s.key.vsi(),
        iv: Iv([1; 32]),
        expires: T0 + DAY,
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
    let env = jumper.prepare(IcvVariant::V7, PACKAGE, &pk, VIEWER, &s.clock, &mut OsRng);
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
    assert_eq!(
        c.check_offline(&pk, Some(3), &s.clock),
        Err(ValidationError::NeverValidated)
    );
    round(&mut c, &mut s).unwrap();
    let clock = TestClock::at_unix(T0);
    assert!(c.check_offline(&pk, Some(3), &clock).is_ok());
    clock.advance(Duration::seconds(3 * DAY - 1));
    assert!(c.check_offline(&pk, Some(3), &clock).is_ok());
    clock.advance(Duration::seconds(1));
    assert!(matches!(
        c.check_offline(&pk, Some(3), &clock),
        Err(ValidationError::OfflineTooLong { days: 3, .. })
    ));
    // Without a keyfile bound the ticket's own expiry (7 days) applies.
    assert!(c.check_offline(&pk, None, &clock).is_ok());
    clock.advance(Duration::seconds(4 * DAY));
    assert!(matches!(
        c.check_offline(&pk, None, &clock),
        Err(ValidationError::TicketExpired { .. })
    ));
    // A clock set back before the ticket's date.
    let back = TestClock::at_unix(T0 - DAY);
    assert!(matches!(
        c.check_offline(&pk, None, &back),
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
        a.check_offline(s.key.public(), None, &s.clock),
        Err(ValidationError::Refused(Status::Revoked))
    );
}

#[test]
fn refusals_for_a_modified_viewer_package_or_variant() {
    let (mut c, mut s) = client();
    let pk = s.key.public().clone();
    let env = c.prepare(
        IcvVariant::V7,
        PACKAGE,
        &pk,
        Icv([0; 32]),
        &s.clock,
        &mut OsRng,
    );
    assert_eq!(
        c.accept(&s.handle(&env), &pk),
        Err(ValidationError::Refused(Status::ModifiedViewer))
    );
    let env = c.prepare(
        IcvVariant::V7,
        b"patched",
        &pk,
        VIEWER,
        &s.clock,
        &mut OsRng,
    );
    assert_eq!(
        c.accept(&s.handle(&env), &pk),
        Err(ValidationError::Refused(Status::IcvMismatch))
    );
    let env = c.prepare(IcvVariant::V1, PACKAGE, &pk, VIEWER, &s.clock, &mut OsRng);
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
    let pk = s.key.public().clone();
    let env = c.prepare(IcvVariant::V7, PACKAGE, &pk, VIEWER, &s.clock, &mut OsRng);
    let ok = s.handle(&env);
    let other = ServerSecret::random(&mut OsRng);
    assert_eq!(
        c.accept(&ok, other.public()),
        Err(ValidationError::BadSignature)
    );
    // A request sealed to another server does not open.
    let env = c.prepare(
        IcvVariant::V7,
        PACKAGE,
        other.public(),
        VIEWER,
        &s.clock,
        &mut OsRng,
    );
    assert_eq!(s.key.open_request(&env), Err(ValidationError::Decrypt));
}

#[test]
fn every_mutation_and_truncation_of_each_message_is_refused_without_panic() {
    let (mut c, mut s) = client();
    let pk = s.key.public().clone();
    let env = c.prepare(IcvVariant::V7, PACKAGE, &pk, VIEWER, &s.clock, &mut OsRng);
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
    let (req, _) = s
        .key
        .open_request(&c.prepare(IcvVariant::V7, PACKAGE, &pk, VIEWER, &s.clock, &mut OsRng))
        .unwrap();
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
    assert_eq!(
        ClientState::standing(None, s.key.public(), Some(3), &s.clock),
        Err(ValidationError::NeverValidated)
    );
    assert!(ClientState::standing(Some(&c), s.key.public(), None, &s.clock).is_err());
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
