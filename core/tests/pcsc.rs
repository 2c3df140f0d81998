//! The real card path, end to end through the real pcsc-lite daemon: [`PcscCard`] talks
//! to pcscd, pcscd to vsmartcard's vpcd driver, vpcd to our [`VirtualCard`] over TCP.
//!
//! `harness = false`: only one virtual card can own vpcd's port 35963, so one process
//! runs the subtests in order (and takes a file lock shared with the card bench). The
//! same binary, run with `--child …`, is the "other viewer" process of DESIGN threat 16.
//!
//! pcscd: with `TALLY_PCSCD=1` (set by `scripts/test.sh`, which starts its own) it must be
//! reachable or every subtest fails. Without it the fixture uses a running pcscd, or
//! starts `pcscd -f` itself when root, or fails saying why — it never skips silently.

use std::ffi::CString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "support/pcscd.rs"]
mod pcscd;
use pcscd::{Pcscd, READER, ensure_pcscd, vpcd_port_lock, wait_reader};

use pcsc::{Context, Disposition, Protocols, ShareMode};
use tally_core::card::CardIdentity;
use tally_core::card::apdu::{Command as Apdu, Ins, StatusWord};
use tally_core::card::applet::CardState;
use tally_core::card::attestation::{AttestationError, IssuerSecret};
use tally_core::card::emulated::EmulatedCard;
use tally_core::card::pcsc::PcscCard;
use tally_core::card::virtual_card::{DEFAULT_VPCD, VirtualCard};
use tally_core::card::{AID, Card, CardBackend, CardError, TransportError, signed_message};
use tally_core::crypto::PublicKey;
use tally_core::crypto::default_verifier;
use tally_core::keyfile::{CardStanding, Cis, Keyfile, KeyfileError, VerifiedKeyfile};
use tally_core::package::{ContentKey, DocumentId};
use tally_core::policy::Limits;
use tally_core::trail::file::{HEADER_LEN, encode_frame};
use tally_core::trail::{Body, CrashPoint, LicenceId, Trail, TrailError, Usage};
use tally_core::vendor::VendorSecret;

/// vpcd's second reader (port 35964), always empty here.
const EMPTY_READER: &str = "Virtual PCD 00 01";
/// The 8 viewers of DESIGN threat 16, metering for this long each.
const VIEWERS: usize = 8;
const METER_FOR: Duration = Duration::from_secs(3);

type Outcome = Result<(), String>;
type Subtest = (&'static str, fn(&mut Rig) -> Outcome);

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!("{} (at line {})", format!($($msg)+), line!()));
        }
    };
}

fn fail<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> String + '_ {
    move |e| format!("{what}: {e}")
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        return child(&args[1..]);
    }
    let subtests: [Subtest; 8] = [
        ("pcsc::protocol", protocol),
        (
            "pcsc::t36_attestation_and_decipher",
            t36_attestation_and_decipher,
        ),
        ("pcsc::errors", errors),
        ("pcsc::t13_reset_and_power_off", t13_reset_and_power_off),
        ("pcsc::card_removed_mid_session", card_removed_mid_session),
        ("pcsc::trail_through_pcscd", trail_through_pcscd),
        ("pcsc::t14_counter_at_maximum", t14_counter_at_maximum),
        ("pcsc::threat16_many_viewers", threat16_many_viewers),
    ];
    if args.iter().any(|a| a == "--list") {
        for (name, _) in &subtests {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    // libtest's command line, as far as it matters here: filters, --exact, --skip; the
    // values of other options (`--test-threads 1`) are not filters.
    let (mut filters, mut skips) = (Vec::new(), Vec::new());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--skip" => skips.extend(it.next()),
            "--test-threads" | "--format" | "--color" | "--logfile" | "-Z" | "--shuffle-seed" => {
                it.next();
            }
            _ if a.starts_with('-') => {}
            _ => filters.push(a),
        }
    }
    let exact = args.iter().any(|a| a == "--exact");
    let matches = |name: &str, f: &String| {
        if exact {
            name == f
        } else {
            name.contains(f.as_str())
        }
    };
    let selected: Vec<_> = subtests
        .iter()
        .filter(|(name, _)| {
            (filters.is_empty() || filters.iter().any(|f| matches(name, f)))
                && !skips.iter().any(|f| matches(name, f))
        })
        .collect();
    let filtered_out = subtests.len() - selected.len();
    let t0 = Instant::now();
    println!("\nrunning {} tests", selected.len());
    let (mut passed, mut failed) = (0, 0);
    if !selected.is_empty() {
        match Rig::new() {
            Err(e) => {
                for (name, _) in &selected {
                    println!("test {name} ... FAILED");
                }
                println!("\nthe PC/SC test fixture could not start:\n  {e}\n");
                failed = selected.len();
            }
            Ok(mut rig) => {
                for (name, f) in &selected {
                    let t = Instant::now();
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut rig)))
                        .unwrap_or_else(|p| {
                            Err(p
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                                .unwrap_or_else(|| "panicked".into()))
                        });
                    // Whatever a subtest left running, the next one starts with an empty reader.
                    let cleanup = rig.stop_card();
                    match r.and(cleanup) {
                        Ok(()) => {
                            passed += 1;
                            println!("test {name} ... ok ({:.1} s)", t.elapsed().as_secs_f64());
                        }
                        Err(e) => {
                            failed += 1;
                            println!("test {name} ... FAILED\n    {e}");
                        }
                    }
                }
            }
        }
    }
    println!(
        "\ntest result: {}. {passed} passed; {failed} failed; 0 ignored; 0 measured; {filtered_out} filtered out; finished in {:.2}s\n",
        if failed == 0 { "ok" } else { "FAILED" },
        t0.elapsed().as_secs_f64()
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(101)
    }
}

// ---------------------------------------------------------------------------------------
// The fixture: pcscd, the port lock, and a virtual card server thread.

/// A virtual card server thread.
struct Server {
    state: PathBuf,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
    events: Arc<Mutex<Vec<String>>>,
}

struct Rig {
    dir: tempfile::TempDir,
    ctx: Context,
    server: Option<Server>,
    cards: u32,
    // Field order is drop order: stop pcscd before releasing the port lock.
    _pcscd: Pcscd,
    _port: pcscd::PortLock,
}

impl Rig {
    fn new() -> Result<Self, String> {
        let port = vpcd_port_lock().map_err(fail("locking vpcd's port"))?;
        let (pcscd, ctx) = ensure_pcscd()?;
        // A card someone else just removed may still look present (pitfall 3).
        wait_reader(&ctx, READER, false, Duration::from_secs(10)).map_err(|e| {
            format!(
                "{e}; is another virtual card (tally-view card serve-virtual?) connected to vpcd?"
            )
        })?;
        Ok(Self {
            dir: tempfile::tempdir().map_err(fail("temp dir"))?,
            ctx,
            server: None,
            cards: 0,
            _pcscd: pcscd,
            _port: port,
        })
    }

    /// Personalises a new emulated card and inserts it (serves it to vpcd).
    fn new_card(&mut self, origin: u64) -> Result<PathBuf, String> {
        self.cards += 1;
        let path = self.dir.path().join(format!("card{}", self.cards));
        let state = CardState::generate(&mut rand_core::OsRng, origin, "pcsc test card");
        EmulatedCard::create(&path, &state).map_err(fail("creating card"))?;
        self.insert(&path)?;
        Ok(path)
    }

    /// Serves the state file at `path` to vpcd and waits until pcscd sees the card.
    fn insert(&mut self, path: &Path) -> Outcome {
        self.stop_card()?;
        let card = VirtualCard::new(path, DEFAULT_VPCD).map_err(fail("virtual card"))?;
        let stop = card.stop_flag();
        let events = Arc::new(Mutex::new(Vec::new()));
        let ev = Arc::clone(&events);
        let thread = std::thread::spawn(move || {
            let r = card.run(&mut |e| {
                if let Ok(mut v) = ev.lock() {
                    v.push(format!("{e:?}"));
                }
            });
            if let Err(e) = r {
                eprintln!("virtual card: {e}");
            }
        });
        self.server = Some(Server {
            state: path.to_path_buf(),
            stop,
            thread,
            events,
        });
        wait_reader(&self.ctx, READER, true, Duration::from_secs(10))
    }

    /// Inserts a card without our applet: it answers the ATR, and `6A82` to every APDU.
    fn insert_foreign(&mut self) -> Outcome {
        self.stop_card()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                if let Ok(s) = std::net::TcpStream::connect(DEFAULT_VPCD) {
                    let _ = foreign_card(s, &flag);
                } else {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        });
        self.server = Some(Server {
            state: PathBuf::new(),
            stop,
            thread,
            events: Arc::new(Mutex::new(Vec::new())),
        });
        wait_reader(&self.ctx, READER, true, Duration::from_secs(10))
    }

    /// Removes the card (closes its connection to vpcd) and waits for pcscd to notice.
    fn stop_card(&mut self) -> Outcome {
        if let Some(s) = self.server.take() {
            s.stop.store(true, Ordering::Relaxed);
            s.thread
                .join()
                .map_err(|_| "virtual card thread panicked".to_string())?;
            wait_reader(&self.ctx, READER, false, Duration::from_secs(10))?;
        }
        Ok(())
    }

    fn events(&self) -> Vec<String> {
        self.server
            .as_ref()
            .and_then(|s| s.events.lock().ok().map(|v| v.clone()))
            .unwrap_or_default()
    }

    fn state(&self) -> Result<CardState, String> {
        let s = self.server.as_ref().ok_or("no card inserted")?;
        EmulatedCard::open(&s.state)
            .and_then(|c| c.load())
            .map_err(fail("reading card state"))
    }
}

/// Another application's card, speaking vpcd's framing: ATR on request, `6A82` to any APDU.
fn foreign_card(mut s: std::net::TcpStream, stop: &AtomicBool) -> std::io::Result<()> {
    use std::io::{Read, Write};
    s.set_read_timeout(Some(Duration::from_millis(100)))?;
    s.set_nodelay(true)?;
    let mut buf = [0u8; 65_537];
    let mut have = 0;
    while !stop.load(Ordering::Relaxed) {
        match s.read(&mut buf[have..]) {
            Ok(0) => return Ok(()),
            Ok(n) => have += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e),
        }
        while have >= 2 {
            let len = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
            if have < 2 + len {
                break;
            }
            let reply: &[u8] = match &buf[2..2 + len] {
                [0x04] => &[0x3B, 0x80, 0x80, 0x01, 0x01],
                [_] | [] => &[],
                _ => &[0x6A, 0x82],
            };
            if !reply.is_empty() {
                let mut frame = (reply.len() as u16).to_be_bytes().to_vec();
                frame.extend_from_slice(reply);
                s.write_all(&frame)?;
            }
            buf.copy_within(2 + len..have, 0);
            have -= 2 + len;
        }
    }
    Ok(())
}

fn pcsc_card(reader: Option<&str>) -> Result<Card, String> {
    PcscCard::connect(reader)
        .map(|c| Card::new(Box::new(c)))
        .map_err(fail("PcscCard::connect"))
}

/// The card's counter and last signature agree and the signature verifies.
fn assert_consistent(state: &CardState) -> Outcome {
    let last = state.last.ok_or("the card never signed")?;
    ensure!(
        last.counter + 1 == state.counter,
        "counter {} but last signature covers {}",
        state.counter,
        last.counter
    );
    ensure!(
        default_verifier().verify(
            &state.public_key(),
            &signed_message(&last.h, &state.serial, last.counter),
            &last.signature
        ),
        "the card's last signature does not verify"
    );
    Ok(())
}

fn licence() -> LicenceId {
    LicenceId([7; 16])
}

fn page_body(page: u32) -> Body {
    Body::now(Usage::Pages {
        licence: licence(),
        first: page,
        count: 1,
    })
}

// ---------------------------------------------------------------------------------------
// Subtests.

/// The card protocol through pcscd: identity, counter, sign, last signature.
fn protocol(rig: &mut Rig) -> Outcome {
    let origin = 1_000_000 + u64::from(rand_core::RngCore::next_u32(&mut rand_core::OsRng));
    rig.new_card(origin)?;
    let state = rig.state()?;

    let readers = PcscCard::list_readers().map_err(fail("list readers"))?;
    ensure!(readers.iter().any(|r| r == READER), "{readers:?}");

    // By name, and by looking for our applet.
    let mut by_name = pcsc_card(Some(READER))?;
    ensure!(
        by_name.describe() == format!("pcsc:{READER}"),
        "{}",
        by_name.describe()
    );
    let mut card = pcsc_card(None)?;
    ensure!(
        card.describe() == format!("pcsc:{READER}"),
        "{}",
        card.describe()
    );

    let id = card.identity().map_err(fail("identity"))?;
    ensure!(id.serial == state.serial, "serial");
    ensure!(id.public_key == state.public_key(), "public key");
    ensure!(id.origin == origin, "origin {} != {origin}", id.origin);
    ensure!(
        by_name.identity().map_err(fail("identity"))? == id,
        "same card by name"
    );

    let mut s = card.session().map_err(fail("session"))?;
    ensure!(
        s.get_counter().map_err(fail("counter"))? == origin,
        "counter"
    );
    ensure!(
        s.get_last_signature().map_err(fail("last"))?.is_none(),
        "a fresh card has no last signature"
    );
    let h = [0x42; 32];
    let sig = s.sign_and_increment(&h).map_err(fail("sign"))?;
    ensure!(
        default_verifier().verify(
            &id.public_key,
            &signed_message(&h, &id.serial, origin),
            &sig
        ),
        "signature over (h, serial, counter) does not verify"
    );
    ensure!(
        s.get_counter().map_err(fail("counter"))? == origin + 1,
        "counter +1"
    );
    let last = s
        .get_last_signature()
        .map_err(fail("last"))?
        .ok_or("no last signature")?;
    ensure!(
        last.h == h && last.counter == origin && last.signature == sig,
        "last signature {last:?}"
    );
    drop(s);

    // Raw APDUs through PC/SC: a wrong AID deselects; status words come through intact.
    let mut backend = PcscCard::connect(Some(READER)).map_err(fail("connect"))?;
    {
        let mut tx = backend.transaction().map_err(fail("transaction"))?;
        let sw = |r: Vec<u8>| r.get(r.len().saturating_sub(2)..).map(<[u8]>::to_vec);
        let wrong = Apdu::select(&[0xA0, 0, 0, 0, 0x62]).to_bytes();
        ensure!(
            sw(tx.transmit(&wrong).map_err(fail("select"))?)
                == Some(StatusWord::APPLET_NOT_FOUND.to_bytes().to_vec()),
            "wrong AID"
        );
        let get = Apdu::new(Ins::GetCounter, &[], Some(8)).to_bytes();
        ensure!(
            sw(tx.transmit(&get).map_err(fail("get"))?)
                == Some(StatusWord::NOT_SELECTED.to_bytes().to_vec()),
            "GET_COUNTER without selection"
        );
        ensure!(
            sw(tx
                .transmit(&Apdu::select(&AID).to_bytes())
                .map_err(fail("select"))?)
                == Some(StatusWord::OK.to_bytes().to_vec()),
            "select"
        );
        ensure!(
            sw(tx.transmit(&[0x80, 0x7E, 0, 0]).map_err(fail("ins"))?)
                == Some(StatusWord::INS_NOT_SUPPORTED.to_bytes().to_vec()),
            "unknown INS"
        );
    }

    // The emulated card over the same state file sees the same counter (shared locking).
    let mut direct = Card::new(Box::new(
        EmulatedCard::open(&rig.server.as_ref().ok_or("no card")?.state)
            .map_err(fail("emulated"))?,
    ));
    let c = direct
        .session()
        .and_then(|mut s| s.get_counter())
        .map_err(fail("emulated counter"))?;
    ensure!(c == origin + 1, "emulated card sees {c}");
    assert_consistent(&rig.state()?)
}

/// The test issuer of `tests/data/issuer` (TEST ISSUER — NOT FOR PRODUCTION).
fn test_issuer() -> Result<IssuerSecret, String> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/issuer/test-issuer.secret");
    IssuerSecret::from_export(&std::fs::read(p).map_err(fail("reading the test issuer"))?)
        .map_err(fail("test issuer"))
}

/// A keyfile for the card `state` that refuses emulated cards (test issuer accepted),
/// and the content key in it.
fn keyfile_for(
    state: &CardState,
    allow_emulated: bool,
) -> Result<(VerifiedKeyfile, ContentKey), String> {
    let vendor = VendorSecret::generate("PC/SC Press", true, &mut rand_core::OsRng)
        .map_err(fail("vendor"))?;
    let key = ContentKey::generate(&mut rand_core::OsRng);
    let cis = Cis {
        licence: licence(),
        document: DocumentId([9; 16]),
        card: CardIdentity {
            serial: state.serial,
            public_key: state.public_key(),
            origin: state.origin,
        },
        card_agreement_key: state.agreement_key(),
        issuers: vec![test_issuer()?.public().clone()],
        customer_name: "Ada Reader".into(),
        content_key: key.clone(),
        limits: Limits::default(),
        allow_emulated_card: allow_emulated,
        server: None,
        issued_at: time::OffsetDateTime::UNIX_EPOCH,
    };
    let bytes = Keyfile::issue(&vendor, &cis, &mut rand_core::OsRng).map_err(fail("issue"))?;
    let k = Keyfile::open(&bytes, &[vendor.public().clone()]).map_err(fail("open"))?;
    Ok((k, key))
}

/// T36/T37 through pcscd: the key-agreement key, the attestation (read in blocks) and
/// DECIPHER answer as the card holds them; a keyfile's card check and content-key unwrap
/// run over PC/SC; an unattested (emulated) card served the same way is refused by a
/// keyfile that needs a real card, whatever the transport.
fn t36_attestation_and_decipher(rig: &mut Rig) -> Outcome {
    let now = time::OffsetDateTime::now_utc();
    let mut state = CardState::generate(&mut rand_core::OsRng, 77, "attested pcsc card");
    let issuer = test_issuer()?;
    state.attestation = Some(issuer.attest(
        &state.attested_card(),
        now.unix_timestamp() - 60,
        now.unix_timestamp() + 86_400,
    ));
    let path = rig.dir.path().join("attested.card");
    EmulatedCard::create(&path, &state).map_err(fail("creating card"))?;
    rig.insert(&path)?;

    let mut card = pcsc_card(Some(READER))?;
    let p = card.presented().map_err(fail("presented"))?;
    ensure!(p.agreement_key == state.agreement_key(), "agreement key");
    ensure!(
        p.attestation == state.attestation,
        "attestation read through pcscd differs ({:?} bytes)",
        p.attestation.as_ref().map(Vec::len)
    );
    // DECIPHER is ECDH with the card's key-agreement key.
    let eph = p256::SecretKey::random(&mut rand_core::OsRng);
    let eph_pub = PublicKey::from_verifying_key(&eph.public_key().into());
    let z = card
        .session()
        .and_then(|mut s| s.decipher(&eph_pub))
        .map_err(fail("decipher"))?;
    let expected = p256::ecdh::diffie_hellman(
        eph.to_nonzero_scalar(),
        p256::PublicKey::from(state.agreement_key().verifying_key()).as_affine(),
    );
    ensure!(
        z[..] == expected.raw_secret_bytes()[..],
        "DECIPHER answered another shared secret"
    );
    // An off-curve point is refused with 6A80, and the card stays usable.
    {
        let mut backend = PcscCard::connect(Some(READER)).map_err(fail("connect"))?;
        let mut tx = backend.transaction().map_err(fail("transaction"))?;
        tx.transmit(&Apdu::select(&AID).to_bytes())
            .map_err(fail("select"))?;
        let mut bad = *eph_pub.as_bytes();
        bad[64] ^= 1;
        let cmd = Apdu {
            p1: 0x80,
            p2: 0x86,
            ..Apdu::new(Ins::Decipher, &bad, Some(32))
        };
        let r = tx.transmit(&cmd.to_bytes()).map_err(fail("decipher"))?;
        ensure!(
            r == StatusWord::WRONG_DATA.to_bytes().to_vec(),
            "off-curve point answered {r:02x?}"
        );
    }
    let (k, key) = keyfile_for(&state, false)?;
    let checked = k.check_card(&mut card, now).map_err(fail("check_card"))?;
    ensure!(
        matches!(checked.standing, CardStanding::Attested { .. }),
        "{checked:?}"
    );
    let unwrapped = k.unwrap_content_key(&mut card).map_err(fail("unwrap"))?;
    ensure!(
        unwrapped.as_bytes() == key.as_bytes(),
        "unwrapped another key"
    );
    drop(card);

    // The same card without its attestation (an emulated card) through the same pcscd.
    let mut emulated = state.clone();
    emulated.attestation = None;
    let path = rig.dir.path().join("emulated.card");
    EmulatedCard::create(&path, &emulated).map_err(fail("creating card"))?;
    rig.insert(&path)?;
    let mut card = pcsc_card(Some(READER))?;
    let e = k.check_card(&mut card, now).err();
    ensure!(
        e == Some(KeyfileError::NotAttested(AttestationError::Missing)),
        "an emulated card through pcscd: {e:?}"
    );
    let (allowing, _) = keyfile_for(&emulated, true)?;
    let ok = allowing
        .check_card(&mut card, now)
        .map_err(fail("allow-emulated keyfile"))?;
    ensure!(
        matches!(ok.standing, CardStanding::Emulated { .. }),
        "{ok:?}"
    );
    Ok(())
}

/// Clear errors: unknown reader, empty reader, no service.
fn errors(rig: &mut Rig) -> Outcome {
    rig.new_card(0)?;
    match PcscCard::connect(Some("No Such Reader 99")) {
        Err(TransportError::NoReader(why)) => ensure!(why.contains("No Such Reader"), "{why}"),
        other => return Err(format!("unknown reader gave {other:?}")),
    }
    match PcscCard::connect(Some(EMPTY_READER)) {
        Err(TransportError::NoCard) => {}
        other => return Err(format!("empty reader gave {other:?}")),
    }
    // A card without our applet.
    rig.insert_foreign()?;
    match PcscCard::connect(None) {
        Err(e @ TransportError::NoApplet(1)) => {
            ensure!(
                e.to_string().contains("none holding the Tally applet"),
                "{e}"
            )
        }
        other => return Err(format!("a foreign card gave {other:?}")),
    }
    match pcsc_card(Some(READER))?.identity() {
        Err(CardError::Status { status, .. }) if status == StatusWord::APPLET_NOT_FOUND => {}
        other => return Err(format!("identity of a foreign card gave {other:?}")),
    }
    rig.stop_card()?;
    // No service: the same binary, pointed at a socket where no pcscd listens.
    let out = Command::new(std::env::current_exe().map_err(fail("current exe"))?)
        .args(["--child", "no-service"])
        .env("PCSCLITE_CSOCK_NAME", rig.dir.path().join("no-pcscd-here"))
        .output()
        .map_err(fail("running child"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && text.contains("NoService"),
        "child without pcscd: {:?} {text} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// T13: resets and power-offs sent through vpcd's control bytes never land inside a
/// Write, and after them counter, last signature and trail stay consistent.
fn t13_reset_and_power_off(rig: &mut Rig) -> Outcome {
    rig.new_card(500)?;
    let trail_path = rig.dir.path().join("t13.trail");
    let mut a = pcsc_card(Some(READER))?;
    let id = a.identity().map_err(fail("identity"))?;
    let mut trail = Trail::create(&trail_path, &mut a, &id).map_err(fail("create trail"))?;
    trail.write(&mut a, &page_body(1)).map_err(fail("write"))?;

    let name = CString::new(READER).map_err(fail("name"))?;
    // Another process resets the card between two Writes (vpcd sends 02).
    let mut b = rig
        .ctx
        .connect(&name, ShareMode::Shared, Protocols::ANY)
        .map_err(fail("B connect"))?;
    b.reconnect(ShareMode::Shared, Protocols::ANY, Disposition::ResetCard)
        .map_err(fail("B reset"))?;
    b.disconnect(Disposition::LeaveCard)
        .map_err(|(_, e)| format!("B disconnect: {e}"))?;
    ensure!(
        rig.events().iter().any(|e| e == "Control(2)"),
        "the card never saw vpcd's reset: {:?}",
        rig.events()
    );
    trail
        .write(&mut a, &page_body(2))
        .map_err(fail("write after reset"))?;

    // … and powers it off (vpcd sends 00; the next access powers it on again, 01).
    let b = rig
        .ctx
        .connect(&name, ShareMode::Shared, Protocols::ANY)
        .map_err(|e| format!("B connect to power off: {e}; events {:?}", rig.events()))?;
    b.disconnect(Disposition::UnpowerCard)
        .map_err(|(_, e)| format!("B unpower: {e}"))?;
    // A new viewer finds the card unpowered (a shared connect says UnpoweredCard) and
    // powers it up.
    let fresh = pcsc_card(Some(READER))?
        .identity()
        .map_err(fail("identity of a card left unpowered"))?;
    ensure!(fresh == id, "another card?");
    trail
        .write(&mut a, &page_body(3))
        .map_err(fail("write after power-off"))?;
    let ev = rig.events();
    let off = ev.iter().position(|e| e == "Control(0)");
    ensure!(
        off.is_some_and(|i| ev[i..]
            .iter()
            .any(|e| e == "Control(1)" || e == "Control(2)")),
        "the card never saw vpcd's power off, then power on or reset: {ev:?}"
    );

    // A reset asked for during a Write waits for the Write's PC/SC transaction to end.
    let ctx = rig.ctx.clone();
    let (tx_started, started) = std::sync::mpsc::channel();
    let resetter = std::thread::spawn(move || -> Result<Instant, String> {
        started.recv().map_err(fail("channel"))?;
        let name = CString::new(READER).map_err(fail("name"))?;
        let mut b = ctx
            .connect(&name, ShareMode::Shared, Protocols::ANY)
            .map_err(fail("B connect during a Write"))?;
        b.reconnect(ShareMode::Shared, Protocols::ANY, Disposition::ResetCard)
            .map_err(fail("B reset"))?;
        let at = Instant::now();
        b.disconnect(Disposition::LeaveCard)
            .map_err(|(_, e)| format!("B disconnect: {e}"))?;
        Ok(at)
    });
    let ended = {
        let mut s = a.session().map_err(fail("session"))?;
        tx_started.send(()).map_err(fail("channel"))?;
        std::thread::sleep(Duration::from_millis(300));
        s.sign_and_increment(&[9; 32])
            .map_err(fail("sign in session"))?;
        s.get_counter().map_err(fail("counter in session"))?;
        Instant::now()
    };
    let reset_at = resetter
        .join()
        .map_err(|_| "resetter panicked".to_string())?
        .map_err(|e| format!("{e}; events {:?}", rig.events()))?;
    ensure!(
        reset_at >= ended,
        "the reset landed inside the open transaction"
    );
    assert_consistent(&rig.state()?)?;

    // The raw signature above is not in the trail: validate must say so, precisely.
    match trail.verify(&mut a) {
        Err(TrailError::Behind { .. }) | Err(TrailError::LostPending { .. }) => {}
        other => return Err(format!("a signature outside the trail gave {other:?}")),
    }
    Ok(())
}

/// The card is pulled mid-session: a clear error, then reconnection when it is back.
fn card_removed_mid_session(rig: &mut Rig) -> Outcome {
    let path = rig.new_card(77)?;
    let trail_path = rig.dir.path().join("removed.trail");
    let mut a = pcsc_card(Some(READER))?;
    let id = a.identity().map_err(fail("identity"))?;
    let mut trail = Trail::create(&trail_path, &mut a, &id).map_err(fail("create trail"))?;
    trail.write(&mut a, &page_body(1)).map_err(fail("write"))?;
    {
        let mut s = a.session().map_err(fail("session"))?;
        s.get_counter().map_err(fail("counter"))?;
        // Pull the card: the virtual card closes its connection to vpcd.
        if let Some(srv) = rig.server.as_ref() {
            srv.stop.store(true, Ordering::Relaxed);
        }
        std::thread::sleep(Duration::from_millis(300));
        match s.get_counter() {
            Err(CardError::Transport(TransportError::CardRemoved)) => {}
            other => return Err(format!("a pulled card gave {other:?}")),
        }
    }
    rig.stop_card()?;
    match PcscCard::connect(Some(READER)) {
        Err(TransportError::NoCard) => {}
        other => return Err(format!("empty reader gave {other:?}")),
    }
    match PcscCard::connect(None) {
        Err(TransportError::NoCard) => {}
        other => return Err(format!("no card anywhere gave {other:?}")),
    }
    // Put it back: the same PcscCard reconnects by itself.
    rig.insert(&path)?;
    trail
        .write(&mut a, &page_body(2))
        .map_err(fail("write after reinsertion"))?;
    let v = trail.verify(&mut a).map_err(fail("validate"))?;
    ensure!(v.records == 4, "{v:?}");
    assert_consistent(&rig.state()?)
}

fn frame_offsets(trail: &Trail) -> Vec<(u64, u64)> {
    let mut at = HEADER_LEN as u64;
    trail
        .records()
        .iter()
        .map(|r| {
            let len = encode_frame(r).len() as u64;
            let o = (at, len);
            at += len;
            o
        })
        .collect()
}

/// The trail threats that involve the card (T1–T4, T10–T12), run through PcscCard.
fn trail_through_pcscd(rig: &mut Rig) -> Outcome {
    // T10: a card that starts at a random offset ([0095]).
    let origin = u64::from(rand_core::RngCore::next_u32(&mut rand_core::OsRng)) << 8;
    rig.new_card(origin)?;
    let path = rig.dir.path().join("main.trail");
    let mut card = pcsc_card(None)?;
    let id = card.identity().map_err(fail("identity"))?;
    let mut trail = Trail::create(&path, &mut card, &id).map_err(fail("create"))?;
    for p in 1..=4 {
        trail
            .write(&mut card, &page_body(p))
            .map_err(fail("write"))?;
    }
    let v = trail.verify(&mut card).map_err(fail("validate"))?;
    ensure!(v.first_counter == origin && v.records == 6, "{v:?}");

    // T11: a crash at every step of Write; a new process completes it from the card.
    for point in [
        CrashPoint::AfterIntent,
        CrashPoint::AfterSign,
        CrashPoint::MidAppend,
        CrashPoint::AfterAppend,
    ] {
        let mut t = Trail::open(&path, &id).map_err(fail("open"))?;
        t.crash_at(Some(point));
        match t.write(&mut card, &page_body(9)) {
            Err(TrailError::InjectedCrash(p)) if p == point => {}
            other => return Err(format!("crash at {point:?} gave {other:?}")),
        }
        let mut t = Trail::open(&path, &id).map_err(fail("reopen"))?;
        t.write(&mut card, &page_body(10))
            .map_err(|e| format!("write after crash at {point:?}: {e}"))?;
        t.verify(&mut card)
            .map_err(|e| format!("validate after crash at {point:?}: {e}"))?;
        assert_consistent(&rig.state()?)?;
    }

    let read = |p: &Path| std::fs::read(p).map_err(fail("read trail"));
    let put = |p: &Path, b: &[u8]| std::fs::write(p, b).map_err(fail("write trail"));
    let validate_fresh = |card: &mut Card| Trail::open(&path, &id).and_then(|mut t| t.verify(card));

    // T4: back the trail up, meter more, put the copy back.
    let backup = read(&path)?;
    let mut t = Trail::open(&path, &id).map_err(fail("open"))?;
    t.write(&mut card, &page_body(11)).map_err(fail("write"))?;
    t.write(&mut card, &page_body(12)).map_err(fail("write"))?;
    let good = read(&path)?;
    put(&path, &backup)?;
    match validate_fresh(&mut card) {
        Err(TrailError::Behind { .. }) => {}
        other => return Err(format!("restored backup gave {other:?}")),
    }
    put(&path, &good)?;

    let t = Trail::open(&path, &id).map_err(fail("open"))?;
    let frames = frame_offsets(&t);
    ensure!(frames.len() >= 6, "{} frames", frames.len());

    // T3: drop the last record.
    let (last_at, _) = frames[frames.len() - 1];
    put(&path, &good[..last_at as usize])?;
    match validate_fresh(&mut card) {
        Err(TrailError::Behind { .. }) | Err(TrailError::LostPending { .. }) => {}
        other => return Err(format!("truncated trail gave {other:?}")),
    }
    // T2: remove a middle record.
    let (mid_at, mid_len) = frames[2];
    let mut holed = good[..mid_at as usize].to_vec();
    holed.extend_from_slice(&good[(mid_at + mid_len) as usize..]);
    put(&path, &holed)?;
    match validate_fresh(&mut card) {
        Err(TrailError::Gap { index: 2, .. }) => {}
        other => return Err(format!("hole at record 2 gave {other:?}")),
    }
    // T1: flip a bit of record 3's signature (the last bytes of its frame hold a CRC,
    // so flip inside and expect the checksum or the signature to catch it).
    let (r3_at, r3_len) = frames[3];
    let mut flipped = good.clone();
    flipped[(r3_at + r3_len / 2) as usize] ^= 0x01;
    put(&path, &flipped)?;
    match validate_fresh(&mut card) {
        Err(TrailError::BadSignature { index: 3, .. })
        | Err(TrailError::Format(_))
        | Err(TrailError::BadBody { index: 3, .. }) => {}
        other => return Err(format!("flipped bit in record 3 gave {other:?}")),
    }
    // T12: the last record torn in half — repaired from the card, or refused by name.
    put(&path, &good)?;
    let (tail_at, tail_len) = frames[frames.len() - 1];
    put(&path, &good[..(tail_at + tail_len / 2) as usize])?;
    match validate_fresh(&mut card) {
        Ok(_) | Err(TrailError::TornTail { .. }) | Err(TrailError::LostPending { .. }) => {}
        other => return Err(format!("torn tail gave {other:?}")),
    }
    // The genuine trail still validates and the card is consistent.
    put(&path, &good)?;
    let counter_before = rig.state()?.counter;
    match validate_fresh(&mut card) {
        Ok(_) => {}
        // The torn-tail repair above may have rebuilt the record and spent a nonce record
        // on the copy: then the genuine copy is behind by exactly that.
        Err(TrailError::Behind { .. }) => {}
        Err(e) => return Err(format!("genuine trail: {e}")),
    }
    ensure!(rig.state()?.counter >= counter_before, "counter went down");
    assert_consistent(&rig.state()?)
}

/// T14: the card refuses to sign at its maximum and never wraps (\[0057\]).
fn t14_counter_at_maximum(rig: &mut Rig) -> Outcome {
    rig.new_card(u64::MAX - 3)?;
    let path = rig.dir.path().join("max.trail");
    let mut card = pcsc_card(Some(READER))?;
    let id = card.identity().map_err(fail("identity"))?;
    let mut trail = Trail::create(&path, &mut card, &id).map_err(fail("create"))?;
    trail
        .write(&mut card, &page_body(1))
        .map_err(fail("write at MAX-2"))?;
    trail
        .write(&mut card, &page_body(2))
        .map_err(fail("write at MAX-1"))?;
    match trail.write(&mut card, &page_body(3)) {
        Err(TrailError::Card(CardError::Status { status, .. }))
            if status == StatusWord::COUNTER_EXHAUSTED => {}
        other => return Err(format!("writing at the maximum gave {other:?}")),
    }
    let c = card
        .session()
        .and_then(|mut s| s.get_counter())
        .map_err(fail("counter"))?;
    ensure!(c == u64::MAX, "counter {c}");
    assert_consistent(&rig.state()?)
}

/// DESIGN threat 16: 8 viewer processes meter through pcscd onto one trail at once.
fn threat16_many_viewers(rig: &mut Rig) -> Outcome {
    let origin = 9_000;
    rig.new_card(origin)?;
    let path = rig.dir.path().join("shared.trail");
    let mut card = pcsc_card(Some(READER))?;
    let id = card.identity().map_err(fail("identity"))?;
    Trail::create(&path, &mut card, &id).map_err(fail("create"))?;
    drop(card);

    let exe = std::env::current_exe().map_err(fail("current exe"))?;
    let mut children = Vec::new();
    for i in 0..VIEWERS {
        let child = Command::new(&exe)
            .args(["--child", "meter"])
            .arg(&path)
            .arg(METER_FOR.as_millis().to_string())
            .arg(i.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(fail("spawning a viewer"))?;
        children.push(child);
    }
    let mut counters = Vec::new();
    let mut per_child = Vec::new();
    for (i, mut child) in children.into_iter().enumerate() {
        let out = child.stdout.take().ok_or("no stdout")?;
        let mut mine = 0u64;
        for line in BufReader::new(out).lines() {
            let line = line.map_err(fail("child output"))?;
            if let Some(c) = line.strip_prefix("wrote ") {
                counters.push(c.parse::<u64>().map_err(fail("child counter"))?);
                mine += 1;
            }
        }
        let status = child.wait().map_err(fail("waiting for a viewer"))?;
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        ensure!(status.success(), "viewer {i} failed ({status}): {err}");
        per_child.push(mine);
    }
    let total = counters.len() as u64;
    ensure!(
        total >= VIEWERS as u64,
        "only {total} records in {METER_FOR:?}: {per_child:?}"
    );
    counters.sort_unstable();
    // None lost, none used twice: exactly origin+1 ..= origin+total (origin is genesis).
    let want: Vec<u64> = (origin + 1..=origin + total).collect();
    ensure!(
        counters == want,
        "counters not contiguous/unique: {per_child:?}"
    );

    let mut card = pcsc_card(None)?;
    let mut t = Trail::open(&path, &id).map_err(fail("open"))?;
    let v = t
        .verify(&mut card)
        .map_err(fail("validate the shared trail"))?;
    ensure!(v.records == total + 2, "{v:?} vs {total} written");
    ensure!(
        rig.state()?.counter == origin + total + 2,
        "card counter {}",
        rig.state()?.counter
    );
    println!("    ({VIEWERS} viewers wrote {total} records in {METER_FOR:?}: {per_child:?})");
    assert_consistent(&rig.state()?)
}

// ---------------------------------------------------------------------------------------
// Child processes.

fn child(args: &[String]) -> ExitCode {
    let r = match args.first().map(String::as_str) {
        Some("no-service") => match PcscCard::connect(None) {
            Err(e @ TransportError::NoService) => {
                println!("{e:?}: {e}");
                Ok(())
            }
            other => Err(format!("expected NoService, got {other:?}")),
        },
        Some("meter") => meter(&args[1..]),
        _ => Err(format!("unknown child mode {args:?}")),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// One viewer: meters page views onto the shared trail until its time is up.
fn meter(args: &[String]) -> Outcome {
    let [path, millis, who] = args else {
        return Err(format!("meter PATH MILLIS WHO, got {args:?}"));
    };
    let millis: u64 = millis.parse().map_err(fail("millis"))?;
    let who: u32 = who.parse().map_err(fail("who"))?;
    let mut card = pcsc_card(Some(READER))?;
    let id = card.identity().map_err(fail("identity"))?;
    let mut trail = Trail::open(path, &id).map_err(fail("open trail"))?;
    let deadline = Instant::now() + Duration::from_millis(millis);
    let mut page = who * 1_000_000;
    while Instant::now() < deadline {
        page += 1;
        let rec = trail
            .write(&mut card, &page_body(page))
            .map_err(|e| format!("viewer {who}: {e}"))?;
        println!("wrote {}", rec.counter);
    }
    Ok(())
}
