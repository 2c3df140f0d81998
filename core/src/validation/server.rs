//! The validation server's rules: its key and the decision on one request. The
//! packager's `serve` keeps the database and calls [`decide`]; every rule is here.

use super::wire::{CardCheck, CardProof, Status, ValReq, Verdict, open_envelope};
use super::{MAX_SEQUENCE_STEP, ValidationError};
use crate::crypto::{self, Hash, PublicKey};
use crate::icv::{Icv, Iv, Ui};
use crate::trail::LicenceId;
use crate::vendor::VendorSecret;
use rand_core::CryptoRngCore;
use std::fmt;

/// The validation server's P-256 key pair: it signs tickets (SKVS of the seed) and
/// decrypts requests (the private half of PKDS).
pub struct ServerSecret {
    signing: p256::ecdsa::SigningKey,
    secret: p256::SecretKey,
    public: PublicKey,
}

// Both halves are p256 types (`SigningKey`, `SecretKey`) that zeroize themselves on drop.
impl zeroize::ZeroizeOnDrop for ServerSecret {}

impl fmt::Debug for ServerSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerSecret({:?})", self.public)
    }
}

impl ServerSecret {
    /// The server key of `vendor`: derived from the vendor's secret with HMAC-SHA-256
    /// (`VendorSecret::storage_key`), so it is stored nowhere and is as well protected as
    /// the vendor's encrypted secret file; `issue --server` and `serve` get the same key.
    pub fn derive(vendor: &VendorSecret) -> Result<Self, ValidationError> {
        // A 32-byte string is a valid scalar unless it is 0 or ≥ n (probability ~2⁻³²);
        // try the next purpose in that case.
        for i in 0..16u8 {
            let bytes = vendor.storage_key(&format!("validation-server/p256/v1/{i}"));
            if let Ok(s) = Self::from_scalar(&bytes[..]) {
                return Ok(s);
            }
        }
        Err(ValidationError::KeyDerivation)
    }

    /// From a 32-byte big-endian scalar (tests and benchmarks).
    pub fn from_scalar(bytes: &[u8]) -> Result<Self, ValidationError> {
        let secret =
            p256::SecretKey::from_slice(bytes).map_err(|_| ValidationError::KeyDerivation)?;
        let signing = p256::ecdsa::SigningKey::from(&secret);
        let public = PublicKey::from_verifying_key(signing.verifying_key());
        Ok(Self {
            signing,
            secret,
            public,
        })
    }

    /// A fresh random key (tests).
    pub fn random(rng: &mut impl CryptoRngCore) -> Self {
        let secret = p256::SecretKey::random(rng);
        let signing = p256::ecdsa::SigningKey::from(&secret);
        let public = PublicKey::from_verifying_key(signing.verifying_key());
        Self {
            signing,
            secret,
            public,
        }
    }

    /// The public key (PKVS), for keyfiles and `GET /v1/server-key`.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The validation server identifier (VSI): the public key's fingerprint.
    pub fn vsi(&self) -> Hash {
        self.public.fingerprint()
    }

    /// Decrypts and parses an encrypted VAL_REQ; returns it with the hash its answer
    /// must carry and its card proof (`None` in a version 1 envelope: see [`CardCheck`]).
    pub fn open_request(
        &self,
        envelope: &[u8],
    ) -> Result<(ValReq, Hash, Option<CardProof>), ValidationError> {
        open_envelope(&self.secret, &self.public, envelope)
    }

    /// Decrypts a trail validation request ([`super::seal_trail_request`]).
    pub fn open_trail_request(
        &self,
        envelope: &[u8],
    ) -> Result<super::TrailRequest, ValidationError> {
        super::trail_req::open_trail_request(&self.secret, &self.public, envelope)
    }

    /// Decrypts a backup extension ([`super::seal_backup_extension`]).
    pub fn open_backup_extension(
        &self,
        envelope: &[u8],
    ) -> Result<super::TrailRequest, ValidationError> {
        super::backup::open_backup_extension(&self.secret, &self.public, envelope)
    }

    /// Signs a validator (\[0094\]) or recovery (\[0062\]) body for card `serial` in place:
    /// its `sig=` becomes this key's signature of `trail::validator::server_message`, which
    /// is domain-separated by the kind, so this signs nothing else. Returns false (and
    /// changes nothing) for any other kind.
    pub fn sign_body(&self, serial: &crate::card::Serial, body: &mut crate::trail::Body) -> bool {
        use crate::trail::Usage;
        let Some(m) = crate::trail::validator::server_message(body, serial) else {
            return false;
        };
        let sig = crypto::sign_low_s(&self.signing, &m);
        match &mut body.usage {
            Usage::Validator(v) => v.signature = sig,
            Usage::Recovery(r) => r.signature = sig,
            _ => return false,
        }
        true
    }

    /// Decrypts a restore request ([`super::seal_restore_request`]); returns it with the
    /// key its answer must be sealed under.
    pub fn open_restore_request(
        &self,
        envelope: &[u8],
    ) -> Result<(super::RestoreRequest, super::AnswerKey), ValidationError> {
        super::restore::open_restore_request(&self.secret, &self.public, envelope)
    }

    /// Signs a publisher's challenge for the viewer to check (\[0104\]; the format is in
    /// [`super::challenge`]).
    pub fn sign_challenge(&self, challenge: &super::Challenge) -> Vec<u8> {
        let key = self.vsi();
        let sig = crypto::sign_low_s(&self.signing, &challenge.message_for(&key));
        challenge.encode_signed(&key, &sig)
    }

    /// Signs a verdict.
    pub fn sign(&self, verdict: &Verdict) -> Vec<u8> {
        let body = verdict.body();
        let sig = crypto::sign_low_s(&self.signing, &Verdict::signed_message(&body));
        let mut out = body.to_vec();
        out.extend_from_slice(&sig.0);
        out
    }
}

/// What the server keeps about one copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyState {
    /// The copy's licence (its first UI).
    pub licence: LicenceId,
    /// The confirmed UI: the copy has used it in a request.
    pub ui: Ui,
    /// The VSSI that goes with `ui` (0 before the first ticket).
    pub vssi: u64,
    /// The IV that goes with `ui`.
    pub iv: Iv,
    /// The UI, VSSI and IV of the last ticket, until the copy presents them.
    pub pending: Option<(Ui, u64, Iv)>,
    /// The highest PSI seen.
    pub last_psi: u64,
    /// The publisher revoked the copy, or it was found cloned.
    pub revoked: bool,
    /// The card counter of the newest card-signed request that changed this state: a
    /// request signed at this counter or below is a replay (T32).
    pub card_counter: Option<u64>,
}

impl CopyState {
    /// A copy never validated: its first UI (the licence id) and IV.
    pub fn new(licence: LicenceId) -> Self {
        let ui = Ui::initial(&licence);
        Self {
            licence,
            ui,
            vssi: 0,
            iv: Iv::first(&ui),
            pending: None,
            last_psi: 0,
            revoked: false,
            card_counter: None,
        }
    }
}

/// What a VAL_OK grants, as the publisher set it (`tally-pack serve --ticket-hours`,
/// `--offline-records`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terms {
    /// The ticket's validity in seconds.
    pub lifetime: i64,
    /// Card records allowed after the request before the copy must validate again (T34).
    pub offline_records: u32,
}

/// Card records a ticket allows offline unless the publisher says otherwise: about a week
/// of continuous reading at the default one-minute time unit and ten-page blocks.
pub const DEFAULT_OFFLINE_RECORDS: u32 = 12_000;

/// Which of the copy's UIs the request presented (the caller's database look-up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// The confirmed UI.
    Current,
    /// The UI of the last ticket.
    Pending,
    /// A UI the copy has moved on from: a clone.
    Superseded,
    /// No copy has this UI.
    Unknown,
}

/// The facts about a request the caller supplies besides the copy's state.
#[derive(Debug, Clone, Copy)]
pub struct Presented<'a> {
    /// The decrypted request.
    pub req: &'a ValReq,
    /// The hash of its plaintext.
    pub request_hash: Hash,
    /// How its UI matched.
    pub lookup: Lookup,
    /// The ICV the server computed over the package and the presented UI and IV (`None`
    /// when the copy is unknown, so nothing was computed).
    pub expected_icv: Option<Icv>,
    /// Whether the viewer ICV is a registered release build.
    pub viewer_registered: bool,
    /// Whether the server accepts the request's ICV variant.
    pub variant_accepted: bool,
    /// The request's card proof checked against the card registered for the copy's
    /// licence ([`CardCheck::of`]).
    pub card: CardCheck,
}

/// The outcome of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The verdict to sign and send.
    pub verdict: Verdict,
    /// The copy's new state, when it changes.
    pub new_state: Option<CopyState>,
    /// UIs to record as superseded (presenting one again is a clone).
    pub retired: Vec<Ui>,
    /// A flag for the publisher (`clone`, `modified-viewer`, `icv-mismatch`).
    pub flag: Option<&'static str>,
}

/// Decides one request (Figures 1 and 2: compare the UI and ICV with the database,
/// update the entry on success, flag it otherwise). `now` is the server's clock (Unix
/// seconds), `terms` what a ticket grants, `next_iv` a fresh random IV.
///
/// Only a request signed by the card registered for the copy's licence, at a card counter
/// above the last one that changed the copy, can change anything (T32): an unsigned or
/// foreign-signed request is refused `not-card-signed`, a replayed one `replay`, before
/// the UI is looked at — so nobody without the reader's card can get a copy flagged,
/// revoked or its UI rolled, and a captured request replayed later does nothing.
pub fn decide(
    server: &ServerSecret,
    state: Option<&CopyState>,
    p: Presented<'_>,
    now: i64,
    terms: Terms,
    next_iv: Iv,
) -> Decision {
    let req = p.req;
    let licence = state.map_or(LicenceId([0; 16]), |s| s.licence);
    let card_counter = match p.card {
        CardCheck::Signed { counter } => counter,
        _ => 0,
    };
    let refuse = |status: Status, vssi: u64| Verdict {
        status,
        licence,
        ui: req.ui,
        psi: req.psi,
        vssi,
        card_counter,
        dt: now,
        vsi: server.vsi(),
        iv: Iv([0; 32]),
        expires: now,
        offline_records: 0,
        request: p.request_hash,
    };
    let plain = |status: Status, vssi: u64| Decision {
        verdict: refuse(status, vssi),
        new_state: None,
        retired: Vec::new(),
        flag: None,
    };
    if req.vsi != server.vsi() {
        return plain(Status::WrongServer, 0);
    }
    let Some(state) = state else {
        return plain(Status::UnknownCopy, 0);
    };
    if p.lookup == Lookup::Unknown {
        return plain(Status::UnknownCopy, 0);
    }
    let newest_vssi = state.pending.map_or(state.vssi, |(_, v, _)| v);
    let CardCheck::Signed { counter } = p.card else {
        return plain(Status::NotCardSigned, newest_vssi);
    };
    if state.card_counter.is_some_and(|last| counter <= last) {
        // A card-signed request older than the newest one that changed the copy: captured
        // and replayed (T32).
        return plain(Status::Replay, newest_vssi);
    }
    if p.lookup == Lookup::Superseded {
        // "Unauthorised copies … identified should logon with an unrolled and therefore
        // incorrect ICV occur": flag and revoke (T15). Card-signed and fresh, so it is a
        // copy that really runs with the reader's card, not a replayed request.
        let mut s = state.clone();
        s.revoked = true;
        s.card_counter = Some(counter);
        return Decision {
            verdict: refuse(Status::Clone, newest_vssi),
            new_state: Some(s),
            retired: Vec::new(),
            flag: Some("clone"),
        };
    }
    if state.revoked {
        return plain(Status::Revoked, newest_vssi);
    }
    if req.psi <= state.last_psi {
        return plain(Status::Replay, newest_vssi);
    }
    if req.psi - state.last_psi > MAX_SEQUENCE_STEP {
        return plain(Status::SequenceJump, newest_vssi);
    }
    let (expect_vssi, expect_iv) = match (p.lookup, state.pending) {
        (Lookup::Pending, Some((_, v, iv))) => (v, iv),
        (Lookup::Current, _) => (state.vssi, state.iv),
        _ => return plain(Status::UnknownCopy, newest_vssi),
    };
    if req.vssi != expect_vssi || req.iv != expect_iv {
        return plain(Status::Replay, newest_vssi);
    }
    if !p.variant_accepted {
        return plain(Status::VariantRefused, newest_vssi);
    }
    if !p.viewer_registered {
        let mut d = plain(Status::ModifiedViewer, newest_vssi);
        d.flag = Some("modified-viewer");
        return d;
    }
    match p.expected_icv {
        Some(icv) if icv.ct_eq(&req.icv) => {}
        _ => {
            let mut d = plain(Status::IcvMismatch, newest_vssi);
            d.flag = Some("icv-mismatch");
            return d;
        }
    }
    // Validated: roll the UI forward with a fresh IV; the ticket names the new sequence.
    let vssi = newest_vssi.saturating_add(1);
    let mut retired = Vec::new();
    let mut s = state.clone();
    match p.lookup {
        Lookup::Pending => {
            retired.push(state.ui);
            s.ui = req.ui;
            s.vssi = req.vssi;
            s.iv = req.iv;
        }
        _ => {
            // A retry from the confirmed UI (the last answer was lost): the unanswered
            // ticket's UI is retired.
            if let Some((old, _, _)) = state.pending {
                retired.push(old);
            }
        }
    }
    s.pending = Some((req.ui.roll(&next_iv), vssi, next_iv));
    s.last_psi = req.psi;
    s.card_counter = Some(counter);
    Decision {
        verdict: Verdict {
            status: Status::Ok,
            licence,
            ui: req.ui,
            psi: req.psi,
            vssi,
            card_counter,
            dt: now,
            vsi: server.vsi(),
            iv: next_iv,
            expires: now.saturating_add(terms.lifetime.max(0)),
            offline_records: terms.offline_records,
            request: p.request_hash,
        },
        new_state: Some(s),
        retired,
        flag: None,
    }
}
