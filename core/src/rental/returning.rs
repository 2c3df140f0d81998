//! Returning a licence early (issue 13, T38): [`return_licence`] does an opening's checks —
//! the keyfile against the trusted publishers, the package for that licence from the same
//! publisher, the licence's card, ValidateTrail (\[0060\]) — then writes the card-signed
//! `return` record through Write (\[0059\]). From that record on, the licence is refused on
//! the card ([`crate::policy::Reason::Returned`]): the trail can't be rolled back past it
//! (T4), so an old trail or mirror put back fails ValidateTrail, and a restore from the
//! publisher's backup is charged by a server that knows the return
//! ([`crate::validation::recovery_terms`]).
//!
//! The record is also the publisher's proof ([`Receipt`]): it is kept in the reader's home
//! ([`crate::home::Home::receipt_path`]) and sent to the validation server that the
//! licence's vendor-signed keyfile names (`POST <server>/v1/return`, [`deliver_receipt`]) —
//! never to a server the reader names (T29); a pending receipt whose server has moved goes to
//! the address a newer keyfile of the same publisher names for the same server key
//! ([`send_pending`]). Without a server, or when it can't be reached,
//! the reader hands the receipt file over (`tally-pack returns RECEIPT`), or returns the
//! licence again later: that writes nothing and sends the saved receipt once more. A receipt
//! the server could not take is also marked pending (`<licence>.pending` beside it, holding
//! the licence's vendor-signed keyfile), and the next session of any licence that contacts a
//! server sends it in the background to the server its own keyfile names
//! ([`send_pending`]), so the loan's place is freed without the reader asking.

use super::Problem;
use super::online::Transport;
use super::open::{LicenceReady, OpenInputs, validate_licence};
use crate::keyfile::VerifiedKeyfile;
use crate::receipt::{MAX_RECEIPT, Receipt};
use std::path::PathBuf;
use std::time::Duration;

/// How long a return waits for the validation server.
pub const RETURN_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest answer read from the server (one line of text).
const MAX_ANSWER: u64 = 4096;

/// What became of a receipt sent to the publisher's validation server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The licence's keyfile names no validation server: the reader hands the receipt over
    /// as a file.
    NoServer,
    /// The server verified the receipt and recorded the return (the loan's place is free).
    Accepted {
        /// The URL the receipt went to.
        endpoint: String,
        /// The server's one-line answer.
        answer: String,
    },
    /// The server refused the receipt (HTTP 4xx), with its reason.
    Refused {
        /// The URL the receipt went to.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// The server's reason.
        reason: String,
    },
    /// The server could not be reached or could not take the receipt now (no answer, or
    /// HTTP 5xx): the receipt is still in the reader's home, to hand over or send later.
    Unreachable {
        /// The URL the receipt was for.
        endpoint: String,
        /// What went wrong.
        reason: String,
    },
}

/// A licence returned.
#[derive(Debug)]
pub struct Returned {
    /// The keyfile, its signature verified.
    pub keyfile: VerifiedKeyfile,
    /// The document's title (from its signed package header).
    pub title: String,
    /// The receipt: the card-signed `return` record.
    pub receipt: Receipt,
    /// Where the receipt was saved in the reader's home.
    pub saved: PathBuf,
    /// What the publisher's validation server made of it.
    pub delivery: Delivery,
    /// The licence was returned before (`receipt` is the one saved then): this call only
    /// sent the receipt again.
    pub again: bool,
    /// The server could not be reached and the receipt is marked pending with the licence's
    /// keyfile: the next session of any licence that contacts a server sends it in the
    /// background ([`send_pending`]). False when it went, when the licence names no server,
    /// or when the marker could not be written (or the keyfile changed meanwhile).
    pub pending: bool,
}

/// Returns the licence of `inputs.keyfile` (module docs): every check of an opening up to
/// ValidateTrail, then the `return` record, the receipt saved in the home, and the receipt
/// sent to the keyfile's validation server through `inputs.transport` when it names one.
/// When the licence was already returned on this card, the receipt saved then is sent
/// again ([`Returned::again`]: the server was unreachable, or its answer lost); refused
/// ([`Problem::Refused`] with [`crate::policy::Reason::Returned`]) when no receipt of this
/// card for this licence is saved in the home.
pub fn return_licence(inputs: &OpenInputs) -> Result<Returned, Problem> {
    let LicenceReady {
        keyfile,
        header,
        identity,
        mut meter,
        clock: _,
    } = validate_licence(inputs)?;
    let saved = inputs.home.receipt_path(&keyfile.licence());
    let record = match meter.record_return() {
        Ok(record) => record,
        // Returned already on this card: the receipt saved then is sent again (its server was
        // unreachable then, or its answer was lost). Only a receipt this card signed for
        // this licence is sent; the server answers a replay as it answered the first.
        Err(Problem::Refused(crate::policy::Reason::Returned { on })) => {
            let Some(receipt) = saved_receipt(&saved, &identity, &keyfile.licence()) else {
                return Err(Problem::Refused(crate::policy::Reason::Returned { on }));
            };
            let delivery = send(&keyfile, &receipt, inputs);
            let pending = mark_pending(&inputs.home, &keyfile, &inputs.keyfile, &delivery);
            return Ok(Returned {
                keyfile,
                title: header.title().to_string(),
                receipt,
                saved,
                delivery,
                again: true,
                pending,
            });
        }
        Err(e) => return Err(e),
    };
    let receipt = Receipt::new(&identity, record)
        .map_err(|e| Problem::Other(format!("the return record makes no receipt: {e}")))?;
    // Saved before anything is sent: the return is done, and the receipt is the reader's
    // proof of it whatever the network does.
    if let Some(dir) = saved.parent() {
        std::fs::create_dir_all(dir).map_err(|e| {
            Problem::Other(format!(
                "the licence was returned, but its receipt could not be saved in {}: {e}",
                dir.display()
            ))
        })?;
    }
    crate::files::atomic_write(&saved, &receipt.encode()).map_err(|e| {
        Problem::Other(format!(
            "the licence was returned, but its receipt could not be saved as {}: {e}",
            saved.display()
        ))
    })?;
    let delivery = send(&keyfile, &receipt, inputs);
    let pending = mark_pending(&inputs.home, &keyfile, &inputs.keyfile, &delivery);
    Ok(Returned {
        keyfile,
        title: header.title().to_string(),
        receipt,
        saved,
        delivery,
        again: false,
        pending,
    })
}

/// Sends `receipt` to the server the vendor-signed keyfile names (never one the reader
/// names, T29).
fn send(keyfile: &VerifiedKeyfile, receipt: &Receipt, inputs: &OpenInputs) -> Delivery {
    match keyfile.server() {
        Some(s) => deliver_receipt(receipt, &s.url, inputs.transport.as_ref(), RETURN_TIMEOUT),
        None => Delivery::NoServer,
    }
}

/// The marker of a receipt saved in the home and not yet taken by its server:
/// `<home>/returns/<licence>.pending`, holding the licence's keyfile (whose vendor-signed
/// server address it goes to). A marker written before 2026-12-03 holds the hex fingerprint
/// of that server's key instead: sent by a session of a licence naming that server.
fn pending_path(home: &crate::home::Home, licence: &crate::trail::LicenceId) -> PathBuf {
    home.receipt_path(licence).with_extension(PENDING_EXTENSION)
}

/// The extension of a pending receipt's marker.
const PENDING_EXTENSION: &str = "pending";

/// Pending receipts one session sends at most (each a request to its server, or two when its
/// server has moved).
const MAX_PENDING_SENT: usize = 16;

/// Marks the receipt of `keyfile`'s licence pending when its server could not take it, and
/// unmarks it once the server answered (accepted, or refused: a verdict, not worth sending
/// again) or when there is nowhere to send it (no server). The marker holds the keyfile's
/// bytes, read again from `path` and kept only if they are the keyfile verified (the file
/// may have changed since: then no marker, since a server key's fingerprint — the older
/// form — names no publisher). Best effort: the receipt itself is saved, and `return` sends
/// it again anyway. Whether the receipt is marked pending now.
fn mark_pending(
    home: &crate::home::Home,
    keyfile: &VerifiedKeyfile,
    path: &std::path::Path,
    delivery: &Delivery,
) -> bool {
    let marker = pending_path(home, &keyfile.licence());
    let bytes = match (delivery, keyfile.server()) {
        (Delivery::Unreachable { .. }, Some(_)) => {
            super::open::read_bounded(path, crate::keyfile::MAX_KEYFILE_BYTES as u64, "keyfile")
                .ok()
                .filter(|b| crate::crypto::sha256(b) == *keyfile.file_hash())
        }
        _ => None,
    };
    match bytes {
        Some(bytes) => crate::files::atomic_write(&marker, &bytes).is_ok(),
        None => {
            let _ = std::fs::remove_file(&marker);
            false
        }
    }
}

/// What became of one pending receipt sent: its licence, and the server's answer.
pub type PendingSent = (crate::trail::LicenceId, Delivery);

/// Sends the receipts marked pending in `home`, each to the validation server its own
/// licence's keyfile names: the keyfile kept in the marker, verified again against
/// `trusted` (the publishers the reader's viewer trusts) and naming the marker's licence —
/// so the address is a vendor-signed keyfile's, never one typed into the marker (T29: a
/// marker the reader edits can at worst send a receipt of theirs to a server one of their
/// trusted publishers named, which refuses it; and a reader who trusts a vendor of their
/// own only sends their own receipt somewhere the publisher never hears of — `return`
/// still owes it to the publisher's server). When that address cannot be reached and
/// `session`'s keyfile, signed by the same publisher, names the same server key at another,
/// that one is tried: the publisher's newer address, should the server have moved. A marker
/// of the older form (a server key's fingerprint) is sent to `session`'s server when that is
/// the server it names. Run in the background of a session ([`super::Opened::start`]), on a
/// thread of its own. Each file is read with a size limit,
/// and the receipt must parse and name the licence its file does; the server checks its
/// card signature. A receipt the server answered is unmarked. At most 16 are sent per
/// session, starting at a random marker (so markers of a dead server do not take every
/// turn); once a server could not be reached, its other markers wait for the next session.
/// Returns what became of each one sent.
pub fn send_pending(
    home: &crate::home::Home,
    trusted: &[crate::vendor::VendorPublic],
    session: Option<&VerifiedKeyfile>,
    transport: &dyn Transport,
) -> Vec<PendingSent> {
    let Ok(entries) = std::fs::read_dir(home.returns_dir()) else {
        return Vec::new();
    };
    let mut markers: Vec<PathBuf> = entries
        .flatten()
        .take(4096)
        .map(|e| e.path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some(PENDING_EXTENSION))
        .collect();
    if !markers.is_empty() {
        let start = rand::Rng::gen_range(&mut rand::thread_rng(), 0..markers.len());
        markers.rotate_left(start);
    }
    let mut sent = Vec::new();
    let mut unreached: Vec<String> = Vec::new();
    for marker in markers {
        if sent.len() >= MAX_PENDING_SENT {
            break;
        }
        let Some(licence) = marker
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(crate::trail::LicenceId::from_hex)
        else {
            continue;
        };
        let Ok(named) =
            super::open::read_bounded(&marker, crate::keyfile::MAX_KEYFILE_BYTES as u64, "marker")
        else {
            continue;
        };
        let urls: Vec<String> = pending_servers(&named, &licence, trusted, session)
            .into_iter()
            .filter(|u| !unreached.contains(u))
            .collect();
        if urls.is_empty() {
            continue;
        }
        let receipt = match read_receipt(&home.receipt_path(&licence)) {
            Some(r) if r.licence == licence => r,
            _ => continue,
        };
        let mut delivery = None;
        for url in urls {
            let d = deliver_receipt(&receipt, &url, transport, RETURN_TIMEOUT);
            let reached = !matches!(d, Delivery::Unreachable { .. });
            if !reached {
                unreached.push(url);
            }
            delivery = Some(d);
            if reached {
                let _ = std::fs::remove_file(&marker);
                break;
            }
        }
        if let Some(d) = delivery {
            sent.push((licence, d));
        }
    }
    sent
}

/// The servers a pending marker's receipt goes to, in the order to try them: the URL of the
/// keyfile it holds, when that verifies under `trusted` and is `licence`'s, then
/// `session`'s URL when the same publisher signed it and it names the same server key at
/// another address (the publisher's newer one, should the server have moved: a server key
/// is public, so the key alone would let another trusted publisher take the receipt); for a
/// marker of the older form (a server key's hex fingerprint, which names no publisher),
/// `session`'s server when it is that one. Empty: not sent this time (the marker stays, and
/// `return` sends the receipt again).
fn pending_servers(
    marker: &[u8],
    licence: &crate::trail::LicenceId,
    trusted: &[crate::vendor::VendorPublic],
    session: Option<&VerifiedKeyfile>,
) -> Vec<String> {
    if let Ok(keyfile) = crate::keyfile::Keyfile::open(marker, trusted) {
        let Some(own) = keyfile.server().filter(|_| keyfile.licence() == *licence) else {
            return Vec::new();
        };
        let mut urls = vec![own.url.clone()];
        if let Some(session) = session
            && let Some(s) = session.server()
            && session.vendor() == keyfile.vendor()
            && s.public_key == own.public_key
            && s.url != own.url
        {
            urls.push(s.url.clone());
        }
        return urls;
    }
    session
        .and_then(VerifiedKeyfile::server)
        .filter(|s| marker.trim_ascii() == hex::encode(s.public_key.fingerprint()).as_bytes())
        .map(|s| vec![s.url.clone()])
        .unwrap_or_default()
}

/// The receipt saved in the home at `path` when it is this card's signed return of
/// `licence`; `None` for a missing, oversized, malformed or foreign file (the home is the
/// reader's: a file put there proves nothing until it verifies).
fn saved_receipt(
    path: &std::path::Path,
    identity: &crate::card::CardIdentity,
    licence: &crate::trail::LicenceId,
) -> Option<Receipt> {
    let receipt = read_receipt(path)?;
    receipt.verify(identity, licence).ok()?;
    Some(receipt)
}

/// The receipt in the file at `path`, read with its size limit; `None` for a missing,
/// oversized or malformed file (nothing in it is verified yet).
fn read_receipt(path: &std::path::Path) -> Option<Receipt> {
    let bytes = super::open::read_bounded(path, MAX_RECEIPT as u64, "receipt").ok()?;
    Receipt::parse(&bytes).ok()
}

/// Sends `receipt` to the validation server at `url` (`POST <url>/v1/return`, the receipt's
/// bytes as the body) and sorts the answer. The server checks the receipt itself against
/// the card it registered: nothing the transport returns changes the reader's trail.
pub fn deliver_receipt(
    receipt: &Receipt,
    url: &str,
    transport: &dyn Transport,
    timeout: Duration,
) -> Delivery {
    let endpoint = format!("{}/v1/return", url.trim_end_matches('/'));
    let bytes = receipt.encode();
    debug_assert!(bytes.len() <= MAX_RECEIPT);
    match super::online::post_to(transport, url, "/v1/return", &bytes, timeout, MAX_ANSWER) {
        Err(super::Unreached::BadUrl(_)) => Delivery::Unreachable {
            endpoint,
            reason: "the keyfile's server address is not an http(s) URL".into(),
        },
        Err(super::Unreached::Unreachable { endpoint, reason }) => {
            Delivery::Unreachable { endpoint, reason }
        }
        Ok((status, body)) => {
            let text = super::online::answer_text(&body);
            match status {
                200 => Delivery::Accepted {
                    endpoint,
                    answer: text,
                },
                // Too slow or too busy is not a verdict on the receipt.
                408 | 429 => Delivery::Unreachable {
                    endpoint,
                    reason: format!("HTTP {status}: {text}"),
                },
                400..=499 => Delivery::Refused {
                    endpoint,
                    status,
                    reason: text,
                },
                _ => Delivery::Unreachable {
                    endpoint,
                    reason: format!("HTTP {status}: {text}"),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::pending_servers;
    use crate::card::{CardIdentity, Serial};
    use crate::crypto::PublicKey;
    use crate::keyfile::{Cis, Keyfile, ServerInfo, VerifiedKeyfile};
    use crate::package::{ContentKey, DocumentId};
    use crate::policy::Limits;
    use crate::trail::LicenceId;
    use crate::vendor::VendorSecret;
    use rand_core::OsRng;

    fn key(seed: u8) -> PublicKey {
        let sk = p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap();
        PublicKey::from_verifying_key(sk.verifying_key())
    }

    /// Licence `licence`'s keyfile from `vendor`, naming the server `server_key` at `url`.
    fn keyfile(vendor: &VendorSecret, licence: u8, url: &str, server_key: &PublicKey) -> Vec<u8> {
        let agreement = p256::SecretKey::from_slice(&[0x87; 32])
            .unwrap()
            .public_key();
        let cis = Cis {
            licence: LicenceId([licence; 16]),
            document: DocumentId([0xd0; 16]),
            card: CardIdentity {
                serial: Serial([7; 16]),
                public_key: key(7),
                origin: 1007,
            },
            card_agreement_key: PublicKey::from_sec1(
                p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&agreement, false)
                    .as_bytes(),
            )
            .unwrap(),
            issuers: Vec::new(),
            customer_name: "Ada".into(),
            content_key: ContentKey::from_bytes([0x5a; 32]),
            limits: Limits::parse(b"tally-policy/1\npages 3\n").unwrap(),
            allow_emulated_card: true,
            server: Some(ServerInfo {
                url: url.into(),
                public_key: server_key.clone(),
                require_online_every_days: None,
            }),
            issued_at: time::macros::datetime!(2026-12-01 12:00:00 UTC),
        };
        Keyfile::issue(vendor, &cis, &mut OsRng).unwrap()
    }

    fn verified(bytes: &[u8], trusted: &[crate::vendor::VendorPublic]) -> VerifiedKeyfile {
        Keyfile::open(bytes, trusted).unwrap()
    }

    #[test]
    fn a_moved_server_of_the_same_publisher_is_tried_after_the_keyfiles_own_address() {
        let a = VendorSecret::generate("A Press", false, &mut OsRng).unwrap();
        let trusted = [a.public().clone()];
        let marker = keyfile(&a, 1, "http://old.example", &key(9));
        let session = verified(&keyfile(&a, 2, "https://new.example", &key(9)), &trusted);
        let urls = pending_servers(&marker, &LicenceId([1; 16]), &trusted, Some(&session));
        assert_eq!(urls, ["http://old.example", "https://new.example"]);
        // Another server key: only the keyfile's own address.
        let other = verified(&keyfile(&a, 2, "https://new.example", &key(8)), &trusted);
        let urls = pending_servers(&marker, &LicenceId([1; 16]), &trusted, Some(&other));
        assert_eq!(urls, ["http://old.example"]);
    }

    #[test]
    fn another_publisher_naming_the_same_server_key_is_never_tried() {
        // A server key is public: publisher B can put A's in a keyfile of its own.
        let a = VendorSecret::generate("A Press", false, &mut OsRng).unwrap();
        let b = VendorSecret::generate("B Press", false, &mut OsRng).unwrap();
        let trusted = [a.public().clone(), b.public().clone()];
        let marker = keyfile(&a, 1, "http://a.example", &key(9));
        let session = verified(&keyfile(&b, 2, "https://b.example", &key(9)), &trusted);
        let urls = pending_servers(&marker, &LicenceId([1; 16]), &trusted, Some(&session));
        assert_eq!(urls, ["http://a.example"]);
    }

    #[test]
    fn a_marker_of_another_licence_or_an_untrusted_publisher_goes_nowhere() {
        let a = VendorSecret::generate("A Press", false, &mut OsRng).unwrap();
        let c = VendorSecret::generate("C Press", false, &mut OsRng).unwrap();
        let trusted = [a.public().clone()];
        let session = verified(&keyfile(&a, 2, "https://a.example", &key(9)), &trusted);
        let another = keyfile(&a, 3, "http://a.example", &key(9));
        assert!(
            pending_servers(&another, &LicenceId([1; 16]), &trusted, Some(&session)).is_empty()
        );
        let untrusted = keyfile(&c, 1, "http://c.example", &key(9));
        assert!(
            pending_servers(&untrusted, &LicenceId([1; 16]), &trusted, Some(&session)).is_empty()
        );
    }

    #[test]
    fn an_older_marker_goes_only_to_the_session_server_it_names() {
        let a = VendorSecret::generate("A Press", false, &mut OsRng).unwrap();
        let trusted = [a.public().clone()];
        let session = verified(&keyfile(&a, 2, "https://a.example", &key(9)), &trusted);
        let named = hex::encode(key(9).fingerprint());
        let urls = pending_servers(
            named.as_bytes(),
            &LicenceId([1; 16]),
            &trusted,
            Some(&session),
        );
        assert_eq!(urls, ["https://a.example"]);
        let other = hex::encode(key(8).fingerprint());
        assert!(
            pending_servers(
                other.as_bytes(),
                &LicenceId([1; 16]),
                &trusted,
                Some(&session)
            )
            .is_empty()
        );
        assert!(pending_servers(named.as_bytes(), &LicenceId([1; 16]), &trusted, None).is_empty());
    }
}
