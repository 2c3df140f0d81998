//! The vendor's registry: customers (their cards) and packages, in SQLite at
//! `<vendor dir>/registry.sqlite` (WAL, `synchronous = FULL`).
//!
//! The schema is versioned: [`MIGRATIONS`] lists every step in order, each applied once
//! in its own transaction and recorded in `schema_migrations`. A later module (issued
//! keyfiles, the validation server) appends a migration; it never edits an applied one.
//! A database written by a newer build (a version we don't know) is refused.

use anyhow::{Context, Result, bail};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};
use tally_core::card::{CardIdentity, Serial};
use tally_core::crypto::PublicKey;
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
        name: "cards: key-agreement keys and issuer attestations",
        // NULL agreement key: a card registered before keyfiles were wrapped to the card;
        // it must be registered again before a keyfile can be issued for it.
        sql: "ALTER TABLE customers ADD COLUMN agreement_key BLOB;    -- 65-byte SEC1
              ALTER TABLE customers ADD COLUMN attestation BLOB;      -- the issuer's certificate
              ALTER TABLE customers ADD COLUMN attested_by TEXT;      -- the issuer's name, if verified",
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
    conn: Connection,
}

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
        let path = path.to_path_buf();
        let conn = Connection::open(&path)
            .with_context(|| format!("opening registry {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let mut r = Self { conn };
        r.migrate()
            .with_context(|| format!("migrating registry {}", path.display()))?;
        Ok(r)
    }

    fn migrate(&mut self) -> Result<()> {
        self.conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    INTEGER PRIMARY KEY,
                 name       TEXT NOT NULL,
                 applied_at TEXT NOT NULL
             );",
        )?;
        let current: u32 = self.conn.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )?;
        let newest = MIGRATIONS.last().map_or(0, |m| m.version);
        if current > newest {
            bail!(
                "registry schema version {current} is newer than this tally-pack knows ({newest})"
            );
        }
        for m in MIGRATIONS.iter().filter(|m| m.version > current) {
            let tx = self.conn.transaction()?;
            tx.execute_batch(m.sql)
                .with_context(|| format!("migration {} ({})", m.version, m.name))?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                params![m.version, m.name, crate::commands::now_rfc3339()],
            )?;
            tx.commit()?;
        }
        Ok(())
    }

    /// The connection, for modules that add their own tables through [`MIGRATIONS`].
    #[allow(dead_code)]
    pub fn connection(&self) -> &Connection {
        &self.conn
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
        let tx = self.conn.transaction()?;
        let owner = |sql: &str, v: &dyn rusqlite::ToSql| -> Result<Option<String>> {
            Ok(tx.query_row(sql, [v], |r| r.get(0)).optional()?)
        };
        if owner("SELECT name FROM customers WHERE name = ?1", &name)?.is_some() {
            return Ok(Err(Duplicate::Name));
        }
        if let Some(c) = owner(
            "SELECT name FROM customers WHERE serial = ?1",
            &card.serial.to_hex(),
        )? {
            return Ok(Err(Duplicate::Serial(c)));
        }
        if let Some(c) = owner(
            "SELECT name FROM customers WHERE public_key = ?1",
            &card.public_key.as_bytes().as_slice(),
        )? {
            return Ok(Err(Duplicate::Key(c)));
        }
        tx.execute(
            "INSERT INTO customers (name, serial, public_key, origin, label, added_at,
                                    agreement_key, attestation, attested_by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                name,
                card.serial.to_hex(),
                card.public_key.as_bytes().as_slice(),
                card.origin.to_string(),
                label,
                crate::commands::now_rfc3339(),
                keys.map(|k| k.agreement_key.as_bytes().to_vec()),
                keys.and_then(|k| k.attestation.clone()),
                keys.and_then(|k| k.attested_by.clone()),
            ],
        )?;
        tx.commit()?;
        Ok(Ok(()))
    }

    /// All customers, by name.
    pub fn customers(&self) -> Result<Vec<Customer>> {
        let mut st = self.conn.prepare(
            "SELECT name, serial, public_key, origin, label, added_at, agreement_key, attestation,
                    attested_by FROM customers ORDER BY name",
        )?;
        let rows = st.query_map([], row_to_raw)?;
        rows.map(|r| raw_to_customer(r?)).collect()
    }

    /// One customer by name.
    #[allow(dead_code)]
    pub fn customer(&self, name: &str) -> Result<Option<Customer>> {
        let raw = self
            .conn
            .query_row(
                "SELECT name, serial, public_key, origin, label, added_at, agreement_key,
                        attestation, attested_by FROM customers WHERE name = ?1",
                [name],
                row_to_raw,
            )
            .optional()?;
        raw.map(raw_to_customer).transpose()
    }

    /// Records a package with its content key encrypted under the vendor's storage key.
    #[allow(clippy::too_many_arguments)]
    pub fn add_package(
        &self,
        vendor: &VendorSecret,
        header: &tally_core::package::PackageHeader,
        sha256: &str,
        key: &ContentKey,
    ) -> Result<()> {
        let id = header.document_id();
        let wrapped = vendor.encrypt_at_rest(
            CONTENT_KEY_PURPOSE,
            &id.0,
            key.as_bytes(),
            &mut rand_core::OsRng,
        );
        self.conn.execute(
            "INSERT INTO packages (document_id, title, page_count, plaintext_size, sha256, wrapped_key, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                id.to_hex(),
                header.title(),
                header.page_count(),
                i64::try_from(header.plaintext_size()).context("document size")?,
                sha256,
                wrapped,
                crate::commands::now_rfc3339()
            ],
        )?;
        Ok(())
    }

    /// One package by document id.
    pub fn package(&self, id: &DocumentId) -> Result<Option<PackageRow>> {
        self.conn
            .query_row(
                "SELECT document_id, title, page_count, plaintext_size, sha256, wrapped_key, created_at
                 FROM packages WHERE document_id = ?1",
                [id.to_hex()],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, u32>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, Vec<u8>>(5)?,
                        r.get::<_, String>(6)?,
                    ))
                },
            )
            .optional()?
            .map(|(d, title, page_count, size, sha256, wrapped_key, created_at)| {
                Ok(PackageRow {
                    document_id: DocumentId::from_hex(&d)
                        .with_context(|| format!("registry: bad document id {d:?}"))?,
                    title,
                    page_count,
                    plaintext_size: u64::try_from(size).context("registry: negative size")?,
                    sha256,
                    wrapped_key,
                    created_at,
                })
            })
            .transpose()
    }

    /// The content key of a package this vendor made (for `issue` and `inspect --full`).
    pub fn content_key(
        &self,
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

type RawCustomer = (
    (String, String, Vec<u8>, String, Option<String>, String),
    (Option<Vec<u8>>, Option<Vec<u8>>, Option<String>),
);

fn row_to_raw(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawCustomer> {
    Ok((
        (
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
        ),
        (r.get(6)?, r.get(7)?, r.get(8)?),
    ))
}

fn raw_to_customer(raw: RawCustomer) -> Result<Customer> {
    let ((name, serial, key, origin, label, added_at), (agreement, attestation, attested_by)) = raw;
    let agreement_key = agreement
        .map(|k| PublicKey::from_sec1(&k))
        .transpose()
        .with_context(|| format!("registry: customer {name}: bad agreement key"))?;
    let card = CardIdentity {
        serial: Serial::from_hex(&serial)
            .with_context(|| format!("registry: customer {name}: bad serial"))?,
        public_key: PublicKey::from_sec1(&key)
            .with_context(|| format!("registry: customer {name}: bad key"))?,
        origin: origin
            .parse()
            .with_context(|| format!("registry: customer {name}: bad origin"))?,
    };
    Ok(Customer {
        name,
        card,
        label,
        added_at,
        agreement_key,
        attestation,
        attested_by,
    })
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
        let r = Registry::open(dir.path()).unwrap();
        let applied: u32 = r
            .conn
            .query_row("SELECT COUNT(*) FROM schema_migrations", [], |x| x.get(0))
            .unwrap();
        assert_eq!(applied as usize, MIGRATIONS.len());
        let mode: String = r
            .conn
            .query_row("PRAGMA journal_mode", [], |x| x.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        drop(r);
        // Reopening applies nothing twice.
        let r = Registry::open(dir.path()).unwrap();
        let again: u32 = r
            .conn
            .query_row("SELECT COUNT(*) FROM schema_migrations", [], |x| x.get(0))
            .unwrap();
        assert_eq!(again, applied);
        r.conn
            .execute(
                "INSERT INTO schema_migrations VALUES (999, 'future', 'x')",
                [],
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
        let r = Registry::open(dir.path()).unwrap();
        let v = VendorSecret::generate("Registry Press", false, &mut OsRng).unwrap();
        let pack = || {
            let (h, k) = seal_package(
                &v,
                &PackOptions::new("T", 1),
                3,
                &b"abc"[..],
                std::io::sink(),
                &mut OsRng,
                &mut |_| {},
            )
            .unwrap();
            r.add_package(&v, &h, "00", &k).unwrap();
            (h, k)
        };
        let (h1, k1) = pack();
        let (h2, _) = pack();
        let got = r.content_key(&v, &h1.document_id()).unwrap().unwrap();
        assert_eq!(got.as_bytes(), k1.as_bytes());
        let row = r.package(&h1.document_id()).unwrap().unwrap();
        assert!(!row.wrapped_key.windows(32).any(|w| w == k1.as_bytes()));
        // Another vendor cannot unwrap it.
        let w = VendorSecret::generate("Other", false, &mut OsRng).unwrap();
        assert!(r.content_key(&w, &h1.document_id()).is_err());
        // A wrapped key moved to another document's row does not unwrap.
        r.conn
            .execute(
                "UPDATE packages SET wrapped_key = ?1 WHERE document_id = ?2",
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
