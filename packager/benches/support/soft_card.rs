//! A card's signing key held in software: the benchmarks' stand-in for the reader's card,
//! which signs each VAL_REQ as a trail record (T32). The server cannot tell the two apart;
//! what it costs is the signature itself, not an APDU or a trail write.

use tally_core::card::{CardExport, CardIdentity, Serial, signed_message};
use tally_core::crypto::{PublicKey, sign_low_s};
use tally_core::trail::Body;
use tally_core::trail::record::h1;
use tally_core::validation::{CardProof, RequestSigner};

/// One card's key and counter.
pub struct SoftCard {
    key: p256::ecdsa::SigningKey,
    serial: Serial,
    counter: u64,
}

impl SoftCard {
    /// A fresh key for the card `serial`.
    pub fn new(serial: Serial) -> Self {
        Self {
            key: p256::ecdsa::SigningKey::random(&mut rand_core::OsRng),
            serial,
            counter: 0,
        }
    }

    /// The same key for another copy on this card: a counter of its own is enough, since
    /// the server orders one copy's requests.
    pub fn for_another_copy(&self) -> Self {
        Self {
            key: self.key.clone(),
            serial: self.serial,
            counter: 0,
        }
    }

    /// The card file a publisher registers (`customer add --card`): its identity and a
    /// key-agreement key (the benchmarks never decrypt, so a fresh one).
    pub fn export(&self) -> String {
        let agreement = p256::SecretKey::random(&mut rand_core::OsRng);
        CardExport {
            identity: self.identity(),
            agreement_key: Some(PublicKey::from_verifying_key(
                &p256::ecdsa::VerifyingKey::from(agreement.public_key()),
            )),
            attestation: None,
            label: Some("bench card".into()),
        }
        .to_text()
    }

    /// What the publisher registers for this card.
    pub fn identity(&self) -> CardIdentity {
        CardIdentity {
            serial: self.serial,
            public_key: PublicKey::from_verifying_key(self.key.verifying_key()),
            origin: 0,
        }
    }
}

impl RequestSigner for SoftCard {
    fn sign_request(&mut self, body: &Body) -> Result<CardProof, String> {
        let mut nonce = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
        let h = h1(&nonce, body.encode().as_bytes());
        let signature = sign_low_s(&self.key, &signed_message(&h, &self.serial, self.counter));
        let proof = CardProof {
            serial: self.serial,
            nonce,
            counter: self.counter,
            signature,
        };
        self.counter += 1;
        Ok(proof)
    }
}
