//! The audit trail of EP 0 895 148 (\[0056\]–\[0061\], \[0095\], \[0098\]–\[0102\]).
//!
//! A trail belongs to one card. Each record is signed by the card over
//! `hash(hash(nonce, body), serial, counter)` and the card's counter only goes up, so
//! the records of a trail must carry consecutive counters from the card's origin up to
//! the card's counter − 1. Anything else — a changed byte, a hole, a swap, a truncated
//! tail, an old copy put back, records from another card — breaks that chain
//! (\[0050\], \[0061\]).
//!
//! [`Trail::write`] is the Write routine of \[0059\]; [`Trail::verify`] is ValidateTrail
//! of \[0060\]. Both run under a lock on the trail file and inside one card transaction:
//! that is the synchronisation role of the rental server (\[0058\]). A [`Trail`] kept open
//! remembers how far it has verified, so verifying again only checks new records.
//!
//! ## Words
//!
//! - *verify*, *verification*: checking a trail's records — card signatures, counters, the
//!   start rule — here, in the reader's process (the seed's ValidateTrail is
//!   [`Trail::verify`]).
//! - *validator record*: a record whose body a validation server signed, vouching for the
//!   records before it (\[0094\]); *vouch* is what the server does ([`validator::vouch`]).
//! - *recovery record*: a server-signed record accounting for counters lost with a trail
//!   (\[0062\]).
//! - *validation* alone is the server's VAL_REQ/VAL_OK protocol ([`crate::validation`]).
//!
//! ## Layers
//!
//! Lowest first: a module uses only modules listed before it (methods of [`Trail`]
//! included: an `impl Trail` block calls only methods of lower modules).
//!
//! | module | holds | uses |
//! |---|---|---|
//! | [`body`] | record bodies: each usage and its text format | — |
//! | [`record`] | one card-signed record: encoding, `h1`, its signature check | `body` |
//! | [`file`](mod@file) | the trail file format: header, checksummed frames | `record` |
//! | `error` | [`TrailError`] (one variant per check), `CrashPoint` (with `test-hooks`) | `body`, `file` |
//! | `intent` | the intent file saved before the card signs ([`intent_path`]) | `body`, `error` |
//! | `chain` | the chain hash, server signatures, a recovery record's and an archive anchor's checks (re-exported by [`validator`]) | `body`, `record`, `error` |
//! | `verify` | verifying records: signatures in parallel, counters, bodies, the start rule; a whole trail file in memory | `chain`, `file` and below |
//! | [`validator`] | validator records: fast start ([`validator::Vouched`]), the server's [`validator::vouch`], the reader's [`validator::check_answer`] | `verify`, `chain` and below |
//! | `handle` | the [`Trail`] handle: opening and re-reading the file, accessors, incremental verification with the fast start | `verify`, `validator`, `intent`, `file` and below |
//! | `mirror` | the mirror copy on another medium (\[0062\]) | `handle`, `file`, `error` |
//! | `write` | creating a trail, Write (\[0059\]), reconciling with the card ([`Reconciled`]), crash points | `handle`, `mirror`, `intent` and below |
//! | `with_card` | ValidateTrail (\[0060\]): [`Trail::verify`], [`Trail::check_with_card`], [`Verification`] | `write`, `handle` |
//! | `archive` | [`Trail::archive`]: moving vouched-for records out ([`Archive`]) | `handle`, `validator`, `file` |
//! | `restore` | [`Trail::restore`] and [`Trail::sign_detached`]: a lost trail back from the server's backup (\[0062\]) | `write`, `verify`, `validator` and below |

mod archive;
pub mod body;
mod chain;
mod error;
pub mod file;
mod handle;
mod intent;
mod mirror;
pub mod record;
mod restore;
pub mod validator;
/// Internal: the crate's own tests reach it through the `test-hooks` feature.
#[cfg(feature = "test-hooks")]
pub mod verify;
#[cfg(not(feature = "test-hooks"))]
pub(crate) mod verify;
mod with_card;
mod write;

pub use archive::Archive;
pub use body::{Body, BodyError, LicenceId, Usage};
#[cfg(feature = "test-hooks")]
pub use error::CrashPoint;
pub use error::TrailError;
pub use handle::{MAX_TRAIL_BYTES, Trail};
pub use intent::intent_path;
pub use record::Record;
pub use with_card::Verification;
pub use write::Reconciled;
