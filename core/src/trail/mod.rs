//! The audit trail of EP 0 895 148 ([0056]–[0061], [0095]).
pub mod body;
pub use body::{Body, BodyError, LicenceId, Usage};
