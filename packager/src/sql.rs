//! One set of SQL for the two databases the registry and the validation server run on:
//! SQLite (a file, the embedded default) and PostgreSQL (`--database postgres://…`, for
//! publishers who run several `serve` nodes on one database).
//!
//! Queries are written once, in PostgreSQL's form (`$1` parameters, `FOR UPDATE` row
//! locks, `ON CONFLICT`, `RETURNING`, `CAST(… AS BIGINT)`), and [`Db`] adapts them for
//! SQLite (`$1` → `?1`; `FOR UPDATE` dropped, because a SQLite write transaction is
//! `BEGIN IMMEDIATE` and so already holds the whole database). Schema steps are written
//! once in SQLite's form (they were applied to existing registries as they are) and
//! translated for PostgreSQL by [`pg_ddl`]. Values cross the boundary as [`Value`]s:
//! integers are `BIGINT` on both sides, bytes `BLOB`/`BYTEA`, text `TEXT`.
//!
//! The `postgres` crate (sync, no TLS) rather than `sqlx`: it builds in a fraction of the
//! time, and `sqlx`'s SQLite driver would link a second `libsqlite3-sys` beside
//! `rusqlite`'s, which cargo refuses.

use anyhow::{Context, Result, anyhow, bail};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Where the database is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A SQLite file (WAL, `synchronous = FULL`).
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL (`postgres://user:password@host:port/db`).
    Postgres(String),
}

impl Target {
    /// Parses `--database`: a `postgres://` or `postgresql://` URL, `sqlite:PATH`, or a path.
    pub fn parse(s: &str) -> Self {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Self::Postgres(s.to_string())
        } else {
            Self::Sqlite(PathBuf::from(s.strip_prefix("sqlite:").unwrap_or(s)))
        }
    }

    /// For messages: the path, or the URL without its password.
    pub fn display(&self) -> String {
        match self {
            Self::Sqlite(p) => p.display().to_string(),
            Self::Postgres(url) => redact(url),
        }
    }
}

/// A URL with any password replaced by `***`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (auth, host) = match rest.rsplit_once('@') {
        Some(x) => x,
        None => return url.to_string(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

/// A value bound to or read from a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// An integer (`BIGINT`).
    Int(i64),
    /// Text.
    Text(String),
    /// Bytes (`BLOB` / `BYTEA`).
    Blob(Vec<u8>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Self::Text(v.to_string())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Self::Text(v)
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Self::Text(v.clone())
    }
}
impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Self {
        Self::Blob(v.to_vec())
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Self::Blob(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Self::Null, Into::into)
    }
}

/// Builds a `&[Value]` parameter list: `params![a, b]`.
#[macro_export]
macro_rules! params {
    ($($v:expr),* $(,)?) => { &[$($crate::sql::Value::from($v)),*][..] };
}

/// One result row.
#[derive(Debug, Clone)]
pub struct Row(Vec<Value>);

impl Row {
    fn at(&self, i: usize) -> Result<&Value> {
        self.0
            .get(i)
            .ok_or_else(|| anyhow!("database: no column {i} in the row"))
    }

    /// Column `i` as an integer (NULL is an error).
    pub fn int(&self, i: usize) -> Result<i64> {
        self.opt_int(i)?
            .ok_or_else(|| anyhow!("database: column {i} is NULL"))
    }

    /// Column `i` as an optional integer.
    pub fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Int(v) => Ok(Some(*v)),
            other => bail!("database: column {i} is not an integer ({other:?})"),
        }
    }

    /// Column `i` as text (NULL is an error).
    pub fn text(&self, i: usize) -> Result<String> {
        self.opt_text(i)?
            .ok_or_else(|| anyhow!("database: column {i} is NULL"))
    }

    /// Column `i` as optional text.
    pub fn opt_text(&self, i: usize) -> Result<Option<String>> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Text(v) => Ok(Some(v.clone())),
            other => bail!("database: column {i} is not text ({other:?})"),
        }
    }

    /// Column `i` as bytes (NULL is an error).
    pub fn blob(&self, i: usize) -> Result<Vec<u8>> {
        self.opt_blob(i)?
            .ok_or_else(|| anyhow!("database: column {i} is NULL"))
    }

    /// Column `i` as optional bytes.
    pub fn opt_blob(&self, i: usize) -> Result<Option<Vec<u8>>> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Blob(v) => Ok(Some(v.clone())),
            other => bail!("database: column {i} is not bytes ({other:?})"),
        }
    }
}

/// An open connection to either database.
pub enum Db {
    /// SQLite.
    Sqlite(rusqlite::Connection),
    /// PostgreSQL.
    Postgres(Box<postgres::Client>),
}

/// How long a SQLite writer waits for another, and a PostgreSQL connection attempt.
const WAIT: Duration = Duration::from_secs(10);

impl Db {
    /// Connects (creating a SQLite file if needed). No schema work: see `Registry`.
    pub fn open(target: &Target) -> Result<Self> {
        match target {
            Target::Sqlite(path) => {
                let conn = rusqlite::Connection::open(path)
                    .with_context(|| format!("opening {}", path.display()))?;
                conn.busy_timeout(WAIT)?;
                conn.pragma_update(None, "journal_mode", "WAL")?;
                conn.pragma_update(None, "synchronous", "FULL")?;
                conn.pragma_update(None, "foreign_keys", "ON")?;
                Ok(Self::Sqlite(conn))
            }
            Target::Postgres(url) => {
                let mut config: postgres::Config = url
                    .parse()
                    .with_context(|| format!("parsing the database URL {}", redact(url)))?;
                config.connect_timeout(WAIT);
                if config.get_application_name().is_none() {
                    config.application_name("tally-pack");
                }
                let client = config
                    .connect(postgres::NoTls)
                    .with_context(|| format!("connecting to {}", redact(url)))?;
                Ok(Self::Postgres(Box::new(client)))
            }
        }
    }

    /// Whether this is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }

    /// Runs a statement; returns the number of rows it changed.
    pub fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64> {
        match self {
            Self::Sqlite(c) => {
                let n = c
                    .execute(&sqlite_sql(sql), rusqlite::params_from_iter(params.iter()))
                    .with_context(|| format!("database: {}", first_line(sql)))?;
                Ok(n as u64)
            }
            Self::Postgres(c) => {
                let p: Vec<&(dyn postgres::types::ToSql + Sync)> =
                    params.iter().map(|v| v as _).collect();
                c.execute(sql, &p)
                    .with_context(|| format!("database: {}", first_line(sql)))
            }
        }
    }

    /// Runs a query; returns every row.
    pub fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        match self {
            Self::Sqlite(c) => {
                let run = || -> rusqlite::Result<Vec<Row>> {
                    let mut st = c.prepare(&sqlite_sql(sql))?;
                    let n = st.column_count();
                    let mut rows = st.query(rusqlite::params_from_iter(params.iter()))?;
                    let mut out = Vec::new();
                    while let Some(r) = rows.next()? {
                        let mut vals = Vec::with_capacity(n);
                        for i in 0..n {
                            vals.push(match r.get_ref(i)? {
                                rusqlite::types::ValueRef::Null => Value::Null,
                                rusqlite::types::ValueRef::Integer(v) => Value::Int(v),
                                rusqlite::types::ValueRef::Real(v) => Value::Int(v as i64),
                                rusqlite::types::ValueRef::Text(t) => {
                                    Value::Text(String::from_utf8_lossy(t).into_owned())
                                }
                                rusqlite::types::ValueRef::Blob(b) => Value::Blob(b.to_vec()),
                            });
                        }
                        out.push(Row(vals));
                    }
                    Ok(out)
                };
                run().with_context(|| format!("database: {}", first_line(sql)))
            }
            Self::Postgres(c) => {
                let p: Vec<&(dyn postgres::types::ToSql + Sync)> =
                    params.iter().map(|v| v as _).collect();
                let rows = c
                    .query(sql, &p)
                    .with_context(|| format!("database: {}", first_line(sql)))?;
                rows.iter().map(pg_row).collect()
            }
        }
    }

    /// Runs a query expected to return at most one row.
    pub fn query_opt(&mut self, sql: &str, params: &[Value]) -> Result<Option<Row>> {
        let mut rows = self.query(sql, params)?;
        if rows.len() > 1 {
            bail!("database: more than one row for {}", first_line(sql));
        }
        Ok(rows.pop())
    }

    /// Runs statements without parameters (schema steps, `BEGIN`).
    pub fn batch(&mut self, sql: &str) -> Result<()> {
        match self {
            Self::Sqlite(c) => c
                .execute_batch(sql)
                .with_context(|| format!("database: {}", first_line(sql))),
            Self::Postgres(c) => c
                .batch_execute(sql)
                .with_context(|| format!("database: {}", first_line(sql))),
        }
    }

    /// Runs `f` in one transaction: committed when it returns `Ok`, rolled back otherwise.
    /// SQLite takes the write lock at the start (`BEGIN IMMEDIATE`); PostgreSQL runs READ
    /// COMMITTED and the queries lock the rows they change (`SELECT … FOR UPDATE`). A
    /// PostgreSQL deadlock or serialization failure is retried a few times.
    pub fn transaction<T>(&mut self, mut f: impl FnMut(&mut Db) -> Result<T>) -> Result<T> {
        let begin = if self.is_postgres() {
            "BEGIN"
        } else {
            "BEGIN IMMEDIATE"
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.batch(begin)?;
            let out = f(self);
            match out {
                Ok(v) => match self.batch("COMMIT") {
                    Ok(()) => return Ok(v),
                    Err(e) if attempt < 5 && retryable(&e) => {
                        let _ = self.batch("ROLLBACK");
                    }
                    Err(e) => {
                        let _ = self.batch("ROLLBACK");
                        return Err(e);
                    }
                },
                Err(e) => {
                    let _ = self.batch("ROLLBACK");
                    if !(attempt < 5 && retryable(&e)) {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Whether the connection still works (after an error, before returning it to a pool).
    fn healthy(&mut self) -> bool {
        match self {
            Self::Sqlite(_) => true,
            Self::Postgres(c) => !c.is_closed(),
        }
    }
}

/// A PostgreSQL error worth retrying the transaction for.
fn retryable(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<postgres::Error>()
            .and_then(postgres::Error::code)
            .is_some_and(|code| {
                *code == postgres::error::SqlState::T_R_SERIALIZATION_FAILURE
                    || *code == postgres::error::SqlState::T_R_DEADLOCK_DETECTED
            })
    })
}

fn first_line(sql: &str) -> &str {
    let s = sql.trim_start();
    s.lines().next().unwrap_or(s)
}

/// A query in PostgreSQL's form, for SQLite: `$N` → `?N`, `FOR UPDATE` dropped.
fn sqlite_sql(sql: &str) -> String {
    let sql = sql.replace(" FOR UPDATE", "");
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

/// A schema step in SQLite's form, for PostgreSQL: `INTEGER PRIMARY KEY` becomes an
/// identity column, `INTEGER` `BIGINT` (every integer crosses as i64), `BLOB` `BYTEA`.
pub fn pg_ddl(sql: &str) -> String {
    let sql = sql.replace(
        "INTEGER PRIMARY KEY",
        "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    );
    let mut out = String::with_capacity(sql.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        out.push_str(match word.as_str() {
            "INTEGER" => "BIGINT",
            "BLOB" => "BYTEA",
            w => w,
        });
        word.clear();
    };
    for c in sql.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

fn pg_row(r: &postgres::Row) -> Result<Row> {
    use postgres::types::Type;
    let mut vals = Vec::with_capacity(r.len());
    for (i, col) in r.columns().iter().enumerate() {
        let ty = col.type_();
        let v = if *ty == Type::INT8 {
            r.try_get::<_, Option<i64>>(i)?.map(Value::Int)
        } else if *ty == Type::INT4 {
            r.try_get::<_, Option<i32>>(i)?
                .map(|v| Value::Int(i64::from(v)))
        } else if *ty == Type::INT2 {
            r.try_get::<_, Option<i16>>(i)?
                .map(|v| Value::Int(i64::from(v)))
        } else if *ty == Type::BOOL {
            r.try_get::<_, Option<bool>>(i)?
                .map(|v| Value::Int(i64::from(v)))
        } else if *ty == Type::BYTEA {
            r.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Blob)
        } else if *ty == Type::TEXT || *ty == Type::VARCHAR || *ty == Type::BPCHAR {
            r.try_get::<_, Option<String>>(i)?.map(Value::Text)
        } else {
            bail!(
                "database: column {} has type {ty} (cast it to BIGINT or TEXT)",
                col.name()
            );
        };
        vals.push(v.unwrap_or(Value::Null));
    }
    Ok(Row(vals))
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Self::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Self::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Self::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Self::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

impl postgres::types::ToSql for Value {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>>
    {
        use postgres::types::Type;
        match self {
            Self::Null => Ok(postgres::types::IsNull::Yes),
            Self::Int(v) if *ty == Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
            Self::Int(v) if *ty == Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
            Self::Int(v) if *ty == Type::BOOL => (*v != 0).to_sql(ty, out),
            Self::Int(v) => v.to_sql(ty, out),
            Self::Text(s) => s.to_sql(ty, out),
            Self::Blob(b) => b.to_sql(ty, out),
        }
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

/// No pooled connection came free in time (the server answers 503).
#[derive(Debug)]
pub struct Busy(pub Duration);

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "database busy: no connection free within {:?}", self.0)
    }
}

impl std::error::Error for Busy {}

/// A bounded set of connections shared by the server's handlers. SQLite gets one (its
/// writers take turns anyway); PostgreSQL up to `size`.
pub struct Pool {
    target: Target,
    size: usize,
    inner: Mutex<PoolState>,
    freed: Condvar,
}

struct PoolState {
    idle: Vec<Db>,
    open: usize,
}

/// A connection taken from a [`Pool`]; it goes back when dropped.
pub struct Pooled<'a> {
    pool: &'a Pool,
    db: Option<Db>,
}

impl std::ops::Deref for Pooled<'_> {
    type Target = Db;
    fn deref(&self) -> &Db {
        self.db
            .as_ref()
            .expect("a pooled connection is present until dropped")
    }
}

impl std::ops::DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Db {
        self.db
            .as_mut()
            .expect("a pooled connection is present until dropped")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let mut st = self.pool.inner.lock().unwrap_or_else(|e| e.into_inner());
        match self.db.take() {
            Some(mut db) => {
                if db.healthy() {
                    st.idle.push(db);
                } else {
                    st.open -= 1;
                }
            }
            None => st.open -= 1,
        }
        self.pool.freed.notify_one();
    }
}

impl Pool {
    /// A pool over `target`; `first` is its first connection (already migrated).
    pub fn new(target: Target, first: Db, size: usize) -> Self {
        let size = if matches!(target, Target::Sqlite(_)) {
            1
        } else {
            size.max(1)
        };
        Self {
            target,
            size,
            inner: Mutex::new(PoolState {
                idle: vec![first],
                open: 1,
            }),
            freed: Condvar::new(),
        }
    }

    /// A connection: an idle one, a new one while under `size`, or the next one freed
    /// (waiting at most `wait`).
    pub fn get(&self, wait: Duration) -> Result<Pooled<'_>> {
        let deadline = std::time::Instant::now() + wait;
        let mut st = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(db) = st.idle.pop() {
                return Ok(Pooled {
                    pool: self,
                    db: Some(db),
                });
            }
            if st.open < self.size {
                st.open += 1;
                drop(st);
                return match Db::open(&self.target) {
                    Ok(db) => Ok(Pooled {
                        pool: self,
                        db: Some(db),
                    }),
                    Err(e) => {
                        let mut st = self.inner.lock().unwrap_or_else(|e| e.into_inner());
                        st.open -= 1;
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Err(Busy(wait).into());
            }
            st = self
                .freed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// The registry path in a vendor folder, as a target.
pub fn default_target(vendor_dir: &Path) -> Target {
    Target::Sqlite(vendor_dir.join(crate::registry::FILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_and_schema_translate() {
        assert_eq!(
            sqlite_sql("SELECT a FROM t WHERE x = $1 AND y = $12 FOR UPDATE"),
            "SELECT a FROM t WHERE x = ?1 AND y = ?12"
        );
        assert_eq!(
            pg_ddl("id INTEGER PRIMARY KEY, n INTEGER NOT NULL, b BLOB, INTEGERS TEXT"),
            "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, n BIGINT NOT NULL, b BYTEA, INTEGERS TEXT"
        );
        assert_eq!(
            Target::parse("postgres://u:secret@h:5/db"),
            Target::Postgres("postgres://u:secret@h:5/db".into())
        );
        assert_eq!(
            Target::parse("postgres://u:secret@h:5/db").display(),
            "postgres://u:***@h:5/db"
        );
        assert_eq!(Target::parse("sqlite:/x/y"), Target::Sqlite("/x/y".into()));
        assert_eq!(Target::parse("r.sqlite"), Target::Sqlite("r.sqlite".into()));
    }

    #[test]
    fn sqlite_round_trips_every_value_and_rolls_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open(&Target::Sqlite(dir.path().join("t.sqlite"))).unwrap();
        db.batch("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER, s TEXT, b BLOB)")
            .unwrap();
        let id = db
            .query_opt(
                "INSERT INTO t (n, s, b) VALUES ($1, $2, $3) RETURNING id",
                params![i64::MIN, "x", &b"\0\xff"[..]],
            )
            .unwrap()
            .unwrap()
            .int(0)
            .unwrap();
        let r = db
            .query_opt("SELECT n, s, b FROM t WHERE id = $1", params![id])
            .unwrap()
            .unwrap();
        assert_eq!(r.int(0).unwrap(), i64::MIN);
        assert_eq!(r.text(1).unwrap(), "x");
        assert_eq!(r.blob(2).unwrap(), b"\0\xff");
        let err = db
            .transaction(|db| -> Result<()> {
                db.execute("DELETE FROM t", &[])?;
                bail!("stop")
            })
            .unwrap_err();
        assert_eq!(err.to_string(), "stop");
        assert_eq!(db.query("SELECT id FROM t", &[]).unwrap().len(), 1);
    }
}
