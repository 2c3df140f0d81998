//! The restore endpoint's messages (\[0062\], T17, T21, T25): `tally-pack serve` calls
//! `ServerSecret::open_restore_request` on the body of `POST /v1/trail/restore`, then
//! `plan_recovery`; the reader opens the answer with `open_restore_answer`. Arbitrary bytes
//! never panic; an edited valid request never opens unless unchanged; an edited request
//! record never gets a recovery planned unless unchanged (the card signature covers it);
//! an edited answer never opens unless unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tally_core::card::CardIdentity;
use tally_core::trail::body::LostCharge;
use tally_core::trail::file::Header;
use tally_core::trail::{Record, Trail};
use tally_core::validation::{
    AnswerKey, RestoreRequest, ServerSecret, open_restore_answer, plan_recovery,
    restore_request_body, seal_restore_answer, seal_restore_request,
};

#[path = "../common/mod.rs"]
mod common;

use common::Fixed;

const NOW: i64 = 1_764_000_000;

struct Base {
    server: ServerSecret,
    identity: CardIdentity,
    record: Record,
    envelope: Vec<u8>,
    /// The reader's key for the answer.
    key: AnswerKey,
    answer: Vec<u8>,
    backup: Vec<u8>,
}

fn base() -> &'static Base {
    static B: OnceLock<Base> = OnceLock::new();
    B.get_or_init(|| {
        let server = ServerSecret::from_scalar(&[0x11; 32]).expect("scalar");
        let (dir, mut card, identity) = common::fuzz_card("restore", 5);
        let record = Trail::sign_detached(
            &dir.join("t.trail"),
            &mut card,
            &identity,
            &restore_request_body(server.public(), NOW),
        )
        .expect("signed request");
        let _ = std::fs::remove_dir_all(&dir);
        let (envelope, key) =
            seal_restore_request(server.public(), &identity.serial, &record, &mut Fixed(9))
                .expect("sealed");
        let (req, server_key) = server.open_restore_request(&envelope).expect("opens");
        let backup = Header::for_card(&identity, identity.origin)
            .encode()
            .to_vec();
        let plan = plan_recovery(
            &server,
            &identity,
            &req,
            &backup,
            None,
            vec![],
            LostCharge::Full,
            NOW,
        )
        .expect("plan");
        let answer = seal_restore_answer(&server_key, plan.body.encode().as_bytes(), &backup)
            .expect("answer");
        Base {
            server,
            identity,
            record,
            envelope,
            key,
            answer,
            backup,
        }
    })
}

fn plan(b: &Base, req: &RestoreRequest) -> bool {
    plan_recovery(
        &b.server,
        &b.identity,
        req,
        &b.backup,
        None,
        vec![],
        LostCharge::Full,
        NOW,
    )
    .is_ok()
}

fuzz_target!(|data: &[u8]| {
    let b = base();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        // Arbitrary bytes as a request body and as an answer.
        0 => {
            if let Ok((req, _)) = b.server.open_restore_request(rest) {
                assert!(!plan(b, &req) || req.record == b.record);
            }
            let _ = open_restore_answer(&b.key, rest);
        }
        // A valid request, edited: opens only unchanged.
        1 => {
            let edited = common::mutate(&b.envelope, rest);
            if let Ok((req, _)) = b.server.open_restore_request(&edited) {
                assert!(edited == b.envelope, "an edited restore request opened");
                assert!(plan(b, &req));
            }
        }
        // The card-signed record, edited: a recovery is planned only for the original.
        2 => {
            let edited = common::mutate(&b.record.encode(), rest);
            if let Ok(record) = Record::decode(&edited) {
                let req = RestoreRequest {
                    serial: b.identity.serial,
                    record,
                };
                if plan(b, &req) {
                    assert!(
                        req.record == b.record,
                        "an edited request record was honoured"
                    );
                }
            }
        }
        // A valid answer, edited: opens only unchanged.
        _ => {
            let edited = common::mutate(&b.answer, rest);
            if open_restore_answer(&b.key, &edited).is_ok() {
                assert!(edited == b.answer, "an edited restore answer opened");
            }
        }
    }
});
