//! The host side: every answer a hostile card or reader can give is parsed without panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tally_core::card::{Card, CardBackend, CardTransaction, TransportError};

/// The P-256 generator, a valid point to DECIPHER.
const P: [u8; 65] = [
    0x04, 0x6b, 0x17, 0xd1, 0xf2, 0xe1, 0x2c, 0x42, 0x47, 0xf8, 0xbc, 0xe6, 0xe5, 0x63, 0xa4, 0x40,
    0xf2, 0x77, 0x03, 0x7d, 0x81, 0x2d, 0xeb, 0x33, 0xa0, 0xf4, 0xa1, 0x39, 0x45, 0xd8, 0x98, 0xc2,
    0x96, 0x4f, 0xe3, 0x42, 0xe2, 0xfe, 0x1a, 0x7f, 0x9b, 0x8e, 0xe7, 0xeb, 0x4a, 0x7c, 0x0f, 0x9e,
    0x16, 0x2b, 0xce, 0x33, 0x57, 0x6b, 0x31, 0x5e, 0xce, 0xcb, 0xb6, 0x40, 0x68, 0x37, 0xbf, 0x51,
    0xf5,
];

struct Replay(Vec<Vec<u8>>);

struct Tx<'a>(&'a mut Vec<Vec<u8>>);

impl CardTransaction for Tx<'_> {
    fn transmit(&mut self, _command: &[u8]) -> Result<Vec<u8>, TransportError> {
        if self.0.is_empty() {
            Err(TransportError::CardRemoved)
        } else {
            Ok(self.0.remove(0))
        }
    }
}

impl CardBackend for Replay {
    fn transaction(&mut self) -> Result<Box<dyn CardTransaction + '_>, TransportError> {
        Ok(Box::new(Tx(&mut self.0)))
    }
    fn describe(&self) -> String {
        "fuzz".into()
    }
}

fuzz_target!(|data: &[u8]| {
    // Responses: SELECT ok, then the fuzzed answers split on a length byte.
    let mut answers = vec![vec![0x90, 0x00]];
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let n = (len as usize).min(tail.len());
        answers.push(tail[..n].to_vec());
        rest = &tail[n..];
    }
    let mut card = Card::new(Box::new(Replay(answers)));
    if let Ok(mut s) = card.session() {
        let _ = s.get_counter();
        let _ = s.get_serial();
        let _ = s.get_public_key();
        let _ = s.get_last_signature();
        let _ = s.get_agreement_key();
        let _ = s.get_attestation();
        let _ = s.decipher(&tally_core::crypto::PublicKey::from_sec1(&P).expect("point"));
        let _ = s.sign_and_increment(&[0; 32]);
    }
});
