//! The whole restore round of [0062] in process, for the recovery and archive tests: the
//! trail is lost, the card signs a restore request, the server plans the recovery from
//! `backup`, seals its answer, and the reader checks and writes it (`Trail::restore`).

// Shared by several test crates; each uses a part.
#![allow(dead_code)]

use std::path::Path;
use tally_core::card::{Card, CardIdentity};
use tally_core::trail::body::LostCharge;
use tally_core::trail::{LicenceId, Trail, TrailError};
use tally_core::validation::{
    ServerSecret, open_restore_answer, plan_recovery, restore_request_body, seal_restore_answer,
    seal_restore_request,
};

/// Now, as a Unix time.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Loses the trail at `trail` (if there is one) and restores it through `server` from
/// `backup`, charging `licences` as `charge` says. Panics if a step before
/// `Trail::restore` fails; returns what `Trail::restore` returns.
#[expect(clippy::unwrap_used, reason = "a failing set-up step fails the test")]
pub fn lose_and_restore(
    trail: &Path,
    card: &mut Card,
    id: &CardIdentity,
    server: &ServerSecret,
    backup: &[u8],
    licences: Vec<LicenceId>,
    charge: LostCharge,
) -> Result<Trail, TrailError> {
    if trail.exists() {
        std::fs::remove_file(trail).unwrap();
    }
    let body = restore_request_body(server.public(), now());
    let request = Trail::sign_detached(trail, card, id, &body).unwrap();
    let (env, key) =
        seal_restore_request(server.public(), &id.serial, &request, &mut rand_core::OsRng).unwrap();
    // The server's side.
    let (req, server_key) = server.open_restore_request(&env).unwrap();
    let plan = plan_recovery(server, id, &req, backup, None, licences, charge, now()).unwrap();
    assert_eq!(
        plan.to, request.counter,
        "the request's own counter is lost too"
    );
    let answer = seal_restore_answer(&server_key, plan.body.encode().as_bytes(), backup).unwrap();
    // The reader's side.
    let answer = open_restore_answer(&key, &answer).unwrap();
    Trail::restore(
        trail,
        card,
        id,
        &answer.trail,
        &answer.recovery,
        server.public(),
    )
}
