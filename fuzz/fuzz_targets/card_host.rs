//! The host side: every answer a hostile card or reader can give is parsed without panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tally_core::card::{Card, CardBackend, CardTransaction, TransportError};

struct Replay(Vec<Vec<u8>>);

struct Tx<'a>(&'a mut Vec<Vec<u8>>);

impl CardTransaction for Tx<'_> {
    fn transmit(&mut self, _command: &[u8]) -> Result<Vec<u8>, TransportError> {
        if self.0.is_empty() { Err(TransportError::CardRemoved) } else { Ok(self.0.remove(0)) }
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
        let _ = s.sign_and_increment(&[0; 32]);
    }
});
