//! # tally-core
//!
//! Every rule of a Tally rental lives here, so any viewer that links this crate gets
//! the same guarantees: the card protocol ([`card`]), the card-signed audit trail of
//! EP 0 895 148 ([`trail`]), nonces ([`nonce`]) and the pinned cryptography ([`crypto`]).
//!
//! Paragraph numbers such as [0059] point into the seed patent
//! (`shared/seeds/000_3b20f9865021f37c.txt`).

pub mod card;
pub mod crypto;
pub mod fsutil;
pub mod home;
pub mod icv;
mod id;
pub mod keyfile;
pub mod nonce;
pub mod package;
pub mod policy;
pub mod rental;
pub mod trail;
pub mod validation;
pub mod vendor;

pub use card::{
    Card, CardBackend, CardError, CardIdentity, CardTransaction, Serial, TransportError,
};
pub use crypto::{PublicKey, Signature, SignatureVerifier};
