#![doc = include_str!("../README.md")]

pub mod card;
pub mod crypto;
pub mod files;
mod fsutil;
pub mod home;
pub mod icv;
mod id;
pub mod keyfile;
pub mod loans;
pub mod nonce;
pub mod package;
pub mod policy;
pub mod receipt;
pub mod rental;
pub mod trail;
pub mod validation;
pub mod vendor;

pub use card::{
    Card, CardBackend, CardError, CardIdentity, CardTransaction, Serial, TransportError,
};
pub use crypto::{PublicKey, Signature, SignatureVerifier};
