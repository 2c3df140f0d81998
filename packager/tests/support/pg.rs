//! A fresh PostgreSQL database per test, on the server `TALLY_PG_URL` names
//! (`scripts/test.sh` starts a throwaway cluster and sets it). Without the variable the
//! PostgreSQL half of a test says so on stderr and returns; with it, a database that
//! cannot be made fails the test.

#![allow(dead_code, clippy::unwrap_used)]

use std::sync::atomic::{AtomicU32, Ordering};

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The registry's SQLite file in the vendor folder.
    Sqlite,
    /// A fresh database on `TALLY_PG_URL`'s server.
    Postgres,
}

/// A database made for one test and dropped after it.
pub struct PgDb {
    admin: String,
    name: String,
    /// Its URL, for `TALLY_DATABASE`.
    pub url: String,
}

/// A fresh database, or `None` (with a note) when `TALLY_PG_URL` is not set.
pub fn fresh(test: &str) -> Option<PgDb> {
    let Ok(admin) = std::env::var("TALLY_PG_URL") else {
        eprintln!(
            "{test}: PostgreSQL half skipped: TALLY_PG_URL is not set (scripts/test.sh sets it)"
        );
        return None;
    };
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "tally_t{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        rand_core::RngCore::next_u32(&mut rand_core::OsRng)
    );
    let mut c = postgres::Client::connect(&admin, postgres::NoTls)
        .unwrap_or_else(|e| panic!("TALLY_PG_URL={admin} is set but: {e}"));
    c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    let (base, query) = match admin.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (admin.as_str(), String::new()),
    };
    let server = base.rsplit_once('/').map_or(base, |(s, _)| s);
    let url = format!("{server}/{name}{query}");
    Some(PgDb { admin, name, url })
}

impl Drop for PgDb {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.admin, postgres::NoTls) {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}
