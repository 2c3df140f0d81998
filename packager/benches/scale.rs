//! The validation server at publisher scale: VAL_REQ/s, p50 and p99 through real HTTP on
//! loopback against a release `tally-pack serve`, with 10⁶ registered copies in the
//! database, for 1, 8, 32 and 128 clients, on SQLite and on PostgreSQL, for the small
//! sample package and a 100 MB one, beside the raw cost of each request's own cryptography
//! measured in the same run: its ceiling (rounds per second with every core on nothing
//! else) is measured for one second just before and just after each row, and the row is
//! judged against their mean, because this shared VM's speed drifts within minutes. Each
//! client is its own copy doing the whole round with ICV V8 (V7 over the chunk digests
//! `pack` stored): seal the VAL_REQ (ECIES), POST it, verify the
//! VAL_OK (ECDSA), roll the UI. Clients and server share the machine's cores.
//!
//! Two kinds of rows: closed loop (`8`: each client sends its next request as soon as it has
//! the answer — the most the server does, with latency set by the queue) and open loop
//! (`32@50%`: the clients together offer that share of the ceiling, each on its own schedule,
//! latency counted from when a request was due — what readers see at a given load), and one
//! open-loop row of requests each from a copy the node has not served yet (`32@50%new`: its
//! card and row are read from the database, where a copy validating again on the same node
//! finds both in the node's memory — what a reader opening a document after a while costs). A
//! request's latency ends when its answer has arrived and starts when it is sent (closed
//! loop) or was due (open loop): the client seals it beforehand — just before sending it
//! (closed loop), or as soon as it has the previous answer (open loop: a viewer has its
//! request ready before it connects) — so the latency is the server's and the network's, as
//! wrk measures it, and not the client's own cryptography on a core the server shares. Each row
//! also prints the CPU µs per request of the server process and of the clients (this
//! process), beside the crypto µs of each side: the gap is HTTP, database and scheduling
//! (PostgreSQL's own processes are counted apart, in `pg µs`, when the database runs on this
//! machine), `busy`: the share of the cores the server, the clients and PostgreSQL kept
//! busy together in the row (what sets the latency at a given offered load here, more than
//! the load's share of the ceiling), and `steal`: the share of the VM's CPU time the
//! hypervisor took during the row (`/proc/stat`), when a row's tail is the host's, not the
//! server's.
//!
//! `cargo bench -p tally-packager --bench scale` prints a table; nothing is asserted.
//! Environment (all optional): `TALLY_BENCH_COPIES` (registered copies, default 1000000),
//! `TALLY_BENCH_SECONDS` (per row, default 5), `TALLY_BENCH_BIG_MB` (default 100),
//! `TALLY_BENCH_DATABASES` (default `sqlite,postgres`), `TALLY_BENCH_NODES` (`serve`
//! processes on the one database, default 1; clients take them in turn; `server µs` counts
//! them all),
//! `TALLY_BENCH_CLIENTS` (closed-loop rows, default `1,8,32,128`), `TALLY_BENCH_PACED`
//! (clients of the open-loop rows, default 32; 0 for none), `TALLY_BENCH_LOAD` (their
//! offered loads as shares of the ceiling, default `0.5,0.7`), `TALLY_BENCH_NEW` (the
//! offered load of the `new` row, default 0.5; 0 for none), `TALLY_PG_URL` (a PostgreSQL
//! server whose superuser may create a database; without it the PostgreSQL rows are
//! skipped, said so), `TALLY_BENCH_TRACE` (set: after each row, on standard error, where
//! the requests slower than 10 ms were due, in 100 ms buckets: one
//! stall or a broad tail), `TALLY_BENCH_SERVER_LOG` (a file the servers' standard error,
//! one line per request with its time in the server, is appended to).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use tally_core::card::Serial;
use tally_core::crypto::PublicKey;
use tally_core::icv::{ChunkDigests, Icv, IcvVariant, Iv, Ui, compute_v8, executable_icv};
use tally_core::trail::LicenceId;
use tally_core::validation::{
    DEFAULT_OFFLINE_RECORDS, RequestSigner, ServerSecret, Status, ValReq, Verdict, request_hash,
    request_record_body,
};

#[path = "support/soft_card.rs"]
mod soft_card;
use soft_card::SoftCard;

const PASSWORD: &str = "correct horse battery staple";
const VIEWER: &[u8] = b"benchmark viewer build";
const MAX_CLIENTS: usize = 128;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A PostgreSQL database made for this run, dropped after it.
struct PgDb {
    admin: String,
    name: String,
    url: String,
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

fn fresh_pg(admin: &str) -> PgDb {
    let name = format!("tally_bench_{}", std::process::id());
    let mut c = postgres::Client::connect(admin, postgres::NoTls).unwrap();
    // Two statements: either refuses to run inside the implicit transaction of a batch.
    c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .unwrap();
    c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    let base = admin.split_once('?').map_or(admin, |(b, _)| b);
    let server = base.rsplit_once('/').map_or(base, |(s, _)| s);
    PgDb {
        admin: admin.to_string(),
        url: format!("{server}/{name}"),
        name,
    }
}

/// One database under test: its `TALLY_DATABASE` (none: the vendor folder's SQLite file).
struct Setup {
    dir: PathBuf,
    database: Option<String>,
}

impl Setup {
    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_tally-pack"));
        c.env("TALLY_VENDOR", self.dir.join("vendor"))
            .env("TALLY_VENDOR_PASSWORD", PASSWORD);
        match &self.database {
            Some(d) => c.env("TALLY_DATABASE", d),
            None => c.env_remove("TALLY_DATABASE"),
        };
        c
    }

    fn run(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "tally-pack {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs SQL on the database (SQLite or PostgreSQL), with the given parameters.
    fn sql(&self, sqlite: &str, pg: &str, params: &[&(dyn Param + Sync)]) {
        match &self.database {
            None => {
                let c =
                    rusqlite::Connection::open(self.dir.join("vendor/registry.sqlite")).unwrap();
                c.busy_timeout(Duration::from_secs(30)).unwrap();
                let p: Vec<&dyn rusqlite::ToSql> = params.iter().map(|p| p.lite()).collect();
                c.execute(sqlite, p.as_slice()).unwrap();
            }
            Some(url) => {
                let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
                let p: Vec<&(dyn postgres::types::ToSql + Sync)> =
                    params.iter().map(|p| p.pg()).collect();
                c.execute(pg, &p).unwrap();
            }
        }
    }

    fn serve(&self) -> (Server, String) {
        let mut child = self
            .cmd()
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--max-per-client",
                "1024",
            ])
            .stdout(Stdio::piped())
            .stderr(match std::env::var_os("TALLY_BENCH_SERVER_LOG") {
                // The server's one line per request (and anything it reports), appended.
                Some(path) => std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_or_else(|_| Stdio::null(), Stdio::from),
                None => Stdio::null(),
            })
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap()
            .to_string();
        (Server(child), base)
    }
}

/// A value both drivers can bind.
trait Param {
    fn lite(&self) -> &dyn rusqlite::ToSql;
    fn pg(&self) -> &(dyn postgres::types::ToSql + Sync);
}
impl Param for i64 {
    fn lite(&self) -> &dyn rusqlite::ToSql {
        self
    }
    fn pg(&self) -> &(dyn postgres::types::ToSql + Sync) {
        self
    }
}
impl Param for String {
    fn lite(&self) -> &dyn rusqlite::ToSql {
        self
    }
    fn pg(&self) -> &(dyn postgres::types::ToSql + Sync) {
        self
    }
}
impl Param for Vec<u8> {
    fn lite(&self) -> &dyn rusqlite::ToSql {
        self
    }
    fn pg(&self) -> &(dyn postgres::types::ToSql + Sync) {
        self
    }
}

/// Registers `copies` of document `doc` (licence, customer, first IV), each with a keyfile
/// naming the bench reader's card `serial`: a few hundred rows per statement.
fn register(setup: &Setup, doc: &str, serial: &str, copies: &[(String, String, Vec<u8>)]) {
    for chunk in copies.chunks(400) {
        let rows = |mark: char, per: usize, row: &dyn Fn(&[String]) -> String| -> String {
            (0..chunk.len())
                .map(|r| {
                    let p: Vec<String> = (1..=per)
                        .map(|k| format!("{mark}{}", r * per + k))
                        .collect();
                    row(&p)
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let keyfile = |p: &[String]| {
            format!(
                "({}, 'Bench Reader', '{serial}', {}, 'bench', '', '', '2026-01-01T00:00:00Z')",
                p[0], p[1]
            )
        };
        let copy = |p: &[String]| {
            format!(
                "({}, {}, {}, {}, 0, {}, 0, 'active', '', '2026-01-01T00:00:00Z')",
                p[0], p[1], p[2], p[0], p[3]
            )
        };
        let keyfiles = "INSERT INTO keyfiles (licence_id, customer, serial, document_id, title, policy, sha256, issued_at) VALUES ";
        let copies_sql = "INSERT INTO copies (licence_id, customer, document_id, ui, vssi, iv, last_psi, status, flags, created) VALUES ";
        let doc = doc.to_string();
        let mut params: Vec<&(dyn Param + Sync)> = Vec::new();
        for (licence, _, _) in chunk {
            params.push(licence);
            params.push(&doc);
        }
        setup.sql(
            &format!("{keyfiles}{}", rows('?', 2, &keyfile)),
            &format!("{keyfiles}{}", rows('$', 2, &keyfile)),
            &params,
        );
        let mut params: Vec<&(dyn Param + Sync)> = Vec::new();
        for (licence, customer, iv) in chunk {
            params.push(licence);
            params.push(customer);
            params.push(&doc);
            params.push(iv);
        }
        setup.sql(
            &format!("{copies_sql}{}", rows('?', 4, &copy)),
            &format!("{copies_sql}{}", rows('$', 4, &copy)),
            &params,
        );
    }
}

/// A one-page PDF carrying an unreferenced stream of `pad` bytes, so `pack` makes a
/// package of about that size (pdfium counts one page and never reads the stream).
fn padded_pdf(pad: usize) -> Vec<u8> {
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    let objects: [&[u8]; 3] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
    ];
    for (i, o) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend_from_slice(o);
        out.extend_from_slice(b"\nendobj\n");
    }
    offsets.push(out.len());
    out.extend_from_slice(format!("4 0 obj\n<< /Length {pad} >>\nstream\n").as_bytes());
    out.extend((0..pad).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    out.extend_from_slice(b"\nendstream\nendobj\n");
    let xref = out.len();
    out.extend_from_slice(b"xref\n0 5\n0000000000 65535 f \n");
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!("trailer\n<< /Size 5 /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n").as_bytes(),
    );
    out
}

/// A copy as the benchmark drives it: its state, like `ClientState` but with the ICV
/// computed from the chunk digests the client keeps (V8), so the client's side of a
/// request costs what the protocol costs, not a pass over 100 MB.
struct Copy {
    ui: Ui,
    iv: Iv,
    psi: u64,
    vssi: u64,
    card: SoftCard,
    /// The next request, already sealed (open-loop rows seal it before it is due).
    ready: Option<Vec<u8>>,
}

impl Copy {
    fn new(licence: [u8; 16], card: SoftCard) -> Self {
        let ui = Ui(licence);
        Self {
            ui,
            iv: Iv::first(&ui),
            psi: 0,
            vssi: 0,
            card,
            ready: None,
        }
    }

    fn request(&mut self, digests: &ChunkDigests, key: &PublicKey, viewer: Icv) -> Vec<u8> {
        self.psi += 1;
        let req = ValReq {
            variant: IcvVariant::V8,
            ui: self.ui,
            icv: compute_v8(digests, &self.ui, &self.iv),
            psi: self.psi,
            vssi: self.vssi,
            dt: 0,
            vsi: key.fingerprint(),
            iv: self.iv,
            viewer_icv: viewer,
        };
        let hash = request_hash(&req.encode());
        let proof = self
            .card
            .sign_request(&request_record_body(&hash, req.dt))
            .unwrap();
        req.seal(&proof, key, &mut rand_core::OsRng)
    }

    fn accept(&mut self, answer: &[u8], key: &PublicKey) {
        let v = Verdict::open(answer, key).expect("a VAL_OK that verifies");
        assert_eq!(v.status, Status::Ok, "{:?}", v.status);
        self.ui = self.ui.roll(&v.iv);
        self.iv = v.iv;
        self.vssi = v.vssi;
    }
}

/// Median microseconds of `f` over about `budget`.
fn time_op(budget: Duration, mut f: impl FnMut()) -> f64 {
    let mut samples = Vec::new();
    let start = Instant::now();
    while start.elapsed() < budget || samples.len() < 20 {
        let t = Instant::now();
        f();
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// One request's own cryptography, both sides, on fixed inputs: what the ceiling is made of.
struct Crypto {
    secret: ServerSecret,
    key: PublicKey,
    card: SoftCard,
    identity: tally_core::card::CardIdentity,
    env: Vec<u8>,
    verdict: Verdict,
    signed: Vec<u8>,
    digests: Arc<ChunkDigests>,
    viewer: Icv,
}

impl Crypto {
    fn new(digests: &Arc<ChunkDigests>, viewer: Icv) -> Self {
        let secret = ServerSecret::random(&mut rand_core::OsRng);
        let key = secret.public().clone();
        let card = SoftCard::new(Serial([7; 16]));
        let identity = card.identity();
        let mut copy = Copy::new([7; 16], card.for_another_copy());
        let env = copy.request(digests, &key, viewer);
        let (req, hash, _) = secret.open_request(&env).unwrap();
        let verdict = Verdict {
            status: Status::Ok,
            licence: LicenceId([7; 16]),
            ui: req.ui,
            psi: req.psi,
            vssi: 1,
            card_counter: 0,
            dt: 0,
            vsi: secret.vsi(),
            iv: Iv([9; 32]),
            expires: 0,
            offline_records: DEFAULT_OFFLINE_RECORDS,
            request: hash,
        };
        let signed = secret.sign(&verdict);
        Self {
            secret,
            key,
            card,
            identity,
            env,
            verdict,
            signed,
            digests: digests.clone(),
            viewer,
        }
    }

    /// The server's: ECIES open, the card's signature, the V8 ICV, the VAL_OK's signature,
    /// the UI roll.
    fn server(&self) {
        let (req, hash, proof) = self.secret.open_request(&self.env).unwrap();
        std::hint::black_box(tally_core::validation::CardCheck::of(
            &req,
            &hash,
            proof.as_ref(),
            Some(&self.identity),
        ));
        std::hint::black_box(compute_v8(&self.digests, &req.ui, &req.iv));
        std::hint::black_box(self.secret.sign(&self.verdict));
        std::hint::black_box(req.ui.roll(&req.iv));
    }

    /// The client's: the V8 ICV, the card's signature, ECIES seal, the VAL_OK's check.
    fn client(&self) {
        let mut c = Copy::new([7; 16], self.card.for_another_copy());
        std::hint::black_box(c.request(&self.digests, &self.key, self.viewer));
        std::hint::black_box(Verdict::open(&self.signed, &self.key).unwrap());
    }
}

/// The request's own cryptography: each side's median µs on one thread.
fn crypto_cost(digests: &Arc<ChunkDigests>, viewer: Icv) -> (f64, f64) {
    let one = Crypto::new(digests, viewer);
    let budget = Duration::from_millis(400);
    (
        time_op(budget, || one.server()),
        time_op(budget, || one.client()),
    )
}

/// The ceiling: whole rounds of the request's cryptography (both sides) per second with
/// every core running them and nothing else, measured so for `run` (not one core's rate
/// times the cores: two busy cores of a VM do less than twice one, or more when the host
/// gave more meanwhile). Measured just before and just after each row, since this shared
/// VM's speed drifts by a third within minutes.
fn ceiling(digests: &Arc<ChunkDigests>, viewer: Icv, cores: usize, run: Duration) -> f64 {
    let barrier = Arc::new(Barrier::new(cores));
    let workers: Vec<_> = (0..cores)
        .map(|_| {
            let (digests, barrier) = (digests.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mine = Crypto::new(&digests, viewer);
                barrier.wait();
                let start = Instant::now();
                let mut rounds = 0u64;
                while start.elapsed() < run {
                    mine.server();
                    mine.client();
                    rounds += 1;
                }
                rounds as f64 / start.elapsed().as_secs_f64()
            })
        })
        .collect();
    workers.into_iter().map(|w| w.join().unwrap()).sum()
}

struct Row {
    requests: usize,
    secs: f64,
    p50: f64,
    p99: f64,
    /// CPU seconds the server process used during the row.
    server_cpu: f64,
    /// CPU seconds this process (the clients) used during the row.
    client_cpu: f64,
    /// CPU seconds the machine's PostgreSQL processes used during the row (0 on SQLite,
    /// which runs inside the server).
    db_cpu: f64,
    /// CPU seconds the hypervisor took from this VM during the row (all cores).
    steal: f64,
}

/// CPU seconds (user + system) every `postgres` process of this machine has used so far
/// (the backends serving the server, the WAL writer, the checkpointer): the database's
/// share of the cores the benchmark runs on.
fn postgres_cpu_seconds() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| {
            std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "postgres")
        })
        .map(|e| cpu_seconds(&e.file_name().to_string_lossy()))
        .sum()
}

/// CPU seconds the hypervisor took from this VM so far (all cores; `/proc/stat`'s `steal`).
fn steal_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(8))
        .and_then(|f| f.parse::<f64>().ok())
        .map_or(0.0, |t| t / 100.0)
}

/// CPU seconds (user + system) process `pid` has used so far, from `/proc/PID/stat`.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// A keep-alive HTTP/1.1 connection to the server: the load generator's own client, a
/// request written in one call and the answer read by its `content-length`. The clients are
/// tasks on as many threads as there are cores (as a load generator such as wrk runs), not
/// a thread each: 32 or 128 threads taking turns on two cores with the server would charge
/// the server's share of the machine for the clients' context switches.
struct Conn {
    stream: tokio::net::TcpStream,
    head: Vec<u8>,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(url: &str) -> Self {
        let rest = url.strip_prefix("http://").expect("an http:// URL");
        let (host, path) = rest.split_once('/').expect("a URL with a path");
        let stream = tokio::net::TcpStream::connect(host).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let head = format!(
            "POST /{path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/octet-stream\r\ncontent-length: "
        )
        .into_bytes();
        Self {
            stream,
            head,
            buf: Vec::with_capacity(4096),
        }
    }

    /// POSTs `body`; returns the status and the answer's body.
    async fn post(&mut self, body: &[u8]) -> (u16, Vec<u8>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut req = Vec::with_capacity(self.head.len() + 16 + body.len());
        req.extend_from_slice(&self.head);
        req.extend_from_slice(format!("{}\r\n\r\n", body.len()).as_bytes());
        req.extend_from_slice(body);
        self.stream.write_all(&req).await.unwrap();
        self.buf.clear();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buf[..end]).unwrap();
                let status: u16 = head
                    .split(' ')
                    .nth(1)
                    .and_then(|c| c.parse().ok())
                    .expect("an HTTP status line");
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().ok())?
                    })
                    .expect("an answer with a content-length");
                let start = end + 4;
                while self.buf.len() < start + length {
                    let n = self.stream.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "the server closed the connection mid-answer");
                    self.buf.extend_from_slice(&chunk[..n]);
                }
                return (status, self.buf[start..start + length].to_vec());
            }
            let n = self.stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the server closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Runs one row: `clients` clients, each its own copy on its own connection. `pace` `None`
/// is a closed loop (each client sends its next request as soon as the answer came: the
/// most the server does). `Some(rate)` is an open loop offering `rate` requests per second
/// in all: each client sends on its own schedule (evenly spaced, starts staggered), and a
/// request's latency counts from when it was due, not from when it was sent, so a stalled
/// server (or a busy client thread) is charged for the requests it held back (no
/// coordinated omission).
#[allow(clippy::too_many_arguments)] // one row's whole set-up, each argument used once
fn run_row(
    urls: &[String],
    key: &PublicKey,
    digests: &Arc<ChunkDigests>,
    copies: &mut Vec<Copy>,
    clients: usize,
    per_client: usize,
    seconds: u64,
    viewer: Icv,
    pace: Option<f64>,
    server_pids: &[u32],
    cores: usize,
) -> Row {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()
        .unwrap();
    let server_cpu = || -> f64 {
        server_pids
            .iter()
            .map(|p| cpu_seconds(&p.to_string()))
            .sum()
    };
    let interval = pace.map(|rate| Duration::from_secs_f64(clients as f64 / rate));
    let barrier = Arc::new(tokio::sync::Barrier::new(clients + 1));
    let mut tasks = Vec::new();
    // Each client's copies: one (the same copy all row long), or `per_client`, taken in turn
    // (a new copy for each request: copies this node has not seen).
    let mut sets: Vec<Vec<Copy>> = Vec::new();
    for _ in 0..clients {
        sets.push(copies.drain(..per_client.min(copies.len())).collect());
    }
    for (i, mut set) in sets.into_iter().enumerate() {
        // With several nodes, the clients take them in turn (as a round-robin balancer).
        let (barrier, digests, url, key) = (
            barrier.clone(),
            digests.clone(),
            urls[i % urls.len()].clone(),
            key.clone(),
        );
        tasks.push(rt.spawn(async move {
            let mut conn = Conn::open(&url).await;
            let mut lat = Vec::new();
            barrier.wait().await;
            let t0 = Instant::now();
            let mut due = interval.map(|iv| t0 + iv.mul_f64(i as f64 / clients as f64));
            let mut k = 0;
            while t0.elapsed() < Duration::from_secs(seconds) {
                let n = set.len();
                let copy = &mut set[k % n];
                if due.is_none() && copy.ready.is_none() {
                    // Closed loop: sealed now, and the clock starts when it is sent.
                    copy.ready = Some(copy.request(&digests, &key, viewer));
                }
                let s = match (due, interval) {
                    (Some(d), Some(iv)) => {
                        tokio::time::sleep_until(d.into()).await;
                        due = Some(d + iv);
                        d
                    }
                    _ => Instant::now(),
                };
                let env = copy
                    .ready
                    .take()
                    .unwrap_or_else(|| copy.request(&digests, &key, viewer));
                let (status, body) = conn.post(&env).await;
                lat.push((s.saturating_duration_since(t0), s.elapsed()));
                assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
                copy.accept(&body, &key);
                k += 1;
                let next = &mut set[k % n];
                if due.is_some() && next.ready.is_none() {
                    // The next request, sealed while it is not yet due (a viewer has its
                    // request ready before it connects); kept for the next row if this
                    // one ends first.
                    next.ready = Some(next.request(&digests, &key, viewer));
                }
            }
            (set, lat)
        }));
    }
    let steal0 = steal_seconds();
    let (lat, secs, server_cpu, client_cpu, db_cpu) = rt.block_on(async {
        // Every connection is open before the clock starts.
        barrier.wait().await;
        let (server0, client0, db0) = (server_cpu(), cpu_seconds("self"), postgres_cpu_seconds());
        let start = Instant::now();
        let mut lat = Vec::new();
        for t in tasks {
            let (set, l) = t.await.unwrap();
            lat.extend(l);
            copies.extend(set);
        }
        let secs = start.elapsed().as_secs_f64();
        (
            lat,
            secs,
            server_cpu() - server0,
            cpu_seconds("self") - client0,
            postgres_cpu_seconds() - db0,
        )
    });
    // Where the slow requests were due (100 ms buckets from the row's start), to tell one
    // stall from a broad tail.
    if std::env::var_os("TALLY_BENCH_TRACE").is_some() {
        let mut buckets = std::collections::BTreeMap::<u128, (usize, Duration)>::new();
        for (due, l) in &lat {
            if *l > Duration::from_millis(10) {
                let b = buckets.entry(due.as_millis() / 100).or_default();
                b.0 += 1;
                b.1 = b.1.max(*l);
            }
        }
        let list: Vec<String> = buckets
            .iter()
            .map(|(b, (n, m))| {
                format!(
                    "{:.1}s:{n}({:.0}ms)",
                    *b as f64 / 10.0,
                    m.as_secs_f64() * 1e3
                )
            })
            .collect();
        eprintln!("  slow (> 10 ms) by due time: {}", list.join(" "));
    }
    let mut lat: Vec<Duration> = lat.into_iter().map(|(_, l)| l).collect();
    lat.sort();
    let pct = |p: usize| lat[(lat.len() * p / 100).min(lat.len() - 1)].as_secs_f64() * 1e3;
    Row {
        requests: lat.len(),
        secs,
        p50: pct(50),
        p99: pct(99),
        server_cpu,
        client_cpu,
        db_cpu,
        steal: steal_seconds() - steal0,
    }
}

fn main() {
    let n_copies: i64 = env_or("TALLY_BENCH_COPIES", 1_000_000);
    let nodes: usize = env_or::<usize>("TALLY_BENCH_NODES", 1).max(1);
    let seconds: u64 = env_or("TALLY_BENCH_SECONDS", 5);
    let big_mb: usize = env_or("TALLY_BENCH_BIG_MB", 100);
    let clients: Vec<usize> = std::env::var("TALLY_BENCH_CLIENTS")
        .unwrap_or_else(|_| "1,8,32,128".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .filter(|&c| (1..=MAX_CLIENTS).contains(&c))
        .collect();
    // The open-loop row: this many clients offering `load` × the ceiling in all.
    let paced_clients: Option<usize> = std::env::var("TALLY_BENCH_PACED")
        .unwrap_or_else(|_| "32".into())
        .trim()
        .parse()
        .ok()
        .filter(|&c| (1..=MAX_CLIENTS).contains(&c));
    let loads: Vec<f64> = std::env::var("TALLY_BENCH_LOAD")
        .unwrap_or_else(|_| "0.5,0.7".into())
        .split(',')
        .filter_map(|l| l.trim().parse().ok())
        .filter(|l| (0.01..=1.0).contains(l))
        .collect();
    // The open-loop row whose every request comes from a copy the node has not served yet
    // (its card and row read from the database): the paced clients offering this share.
    let new_load: f64 = std::env::var("TALLY_BENCH_NEW")
        .unwrap_or_else(|_| "0.5".into())
        .trim()
        .parse()
        .ok()
        .filter(|l| (0.01..=1.0).contains(l))
        .unwrap_or(0.0);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let tmp = tempfile::tempdir().unwrap();
    let pdf_small = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/sample.pdf");
    let pdf_big = tmp.path().join("big.pdf");
    std::fs::write(&pdf_big, padded_pdf(big_mb << 20)).unwrap();
    let viewer = executable_icv(VIEWER).unwrap();

    let pg = std::env::var("TALLY_PG_URL").ok();
    let wanted = std::env::var("TALLY_BENCH_DATABASES").unwrap_or("sqlite,postgres".into());
    let wanted: Vec<&str> = wanted.split(',').map(str::trim).collect();
    let mut databases: Vec<(&str, Option<PgDb>)> = Vec::new();
    if wanted.contains(&"sqlite") {
        databases.push(("sqlite", None));
    }
    match &pg {
        Some(admin) if wanted.contains(&"postgres") => {
            databases.push(("postgres", Some(fresh_pg(admin))));
        }
        Some(_) => {}
        None => println!("PostgreSQL rows skipped: TALLY_PG_URL is not set"),
    }
    println!(
        "{n_copies} registered copies; {seconds} s per row; ICV V8; {nodes} serve node(s); {cores} cores shared by clients and server"
    );
    println!(
        "{:>9} {:>8} {:>9} {:>9} {:>11} {:>9} {:>9} {:>10} {:>12} {:>10} {:>10} {:>10} {:>7} {:>7}",
        "database",
        "package",
        "clients",
        "requests",
        "VAL_REQ/s",
        "p50 ms",
        "p99 ms",
        "ceiling/s",
        "% ceiling",
        "server µs",
        "client µs",
        "pg µs",
        "busy",
        "steal"
    );
    let mut ceilings = Vec::new();
    for (name, pgdb) in &databases {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let setup = Setup {
            dir: dir.clone(),
            database: pgdb.as_ref().map(|p| p.url.clone()),
        };
        setup.run(&["vendor", "init", "--name", "Bench Press"]);
        std::fs::write(dir.join("viewer"), VIEWER).unwrap();
        setup.run(&["viewer", "register", dir.join("viewer").to_str().unwrap()]);
        let mut packages = Vec::new();
        for (label, pdf) in [("small", &pdf_small), ("big", &pdf_big)] {
            let out = dir.join(format!("{label}.tly"));
            let printed = setup.run(&["pack", pdf.to_str().unwrap(), "-o", out.to_str().unwrap()]);
            let doc = printed
                .split("(document ")
                .nth(1)
                .and_then(|s| s.split(')').next())
                .unwrap()
                .to_string();
            let bytes = std::fs::read(&out).unwrap();
            packages.push((label, doc, Arc::new(ChunkDigests::of(&bytes)), bytes.len()));
        }
        // The registered copies: filler rows (random licences and UIs) to size the tables
        // and their indexes, in one statement.
        let t = Instant::now();
        setup.sql(
            "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ?1)
             INSERT INTO copies (licence_id, customer, document_id, ui, vssi, iv, last_psi, status, flags, created)
             SELECT lower(hex(randomblob(16))), 'filler ' || (i % 1000), ?2, lower(hex(randomblob(16))),
                    0, randomblob(32), 0, 'active', '', '2026-01-01T00:00:00Z' FROM s",
            "INSERT INTO copies (licence_id, customer, document_id, ui, vssi, iv, last_psi, status, flags, created)
             SELECT md5(random()::text || i), 'filler ' || (i % 1000), $2, md5(random()::text || i || 'u'),
                    0, decode(md5(random()::text) || md5(random()::text), 'hex'), 0, 'active', '',
                    '2026-01-01T00:00:00Z'
             FROM generate_series(1, $1::bigint) AS i",
            &[&n_copies, &packages[0].1],
        );
        eprintln!(
            "{name}: {n_copies} copies inserted in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        // Each client's copy, per package: all on one bench reader's card, registered with
        // the publisher, whose keyfile rows name it (the server checks the card's signature
        // of every request against it).
        let card = SoftCard::new(Serial([0xbe; 16]));
        let export = dir.join("bench.card");
        std::fs::write(&export, card.export()).unwrap();
        setup.run(&[
            "customer",
            "add",
            "--name",
            "Bench Reader",
            "--allow-emulated-card",
            "--card",
            export.to_str().unwrap(),
        ]);
        // Per package: each client's own copy (`MAX_CLIENTS`), and the copies of the rows
        // whose every request comes from a copy the node has not served (`new`): enough for
        // the offered load at a ceiling of up to 2,500 rounds per second.
        let new_copies = (new_load * 2_500.0 * seconds as f64).ceil() as usize;
        let serial = hex::encode([0xbe; 16]);
        let (mut client_copies, mut unseen_copies) = (Vec::new(), Vec::new());
        for (p, (_, doc, _, _)) in packages.iter().enumerate() {
            let make = |n: usize, who: &str| {
                let mut copies = Vec::with_capacity(n);
                let mut rows = Vec::with_capacity(n);
                for c in 0..n {
                    let mut licence = [0u8; 16];
                    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut licence);
                    let copy = Copy::new(licence, card.for_another_copy());
                    rows.push((
                        hex::encode(licence),
                        format!("{who} {p}/{c}"),
                        copy.iv.0.to_vec(),
                    ));
                    copies.push(copy);
                }
                register(&setup, doc, &serial, &rows);
                copies
            };
            client_copies.push(make(MAX_CLIENTS, "bench"));
            unseen_copies.push(make(new_copies, "bench new"));
        }
        if setup.database.is_none() {
            // The filler rows went through the write-ahead log: copied into the database now,
            // so the server's first checkpoint is not 10⁶ rows' worth inside the first rows.
            let c = rusqlite::Connection::open(dir.join("vendor/registry.sqlite")).unwrap();
            c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .unwrap();
        }
        if let Some(url) = &setup.database {
            // The same for PostgreSQL: the filler's pages vacuumed (visibility map and hint
            // bits set now, not by the first validations that read them, which would write
            // them back) and flushed, so neither autovacuum nor the fill's checkpoint lands
            // inside the first rows.
            let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
            c.batch_execute("VACUUM ANALYZE").unwrap();
            c.batch_execute("CHECKPOINT").unwrap();
        }
        let servers: Vec<(Server, String)> = (0..nodes).map(|_| setup.serve()).collect();
        let base = servers[0].1.clone();
        let key = {
            let mut r = ureq::get(format!("{base}/v1/server-key")).call().unwrap();
            let v: serde_json::Value =
                serde_json::from_slice(&r.body_mut().read_to_vec().unwrap()).unwrap();
            PublicKey::from_sec1(&hex::decode(v["public_key"].as_str().unwrap()).unwrap()).unwrap()
        };
        let urls: Vec<String> = servers
            .iter()
            .map(|(_, b)| format!("{b}/v1/validate"))
            .collect();
        let pids: Vec<u32> = servers.iter().map(|(s, _)| s.0.id()).collect();
        for (p, (label, _, digests, size)) in packages.iter().enumerate() {
            let (s_us, c_us) = crypto_cost(digests, viewer);
            let mut measured = Vec::new();
            let closed = clients.iter().map(|&c| (c, None));
            let paced = paced_clients
                .into_iter()
                .flat_map(|c| loads.iter().map(move |&l| (c, Some(l), false)));
            let unseen = paced_clients
                .filter(|_| new_load > 0.0)
                .map(|c| (c, Some(new_load), true));
            for (c, load, new) in closed
                .map(|(c, l)| (c, l, false))
                .chain(paced)
                .chain(unseen)
            {
                // Both sides' cryptography per request with every core busy on it: the most
                // the machine could do if HTTP, the database and scheduling cost nothing.
                let before = ceiling(digests, viewer, cores, Duration::from_secs(1));
                let per_client = if new {
                    (unseen_copies[p].len() / c).max(1)
                } else {
                    1
                };
                let row = run_row(
                    &urls,
                    &key,
                    digests,
                    if new {
                        &mut unseen_copies[p]
                    } else {
                        &mut client_copies[p]
                    },
                    c,
                    per_client,
                    seconds,
                    viewer,
                    load.map(|l| l * before),
                    &pids,
                    cores,
                );
                let after = ceiling(digests, viewer, cores, Duration::from_secs(1));
                let ceiling = (before + after) / 2.0;
                measured.push(ceiling);
                let rate = row.requests as f64 / row.secs;
                let who = match load {
                    None => c.to_string(),
                    Some(l) => format!("{c}@{:.0}%{}", 100.0 * l, if new { "new" } else { "" }),
                };
                let per = |cpu: f64| cpu * 1e6 / row.requests.max(1) as f64;
                println!(
                    "{name:>9} {label:>8} {who:>9} {:>9} {rate:>11.0} {:>9.2} {:>9.2} {ceiling:>10.0} {:>11.0}% {:>10.0} {:>10.0} {:>10.0} {:>6.0}% {:>6.0}%",
                    row.requests,
                    row.p50,
                    row.p99,
                    100.0 * rate / ceiling,
                    per(row.server_cpu),
                    per(row.client_cpu),
                    per(row.db_cpu),
                    100.0 * (row.server_cpu + row.client_cpu + row.db_cpu)
                        / (row.secs * cores as f64),
                    100.0 * row.steal / (row.secs * cores as f64),
                );
                let _ = std::io::stdout().flush();
            }
            let mean = measured.iter().sum::<f64>() / measured.len().max(1) as f64;
            ceilings.push((*name, *label, *size, s_us, c_us, mean));
        }
        drop(servers);
    }
    println!();
    println!(
        "{:>9} {:>8} {:>12} {:>12} {:>12} {:>14} {:>16}",
        "database", "package", "bytes", "server µs", "client µs", "mean ceiling", "cores × 1 core"
    );
    for (name, label, size, s, c, ceiling) in ceilings {
        // Beside the measured ceiling, what one core's rate times the cores would claim.
        let naive = cores as f64 * 1e6 / (s + c);
        println!(
            "{name:>9} {label:>8} {size:>12} {s:>12.1} {c:>12.1} {ceiling:>14.0} {naive:>16.0}"
        );
    }
}
