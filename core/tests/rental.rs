//! The rental engine's rules, through `tally_core::rental` alone — the API every viewer
//! links (the egui viewer and `examples/reader.rs` both drive this session). Real card
//! signatures on an emulated card, a real trail file, real AES-GCM packages.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use rand_core::OsRng;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally_core::card::applet::CardState;
use tally_core::card::emulated::EmulatedCard;
use tally_core::home::{CardSpec, Home};
use tally_core::keyfile::{Cis, Keyfile};
use tally_core::package::{ContentKey, DocumentId, PackOptions, seal_package};
use tally_core::policy::{Limits, Reason, Rights, TestClock};
use tally_core::rental::{
    Mode, NoNetwork, OpenInputs, Problem, Session, check_standing, open_rental,
};
use tally_core::trail::{Body, LicenceId, Trail, Usage};
use tally_core::vendor::VendorSecret;
use tally_core::{CardIdentity, PublicKey};

const PDF: &[u8] = b"%PDF-1.4 not rendered here: the engine only decrypts and meters\n%%EOF\n";
const START: i64 = 1_800_000_000;

struct Fx {
    _dir: tempfile::TempDir,
    agreement: PublicKey,
    dir: PathBuf,
    home: Home,
    identity: CardIdentity,
    vendor: VendorSecret,
    package: PathBuf,
    document: DocumentId,
    clock: Arc<TestClock>,
}

fn limits() -> Limits {
    Limits {
        pages: Some(30),
        opens: Some(5),
        not_after: Some(time::OffsetDateTime::from_unix_timestamp(START + 86_400).unwrap()),
        rights: Rights {
            print: true,
            copy: true,
        },
        ..Limits::default()
    }
}

/// A home with an emulated card, a vendor, and a 12-page package of that vendor.
fn fx() -> Fx {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_path_buf();
    let home = Home::new(dir.join("home"));
    let card = CardState::generate(&mut OsRng, 1_000, "rental test card");
    EmulatedCard::create(home.card_path(), &card).unwrap();
    let identity = CardIdentity {
        serial: card.serial,
        public_key: PublicKey::from_verifying_key(card.key.verifying_key()),
        origin: card.origin,
    };
    let vendor = VendorSecret::generate("Acme Books", false, &mut OsRng).unwrap();
    let package = dir.join("book.tly");
    let (document, _) = pack(&vendor, "Sonnets", &package);
    Fx {
        _dir: d,
        agreement: card.agreement_key(),
        dir,
        home,
        identity,
        vendor,
        package,
        document,
        clock: Arc::new(TestClock::at_unix(START)),
    }
}

/// Packs the test PDF as `title` by `vendor` into `out`; the document id and content key.
fn pack(vendor: &VendorSecret, title: &str, out: &std::path::Path) -> (DocumentId, ContentKey) {
    let mut pkg = Vec::new();
    let (header, key) = seal_package(
        vendor,
        &PackOptions::new(title, 12),
        PDF.len() as u64,
        PDF,
        std::io::Cursor::new(&mut pkg),
        &mut OsRng,
        &mut |_| {},
    )
    .unwrap();
    std::fs::write(out, pkg).unwrap();
    (header.document_id(), key)
}

impl Fx {
    /// A keyfile by `vendor` for `document` and this card, wrapping `key`, written to `name`.
    fn keyfile(
        &self,
        vendor: &VendorSecret,
        (document, key): (DocumentId, ContentKey),
        limits: Limits,
        name: &str,
    ) -> PathBuf {
        let cis = Cis {
            licence: LicenceId([7; 16]),
            document,
            card: self.identity.clone(),
            card_agreement_key: self.agreement.clone(),
            issuers: Vec::new(),
            customer_name: "Ada Reader".into(),
            content_key: key,
            limits,
            allow_emulated_card: true,
            server: None,
            // Before both this test's clock and the real one (the example reader's).
            issued_at: time::OffsetDateTime::now_utc()
                .replace_nanosecond(0)
                .unwrap()
                - time::Duration::days(1),
        };
        let path = self.dir.join(name);
        std::fs::write(&path, Keyfile::issue(vendor, &cis, &mut OsRng).unwrap()).unwrap();
        path
    }

    /// A keyfile by `vendor` for `document` whose content key opens nothing: it must be
    /// refused before any decryption is tried.
    fn keyfile_by(
        &self,
        vendor: &VendorSecret,
        document: DocumentId,
        limits: Limits,
        name: &str,
    ) -> PathBuf {
        self.keyfile(
            vendor,
            (document, ContentKey::from_bytes([0; 32])),
            limits,
            name,
        )
    }

    /// A package and its keyfile that open together.
    fn rental(&self, limits: Limits) -> (PathBuf, PathBuf) {
        let package = self.dir.join("rental.tly");
        let packed = pack(&self.vendor, "Sonnets", &package);
        let keyfile = self.keyfile(&self.vendor, packed, limits, "rental.tkey");
        (package, keyfile)
    }

    fn inputs(&self, package: PathBuf, keyfile: PathBuf, trusted: &[&VendorSecret]) -> OpenInputs {
        OpenInputs {
            package,
            keyfile,
            home: self.home.clone(),
            card: CardSpec::Emulated(None),
            trusted: trusted.iter().map(|v| v.public().clone()).collect(),
            clock: self.clock.clone(),
            transport: Arc::new(NoNetwork),
        }
    }

    fn counter(&self) -> u64 {
        EmulatedCard::open(self.home.card_path())
            .unwrap()
            .load()
            .unwrap()
            .counter
    }
}

/// Lets the session take its meter's answers until nothing is in flight.
fn settle(s: &mut Session) {
    let t0 = Instant::now();
    while {
        s.tick(Instant::now(), true);
        s.busy()
    } {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the meter did not answer"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn start(f: &Fx, limits: Limits) -> Session {
    let (p, k) = f.rental(limits);
    let opened = open_rental(&f.inputs(p, k, &[&f.vendor])).unwrap();
    let (mut s, document) = opened.start(Box::new(|| {})).unwrap();
    assert_eq!(document.as_bytes(), PDF);
    settle(&mut s);
    assert!(s.page_shown(), "page 1 is paid for and shown");
    s
}

#[test]
fn copy_is_allowed_while_the_rental_runs_and_refused_past_not_after() {
    let f = fx();
    let mut s = start(&f, limits());
    s.request_copy(12);
    settle(&mut s);
    assert!(s.take_copy_ready(), "copying is allowed before not-after");
    f.clock.advance(time::Duration::days(2));
    s.request_copy(12);
    settle(&mut s);
    assert!(!s.take_copy_ready(), "no copy past not-after");
    let n = s.take_notice().unwrap();
    assert!(n.contains("ended"), "{n}");
}

#[test]
fn copy_after_the_rental_is_used_up_is_refused() {
    let mut l = limits();
    l.pages = Some(3);
    l.page_block = 3;
    let f = fx();
    let mut s = start(&f, l);
    for _ in 0..3 {
        s.next();
        settle(&mut s);
    }
    assert!(
        matches!(s.mode(), Mode::Limited(Reason::PagesUsedUp { .. })),
        "{:?}",
        s.mode()
    );
    s.request_copy(12);
    settle(&mut s);
    assert!(!s.take_copy_ready());
    assert_eq!(
        s.take_notice().as_deref(),
        Some("Copying is not available now.")
    );
}

#[test]
fn copy_without_the_right_is_refused_before_the_meter() {
    let mut l = limits();
    l.rights.copy = false;
    let f = fx();
    let mut s = start(&f, l);
    assert!(!s.copy_offered());
    s.request_copy(12);
    settle(&mut s);
    assert!(!s.take_copy_ready());
    assert_eq!(
        s.take_notice().as_deref(),
        Some("This rental does not allow copying text.")
    );
}

#[test]
fn a_keyfile_from_another_vendor_never_opens_the_package() {
    // T31: the reader trusts a vendor of their own making (M) and issues a keyfile for
    // Acme's document under it. Acme's package is refused before anything is decrypted.
    let f = fx();
    let mallory = VendorSecret::generate("Mallory", false, &mut OsRng).unwrap();
    let k = f.keyfile_by(&mallory, f.document, limits(), "m.tkey");
    let before = f.counter();
    let p = open_rental(&f.inputs(f.package.clone(), k, &[&f.vendor, &mallory])).unwrap_err();
    match p {
        Problem::WrongPackage(why) => assert_eq!(
            why,
            format!(
                "the licence is from Mallory, but “Sonnets” ({}) was packed by another publisher",
                f.package.display()
            )
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(f.counter(), before, "nothing was charged or signed");
}

#[test]
fn a_keyfile_for_another_document_names_the_package() {
    let f = fx();
    let other = f.dir.join("other.tly");
    let (other_doc, _) = pack(&f.vendor, "Elegies", &other);
    assert_ne!(other_doc, f.document);
    let k = f.keyfile_by(&f.vendor, f.document, limits(), "k.tkey");
    let p = check_standing(&f.inputs(other.clone(), k, &[&f.vendor])).unwrap_err();
    assert_eq!(
        p,
        Problem::WrongPackage(format!(
            "the licence is for another document than “Elegies” ({})",
            other.display()
        ))
    );
    assert_eq!(
        p.to_string(),
        format!(
            "wrong document for this licence: the licence is for another document than “Elegies” ({})",
            other.display()
        )
    );
}

#[test]
fn swapped_arguments_are_named_as_swapped() {
    let f = fx();
    let (p, k) = f.rental(limits());
    let e = check_standing(&f.inputs(k, p, &[&f.vendor])).unwrap_err();
    assert_eq!(
        e,
        Problem::WrongPackage(
            "the two files are the wrong way round: give the document package (.tly) first and its licence keyfile (.tkey) second".into()
        )
    );
}

#[test]
fn a_standing_check_spends_no_card_counter_and_agrees_with_the_session() {
    let f = fx();
    let (p, k) = f.rental(limits());
    // Before any opening: no trail yet, nothing is created.
    let st = check_standing(&f.inputs(p.clone(), k.clone(), &[&f.vendor])).unwrap();
    assert!(!f.home.trail_path(&f.identity.serial).exists());
    assert!(st.decision.is_allowed());
    let opened = open_rental(&f.inputs(p.clone(), k.clone(), &[&f.vendor])).unwrap();
    let (mut s, _doc) = opened.start(Box::new(|| {})).unwrap();
    settle(&mut s);
    let counter = f.counter();
    let trail = std::fs::read(f.home.trail_path(&f.identity.serial)).unwrap();
    let st = check_standing(&f.inputs(p.clone(), k.clone(), &[&f.vendor])).unwrap();
    let st2 = check_standing(&f.inputs(p, k, &[&f.vendor])).unwrap();
    assert_eq!(f.counter(), counter, "no counter spent by a standing check");
    assert_eq!(
        std::fs::read(f.home.trail_path(&f.identity.serial)).unwrap(),
        trail
    );
    assert_eq!(st.tally.opens, 1);
    assert_eq!(st2.tally.page_views, st.tally.page_views);
    let tally_core::policy::Decision::Allowed { remaining } = &st.decision else {
        panic!("{:?}", st.decision)
    };
    let now = time::OffsetDateTime::from_unix_timestamp(START).unwrap();
    let standing = tally_core::rental::left_lines(remaining, true, now);
    let window = s.left_lines(now);
    // The same words and numbers; the window adds what this session already paid for.
    assert_eq!(window[..standing.len()], standing[..]);
    assert_eq!(
        standing,
        ["Pages left: 20", "Openings left: 4", "Days left: 1"]
    );
    assert_eq!(window.last().unwrap(), "Paid for in this session: 9 pages");
}

#[test]
fn t35_an_idle_session_pauses_hides_the_page_and_charges_no_time() {
    // T35: a window left open is neither read for free nor charged, after the idle time the
    // publisher chose (`idle-pause 60` here, five minutes when the policy says nothing).
    let f = fx();
    let mut s = start(
        &f,
        Limits {
            idle_pause: 60,
            ..limits()
        },
    );
    let written = s.records_written();
    assert!(
        s.unit_ends().is_some(),
        "the first time unit started with page 1"
    );
    let t = Instant::now();
    s.note_input(t);
    s.tick(t + Duration::from_secs(59), true);
    assert!(!s.paused(), "59 s without input is not idle yet");
    let later = t + Duration::from_secs(61);
    for _ in 0..20 {
        s.tick(later, true);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(s.paused());
    assert!(!s.page_shown(), "an idle session hides its page");
    assert!(!s.busy());
    assert_eq!(s.records_written(), written, "no time charged while idle");
    s.note_input(later);
    assert!(s.page_shown());
    s.tick(later, true);
    assert!(
        s.busy(),
        "back from the pause, the next time unit is charged"
    );
    settle(&mut s);
    assert_eq!(s.records_written(), written + 1);
}

#[test]
fn t35_the_idle_pause_is_the_publishers_five_minutes_when_the_policy_says_nothing() {
    let f = fx();
    let mut s = start(&f, limits());
    let t = Instant::now();
    s.note_input(t);
    s.tick(t + Duration::from_secs(299), true);
    assert!(!s.paused());
    s.tick(t + Duration::from_secs(300), true);
    assert!(s.paused());
}

/// The example reader, built beside the tests by `cargo test` (examples are built with the
/// test targets).
fn example_reader() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples")
        .join(format!("reader{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: run `cargo test -p tally-core` (which builds the examples) or \
         `cargo build -p tally-core --example reader` first",
        path.display()
    );
    path
}

#[test]
fn the_example_reader_meters_and_refuses_like_any_viewer_with_no_rules_of_its_own() {
    use std::io::Write as _;
    let f = fx();
    std::fs::create_dir_all(f.home.vendors_dir()).unwrap();
    std::fs::write(
        f.home.vendors_dir().join("acme.pub"),
        f.vendor.public().to_export(&f.vendor),
    )
    .unwrap();
    let l = Limits {
        pages: Some(3),
        page_block: 1,
        rights: Rights {
            print: false,
            copy: true,
        },
        ..Limits::default()
    };
    let (p, k) = f.rental(l);
    let before = f.counter();
    let mut child = std::process::Command::new(example_reader())
        .arg(f.home.root())
        .arg(&p)
        .arg(&k)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"copy 40\nnext\nnext\nnext\ncopy 40\nprint 1\nquit\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    for expected in [
        "opened “Sonnets” for Ada Reader",
        "showing page 1 of 12",
        "copy allowed and recorded: the selection on page 1 may be copied",
        "showing page 2 of 12",
        "left: Pages left: 1",
        "showing page 3 of 12",
        "left: Pages left: 0",
        "notice: Copying is not available now.",
        "notice: Printing is not available now.",
    ] {
        assert!(
            lines.contains(&expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    assert!(
        lines.iter().any(|l| l.starts_with("cover only: ")),
        "the fourth page is refused:\n{stdout}"
    );
    // Open, genesis, a copy and three page views, each one card signature.
    assert!(f.counter() > before + 4);
}

/// The `copy` records of the licence in the card's trail, as (characters) in card order.
fn copy_records(f: &Fx) -> Vec<u32> {
    let mut trail = Trail::open(f.home.trail_path(&f.identity.serial), &f.identity).unwrap();
    trail.verify_offline().unwrap();
    trail
        .verified_bodies()
        .filter_map(|(_, b): (u64, Body)| match b.usage {
            Usage::Copy { chars, .. } => Some(chars),
            _ => None,
        })
        .collect()
}

#[test]
fn every_copy_is_a_card_signed_record_and_copies_are_refused_once_used_up() {
    let f = fx();
    let mut l = limits();
    l.copies = Some(2);
    let mut s = start(&f, l);
    assert!(
        s.left_lines(now_of(&f))
            .contains(&"Copies left: 2".to_string())
    );
    let before = f.counter();
    for chars in [12, 30] {
        s.request_copy(chars);
        settle(&mut s);
        assert!(s.take_copy_ready(), "copy of {chars} characters allowed");
    }
    assert_eq!(f.counter(), before + 2, "each copy is one card signature");
    assert!(
        s.left_lines(now_of(&f))
            .contains(&"Copies left: 0".to_string())
    );
    s.request_copy(5);
    settle(&mut s);
    assert!(!s.take_copy_ready(), "the third copy is refused");
    assert_eq!(
        s.take_notice().as_deref(),
        Some("All 2 copies of this rental have been used.")
    );
    assert_eq!(f.counter(), before + 2, "a refused copy writes nothing");
    assert!(matches!(s.mode(), Mode::Reading), "reading goes on");
    assert_eq!(copy_records(&f), vec![12, 30]);
}

#[test]
fn copied_characters_are_counted_and_a_selection_longer_than_what_is_left_is_refused() {
    let f = fx();
    let mut l = limits();
    l.copy_chars = Some(100);
    let mut s = start(&f, l);
    s.request_copy(70);
    settle(&mut s);
    assert!(s.take_copy_ready());
    assert!(
        s.left_lines(now_of(&f))
            .contains(&"Characters left to copy: 30".to_string())
    );
    s.request_copy(31);
    settle(&mut s);
    assert!(!s.take_copy_ready());
    assert_eq!(
        s.take_notice().as_deref(),
        Some(
            "Only 30 of the 100 characters this rental lets you copy are left; the selection has 31."
        )
    );
    s.request_copy(30);
    settle(&mut s);
    assert!(s.take_copy_ready(), "exactly what is left may be copied");
    assert_eq!(copy_records(&f), vec![70, 30]);
    // The totals carry on into the next opening.
    drop(s);
    let standing = check_standing(&f.inputs(
        f.dir.join("rental.tly"),
        f.dir.join("rental.tkey"),
        &[&f.vendor],
    ))
    .unwrap();
    assert_eq!(
        (standing.tally.copies, standing.tally.copied_chars),
        (2, 100)
    );
}

#[test]
fn an_empty_selection_is_not_copied_and_not_charged() {
    let f = fx();
    let mut s = start(&f, limits());
    let before = f.counter();
    s.request_copy(0);
    settle(&mut s);
    assert!(!s.take_copy_ready());
    assert_eq!(
        s.take_notice().as_deref(),
        Some("There is no text to copy.")
    );
    assert_eq!(f.counter(), before);
}

fn now_of(f: &Fx) -> time::OffsetDateTime {
    use tally_core::policy::Clock as _;
    f.clock.now()
}

#[test]
fn a_first_use_period_ends_on_time_and_a_clock_set_back_does_not_extend_it() {
    let f = fx();
    let l = Limits {
        period_after_first_open: Some(48 * 3600),
        ..Limits::default()
    };
    let (p, k) = f.rental(l);
    let opened = open_rental(&f.inputs(p.clone(), k.clone(), &[&f.vendor])).unwrap();
    let (mut s, _document) = opened.start(Box::new(|| {})).unwrap();
    settle(&mut s);
    assert!(s.page_shown());
    assert!(
        s.left_lines(now_of(&f))
            .contains(&"Reading period left: 2 days 0 h".to_string()),
        "{:?}",
        s.left_lines(now_of(&f))
    );
    // Reading near the end of the period: a time unit charged 47 hours in.
    let t = Instant::now();
    f.clock.advance(time::Duration::hours(47));
    s.note_input(t + Duration::from_secs(61));
    s.tick(t + Duration::from_secs(61), true);
    settle(&mut s);
    assert_eq!(s.mode(), &Mode::Reading);
    assert!(
        s.left_lines(now_of(&f))
            .contains(&"Reading period left: 60 min".to_string()),
        "{:?}",
        s.left_lines(now_of(&f))
    );
    // Past the end: the next time unit is refused and the session shows the cover only.
    f.clock.advance(time::Duration::hours(2));
    s.note_input(t + Duration::from_secs(200));
    s.tick(t + Duration::from_secs(200), true);
    settle(&mut s);
    match s.mode() {
        Mode::Limited(r @ Reason::PeriodEnded { .. }) => assert_eq!(
            r.to_string(),
            "The 48-hour period that began at your first opening ended at 2027-01-17 08:00:00 UTC."
        ),
        m => panic!("{m:?}"),
    }
    drop(s);
    // Opening again later: the cover only.
    let opened = open_rental(&f.inputs(p.clone(), k.clone(), &[&f.vendor])).unwrap();
    assert!(matches!(
        opened.decision.reason(),
        Some(Reason::PeriodEnded { .. })
    ));
    drop(opened);
    // The clock set back to inside the period: refused, it is behind the last record.
    f.clock.advance(time::Duration::hours(-48));
    match open_rental(&f.inputs(p, k, &[&f.vendor])) {
        Err(Problem::Refused(Reason::ClockSetBack { .. })) => {}
        Err(e) => panic!("{e:?}"),
        Ok(o) => panic!("opened with {:?}", o.decision),
    }
}

#[test]
fn a_renewal_carries_the_use_on_and_the_older_keyfile_is_refused_once_it_was_opened() {
    let f = fx();
    let v1 = Limits {
        pages: Some(3),
        page_block: 3,
        ..Limits::default()
    };
    let p = f.dir.join("renewed.tly");
    let (document, key) = pack(&f.vendor, "Sonnets", &p);
    let k1 = f.keyfile(&f.vendor, (document, key.clone()), v1.clone(), "v1.tkey");
    let opened = open_rental(&f.inputs(p.clone(), k1.clone(), &[&f.vendor])).unwrap();
    let (mut s, _document) = opened.start(Box::new(|| {})).unwrap();
    settle(&mut s);
    for _ in 0..3 {
        s.next();
        settle(&mut s);
    }
    assert!(matches!(
        s.mode(),
        Mode::Limited(Reason::PagesUsedUp { .. })
    ));
    drop(s);
    // The renewal: the same licence (same id), 9 pages in all, version 2.
    let v2 = Limits {
        pages: Some(9),
        licence_version: 2,
        ..v1
    };
    let k2 = f.keyfile(&f.vendor, (document, key), v2, "v2.tkey");
    let opened = open_rental(&f.inputs(p.clone(), k2, &[&f.vendor])).unwrap();
    match &opened.decision {
        // Three of the nine pages were used under version 1.
        tally_core::policy::Decision::Allowed { remaining } => {
            assert_eq!(remaining.pages, Some(6))
        }
        d => panic!("{d:?}"),
    }
    drop(opened);
    // Version 1 again, on this card: refused.
    let opened = open_rental(&f.inputs(p, k1, &[&f.vendor])).unwrap();
    let reason = opened.decision.reason().unwrap().to_string();
    assert!(
        reason
            .starts_with("A newer version of this licence (version 2) has been used on this card"),
        "{reason}"
    );
}
