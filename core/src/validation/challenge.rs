//! The publisher's nonce challenge (\[0104\]): billing without a file from the customer.
//!
//! "The vendor generates a random nonce and asks the customer to use *Write*(nonce) to
//! append the nonce to the audit trail. Next, the vendor executes the *ValidateTrail*
//! routine remotely. […] The vendor then checks the validated audit trail for the nonce."
//!
//! Here the publisher's validation server keeps the random nonce for one card
//! (`tally-pack challenge`), and hands it out, signed with its key, to the reader's viewer
//! on its next contact ([`CHALLENGE_ENDPOINT`]). The viewer checks the signature against
//! the server key of the licence's vendor-signed keyfile and writes the answer through
//! Write: a `challenge` record ([`Usage::Challenge`]) naming the server's key fingerprint
//! and the nonce, signed by the card like any record. It then sends the trail to the same
//! server for vouching (\[0094\]), which keeps it as the card's backup (\[0062\]); the
//! publisher's audit verifies that backup against the registered card key and looks for
//! the record ([`answer_in`]).
//!
//! ## What an answer proves
//!
//! The nonce is 32 random bytes nobody knew before the challenge was issued, so the card
//! signed the answer record after that moment, at counter `c`. The card signs each counter
//! once and in order, so every record the card signed before the challenge has a counter
//! below `c`: a card-verified trail that reaches `c` holds all the use metered on that card
//! up to the moment the challenge was issued. It proves nothing about use after it, and the
//! `at=` times in the records are still the reader's clock.
//!
//! ## The signed challenge (the server's answer to [`CHALLENGE_ENDPOINT`])
//!
//! ```text
//! text = "tally-challenge/1" SP "card=" hex32 SP "nonce=" hex64 SP "issued=" unix
//!        SP "expires=" unix SP "key=" hex64 SP "sig=" hex128
//! m    = "TALLY-CHALLENGE-SIG/v1" ‖ the text before " sig="
//! sig  = ECDSA-P256-SHA256(server key, m), low-S
//! ```
//!
//! `card` is the challenged card's serial, `key` the fingerprint of the server key, `unix`
//! seconds since 1970 in canonical decimal. The signature's domain is its own, so a
//! challenge can't be passed off as a validator, a recovery record or a ticket.

use crate::card::Serial;
use crate::crypto::{Hash, PublicKey, Signature, SignatureVerifier};
use crate::trail::{Body, Usage};
use rand_core::CryptoRngCore;

/// The endpoint a viewer POSTs the card's serial (16 bytes) to: 200 with a signed
/// challenge when one is pending for the card, 204 when none is.
pub const CHALLENGE_ENDPOINT: &str = "/v1/challenge";

/// Domain of the server's signature of a challenge.
pub const CHALLENGE_SIG_DOMAIN: &[u8] = b"TALLY-CHALLENGE-SIG/v1";

/// Longest signed challenge accepted (the real one is 367 bytes at most).
pub const MAX_CHALLENGE_TEXT: usize = 512;

/// How long a challenge is handed out unless the publisher says otherwise: 30 days.
pub const DEFAULT_CHALLENGE_LIFETIME: i64 = 30 * 86_400;

/// The longest lifetime a challenge may have: a year.
pub const MAX_CHALLENGE_LIFETIME: i64 = 366 * 86_400;

const PREFIX: &str = "tally-challenge/1";

/// A publisher's challenge for one card: the random nonce the card is to write, and when it
/// was issued and stops being handed out.
#[derive(Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The challenged card.
    pub serial: Serial,
    /// 32 random bytes.
    pub nonce: [u8; 32],
    /// When the publisher issued it (Unix seconds, the server's clock).
    pub issued_at: i64,
    /// When the server stops handing it out (Unix seconds).
    pub expires_at: i64,
}

impl std::fmt::Debug for Challenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Challenge")
            .field("serial", &self.serial)
            .field("nonce", &self.nonce_hex())
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Why a challenge was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChallengeError {
    /// The text is not a challenge in the format above (the reason names the field).
    #[error("not a signed challenge: {0}")]
    Malformed(&'static str),
    /// It names another server key than the licence's.
    #[error("the challenge comes from another validation server than the one the licence names")]
    OtherServer,
    /// The signature does not verify under the licence's server key.
    #[error("the challenge's signature does not verify under the licence's validation server key")]
    BadSignature,
    /// It is for another card.
    #[error("the challenge is for card {challenged}, not for this card {card}")]
    OtherCard {
        /// The card it names.
        challenged: Serial,
        /// This card.
        card: Serial,
    },
    /// Its lifetime is over (by the clock given), or its dates make no sense.
    #[error("the challenge expired at {expires} (Unix time), or its dates are inconsistent")]
    Expired {
        /// When it expired.
        expires: i64,
    },
    /// A lifetime outside 1 minute ..= [`MAX_CHALLENGE_LIFETIME`] was asked for.
    #[error("a challenge lasts from one minute to a year")]
    Lifetime,
}

impl Challenge {
    /// A fresh challenge for card `serial`, issued at `issued_at` and handed out for
    /// `lifetime` seconds (1 minute ..= [`MAX_CHALLENGE_LIFETIME`]).
    pub fn new(
        serial: Serial,
        issued_at: i64,
        lifetime: i64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Self, ChallengeError> {
        if !(60..=MAX_CHALLENGE_LIFETIME).contains(&lifetime) {
            return Err(ChallengeError::Lifetime);
        }
        let mut nonce = [0u8; 32];
        rng.fill_bytes(&mut nonce);
        Ok(Self {
            serial,
            nonce,
            issued_at,
            expires_at: issued_at.saturating_add(lifetime),
        })
    }

    /// The nonce as 64 lower-case hex digits (how the publisher names the challenge).
    pub fn nonce_hex(&self) -> String {
        hex::encode(self.nonce)
    }

    /// True while the server hands it out: issued, and not yet expired at `now`.
    pub fn is_open(&self, now: i64) -> bool {
        self.issued_at <= now && now < self.expires_at
    }

    /// The text the server signs (everything before ` sig=`).
    fn unsigned_text(&self, server_key: &Hash) -> String {
        format!(
            "{PREFIX} card={} nonce={} issued={} expires={} key={}",
            self.serial.to_hex(),
            self.nonce_hex(),
            self.issued_at,
            self.expires_at,
            hex::encode(server_key)
        )
    }

    /// The message the server signs: [`CHALLENGE_SIG_DOMAIN`] ‖ the unsigned text.
    fn signed_message(&self, server_key: &Hash) -> Vec<u8> {
        let text = self.unsigned_text(server_key);
        let mut m = Vec::with_capacity(CHALLENGE_SIG_DOMAIN.len() + text.len());
        m.extend_from_slice(CHALLENGE_SIG_DOMAIN);
        m.extend_from_slice(text.as_bytes());
        m
    }

    /// The signed text for the server `key` whose signature is `sig` (see
    /// [`super::ServerSecret::sign_challenge`]).
    pub(crate) fn encode_signed(&self, server_key: &Hash, sig: &Signature) -> Vec<u8> {
        format!(
            "{} sig={}",
            self.unsigned_text(server_key),
            hex::encode(sig.0)
        )
        .into_bytes()
    }

    /// The message to sign for server `key` (see [`super::ServerSecret::sign_challenge`]).
    pub(crate) fn message_for(&self, server_key: &Hash) -> Vec<u8> {
        self.signed_message(server_key)
    }

    /// The body of the answer record (\[0104\]'s Write(nonce)) to a challenge of the server
    /// `server`, dated `at_unix` (the reader's clock: informational, like every `at=`).
    pub fn answer_body(&self, server: &PublicKey, at_unix: i64) -> Body {
        Body::at_unix(
            Usage::Challenge {
                server_key: server.fingerprint(),
                nonce: self.nonce,
            },
            at_unix,
        )
    }
}

/// The next `name=value` word of `words`, the value at most `max` characters.
fn word<'a>(
    words: &mut std::str::Split<'a, char>,
    name: &'static str,
    max: usize,
) -> Result<&'a str, ChallengeError> {
    let w = words.next().ok_or(ChallengeError::Malformed(name))?;
    let v = w
        .strip_prefix(name)
        .and_then(|r| r.strip_prefix('='))
        .ok_or(ChallengeError::Malformed(name))?;
    if v.is_empty() || v.len() > max || !v.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(ChallengeError::Malformed(name));
    }
    Ok(v)
}

fn hex_n<const N: usize>(name: &'static str, v: &str) -> Result<[u8; N], ChallengeError> {
    let mut out = [0u8; N];
    if v.len() != 2 * N || hex::decode_to_slice(v, &mut out).is_err() {
        return Err(ChallengeError::Malformed(name));
    }
    Ok(out)
}

fn unix(name: &'static str, v: &str) -> Result<i64, ChallengeError> {
    if v.len() > 1 && v.starts_with('0') {
        return Err(ChallengeError::Malformed(name));
    }
    v.parse::<i64>()
        .map_err(|_| ChallengeError::Malformed(name))
}

/// The viewer's check of a challenge its licence's server handed out (`server`: the key in
/// the vendor-signed keyfile, never one the reader named): the format, the server's key and
/// signature, the card (`card`, the card present), and its lifetime at `now_unix`. Only a
/// challenge that passes is written to the trail, so neither a server of the reader's own
/// nor anyone between the viewer and the publisher's server can have the card sign a
/// challenge record in the publisher's name.
pub fn open_challenge(
    bytes: &[u8],
    server: &PublicKey,
    card: &Serial,
    now_unix: i64,
    verifier: &dyn SignatureVerifier,
) -> Result<Challenge, ChallengeError> {
    if bytes.len() > MAX_CHALLENGE_TEXT {
        return Err(ChallengeError::Malformed("length"));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| ChallengeError::Malformed("text"))?;
    let text = text.strip_suffix('\n').unwrap_or(text);
    let mut words = text.split(' ');
    if words.next() != Some(PREFIX) {
        return Err(ChallengeError::Malformed("format version"));
    }
    let serial = Serial(hex_n::<16>("card", word(&mut words, "card", 32)?)?);
    let nonce = hex_n::<32>("nonce", word(&mut words, "nonce", 64)?)?;
    let issued_at = unix("issued", word(&mut words, "issued", 20)?)?;
    let expires_at = unix("expires", word(&mut words, "expires", 20)?)?;
    let key = hex_n::<32>("key", word(&mut words, "key", 64)?)?;
    let sig = Signature(hex_n::<64>("sig", word(&mut words, "sig", 128)?)?);
    if words.next().is_some() {
        return Err(ChallengeError::Malformed("extra fields"));
    }
    let c = Challenge {
        serial,
        nonce,
        issued_at,
        expires_at,
    };
    // One spelling per challenge: a re-spelled text is not the one the server signed.
    if c.encode_signed(&key, &sig) != text.as_bytes() {
        return Err(ChallengeError::Malformed("not in canonical form"));
    }
    if key != server.fingerprint() {
        return Err(ChallengeError::OtherServer);
    }
    if !verifier.verify(server, &c.signed_message(&key), &sig) {
        return Err(ChallengeError::BadSignature);
    }
    if c.serial != *card {
        return Err(ChallengeError::OtherCard {
            challenged: c.serial,
            card: *card,
        });
    }
    if expires_at <= issued_at
        || expires_at - issued_at > MAX_CHALLENGE_LIFETIME
        || now_unix >= expires_at
    {
        return Err(ChallengeError::Expired {
            expires: expires_at,
        });
    }
    Ok(c)
}

/// What the server hands out for a card (\[0104\]): of the card's challenges not yet answered
/// (`unanswered`, in the order they were issued), the newest that is open at `now`
/// ([`Challenge::is_open`]; of two issued in the same second, the later). An older open one
/// is handed out once the newer is answered; an expired challenge never again.
pub fn to_hand_out(unanswered: &[Challenge], now: i64) -> Option<&Challenge> {
    // `max_by_key` keeps the last of equal keys: the later issued.
    unanswered
        .iter()
        .filter(|c| c.is_open(now))
        .max_by_key(|c| c.issued_at)
}

/// Where a challenge was answered: the card counter of the answer record and the time the
/// reader's clock wrote in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// The answer record's card counter: the trail up to it holds all the card's use up to
    /// the moment the challenge was issued.
    pub counter: u64,
    /// The record's `at=` (the reader's clock, informational).
    pub written_at: i64,
}

/// What counts as the answer to the challenge `nonce` of the server with key fingerprint
/// `server_key`: the first `challenge` record among `bodies` that names both. `bodies` must
/// be the records of the challenged card's trail *as verified against its registered key*
/// (every card signature, the counters, the start rule), with their counters — a hand-edited
/// record never reaches this far, and a record of another server or another challenge (a
/// replayed answer) does not match.
pub fn answer_in(
    bodies: impl IntoIterator<Item = (u64, Body)>,
    server_key: &Hash,
    nonce: &[u8; 32],
) -> Option<Answer> {
    bodies.into_iter().find_map(|(counter, b)| match &b.usage {
        Usage::Challenge {
            server_key: k,
            nonce: n,
        } if k == server_key && n == nonce => Some(Answer {
            counter,
            written_at: b.at.unix_timestamp(),
        }),
        _ => None,
    })
}

/// Where a publisher's challenge stands, as an audit reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeStatus {
    /// Answered: the card wrote the nonce at this counter.
    Answered(Answer),
    /// Not answered yet, and still handed out.
    Pending,
    /// Not answered, and no longer handed out.
    Expired,
}

impl ChallengeStatus {
    /// The status of `challenge` given the card-verified records of its card's trail
    /// (`bodies`, see [`answer_in`]) and the time `now`.
    pub fn of(
        challenge: &Challenge,
        server_key: &Hash,
        bodies: impl IntoIterator<Item = (u64, Body)>,
        now: i64,
    ) -> Self {
        match answer_in(bodies, server_key, &challenge.nonce) {
            Some(a) => Self::Answered(a),
            None if now >= challenge.expires_at => Self::Expired,
            None => Self::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::default_verifier;
    use crate::validation::ServerSecret;

    const NOW: i64 = 1_780_000_000;

    fn setup() -> (ServerSecret, Challenge) {
        let s = ServerSecret::random(&mut rand_core::OsRng);
        let c = Challenge::new(Serial([7; 16]), NOW, 3600, &mut rand_core::OsRng).unwrap();
        (s, c)
    }

    #[test]
    fn a_signed_challenge_opens_for_its_card_and_server_only() {
        let (s, c) = setup();
        let signed = s.sign_challenge(&c);
        assert!(signed.len() <= MAX_CHALLENGE_TEXT);
        let v = default_verifier();
        assert_eq!(
            open_challenge(&signed, s.public(), &Serial([7; 16]), NOW + 1, v).unwrap(),
            c
        );
        // A trailing newline (a proxy's) is fine; anything else is not.
        let mut nl = signed.clone();
        nl.push(b'\n');
        assert!(open_challenge(&nl, s.public(), &Serial([7; 16]), NOW, v).is_ok());
        // Another server's key (the reader's own server, or anyone in between).
        let other = ServerSecret::random(&mut rand_core::OsRng);
        assert_eq!(
            open_challenge(
                &other.sign_challenge(&c),
                s.public(),
                &Serial([7; 16]),
                NOW,
                v
            ),
            Err(ChallengeError::OtherServer)
        );
        // Another card's challenge.
        assert!(matches!(
            open_challenge(&signed, s.public(), &Serial([8; 16]), NOW, v),
            Err(ChallengeError::OtherCard { .. })
        ));
        // Expired by the clock given.
        assert!(matches!(
            open_challenge(&signed, s.public(), &Serial([7; 16]), NOW + 3600, v),
            Err(ChallengeError::Expired { .. })
        ));
        // Every byte changed: refused, never a panic, never another challenge accepted.
        for i in 0..signed.len() {
            let mut bad = signed.clone();
            bad[i] ^= 0x01;
            let r = open_challenge(&bad, s.public(), &Serial([7; 16]), NOW, v);
            assert!(r.is_err(), "byte {i} changed was accepted");
        }
    }

    #[test]
    fn malformed_challenges_are_named() {
        let (s, c) = setup();
        let signed = String::from_utf8(s.sign_challenge(&c)).unwrap();
        let v = default_verifier();
        let cases: Vec<(String, &str)> = vec![
            (
                signed.replace("tally-challenge/1", "tally-challenge/2"),
                "version",
            ),
            (signed.replace(" card=", " kard="), "card"),
            (
                signed.replace(&format!("issued={NOW}"), &format!("issued=0{NOW}")),
                "issued",
            ),
            (format!("{signed} x=1"), "extra"),
            (
                signed.replace(&c.nonce_hex(), &c.nonce_hex().to_uppercase()),
                "canonical",
            ),
            (signed[..signed.len() - 2].to_string(), "sig"),
            ("x".repeat(600), "length"),
        ];
        for (text, want) in cases {
            let e = open_challenge(text.as_bytes(), s.public(), &Serial([7; 16]), NOW, v)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
        assert_eq!(
            open_challenge(&[0xff, 0xfe], s.public(), &Serial([7; 16]), NOW, v),
            Err(ChallengeError::Malformed("text"))
        );
    }

    #[test]
    fn lifetimes_are_bounded() {
        for bad in [0, 59, MAX_CHALLENGE_LIFETIME + 1, -5] {
            assert_eq!(
                Challenge::new(Serial([1; 16]), NOW, bad, &mut rand_core::OsRng),
                Err(ChallengeError::Lifetime)
            );
        }
    }

    #[test]
    fn the_newest_open_challenge_is_handed_out() {
        let mk = |issued: i64, life: i64| {
            Challenge::new(Serial([1; 16]), issued, life, &mut rand_core::OsRng).unwrap()
        };
        let old = mk(NOW - 100, 3600);
        let new = mk(NOW - 10, 3600);
        let expired = mk(NOW - 7200, 3600);
        let future = mk(NOW + 50, 3600);
        let all = [old.clone(), new.clone(), expired.clone(), future];
        assert_eq!(to_hand_out(&all, NOW), Some(&new));
        // Two in one second: the later issued.
        let twin = mk(NOW - 10, 3600);
        assert_eq!(
            to_hand_out(&[old.clone(), new.clone(), twin.clone()], NOW),
            Some(&twin)
        );
        assert_eq!(to_hand_out(&[expired], NOW), None);
        assert_eq!(to_hand_out(&[], NOW), None);
    }

    #[test]
    fn only_the_record_of_this_challenge_and_server_answers_it() {
        let (s, c) = setup();
        let key = s.public().fingerprint();
        let other = Challenge::new(Serial([7; 16]), NOW, 3600, &mut rand_core::OsRng).unwrap();
        let foreign = ServerSecret::random(&mut rand_core::OsRng);
        let bodies = vec![
            (10, Body::at_unix(Usage::Genesis, NOW)),
            // The nonce as a plain nonce record: not an answer.
            (
                11,
                Body::at_unix(
                    Usage::Nonce {
                        value: c.nonce_hex(),
                    },
                    NOW,
                ),
            ),
            // The right nonce under another server's key: not this server's answer.
            (12, c.answer_body(foreign.public(), NOW)),
            // Another challenge's answer (a replay for this one): not an answer.
            (13, other.answer_body(s.public(), NOW)),
        ];
        assert_eq!(answer_in(bodies.clone(), &key, &c.nonce), None);
        assert_eq!(
            ChallengeStatus::of(&c, &key, bodies.clone(), NOW),
            ChallengeStatus::Pending
        );
        assert_eq!(
            ChallengeStatus::of(&c, &key, bodies.clone(), NOW + 3600),
            ChallengeStatus::Expired
        );
        let mut with = bodies;
        with.push((14, c.answer_body(s.public(), NOW + 5)));
        with.push((15, c.answer_body(s.public(), NOW + 9)));
        assert_eq!(
            ChallengeStatus::of(&c, &key, with, NOW + 7200),
            ChallengeStatus::Answered(Answer {
                counter: 14,
                written_at: NOW + 5
            })
        );
    }
}
