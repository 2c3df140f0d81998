//! For the recovery, archive and fail-closed tests: the whole restore round of \[0062\] in
//! process — the trail is lost, the card signs a restore request, the server plans the
//! recovery from `backup`, seals its answer, and the reader checks and writes it
//! (`Trail::restore`) — and [`Fx`], a card with its trail and a validation server.

// Shared by several test crates; each uses a part.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use tally_core::card::applet::CardState;
use tally_core::card::emulated::EmulatedCard;
use tally_core::card::{Card, CardIdentity};
use tally_core::crypto::PublicKey;
use tally_core::policy::Tally;
use tally_core::trail::body::LostCharge;
use tally_core::trail::file::{HEADER_LEN, Header, encode_frame, parse_frames};
use tally_core::trail::{Body, LicenceId, Record, Trail, TrailError, Usage};
use tally_core::validation::{
    ServerSecret, open_restore_answer, plan_recovery, restore_request_body, seal_restore_answer,
    seal_restore_request,
};

/// Now, as a Unix time.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Loses the trail at `trail` (if there is one) and restores it through `server` from
/// `backup`, charging `licences` as `charge` says. Panics if a step before
/// `Trail::restore` fails; returns what `Trail::restore` returns.
#[expect(clippy::unwrap_used, reason = "a failing set-up step fails the test")]
pub fn lose_and_restore(
    trail: &Path,
    card: &mut Card,
    id: &CardIdentity,
    server: &ServerSecret,
    backup: &[u8],
    licences: Vec<LicenceId>,
    charge: LostCharge,
) -> Result<Trail, TrailError> {
    if trail.exists() {
        std::fs::remove_file(trail).unwrap();
    }
    let body = restore_request_body(server.public(), now());
    let request = Trail::sign_detached(trail, card, id, &body).unwrap();
    let (env, key) =
        seal_restore_request(server.public(), &id.serial, &request, &mut rand_core::OsRng).unwrap();
    // The server's side.
    let (req, server_key) = server.open_restore_request(&env).unwrap();
    let plan = plan_recovery(server, id, &req, backup, None, licences, charge, now()).unwrap();
    assert_eq!(
        plan.to, request.counter,
        "the request's own counter is lost too"
    );
    let answer = seal_restore_answer(&server_key, plan.body.encode().as_bytes(), backup).unwrap();
    // The reader's side.
    let answer = open_restore_answer(&key, &answer).unwrap();
    Trail::restore(
        trail,
        card,
        id,
        &answer.trail,
        &answer.recovery,
        server.public(),
    )
}

/// An emulated card whose counter starts at `origin`, its trail (the genesis record) at
/// `<tmp>/trails/t.trail`, and a validation server the reader trusts.
pub struct Fx {
    _dir: tempfile::TempDir,
    /// The card's state file.
    pub card_path: PathBuf,
    /// The trail.
    pub trail: PathBuf,
    /// The card.
    pub id: CardIdentity,
    /// The validation server.
    pub server: ServerSecret,
}

#[expect(clippy::unwrap_used, reason = "a failing set-up step fails the test")]
impl Fx {
    /// A new card and trail.
    pub fn new(origin: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let card_path = dir.path().join("card.state");
        let state = CardState::generate(&mut rand_core::OsRng, origin, "test card");
        EmulatedCard::create(&card_path, &state).unwrap();
        let mut card = Card::new(Box::new(EmulatedCard::open(&card_path).unwrap()));
        let id = card.identity().unwrap();
        let trail = dir.path().join("trails").join("t.trail");
        Trail::create(&trail, &mut card, &id).unwrap();
        Self {
            _dir: dir,
            card_path,
            trail,
            id,
            server: ServerSecret::random(&mut rand_core::OsRng),
        }
    }

    /// A connection to the card.
    pub fn card(&self) -> Card {
        Card::new(Box::new(EmulatedCard::open(&self.card_path).unwrap()))
    }

    /// The keys a reader trusting the server trusts.
    pub fn keys(&self) -> Vec<PublicKey> {
        vec![self.server.public().clone()]
    }

    /// One Write, trusting the server.
    pub fn write(&self, usage: Usage) {
        let mut t = Trail::open(&self.trail, &self.id).unwrap();
        t.set_trusted_validators(self.keys());
        t.write(&mut self.card(), &Body::now(usage)).unwrap();
    }

    /// The server vouches for the trail as it is; the reader appends its answer (the totals
    /// records and the validator, in one batch).
    pub fn vouch(&self) {
        let bytes = std::fs::read(&self.trail).unwrap();
        let v = tally_core::trail::validator::vouch(&self.server, &self.id, &bytes, now()).unwrap();
        let mut t = Trail::open(&self.trail, &self.id).unwrap();
        t.set_trusted_validators(self.keys());
        let bodies: Vec<Body> = v.bodies().cloned().collect();
        t.write_all(&mut self.card(), &bodies).unwrap();
    }

    /// The trail file as the server would back it up now.
    pub fn backup(&self) -> Vec<u8> {
        std::fs::read(&self.trail).unwrap()
    }

    /// ValidateTrail with the card, trusting `trusted`.
    pub fn verify(&self, trusted: Vec<PublicKey>) -> Result<Trail, TrailError> {
        let mut t = Trail::open(&self.trail, &self.id)?;
        t.set_trusted_validators(trusted);
        t.verify(&mut self.card())?;
        Ok(t)
    }

    /// `lic`'s totals as a reader trusting the server counts them (fast start included).
    pub fn tally(&self, lic: LicenceId) -> Tally {
        let mut t = Trail::open(&self.trail, &self.id).unwrap();
        t.set_trusted_validators(self.keys());
        t.verify_offline().unwrap();
        let later: Vec<Body> = t.unvouched_bodies().map(|(_, b)| b).collect();
        let servers: Vec<_> = self.keys().iter().map(|k| k.fingerprint()).collect();
        Tally::resume(lic, &servers, t.vouched(), &later)
    }

    /// The trail's header and records as stored.
    pub fn read(&self) -> (Header, Vec<Record>) {
        let b = std::fs::read(&self.trail).unwrap();
        let h = Header::decode(&b).unwrap();
        let records = parse_frames(&b[HEADER_LEN..], HEADER_LEN as u64, 0)
            .unwrap()
            .records;
        (h, records)
    }

    /// Replaces the trail with a header saying `first` and `records`.
    pub fn rewrite(&self, first: u64, records: &[Record]) {
        let mut out = Header::for_card(&self.id, first).encode().to_vec();
        for r in records {
            out.extend(encode_frame(r));
        }
        std::fs::write(&self.trail, out).unwrap();
    }

    /// [`lose_and_restore`] of this trail through this server.
    pub fn lose_and_restore(
        &self,
        backup: &[u8],
        licences: Vec<LicenceId>,
        charge: LostCharge,
    ) -> Result<Trail, TrailError> {
        lose_and_restore(
            &self.trail,
            &mut self.card(),
            &self.id,
            &self.server,
            backup,
            licences,
            charge,
        )
    }
}
