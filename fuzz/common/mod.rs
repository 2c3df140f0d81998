//! Shared by the fail-closed targets: valid inputs loaded once from the test vectors,
//! and a mutation language so the fuzzer edits a valid file instead of guessing one.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// A reader's emulated card, generated from the seed `seed` (the same card every run), in a
/// fresh folder `<temp>/tally-fuzz-<name>-<pid>` with no trail `t.trail` in it yet: the
/// folder, the card and its identity. The caller removes the folder once its fixtures are
/// made (the card lives in memory from then on).
pub fn fuzz_card(
    name: &str,
    seed: u8,
) -> (
    PathBuf,
    tally_core::card::Card,
    tally_core::card::CardIdentity,
) {
    use tally_core::card::applet::CardState;
    use tally_core::card::emulated::EmulatedCard;
    let dir = std::env::temp_dir().join(format!("tally-fuzz-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let card_path = dir.join("card.state");
    let _ = std::fs::remove_file(&card_path);
    let _ = std::fs::remove_file(dir.join("t.trail"));
    EmulatedCard::create(
        &card_path,
        &CardState::generate(&mut Fixed(seed), 100, "fuzz card"),
    )
    .expect("card");
    let mut card =
        tally_core::card::Card::new(Box::new(EmulatedCard::open(&card_path).expect("card")));
    let identity = card.identity().expect("identity");
    (dir, card, identity)
}

/// `core/tests/data/<rel>`.
pub fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../core/tests/data")
        .join(rel)
}

/// The bytes of a test-vector file (header lines, a blank line, hex).
pub fn vector_bytes(rel: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(data(rel)).expect("vector file");
    let (_, hex) = text.split_once("\n\n").expect("vector: blank line");
    let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).expect("hex"), 16).expect("hex"))
        .collect()
}

/// A header field of a test-vector file.
pub fn vector_field(rel: &str, key: &str) -> String {
    let text = std::fs::read_to_string(data(rel)).expect("vector file");
    let (head, _) = text.split_once("\n\n").expect("vector: blank line");
    head.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")[..]).map(str::to_string))
        .expect("vector field")
}

/// Decodes lowercase hex.
pub fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

/// Applies the edits `ops` describes to a copy of `original`. Each edit is 4 bytes:
/// kind, offset (u16 big-endian, taken modulo the current length + 1), value.
/// Kinds: 0 xor a byte with the value (0 becomes 1, so it is a real change), 1 truncate,
/// 2 insert the value, 3 delete a byte, 4 overwrite, 5 append the value, 6 swap a byte
/// with the one `value` places further, 7 copy the byte `value` places further over it.
/// At most 16 edits; the rest of the input is ignored.
pub fn mutate(original: &[u8], ops: &[u8]) -> Vec<u8> {
    let mut b = original.to_vec();
    for op in ops.chunks_exact(4).take(16) {
        let kind = op[0] % 8;
        let at = usize::from(u16::from_be_bytes([op[1], op[2]])) % (b.len() + 1);
        let v = op[3];
        match kind {
            0 if at < b.len() => b[at] ^= v.max(1),
            1 => b.truncate(at),
            2 => b.insert(at, v),
            3 if at < b.len() => {
                b.remove(at);
            }
            4 if at < b.len() => b[at] = v,
            5 => b.push(v),
            6 | 7 if at < b.len() => {
                let other = (at + usize::from(v)) % b.len();
                if kind == 6 {
                    b.swap(at, other);
                } else {
                    b[at] = b[other];
                }
            }
            _ => {}
        }
    }
    b
}

/// A deterministic byte source (card keys, ephemeral keys), so runs are reproducible.
pub struct Fixed(pub u8);
impl rand_core::RngCore for Fixed {
    fn next_u32(&mut self) -> u32 {
        u32::from(self.0)
    }
    fn next_u64(&mut self) -> u64 {
        u64::from(self.0)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        dest.fill(self.0);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        dest.fill(self.0);
        Ok(())
    }
}
impl rand_core::CryptoRng for Fixed {}
