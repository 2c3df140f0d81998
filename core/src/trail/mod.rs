//! The audit trail of EP 0 895 148 (\[0056\]–\[0061\], \[0095\], \[0098\]–\[0102\]).
//!
//! A trail belongs to one card. Each record is signed by the card over
//! `hash(hash(nonce, body), serial, counter)` and the card's counter only goes up, so
//! the records of a trail must carry consecutive counters from the card's origin up to
//! the card's counter − 1. Anything else — a changed byte, a hole, a swap, a truncated
//! tail, an old copy put back, records from another card — breaks that chain
//! (\[0050\], \[0061\]).
//!
//! [`Trail::write`] is the Write routine of \[0059\]; [`Trail::validate`] is ValidateTrail
//! of \[0060\]. Both run under a lock on the trail file and inside one card transaction:
//! that is the synchronisation role of the rental server (\[0058\]). A [`Trail`] kept open
//! remembers how far it has verified, so re-validation only checks new records.

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
pub mod verify;
mod with_card;
mod write;

pub use archive::Archive;
pub use body::{Body, BodyError, LicenceId, Usage};
pub use error::{CrashPoint, TrailError};
pub use handle::{MAX_TRAIL_BYTES, Trail};
pub use intent::intent_path;
pub use record::Record;
pub use with_card::Validation;
pub use write::Reconciled;
