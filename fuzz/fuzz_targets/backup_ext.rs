//! The automatic backup's messages (\[0094\], \[0062\], T21, T25): the server's answer to a
//! vouch, which the reader checks with `check_answer` before writing anything, and the
//! backup extension `tally-pack serve` opens with `ServerSecret::open_backup_extension` on
//! the body of `POST /v1/trail/extend` and applies with `extend_backup`. Arbitrary bytes
//! never panic; an edited answer is accepted only unchanged; an edited extension never
//! opens unless unchanged; an edited trail fragment extends the backup only into exactly
//! the backup the genuine fragment makes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tally_core::card::CardIdentity;
use tally_core::trail::file::{HEADER_LEN, parse_frames};
use tally_core::trail::validator::{check_answer, vouch};
use tally_core::trail::{Body, LicenceId, Record, Trail, Usage};
use tally_core::validation::{
    ServerSecret, extend_backup, extension_fragment, seal_backup_extension,
};

#[path = "../common/mod.rs"]
mod common;

use common::Fixed;

const NOW: i64 = 1_764_000_000;

struct Base {
    server: ServerSecret,
    identity: CardIdentity,
    /// The trail the server vouched for (its backup) and its records.
    backup: Vec<u8>,
    sent: Vec<Record>,
    /// The server's answer, as sent.
    answer: Vec<u8>,
    /// The records the reader wrote for it, as a fragment and sealed.
    fragment: Vec<u8>,
    envelope: Vec<u8>,
    /// The backup the genuine fragment makes.
    extended: Vec<u8>,
}

fn base() -> &'static Base {
    static B: OnceLock<Base> = OnceLock::new();
    B.get_or_init(|| {
        let server = ServerSecret::from_scalar(&[0x22; 32]).expect("scalar");
        let (dir, mut card, identity) = common::fuzz_card("backup", 7);
        let path = dir.join("t.trail");
        let mut trail = Trail::create(&path, &mut card, &identity).expect("trail");
        for i in 0..6u8 {
            trail
                .write(
                    &mut card,
                    &Body::at_unix(
                        Usage::Open {
                            licence: LicenceId([i % 5; 16]),
                        },
                        NOW,
                    ),
                )
                .expect("write");
        }
        let backup = std::fs::read(&path).expect("read");
        let sent = parse_frames(&backup[HEADER_LEN..], HEADER_LEN as u64, 0)
            .expect("frames")
            .records;
        let v = vouch(&server, &identity, &backup, NOW).expect("vouched");
        let answer = v.encode();
        let bodies: Vec<Body> = v.bodies().cloned().collect();
        let written = trail.write_all(&mut card, &bodies).expect("answer written");
        let _ = std::fs::remove_dir_all(&dir);
        let fragment = extension_fragment(&identity, &written);
        let envelope = seal_backup_extension(server.public(), &identity, &written, &mut Fixed(9))
            .expect("sealed");
        let extended = extend_backup(&server, &identity, &backup, &fragment)
            .expect("extends")
            .trail
            .to_vec();
        Base {
            server,
            identity,
            backup,
            sent,
            answer,
            fragment,
            envelope,
            extended,
        }
    })
}

fn accepts(b: &Base, answer: &[u8]) -> bool {
    check_answer(
        answer,
        b.server.public(),
        &b.identity,
        b.identity.origin,
        &b.sent,
    )
    .is_ok()
}

fuzz_target!(|data: &[u8]| {
    let b = base();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        // Arbitrary bytes as an answer, an extension envelope and a fragment.
        0 => {
            assert!(!accepts(b, rest) || rest == b.answer);
            let _ = b.server.open_backup_extension(rest);
            if let Ok(x) = extend_backup(&b.server, &b.identity, &b.backup, rest) {
                assert!(
                    x.trail[..] == b.extended[..],
                    "a foreign fragment extended the backup"
                );
            }
        }
        // The server's answer, edited: accepted only unchanged.
        1 => {
            let edited = common::mutate(&b.answer, rest);
            if accepts(b, &edited) {
                assert!(edited == b.answer, "an edited answer was accepted");
            }
        }
        // The extension envelope, edited: opens only unchanged.
        2 => {
            let edited = common::mutate(&b.envelope, rest);
            if b.server.open_backup_extension(&edited).is_ok() {
                assert!(edited == b.envelope, "an edited backup extension opened");
            }
        }
        // The fragment, edited: extends only into the genuine extension.
        _ => {
            let edited = common::mutate(&b.fragment, rest);
            if let Ok(x) = extend_backup(&b.server, &b.identity, &b.backup, &edited) {
                assert!(
                    x.trail[..] == b.extended[..],
                    "an edited fragment extended the backup"
                );
            }
        }
    }
});
