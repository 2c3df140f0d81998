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
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
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
    Sqlite(Box<Lite>),
    /// PostgreSQL.
    Postgres(Box<Pg>),
}

/// A SQLite connection and the group commit open on it, if any (see [`Writer`]).
pub struct Lite {
    conn: rusqlite::Connection,
    /// The open group: a `BEGIN IMMEDIATE` transaction holding the writes of its members.
    group: Option<Group>,
    /// True while a member's statements run inside the open group.
    member: bool,
    /// Where the end of each group is announced (set by the pool that owns the connection).
    commits: Option<Arc<Commits>>,
}

/// A PostgreSQL connection and the statements prepared on it.
pub struct Pg {
    client: postgres::Client,
    /// Prepared once per connection: a statement is then one round trip, not two.
    statements: HashMap<String, postgres::Statement>,
}

/// Most statements a PostgreSQL connection keeps prepared (the server uses a few dozen).
const MAX_PREPARED: usize = 256;

/// One group commit: the members whose writes one `COMMIT` (one fsync) makes durable.
struct Group {
    number: u64,
}

/// The most validations the [`Writer`] puts in one group (one commit).
const GROUP_MEMBERS: usize = 64;

/// How the groups of one SQLite pool ended: the [`Writer`] answers each member from it.
struct Commits {
    log: Mutex<CommitLog>,
}

struct CommitLog {
    /// The number the next group gets.
    next: u64,
    /// The latest groups whose commit failed, and why.
    failed: VecDeque<(u64, String)>,
}

impl CommitLog {
    /// Records that group `number` failed, keeping the latest 64 (more than one batch of
    /// the [`Writer`], which answers its members as soon as their group has ended).
    fn record_failure(&mut self, number: u64, why: String) {
        self.failed.push_back((number, why));
        if self.failed.len() > 64 {
            self.failed.pop_front();
        }
    }
}

impl Commits {
    fn new() -> Self {
        Self {
            log: Mutex::new(CommitLog {
                next: 1,
                failed: VecDeque::new(),
            }),
        }
    }

    fn log(&self) -> std::sync::MutexGuard<'_, CommitLog> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Lite {
    /// Commits the open group (one fsync for all its members); a failure is logged for its
    /// members.
    fn end_group(&mut self) -> Result<()> {
        let Some(group) = self.group.take() else {
            return Ok(());
        };
        let result = self.conn.execute_batch("COMMIT");
        if result.is_err() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        if let (Some(c), Err(e)) = (&self.commits, &result) {
            c.log().record_failure(group.number, e.to_string());
        }
        result.context("database: COMMIT of a group of validations")
    }

    /// A write outside the open group ends the group first, so it runs in its own
    /// transaction and nothing it does waits on another request.
    fn before_write(&mut self) -> Result<()> {
        if self.member {
            return Ok(());
        }
        self.end_group()
    }
}

impl Pg {
    /// The statement for `sql`, prepared on this connection once.
    fn statement(&mut self, sql: &str) -> Result<postgres::Statement> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        if self.statements.len() >= MAX_PREPARED {
            self.statements.clear();
        }
        let s = self
            .client
            .prepare(sql)
            .with_context(|| format!("database: {}", first_line(sql)))?;
        self.statements.insert(sql.to_string(), s.clone());
        Ok(s)
    }
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
                Ok(Self::Sqlite(Box::new(Lite {
                    conn,
                    group: None,
                    member: false,
                    commits: None,
                })))
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
                Ok(Self::Postgres(Box::new(Pg {
                    client,
                    statements: HashMap::new(),
                })))
            }
        }
    }

    /// Prepares `sql` on this connection now (PostgreSQL: kept for its later uses; SQLite:
    /// put in the statement cache), so its first use pays no parse or plan.
    pub fn prepare(&mut self, sql: &str) -> Result<()> {
        match self {
            Self::Sqlite(l) => {
                l.conn
                    .prepare_cached(&sqlite_sql(sql))
                    .with_context(|| format!("database: {}", first_line(sql)))?;
            }
            Self::Postgres(p) => {
                p.statement(sql)?;
            }
        }
        Ok(())
    }

    /// Whether this is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }

    /// Runs a statement; returns the number of rows it changed.
    pub fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64> {
        match self {
            Self::Sqlite(l) => {
                l.before_write()?;
                let n = l
                    .conn
                    .prepare_cached(&sqlite_sql(sql))
                    .and_then(|mut st| st.execute(rusqlite::params_from_iter(params.iter())))
                    .with_context(|| format!("database: {}", first_line(sql)))?;
                Ok(n as u64)
            }
            Self::Postgres(c) => {
                let p: Vec<&(dyn postgres::types::ToSql + Sync)> =
                    params.iter().map(|v| v as _).collect();
                let st = c.statement(sql)?;
                c.client
                    .execute(&st, &p)
                    .with_context(|| format!("database: {}", first_line(sql)))
            }
        }
    }

    /// Runs a query; returns every row. On SQLite a query outside an open group runs inside
    /// it and sees its members' writes before they are durable: the server reads only what
    /// validations do not write (cards, viewers, digests) outside a group.
    pub fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        match self {
            Self::Sqlite(l) => {
                if !is_read(sql) {
                    l.before_write()?;
                }
                let c = &l.conn;
                let run = || -> rusqlite::Result<Vec<Row>> {
                    let mut st = c.prepare_cached(&sqlite_sql(sql))?;
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
                let st = c.statement(sql)?;
                let rows = c
                    .client
                    .query(&st, &p)
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
            Self::Sqlite(l) => {
                l.before_write()?;
                l.conn
                    .execute_batch(sql)
                    .with_context(|| format!("database: {}", first_line(sql)))
            }
            Self::Postgres(c) => c
                .client
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

    /// Runs `f` as one member of a group commit (SQLite; see [`Writer`]): inside the
    /// open group's transaction (opening one if none is), in a savepoint that is rolled back
    /// when `f` fails. Returns `f`'s result and the group's number; the member's writes are
    /// durable only once that group has ended. PostgreSQL commits concurrent transactions
    /// in groups by itself: there this is [`Db::transaction`] and the number is `None`.
    fn group_member<T>(
        &mut self,
        mut f: impl FnMut(&mut Db) -> Result<T>,
    ) -> (Result<T>, Option<u64>) {
        let number = match self {
            Self::Postgres(_) => return (self.transaction(f), None),
            Self::Sqlite(l) => {
                if l.group.is_none() {
                    if let Err(e) = l.conn.execute_batch("BEGIN IMMEDIATE") {
                        return (Err(e).context("database: BEGIN IMMEDIATE"), None);
                    }
                    let number = l.commits.as_ref().map_or(0, |c| {
                        let mut log = c.log();
                        log.next += 1;
                        log.next - 1
                    });
                    l.group = Some(Group { number });
                }
                if let Err(e) = l.conn.execute_batch("SAVEPOINT member") {
                    return (Err(e).context("database: SAVEPOINT"), None);
                }
                l.member = true;
                l.group.as_ref().map_or(0, |g| g.number)
            }
        };
        let out = f(self);
        let Self::Sqlite(l) = self else {
            unreachable!("a SQLite connection stays one");
        };
        l.member = false;
        let close = if out.is_ok() {
            "RELEASE member"
        } else {
            "ROLLBACK TO member; RELEASE member"
        };
        if let Err(e) = l.conn.execute_batch(close) {
            // The group can't be trusted any more: nothing of it is kept.
            let _ = l.conn.execute_batch("ROLLBACK");
            l.group = None;
            if let Some(c) = &l.commits {
                c.log().record_failure(number, e.to_string());
            }
            return (Err(e).context("database: ending a savepoint"), None);
        }
        (out, Some(number))
    }

    /// Whether the connection still works (after an error, before returning it to a pool).
    fn healthy(&mut self) -> bool {
        match self {
            Self::Sqlite(_) => true,
            Self::Postgres(c) => !c.client.is_closed(),
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

/// A statement that only reads (`SELECT …`): it may run inside an open group.
fn is_read(sql: &str) -> bool {
    sql.trim_start()
        .get(..6)
        .is_some_and(|w| w.eq_ignore_ascii_case("SELECT"))
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
    /// How SQLite groups ended (`None` for PostgreSQL).
    commits: Option<Arc<Commits>>,
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
    /// Gives the connection back, with no group open: the [`Writer`] ends its own, and one
    /// left open (a batch cut short) is committed here, its members answered from the
    /// commit log.
    fn drop(&mut self) {
        if let Some(Db::Sqlite(l)) = self.db.as_mut() {
            if l.member {
                // A member that panicked: its savepoint is rolled back, not committed.
                l.member = false;
                let _ = l.conn.execute_batch("ROLLBACK TO member; RELEASE member");
            }
            // How it ended is in the commit log.
            let _ = l.end_group();
        }
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
    pub fn new(target: Target, mut first: Db, size: usize) -> Self {
        let (size, commits) = if matches!(target, Target::Sqlite(_)) {
            (1, Some(Arc::new(Commits::new())))
        } else {
            (size.max(1), None)
        };
        if let Db::Sqlite(l) = &mut first {
            l.commits = commits.clone();
        }
        Self {
            target,
            size,
            inner: Mutex::new(PoolState {
                idle: vec![first],
                open: 1,
            }),
            freed: Condvar::new(),
            commits,
        }
    }

    /// Opens one more connection while the pool has fewer than its size, readies it with
    /// `ready` and leaves it idle; false once the pool is full. A node warms its pool so
    /// (PostgreSQL: each new connection is a new backend, whose first statements load its
    /// catalog caches and are parsed and planned): at start the first validations otherwise
    /// paid it, 35–90 ms each, all at once.
    pub fn grow(&self, ready: impl FnOnce(&mut Db) -> Result<()>) -> Result<bool> {
        {
            let mut st = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            if st.open >= self.size {
                return Ok(false);
            }
            st.open += 1;
        }
        let db = self.open_counted(ready)?;
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .idle
            .push(db);
        self.freed.notify_one();
        Ok(true)
    }

    /// Opens the connection the caller has already counted in `open`, readied with `ready`;
    /// when either fails, it is uncounted again (and a waiter woken to open its own).
    fn open_counted(&self, ready: impl FnOnce(&mut Db) -> Result<()>) -> Result<Db> {
        let opened = Db::open(&self.target).and_then(|mut db| {
            if let Db::Sqlite(l) = &mut db {
                l.commits = self.commits.clone();
            }
            ready(&mut db).map(|()| db)
        });
        if opened.is_err() {
            self.inner.lock().unwrap_or_else(|e| e.into_inner()).open -= 1;
            self.freed.notify_one();
        }
        opened
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
                return self.open_counted(|_| Ok(())).map(|db| Pooled {
                    pool: self,
                    db: Some(db),
                });
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

/// What a queued job leaves to do once its group has ended: answer with the commit's
/// outcome (`Err` the reason the commit failed).
type Finish = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;

/// A job for the [`Writer`]: run as a member on the connection (`None`: no connection came
/// free in time), returning what answers it once its group has ended, and that group's
/// number.
type Job = Box<dyn FnOnce(Option<&mut Db>) -> (Finish, Option<u64>) + Send>;

/// The writer checkpoints the write-ahead log into the database every this many pages
/// (SQLite's default is 1,000). A checkpoint runs on the writer, after a commit, and every
/// validation waits for it: smaller and more often keeps that wait short. Measured on the
/// scale benchmark (32 clients offering half the ceiling, 10⁶ copies): p99 21 ms at 1,000
/// pages, 12 ms at 200, 10–12 ms at 100, 13 ms at 50, with the same throughput. (A
/// checkpoint thread of its own beside the writer was worse: docs/validation.md.)
const WRITER_CHECKPOINT_PAGES: i64 = 100;

/// The jobs a batch thread runs next: the first to come (waiting for it), and whatever else
/// is queued then, at most [`GROUP_MEMBERS`]. `None` once every sender is gone.
fn next_batch<T>(queue: &std::sync::mpsc::Receiver<T>) -> Option<Vec<T>> {
    let mut batch = vec![queue.recv().ok()?];
    while batch.len() < GROUP_MEMBERS {
        match queue.try_recv() {
            Ok(j) => batch.push(j),
            Err(_) => break,
        }
    }
    Some(batch)
}

/// A SQLite pool's group writer: one thread that takes whatever jobs are queued (at most
/// [`GROUP_MEMBERS`]), runs each as a member of one transaction — a savepoint each, so a
/// failing one keeps nothing — commits them with one fsync, and only then answers them.
/// Jobs queue while it commits, so a group is as large as the load makes it, with no
/// waiting to fill one. A request awaits one answer instead of a blocking thread, the
/// connection's condition variable and the commit's (measured: about 12 futex calls per
/// validation before). Other users of the pool take the connection between groups, as
/// before.
pub struct Writer {
    jobs: Option<std::sync::mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    /// The writer of `pool`, when it is SQLite's (on PostgreSQL transactions run on pooled
    /// connections, and the validations' common writes go to a [`Batcher`]).
    pub fn of(pool: &Arc<Pool>) -> Result<Option<Self>> {
        if pool.commits.is_none() {
            return Ok(None);
        }
        if let Db::Sqlite(l) = &mut *pool.get(WAIT)? {
            l.conn
                .pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES)
                .context("database: setting the writer's checkpoint size")?;
        }
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let pool = pool.clone();
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                while let Some(batch) = next_batch(&queue) {
                    pool.write_batch(batch);
                }
            })
            .context("starting the database writer thread")?;
        Ok(Some(Self {
            jobs: Some(jobs),
            thread: Some(thread),
        }))
    }

    /// Runs `f` as a member of the writer's next group; returns once the group's commit
    /// made its writes durable (an error if `f` failed, the commit failed, or no
    /// connection came free within the pool's wait).
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnMut(&mut Db) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (answer, answered) = tokio::sync::oneshot::channel::<Result<T>>();
        let job: Job = Box::new(move |db: Option<&mut Db>| {
            let (out, number) = match db {
                Some(db) => db.group_member(f),
                None => (Err(Busy(WAIT).into()), None),
            };
            let finish: Finish = Box::new(move |commit: std::result::Result<(), String>| {
                let _ = answer.send(match (out, commit) {
                    (Ok(v), Ok(())) => Ok(v),
                    (Ok(_), Err(why)) => Err(anyhow!("database: the group commit failed: {why}")),
                    (Err(e), _) => Err(e),
                });
            });
            (finish, number)
        });
        self.jobs
            .as_ref()
            .context("database writer stopped")?
            .send(job)
            .map_err(|_| anyhow!("database writer stopped"))?;
        answered
            .await
            .map_err(|_| anyhow!("database writer: the job failed"))?
    }
}

impl Drop for Writer {
    /// Lets the thread finish the queued jobs, then waits for it.
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A job for a [`Batcher`]: its data and where its answer goes.
type Batched<J, R> = (J, tokio::sync::oneshot::Sender<Result<R>>);

/// PostgreSQL's counterpart of [`Writer`], for writes that one statement can make for
/// many requests: one thread takes the jobs queued while it ran the last batch (at most
/// [`GROUP_MEMBERS`]) and hands them together to `run` on one pooled connection — one round
/// trip, one statement, one commit for all — then answers each. Measured with `pgbench` on
/// 10⁶ copies: a validation's write alone costs the database ~300 µs of CPU, sixteen in one
/// statement ~120 µs each. Jobs queue while a batch runs, so a batch is as large as the
/// load makes it, with no waiting to fill one. `run` answers each job (`Vec` in job order);
/// when it fails as a whole, panics, or no connection comes free in time, every job of the
/// batch gets the error, and the thread goes on with the next batch.
pub struct Batcher<J: Send + 'static, R: Send + 'static> {
    jobs: Option<std::sync::mpsc::Sender<Batched<J, R>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl<J: Send + 'static, R: Send + 'static> Batcher<J, R> {
    /// Starts the thread `name`, running batches of `pool`'s jobs with `run`.
    pub fn start(
        pool: Arc<Pool>,
        name: &str,
        mut run: impl FnMut(&mut Db, &[J]) -> Result<Vec<R>> + Send + 'static,
    ) -> Result<Self> {
        let (jobs, queue) = std::sync::mpsc::channel::<Batched<J, R>>();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                while let Some(batch) = next_batch(&queue) {
                    let (data, answers): (Vec<J>, Vec<_>) = batch.into_iter().unzip();
                    let outcome = pool.get(WAIT).and_then(|mut db| {
                        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            run(&mut db, &data)
                        }));
                        let out = ran.map_err(|_| anyhow!("database: a batch panicked"))??;
                        anyhow::ensure!(
                            out.len() == data.len(),
                            "database: a batch of {} jobs gave {} answers",
                            data.len(),
                            out.len()
                        );
                        Ok(out)
                    });
                    match outcome {
                        Ok(out) => {
                            for (answer, r) in answers.into_iter().zip(out) {
                                let _ = answer.send(Ok(r));
                            }
                        }
                        Err(e) => {
                            let why = format!("{e:#}");
                            for answer in answers {
                                let _ = answer.send(Err(anyhow!("{why}")));
                            }
                        }
                    }
                }
            })
            .with_context(|| format!("starting the database thread {name}"))?;
        Ok(Self {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Queues `job` for the next batch and waits for its answer.
    pub async fn run(&self, job: J) -> Result<R> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.jobs
            .as_ref()
            .context("database: the batch thread has stopped")?
            .send((job, answer))
            .map_err(|_| anyhow!("database: the batch thread has stopped"))?;
        answered
            .await
            .map_err(|_| anyhow!("database: the batch thread dropped a job"))?
    }
}

impl<J: Send + 'static, R: Send + 'static> Drop for Batcher<J, R> {
    /// Lets the thread finish the queued jobs, then waits for it.
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Pool {
    /// One group of the [`Writer`]: every job a member of one transaction, one commit,
    /// then every job answered. A job that panics is rolled back and the others go on.
    fn write_batch(&self, batch: Vec<Job>) {
        let mut db = match self.get(WAIT) {
            Ok(db) => db,
            Err(_) => {
                for job in batch {
                    job(None).0(Ok(()));
                }
                return;
            }
        };
        let mut finishes = Vec::with_capacity(batch.len());
        for job in batch {
            let conn: &mut Db = &mut db;
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(Some(conn)))) {
                Ok(done) => finishes.push(done),
                Err(_) => {
                    // Its answer was dropped with it (the request gets a 500); its
                    // savepoint must not be committed with the others.
                    if let Db::Sqlite(l) = &mut *db
                        && l.member
                    {
                        l.member = false;
                        let _ = l.conn.execute_batch("ROLLBACK TO member; RELEASE member");
                    }
                }
            }
        }
        if let Db::Sqlite(l) = &mut *db {
            // Its outcome is in the commit log, with any earlier group's of this batch.
            let _ = l.end_group();
        }
        drop(db);
        // A member's group is the batch's one, unless a member's savepoint could not be
        // ended (the group is then rolled back and a new one begun): each member gets its
        // own group's outcome.
        let outcomes: Vec<std::result::Result<(), String>> = {
            let log = self.commits.as_ref().map(|c| c.log());
            finishes
                .iter()
                .map(|(_, number)| {
                    match (&log, number) {
                        (Some(log), Some(n)) => log.failed.iter().find(|(m, _)| m == n),
                        _ => None,
                    }
                    .map_or(Ok(()), |(_, why)| Err(why.clone()))
                })
                .collect()
        };
        for ((finish, _), outcome) in finishes.into_iter().zip(outcomes) {
            finish(outcome);
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

    fn counted(pool: &Pool) -> i64 {
        pool.get(WAIT)
            .unwrap()
            .query_opt("SELECT COUNT(*) FROM t", &[])
            .unwrap()
            .unwrap()
            .int(0)
            .unwrap()
    }

    #[test]
    fn a_pool_grows_to_its_size_with_readied_connections_and_a_failed_one_is_not_counted() {
        let dir = tempfile::tempdir().unwrap();
        let target = Target::Sqlite(dir.path().join("t.sqlite"));
        // Three connections (a SQLite pool the server builds has one; the growing is the
        // same for any size).
        let pool = Pool {
            target,
            size: 3,
            inner: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
            commits: None,
        };
        // A temporary table is the connection's own: it marks a readied one.
        let mark = |db: &mut Db| db.batch("CREATE TEMP TABLE readied (x INTEGER)");
        let refuse = |_: &mut Db| -> Result<()> { Err(anyhow!("not ready")) };
        assert!(pool.grow(mark).unwrap());
        assert!(pool.grow(refuse).is_err());
        assert_eq!(
            pool.inner.lock().unwrap().open,
            1,
            "a failed one is not counted"
        );
        assert!(pool.grow(mark).unwrap());
        assert!(pool.grow(mark).unwrap());
        assert!(!pool.grow(mark).unwrap(), "the pool is full");
        let held: Vec<_> = (0..3).map(|_| pool.get(WAIT).unwrap()).collect();
        for mut db in held {
            assert!(db.query("SELECT x FROM readied", &[]).is_ok());
        }
        assert_eq!(pool.inner.lock().unwrap().open, 3);
    }

    #[test]
    fn a_write_outside_a_group_commits_the_open_group_first() {
        let dir = tempfile::tempdir().unwrap();
        let target = Target::Sqlite(dir.path().join("t.sqlite"));
        let mut db = Db::open(&target).unwrap();
        db.batch("CREATE TABLE t (id INTEGER PRIMARY KEY, who INTEGER)")
            .unwrap();
        let commits = Arc::new(Commits::new());
        if let Db::Sqlite(l) = &mut db {
            l.commits = Some(commits.clone());
        }
        let (r, number) = db.group_member(|db| db.execute("INSERT INTO t (who) VALUES (1)", &[]));
        r.unwrap();
        assert_eq!(number, Some(1));
        let open = |db: &Db| matches!(db, Db::Sqlite(l) if l.group.is_some());
        assert!(open(&db), "the group is still open");
        // A read joins the open group; a write (here a whole transaction) ends it first.
        assert!(db.query("SELECT who FROM t", &[]).is_ok());
        assert!(open(&db));
        db.transaction(|db| db.execute("INSERT INTO t (who) VALUES (2)", &[]))
            .unwrap();
        assert!(!open(&db), "the group was committed");
        assert!(commits.log().failed.is_empty());
        let n = Db::open(&target)
            .unwrap()
            .query_opt("SELECT COUNT(*) FROM t", &[])
            .unwrap()
            .unwrap()
            .int(0)
            .unwrap();
        assert_eq!(n, 2);
    }

    #[test]
    fn the_batcher_runs_queued_jobs_together_and_answers_each_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let target = Target::Sqlite(dir.path().join("t.sqlite"));
        let pool = Arc::new(Pool::new(target.clone(), Db::open(&target).unwrap(), 1));
        let batches = Arc::new(Mutex::new(Vec::<Vec<i64>>::new()));
        let seen = batches.clone();
        // Job -1 fails its batch, job -2 panics in it; any other job is answered ×10.
        let batcher = Arc::new(
            Batcher::start(
                pool.clone(),
                "test-batcher",
                move |db: &mut Db, jobs: &[i64]| {
                    db.query_opt("SELECT 1", &[])?;
                    seen.lock().unwrap().push(jobs.to_vec());
                    if jobs.contains(&-1) {
                        bail!("a batch holding -1 fails");
                    }
                    assert!(!jobs.contains(&-2), "a batch holding -2 panics");
                    Ok(jobs.iter().map(|j| j * 10).collect())
                },
            )
            .unwrap(),
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        // Held while the jobs queue: the thread waits for it with its first batch, and the
        // jobs queued meanwhile make the next one.
        let held = pool.get(WAIT).unwrap();
        let jobs: Vec<i64> = (0..40).chain([-1]).collect();
        let tasks: Vec<_> = jobs
            .iter()
            .map(|&job| {
                let batcher = batcher.clone();
                rt.spawn(async move { batcher.run(job).await })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        drop(held);
        let answers: Vec<Result<i64>> =
            tasks.into_iter().map(|t| rt.block_on(t).unwrap()).collect();
        let batches = batches.lock().unwrap().clone();
        assert_eq!(
            batches.iter().map(Vec::len).sum::<usize>(),
            jobs.len(),
            "every job ran once: {batches:?}"
        );
        assert!(
            batches.len() <= 3,
            "jobs queued together ran together: {batches:?}"
        );
        for (job, answer) in jobs.iter().zip(&answers) {
            let batch = batches.iter().find(|b| b.contains(job)).unwrap();
            match answer {
                Ok(v) => assert!(*v == job * 10 && !batch.contains(&-1), "{job}: {v}"),
                Err(e) => {
                    assert!(batch.contains(&-1), "{job}: {e:#}");
                    assert!(format!("{e:#}").contains("-1 fails"), "{e:#}");
                }
            }
        }
        // A batch that panics is answered with an error, and the thread goes on.
        let e = rt.block_on(batcher.run(-2)).unwrap_err();
        assert!(format!("{e:#}").contains("panicked"), "{e:#}");
        assert_eq!(rt.block_on(batcher.run(41)).unwrap(), 410);
    }

    #[test]
    fn the_writer_commits_queued_jobs_together_and_keeps_nothing_of_a_failed_or_panicking_one() {
        let dir = tempfile::tempdir().unwrap();
        let target = Target::Sqlite(dir.path().join("t.sqlite"));
        let mut first = Db::open(&target).unwrap();
        first
            .batch("CREATE TABLE t (id INTEGER PRIMARY KEY, who INTEGER)")
            .unwrap();
        let pool = Arc::new(Pool::new(target.clone(), first, 1));
        let writer = Arc::new(Writer::of(&pool).unwrap().expect("SQLite has a writer"));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        // Held while the jobs queue, so the writer's first group takes them all at once.
        let held = pool.get(WAIT).unwrap();
        let tasks: Vec<_> = (0..40_i64)
            .map(|who| {
                let writer = writer.clone();
                rt.spawn(async move {
                    writer
                        .run(move |db| {
                            db.execute("INSERT INTO t (who) VALUES ($1)", params![who])?;
                            match who % 10 {
                                8 => bail!("member {who} fails after writing"),
                                9 => panic!("member {who} panics after writing"),
                                _ => Ok(who),
                            }
                        })
                        .await
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        drop(held);
        let outcomes: Vec<Result<i64>> =
            tasks.into_iter().map(|t| rt.block_on(t).unwrap()).collect();
        drop(writer);
        let ok: Vec<i64> = outcomes
            .iter()
            .filter_map(|o| o.as_ref().ok().copied())
            .collect();
        assert_eq!(ok.len(), 32, "{outcomes:?}");
        for (who, o) in outcomes.iter().enumerate() {
            match who % 10 {
                8 => assert!(format!("{:#}", o.as_ref().unwrap_err()).contains("fails")),
                9 => assert!(o.is_err(), "a panicking job is answered with an error"),
                _ => assert_eq!(o.as_ref().unwrap(), &(who as i64)),
            }
        }
        assert_eq!(counted(&pool), 32, "only the jobs that succeeded are kept");
        // And durable: another connection (as after a restart) sees them.
        let n = Db::open(&target)
            .unwrap()
            .query_opt("SELECT COUNT(*) FROM t", &[])
            .unwrap()
            .unwrap()
            .int(0)
            .unwrap();
        assert_eq!(n, 32);
        let commits = pool.commits.as_ref().unwrap();
        // Queued jobs share commits: far fewer groups than jobs (the first batch may be
        // taken before every job is queued).
        assert!(
            commits.log().next - 1 <= 10,
            "40 queued jobs went in {} groups",
            commits.log().next - 1
        );
    }
}
