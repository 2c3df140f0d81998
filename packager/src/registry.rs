//! The vendor's registry: customers (their cards) and packages, in SQLite at
//! `<vendor dir>/registry.sqlite` (WAL, `synchronous = FULL`), or in PostgreSQL when
//! `--database postgres://…` (or `TALLY_DATABASE`) names one (see [`crate::sql`]).
//!
//! The schema is versioned: [`MIGRATIONS`] lists every step in order, each applied once
//! in its own transaction and recorded in `schema_migrations`. A later module (issued
//! keyfiles, the validation server) appends a migration; it never edits an applied one.
//! A database written by a newer build (a version we don't know) is refused.

use crate::params;
use crate::sql::{Db, Row, Target, Value};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use tally_core::card::{CardIdentity, Serial};
use tally_core::crypto::PublicKey;
use tally_core::keyfile::Cis;
use tally_core::package::{ContentKey, DocumentId};
use tally_core::vendor::VendorSecret;

/// One schema step.
pub struct Migration {
    /// Its version, 1, 2, … in order.
    pub version: u32,
    /// What it does, for the record.
    pub name: &'static str,
    /// The SQL.
    pub sql: &'static str,
}

/// Every schema step, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "customers and packages",
        sql: "CREATE TABLE customers (
              id          INTEGER PRIMARY KEY,
              name        TEXT NOT NULL UNIQUE,
              serial      TEXT NOT NULL UNIQUE,   -- 32 lower-case hex digits
              public_key  BLOB NOT NULL UNIQUE,   -- 65-byte SEC1
              origin      TEXT NOT NULL,          -- decimal u64 (may exceed i64)
              label       TEXT,
              added_at    TEXT NOT NULL           -- RFC 3339 UTC
          );
          CREATE TABLE packages (
              document_id    TEXT PRIMARY KEY,    -- 32 lower-case hex digits
              title          TEXT NOT NULL,
              page_count     INTEGER NOT NULL,
              plaintext_size INTEGER NOT NULL,
              sha256         TEXT NOT NULL,       -- of the package file
              wrapped_key    BLOB NOT NULL,       -- content key, encrypted at rest
              created_at     TEXT NOT NULL
          );",
    },
    Migration {
        version: 2,
        name: "issued keyfiles",
        sql: crate::commands::issue::MIGRATION_SQL,
    },
    Migration {
        version: 3,
        name: "validation server: copies, retired UIs, validations, viewer builds",
        sql: crate::server::db::MIGRATION_SQL,
    },
    Migration {
        version: 4,
        name: "trail validation service: encrypted trail backups",
        sql: crate::server::trail::MIGRATION_SQL,
    },
    Migration {
        version: 5,
        name: "trail restores: recovery records issued",
        sql: crate::server::restore::MIGRATION_SQL,
    },
    Migration {
        version: 6,
        name: "package locations and chunk digests (serve needs no --packages; ICV V8)",
        sql: "ALTER TABLE packages ADD COLUMN location TEXT;
              ALTER TABLE packages ADD COLUMN chunk_digests BLOB;",
    },
    Migration {
        version: 7,
        name: "cards: key-agreement keys and issuer attestations",
        // NULL agreement key: a card registered before keyfiles were wrapped to the card;
        // it must be registered again before a keyfile can be issued for it.
        sql: "ALTER TABLE customers ADD COLUMN agreement_key BLOB;    -- 65-byte SEC1
              ALTER TABLE customers ADD COLUMN attestation BLOB;      -- the issuer's certificate
              ALTER TABLE customers ADD COLUMN attested_by TEXT;      -- the issuer's name, if verified",
    },
    Migration {
        version: 8,
        name: "card-signed validation requests: the newest card counter per copy",
        // NULL: no card-signed request has changed the copy yet.
        sql: "ALTER TABLE copies ADD COLUMN card_counter INTEGER;     -- u64 stored bit for bit",
    },
    Migration {
        version: 9,
        name: "nonce challenges; what renewing a licence by its id needs",
        sql: crate::server::challenge::MIGRATION_SQL,
    },
    Migration {
        version: 10,
        name: "early returns: verified return receipts; loan caps per document",
        sql: crate::server::returns::MIGRATION_SQL,
    },
];

/// `encrypt_at_rest` purpose of content keys in the registry.
const CONTENT_KEY_PURPOSE: &str = "registry/content-key/v1";

/// The file name inside the vendor folder.
pub const FILE: &str = "registry.sqlite";

/// A registered customer.
#[derive(Debug, Clone)]
pub struct Customer {
    /// Unique name.
    pub name: String,
    /// The card.
    pub card: CardIdentity,
    /// The card file's label, if any.
    pub label: Option<String>,
    /// When it was added (RFC 3339).
    pub added_at: String,
    /// The card's key-agreement key (`None`: registered before content keys were wrapped
    /// to the card; register the card again).
    pub agreement_key: Option<PublicKey>,
    /// The issuer's attestation certificate as registered, if any.
    pub attestation: Option<Vec<u8>>,
    /// The accepted issuer that vouched for the card at registration (`None`: emulated).
    pub attested_by: Option<String>,
}

/// What `customer add` records beside the card's identity.
#[derive(Debug, Clone)]
pub struct CardKeys {
    /// The key-agreement key.
    pub agreement_key: PublicKey,
    /// The issuer's certificate, if the card has one.
    pub attestation: Option<Vec<u8>>,
    /// The accepted issuer that vouched for it, if one did.
    pub attested_by: Option<String>,
}

/// A package the vendor made.
// Not every field is read yet: `issue` and the validation server read them.
#[allow(dead_code)]
#[derive(Debug, Clone)]
pub struct PackageRow {
    /// Document id.
    pub document_id: DocumentId,
    /// Title.
    pub title: String,
    /// Pages.
    pub page_count: u32,
    /// Plaintext size in bytes.
    pub plaintext_size: u64,
    /// SHA-256 of the package file, hex.
    pub sha256: String,
    /// The content key, encrypted under the vendor's storage key.
    pub wrapped_key: Vec<u8>,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// Where `pack` wrote the package file (absolute), if recorded (migration 6).
    pub location: Option<PathBuf>,
}

/// Why a customer was not added.
#[derive(Debug)]
pub enum Duplicate {
    /// The name is taken.
    Name,
    /// Another customer has this card serial.
    Serial(String),
    /// Another customer has this card key.
    Key(String),
}

impl std::fmt::Display for Duplicate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Name => f.write_str("a customer with this name already exists"),
            Self::Serial(c) => {
                write!(
                    f,
                    "this card's serial is already registered to customer `{c}`"
                )
            }
            Self::Key(c) => {
                write!(
                    f,
                    "this card's public key is already registered to customer `{c}`"
                )
            }
        }
    }
}

/// An open registry.
pub struct Registry {
    db: Db,
}

/// The advisory lock key that serialises schema migrations across `serve` nodes starting
/// together on one PostgreSQL database ("tally" in ASCII).
const MIGRATION_LOCK: i64 = 0x74_616c_6c79;

impl Registry {
    /// The registry path in a vendor folder.
    pub fn path(vendor_dir: &Path) -> PathBuf {
        vendor_dir.join(FILE)
    }

    /// Opens (creating if needed) and migrates the registry of `vendor_dir`.
    pub fn open(vendor_dir: &Path) -> Result<Self> {
        Self::open_file(&Self::path(vendor_dir))
    }

    /// Opens (creating if needed) and migrates the registry at `path` (`serve --db`).
    pub fn open_file(path: &Path) -> Result<Self> {
        Self::open_target(&Target::Sqlite(path.to_path_buf()))
    }

    /// Opens and migrates the registry at `target`: a SQLite file or a PostgreSQL database.
    pub fn open_target(target: &Target) -> Result<Self> {
        let db =
            Db::open(target).with_context(|| format!("opening registry {}", target.display()))?;
        let mut r = Self { db };
        r.migrate()
            .with_context(|| format!("migrating registry {}", target.display()))?;
        Ok(r)
    }

    fn migrate(&mut self) -> Result<()> {
        let pg = self.db.is_postgres();
        if pg {
            self.db
                .execute("SELECT pg_advisory_lock($1)", params![MIGRATION_LOCK])?;
        }
        let out = self.migrate_locked();
        if pg {
            self.db
                .execute("SELECT pg_advisory_unlock($1)", params![MIGRATION_LOCK])?;
        }
        out
    }

    fn migrate_locked(&mut self) -> Result<()> {
        self.db.batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    BIGINT PRIMARY KEY,
                 name       TEXT NOT NULL,
                 applied_at TEXT NOT NULL
             );",
        )?;
        let current = self
            .db
            .query_opt(
                "SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) FROM schema_migrations",
                &[],
            )?
            .map(|r| r.int(0))
            .transpose()?
            .unwrap_or(0);
        let newest = MIGRATIONS.last().map_or(0, |m| i64::from(m.version));
        if current > newest {
            bail!(
                "registry schema version {current} is newer than this tally-pack knows ({newest})"
            );
        }
        let pg = self.db.is_postgres();
        for m in MIGRATIONS.iter().filter(|m| i64::from(m.version) > current) {
            let sql = if pg {
                crate::sql::pg_ddl(m.sql)
            } else {
                m.sql.to_string()
            };
            self.db.transaction(|db| {
                db.batch(&sql)
                    .with_context(|| format!("migration {} ({})", m.version, m.name))?;
                db.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                    params![i64::from(m.version), m.name, crate::commands::now_rfc3339()],
                )?;
                Ok(())
            })?;
        }
        Ok(())
    }

    /// The connection, for modules that add their own tables through [`MIGRATIONS`].
    pub fn connection(&mut self) -> &mut Db {
        &mut self.db
    }

    /// The connection, handed over (the server's first pooled connection).
    pub fn into_db(self) -> Db {
        self.db
    }

    /// Adds a customer; refuses a duplicate name, serial or key.
    #[cfg(test)]
    pub fn add_customer(
        &mut self,
        name: &str,
        card: &CardIdentity,
        label: Option<&str>,
    ) -> Result<std::result::Result<(), Duplicate>> {
        self.add_customer_with_keys(name, card, label, None)
    }

    /// Adds a customer with the card's key-agreement key and attestation; refuses a
    /// duplicate name, serial or key.
    pub fn add_customer_with_keys(
        &mut self,
        name: &str,
        card: &CardIdentity,
        label: Option<&str>,
        keys: Option<&CardKeys>,
    ) -> Result<std::result::Result<(), Duplicate>> {
        let serial = card.serial.to_hex();
        let key = card.public_key.as_bytes().to_vec();
        let agreement = keys.map(|k| k.agreement_key.as_bytes().to_vec());
        let attestation = keys.and_then(|k| k.attestation.clone());
        let attested_by = keys.and_then(|k| k.attested_by.clone());
        self.db.transaction(|db| {
            let owner = |db: &mut Db, sql: &str, v: crate::sql::Value| -> Result<Option<String>> {
                db.query_opt(sql, &[v])?.map(|r| r.text(0)).transpose()
            };
            if owner(
                db,
                "SELECT name FROM customers WHERE name = $1",
                name.into(),
            )?
            .is_some()
            {
                return Ok(Err(Duplicate::Name));
            }
            if let Some(c) = owner(
                db,
                "SELECT name FROM customers WHERE serial = $1",
                serial.clone().into(),
            )? {
                return Ok(Err(Duplicate::Serial(c)));
            }
            if let Some(c) = owner(
                db,
                "SELECT name FROM customers WHERE public_key = $1",
                key.clone().into(),
            )? {
                return Ok(Err(Duplicate::Key(c)));
            }
            db.execute(
                "INSERT INTO customers (name, serial, public_key, origin, label, added_at,
                                        agreement_key, attestation, attested_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                params![
                    name,
                    serial.clone(),
                    key.clone(),
                    card.origin.to_string(),
                    label,
                    crate::commands::now_rfc3339(),
                    agreement.clone(),
                    attestation.clone(),
                    attested_by.clone()
                ],
            )?;
            Ok(Ok(()))
        })
    }

    /// All customers, by name.
    pub fn customers(&mut self) -> Result<Vec<Customer>> {
        let rows = self.db.query(
            "SELECT name, serial, public_key, origin, label, added_at, agreement_key, attestation,
                    attested_by FROM customers ORDER BY name",
            &[],
        )?;
        rows.iter().map(row_to_customer).collect()
    }

    /// One customer by name.
    pub fn customer(&mut self, name: &str) -> Result<Option<Customer>> {
        self.db
            .query_opt(
                "SELECT name, serial, public_key, origin, label, added_at, agreement_key,
                        attestation, attested_by FROM customers WHERE name = $1",
                params![name],
            )?
            .as_ref()
            .map(row_to_customer)
            .transpose()
    }

    /// Records a package with its content key encrypted under the vendor's storage key,
    /// where the package file is (`location`, absolute), so `serve` finds it without
    /// `--packages`, and its chunk digests (`tally_core::icv::ChunkDigests::to_bytes`), so
    /// `serve` computes V8 ICVs without reading it.
    pub fn add_package(
        &mut self,
        vendor: &VendorSecret,
        header: &tally_core::package::PackageHeader,
        sha256: &str,
        key: &ContentKey,
        location: Option<&Path>,
        chunk_digests: Option<&[u8]>,
    ) -> Result<()> {
        let id = header.document_id();
        let wrapped = vendor.encrypt_at_rest(
            CONTENT_KEY_PURPOSE,
            &id.0,
            key.as_bytes(),
            &mut tally_core::crypto::OsRng,
        );
        let location = location.map(|p| p.to_string_lossy().into_owned());
        self.db.execute(
            "INSERT INTO packages (document_id, title, page_count, plaintext_size, sha256, wrapped_key, created_at, location, chunk_digests)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            params![
                id.to_hex(),
                header.title(),
                i64::from(header.page_count()),
                i64::try_from(header.plaintext_size()).context("document size")?,
                sha256,
                wrapped,
                crate::commands::now_rfc3339(),
                location,
                chunk_digests
            ],
        )?;
        Ok(())
    }

    /// One package by document id.
    pub fn package(&mut self, id: &DocumentId) -> Result<Option<PackageRow>> {
        let Some(r) = self.db.query_opt(
            "SELECT document_id, title, page_count, plaintext_size, sha256, wrapped_key, created_at, location
             FROM packages WHERE document_id = $1",
            params![id.to_hex()],
        )?
        else {
            return Ok(None);
        };
        let d = r.text(0)?;
        Ok(Some(PackageRow {
            document_id: DocumentId::from_hex(&d)
                .with_context(|| format!("registry: bad document id {d:?}"))?,
            title: r.text(1)?,
            page_count: u32::try_from(r.int(2)?).context("registry: bad page count")?,
            plaintext_size: u64::try_from(r.int(3)?).context("registry: negative size")?,
            sha256: r.text(4)?,
            wrapped_key: r.blob(5)?,
            created_at: r.text(6)?,
            location: r.opt_text(7)?.map(PathBuf::from),
        }))
    }

    /// The content key of a package this vendor made (for `issue` and `inspect --full`).
    pub fn content_key(
        &mut self,
        vendor: &VendorSecret,
        id: &DocumentId,
    ) -> Result<Option<ContentKey>> {
        let Some(row) = self.package(id)? else {
            return Ok(None);
        };
        let raw = vendor
            .decrypt_at_rest(CONTENT_KEY_PURPOSE, &id.0, &row.wrapped_key)
            .context("unwrapping the content key from the registry")?;
        let key = ContentKey::from_slice(&raw).context("registry: content key is not 32 bytes")?;
        Ok(Some(key))
    }
}

fn row_to_customer(r: &Row) -> Result<Customer> {
    let name = r.text(0)?;
    let agreement_key = r
        .opt_blob(6)?
        .map(|k| PublicKey::from_sec1(&k))
        .transpose()
        .with_context(|| format!("registry: customer {name}: bad agreement key"))?;
    let card = CardIdentity {
        serial: Serial::from_hex(&r.text(1)?)
            .with_context(|| format!("registry: customer {name}: bad serial"))?,
        public_key: PublicKey::from_sec1(&r.blob(2)?)
            .with_context(|| format!("registry: customer {name}: bad key"))?,
        origin: r
            .text(3)?
            .parse()
            .with_context(|| format!("registry: customer {name}: bad origin"))?,
    };
    Ok(Customer {
        name,
        card,
        label: r.opt_text(4)?,
        added_at: r.text(5)?,
        agreement_key,
        attestation: r.opt_blob(7)?,
        attested_by: r.opt_text(8)?,
    })
}

/// What an issued keyfile's registry row holds of the keyfile itself, bound in this order
/// to `keyfiles (policy, sha256, issued_at, server_url, online_every_days, allow_emulated,
/// issuers)`: the terms `cis`, the SHA-256 of the keyfile's bytes and the time now. `issue`
/// inserts them with a new licence and `renew` writes them over the licence's row; one
/// list keeps the two alike, so a renewed licence still holds all that audits and the next
/// `renew --licence` read from its row.
pub fn keyfile_columns(cis: &Cis, keyfile: &[u8]) -> Vec<Value> {
    params![
        cis.limits.to_text(),
        hex::encode(tally_core::crypto::sha256(keyfile)),
        crate::commands::now_rfc3339(),
        cis.server.as_ref().map(|s| s.url.clone()),
        cis.server
            .as_ref()
            .and_then(|s| s.require_online_every_days)
            .map(i64::from),
        i64::from(cis.allow_emulated_card),
        crate::commands::issue::issuers_json(&cis.issuers)
    ]
    .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;
    use tally_core::package::{PackOptions, seal_package};

    fn card(serial: u8) -> CardIdentity {
        let v = VendorSecret::generate("Card Key Source", false, &mut OsRng).unwrap();
        CardIdentity {
            serial: Serial([serial; 16]),
            public_key: v.public().signing_key().clone(),
            origin: u64::MAX,
        }
    }

    #[test]
    fn migrations_run_once_and_newer_schemas_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Registry::open(dir.path()).unwrap();
        let count = |r: &mut Registry| {
            r.db.query_opt("SELECT COUNT(*) FROM schema_migrations", &[])
                .unwrap()
                .unwrap()
                .int(0)
                .unwrap()
        };
        let applied = count(&mut r);
        assert_eq!(applied as usize, MIGRATIONS.len());
        let mode =
            r.db.query_opt("PRAGMA journal_mode", &[])
                .unwrap()
                .unwrap()
                .text(0)
                .unwrap();
        assert_eq!(mode, "wal");
        drop(r);
        // Reopening applies nothing twice.
        let mut r = Registry::open(dir.path()).unwrap();
        assert_eq!(count(&mut r), applied);
        r.db.execute(
            "INSERT INTO schema_migrations VALUES (999, 'future', 'x')",
            &[],
        )
        .unwrap();
        drop(r);
        let err = Registry::open(dir.path()).err().unwrap();
        assert!(format!("{err:#}").contains("newer"), "{err:#}");
    }

    #[test]
    fn customers_are_unique_by_name_serial_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Registry::open(dir.path()).unwrap();
        let a = card(1);
        r.add_customer("a", &a, Some("label")).unwrap().unwrap();
        assert!(matches!(
            r.add_customer("a", &card(2), None).unwrap(),
            Err(Duplicate::Name)
        ));
        assert!(matches!(
            r.add_customer("b", &CardIdentity { public_key: card(3).public_key, ..a.clone() }, None)
                .unwrap(),
            Err(Duplicate::Serial(ref c)) if c == "a"
        ));
        assert!(matches!(
            r.add_customer("b", &CardIdentity { serial: Serial([4; 16]), ..a.clone() }, None)
                .unwrap(),
            Err(Duplicate::Key(ref c)) if c == "a"
        ));
        let back = r.customer("a").unwrap().unwrap();
        assert_eq!(back.card, a); // u64::MAX origin survives SQLite's i64.
        assert_eq!(back.label.as_deref(), Some("label"));
        assert!(r.customer("b").unwrap().is_none());
        assert_eq!(r.customers().unwrap().len(), 1);
    }

    #[test]
    fn content_keys_are_stored_encrypted_and_bound_to_their_document() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Registry::open(dir.path()).unwrap();
        let v = VendorSecret::generate("Registry Press", false, &mut OsRng).unwrap();
        let pack = |r: &mut Registry| {
            let (h, k) = seal_package(
                &v,
                &PackOptions::new("T", 1),
                3,
                &b"abc"[..],
                std::io::Cursor::new(Vec::new()),
                &mut OsRng,
                &mut |_| {},
            )
            .unwrap();
            r.add_package(&v, &h, "00", &k, None, None).unwrap();
            (h, k)
        };
        let (h1, k1) = pack(&mut r);
        let (h2, _) = pack(&mut r);
        let got = r.content_key(&v, &h1.document_id()).unwrap().unwrap();
        assert_eq!(got.as_bytes(), k1.as_bytes());
        let row = r.package(&h1.document_id()).unwrap().unwrap();
        assert!(!row.wrapped_key.windows(32).any(|w| w == k1.as_bytes()));
        // Another vendor cannot unwrap it.
        let w = VendorSecret::generate("Other", false, &mut OsRng).unwrap();
        assert!(r.content_key(&w, &h1.document_id()).is_err());
        // A wrapped key moved to another document's row does not unwrap.
        r.db.execute(
            "UPDATE packages SET wrapped_key = $1 WHERE document_id = $2",
            params![row.wrapped_key, h2.document_id().to_hex()],
        )
        .unwrap();
        assert!(r.content_key(&v, &h2.document_id()).is_err());
        assert!(
            r.content_key(&v, &tally_core::package::DocumentId([0; 16]))
                .unwrap()
                .is_none()
        );
    }
}
