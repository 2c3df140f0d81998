//! UI tests of the reader window with egui_kittest on an emulated card: the real opening
//! checks, real pdfium rendering, real card signatures on a real trail file. They press
//! keys like a reader and assert the records that reached the trail.
//!
//! Snapshots live in `viewer/tests/snapshots/`; they are made and checked on one
//! renderer (`WGPU_BACKEND=vulkan`, lavapipe, see scripts/env.sh). No snapshot shows a
//! date: the licences here have no date limit.

// Setup helpers outside #[test] fns: a failed setup should stop the test loudly.
#![allow(clippy::unwrap_used)]

use egui::Key;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT as _, Queryable as _};
use rand_core::OsRng;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally_core::card::applet::CardState;
use tally_core::card::emulated::EmulatedCard;
use tally_core::home::{CardSpec, Home};
use tally_core::keyfile::{Cis, Keyfile, ServerInfo};
use tally_core::package::{PackOptions, seal_package};
use tally_core::policy::{Clock, Limits, Rights, SystemClock, TestClock};
use tally_core::rental::{Mode, OpenInputs, Problem};
use tally_core::trail::{Body, LicenceId, Trail, Usage};
use tally_core::vendor::VendorSecret;
use tally_core::{CardIdentity, PublicKey};
use tally_viewer::app::{InputsFactory, ReaderApp, Screen};

struct Fixture {
    _dir: tempfile::TempDir,
    home: Home,
    identity: CardIdentity,
    vendor: VendorSecret,
    package: PathBuf,
    keyfile: PathBuf,
    licence: LicenceId,
}

fn sample_pdf() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/sample.pdf"))
        .expect("samples/sample.pdf")
}

fn identity_of(state: &CardState) -> CardIdentity {
    CardIdentity {
        serial: state.serial,
        public_key: PublicKey::from_verifying_key(state.key.verifying_key()),
        origin: state.origin,
    }
}

/// A home with a fresh emulated card, a package of the sample PDF, and a keyfile with
/// `limits` issued to that card by a fresh vendor.
fn fixture(limits: Limits) -> Fixture {
    fixture_with(limits, None)
}

fn fixture_with(limits: Limits, server: Option<ServerInfo>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::new(dir.path().join("home"));
    let card = CardState::generate(&mut OsRng, 500, "test card");
    EmulatedCard::create(home.card_path(), &card).unwrap();
    let identity = identity_of(&card);
    let vendor = VendorSecret::generate("Test Publisher", false, &mut OsRng).unwrap();
    let pdf = sample_pdf();
    let mut pkg = Vec::new();
    let (header, key) = seal_package(
        &vendor,
        &PackOptions::new("Sonnets", 7),
        pdf.len() as u64,
        &pdf[..],
        std::io::Cursor::new(&mut pkg),
        &mut OsRng,
        &mut |_| {},
    )
    .unwrap();
    let package = dir.path().join("doc.tly");
    std::fs::write(&package, pkg).unwrap();
    let licence = LicenceId([7; 16]);
    let cis = Cis {
        licence,
        document: header.document_id(),
        card: identity.clone(),
        card_agreement_key: card.agreement_key(),
        issuers: Vec::new(),
        customer_name: "Ada Reader".into(),
        content_key: key,
        limits,
        allow_emulated_card: true,
        server,
        issued_at: time::macros::datetime!(2026-01-01 00:00:00 UTC),
    };
    let kf = Keyfile::issue(&vendor, &cis, &mut OsRng).unwrap();
    let keyfile = dir.path().join("doc.tkey");
    std::fs::write(&keyfile, kf).unwrap();
    Fixture {
        _dir: dir,
        home,
        identity,
        vendor,
        package,
        keyfile,
        licence,
    }
}

fn limits(pages: Option<u64>) -> Limits {
    Limits {
        pages,
        minutes: Some(600),
        opens: Some(20),
        rights: Rights {
            print: false,
            copy: true,
        },
        ..Limits::default()
    }
}

impl Fixture {
    fn factory(&self, trust: bool, clock: Arc<dyn Clock>) -> InputsFactory {
        let home = self.home.clone();
        let trusted = if trust {
            vec![self.vendor.public().clone()]
        } else {
            vec![]
        };
        Box::new(move |package, keyfile| OpenInputs {
            package,
            keyfile,
            home: home.clone(),
            card: CardSpec::Emulated(None),
            trusted: trusted.clone(),
            clock: clock.clone(),
            transport: Arc::new(tally_viewer::online::Http),
        })
    }

    fn harness(&self, trust: bool) -> Harness<'static, ReaderApp> {
        self.harness_with(trust, Arc::new(SystemClock), true)
    }

    fn harness_with(
        &self,
        trust: bool,
        clock: Arc<dyn Clock>,
        focused: bool,
    ) -> Harness<'static, ReaderApp> {
        let factory = self.factory(trust, clock);
        let home = self.home.root().to_path_buf();
        let mut h = Harness::builder()
            .with_size([900.0, 600.0])
            .build_eframe(move |cc| ReaderApp::new(&cc.egui_ctx, Some(factory), Some(&home), None));
        // Focus is set before the opening starts, so the first frame of reading sees it.
        h.input_mut().focused = focused;
        h.step();
        let ctx = h.ctx.clone();
        h.state_mut()
            .open(&ctx, self.package.clone(), self.keyfile.clone());
        h
    }

    /// This licence's records on the trail, verified offline.
    fn usages(&self) -> Vec<Usage> {
        let mut t = Trail::open(self.home.trail_path(&self.identity.serial), &self.identity)
            .expect("trail opens");
        t.verify_offline().expect("trail verifies");
        t.verified_bodies()
            .map(|(_, b): (u64, Body)| b.usage)
            .filter(|u| u.licence() == Some(self.licence))
            .collect()
    }

    fn count(&self, f: impl Fn(&Usage) -> bool) -> usize {
        self.usages().iter().filter(|u| f(u)).count()
    }
}

/// Steps the UI (without waiting on it) until `done`, then lets it draw twice more.
fn settle(h: &mut Harness<'static, ReaderApp>, what: &str, done: impl Fn(&ReaderApp) -> bool) {
    let start = Instant::now();
    loop {
        h.step();
        if done(h.state()) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(15));
    }
    h.step();
    h.step();
}

fn reading_settled(a: &ReaderApp) -> bool {
    a.reader().is_some_and(|r| r.settled())
}

fn problem_of(a: &ReaderApp) -> Option<Problem> {
    match &a.screen {
        Screen::Problem(p) => Some(p.clone()),
        _ => None,
    }
}

#[test]
fn reading_view_turns_pages_and_meters_them() {
    let f = fixture(limits(Some(1000)));
    let mut h = f.harness(true);
    settle(&mut h, "the first page", reading_settled);
    h.snapshot("reading_view");
    // Open, one block of pages and the first time unit reached the trail.
    assert_eq!(f.count(|u| matches!(u, Usage::Open { .. })), 1);
    assert_eq!(
        f.usages()
            .iter()
            .filter_map(|u| match u {
                Usage::Pages { first, count, .. } => Some((*first, *count)),
                _ => None,
            })
            .collect::<Vec<_>>(),
        vec![(1, 10)]
    );
    assert_eq!(f.count(|u| matches!(u, Usage::Time { seconds: 60, .. })), 1);

    for _ in 0..3 {
        h.key_press(Key::ArrowRight);
        h.step();
    }
    h.key_press(Key::End);
    h.step();
    h.key_press(Key::PageUp);
    settle(&mut h, "page 6", |a| {
        reading_settled(a) && a.reader().is_some_and(|r| r.session.current() == 5)
    });
    h.get_by_label("Page 6 of 7");
    // All six views came out of the first prepaid block: still one page record.
    assert_eq!(f.count(|u| matches!(u, Usage::Pages { .. })), 1);
    let r = h.state().reader().expect("reading");
    assert_eq!(r.session.prepaid_views(), 10 - 6);
    h.snapshot("status_bar_after_pages");

    // Home goes back to the cover; a click on "Next" turns the page.
    h.key_press(Key::Home);
    h.step();
    h.get_by_label("Next").click();
    settle(&mut h, "page 2", |a| {
        reading_settled(a) && a.reader().is_some_and(|r| r.session.current() == 1)
    });
    assert_eq!(h.state().reader().unwrap().session.prepaid_views(), 2);
}

#[test]
fn used_up_rental_falls_back_to_the_cover() {
    let f = fixture(limits(Some(3)));
    let mut h = f.harness(true);
    settle(&mut h, "the first page", reading_settled);
    // The block bought the last three views. Core's policy then refuses the next time
    // unit (the pages threshold no longer holds), so the session falls back to the cover
    // rather than read on unmetered.
    for _ in 0..4 {
        h.key_press(Key::ArrowRight);
        h.step();
    }
    settle(&mut h, "limited mode", |a| {
        a.reader()
            .is_some_and(|r| matches!(r.session.mode(), Mode::Limited(_)) && r.settled())
    });
    h.get_by_label("This rental has been used up");
    h.snapshot("rental_used_up");
    // Three views were prepaid (capped at what was left) and nothing more was charged.
    assert_eq!(
        f.count(|u| matches!(u, Usage::Pages { count: 3, .. })),
        1,
        "{:?}",
        f.usages()
    );
    assert_eq!(f.count(|u| matches!(u, Usage::Pages { .. })), 1);
    let r = h.state().reader().unwrap();
    assert_eq!(r.session.current(), 0, "only the cover is shown");

    // Opening again: limited from the start, and no open record is written.
    drop(h);
    let opens = f.count(|u| matches!(u, Usage::Open { .. }));
    let mut h = f.harness(true);
    settle(&mut h, "limited mode", |a| {
        a.reader()
            .is_some_and(|r| matches!(r.session.mode(), Mode::Limited(_)) && r.settled())
    });
    assert_eq!(f.count(|u| matches!(u, Usage::Open { .. })), opens);
    h.key_press(Key::ArrowRight);
    h.step();
    assert_eq!(h.state().reader().unwrap().session.current(), 0);
}

#[test]
fn tampered_trail_is_refused_with_the_check_named() {
    let f = fixture(limits(None));
    {
        let mut h = f.harness(true);
        settle(&mut h, "the first page", reading_settled);
    }
    let before = f.usages().len();
    assert!(before >= 3);
    // Delete a middle record: cut its frame out of the file.
    let path = f.home.trail_path(&f.identity.serial);
    let mut t = Trail::open(&path, &f.identity).unwrap();
    t.verify_offline().unwrap();
    let records = t.records().to_vec();
    drop(t);
    let bytes = std::fs::read(&path).unwrap();
    let frame = tally_core::trail::file::encode_frame(&records[2]);
    let at = bytes
        .windows(frame.len())
        .position(|w| w == frame.as_slice())
        .expect("frame in file");
    let mut cut = bytes[..at].to_vec();
    cut.extend_from_slice(&bytes[at + frame.len()..]);
    std::fs::write(&path, cut).unwrap();

    let mut h = f.harness(true);
    settle(&mut h, "the problem screen", |a| problem_of(a).is_some());
    let p = problem_of(h.state()).unwrap();
    assert!(
        matches!(&p, Problem::TrailInvalid(s) if s.contains("gap at record 2")),
        "{p:?}"
    );
    h.get_by_label("Your usage record has been changed or damaged");
    h.snapshot("trail_invalid");
}

#[test]
fn wrong_card_is_refused_and_nothing_is_charged() {
    let f = fixture(limits(None));
    // Another card in the reader's home.
    std::fs::remove_file(f.home.card_path()).unwrap();
    let other = CardState::generate(&mut OsRng, 0, "someone else's card");
    EmulatedCard::create(f.home.card_path(), &other).unwrap();
    let mut h = f.harness(true);
    settle(&mut h, "the problem screen", |a| problem_of(a).is_some());
    assert!(matches!(problem_of(h.state()), Some(Problem::WrongCard(_))));
    h.get_by_label("This is not the card for this rental");
    h.snapshot("wrong_card");
    assert!(!f.home.trail_path(&f.identity.serial).exists());
    assert!(!f.home.trail_path(&other.serial).exists());
}

#[test]
fn edited_keyfile_is_refused() {
    let f = fixture(limits(None));
    let mut kf = std::fs::read(&f.keyfile).unwrap();
    let mid = kf.len() / 2;
    kf[mid] ^= 0x01;
    std::fs::write(&f.keyfile, kf).unwrap();
    let mut h = f.harness(true);
    settle(&mut h, "the problem screen", |a| problem_of(a).is_some());
    assert!(
        matches!(problem_of(h.state()), Some(Problem::KeyfileInvalid(_))),
        "{:?}",
        problem_of(h.state())
    );
    h.get_by_label("The licence file is damaged");
    h.snapshot("keyfile_invalid");
    assert!(!f.home.trail_path(&f.identity.serial).exists());
}

#[test]
fn untrusted_publisher_is_refused() {
    let f = fixture(limits(None));
    let mut h = f.harness(false);
    settle(&mut h, "the problem screen", |a| problem_of(a).is_some());
    assert!(matches!(
        problem_of(h.state()),
        Some(Problem::UntrustedVendor(_))
    ));
    h.get_by_label("This licence is from a publisher you have not trusted");
    h.snapshot("untrusted_vendor");
    assert!(!f.home.trail_path(&f.identity.serial).exists());
}

#[test]
fn copy_is_refused_without_the_right() {
    let mut l = limits(None);
    l.rights.copy = false;
    let f = fixture(l);
    let mut h = f.harness(true);
    settle(&mut h, "the first page", reading_settled);
    let copy = h.get_by_label("Copy text");
    assert!(copy.accesskit_node().is_disabled());
    h.key_press_modifiers(egui::Modifiers::COMMAND, Key::C);
    h.step();
    assert!(h.output().platform_output.commands.is_empty());
    assert_eq!(
        h.state().reader().unwrap().notice.as_deref(),
        Some("This rental does not allow copying text.")
    );
}

#[test]
fn t35_time_is_charged_while_the_page_is_visible_focused_or_not_and_not_while_minimised() {
    // T35: an unfocused window the reader can still read from is charged; a minimised one
    // is not, and pauses: the page comes back only with the reader's next key.
    let f = fixture(limits(None));
    let mut h = f.harness_with(true, Arc::new(SystemClock), false);
    h.input_mut()
        .viewports
        .entry(egui::ViewportId::ROOT)
        .or_default()
        .minimized = Some(true);
    settle(&mut h, "the first page", reading_settled);
    for _ in 0..20 {
        h.step();
    }
    assert_eq!(f.count(|u| matches!(u, Usage::Time { .. })), 0);
    assert_eq!(f.count(|u| matches!(u, Usage::Pages { .. })), 1);
    h.input_mut()
        .viewports
        .entry(egui::ViewportId::ROOT)
        .or_default()
        .minimized = Some(false);
    settle(&mut h, "a time unit", |a| {
        reading_settled(a) && a.reader().is_some_and(|r| r.session.unit_ends().is_some())
    });
    assert_eq!(f.count(|u| matches!(u, Usage::Time { seconds: 60, .. })), 1);
}

#[test]
fn t35_an_idle_reader_sees_the_paused_screen_and_the_key_that_ends_it_turns_no_page() {
    // T35: `idle-pause 30`, the publisher's shortest; the harness's clock of input is the
    // real one, so the test waits the 30 s out rather than faking the session's time.
    let mut l = limits(None);
    l.idle_pause = 30;
    let f = fixture(l);
    let mut h = f.harness_with(true, Arc::new(SystemClock), false);
    settle(&mut h, "the first page", reading_settled);
    let time_records = f.count(|u| matches!(u, Usage::Time { .. }));
    let until = Instant::now() + Duration::from_secs(31);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(500));
        h.step();
    }
    h.get_by_label("Press any key or click to go on reading");
    assert!(
        h.query_by_label_contains("Page 1 of").is_none(),
        "no page while paused"
    );
    h.snapshot("paused");
    h.key_press(Key::ArrowRight);
    h.step();
    assert_eq!(
        h.state().reader().unwrap().session.current(),
        0,
        "the key that ends a pause turns no page"
    );
    assert!(
        h.query_by_label("Press any key or click to go on reading")
            .is_none()
    );
    settle(&mut h, "the page again", reading_settled);
    // Back from the pause the reading clock runs again (a time unit at most per minute).
    assert!(f.count(|u| matches!(u, Usage::Time { .. })) >= time_records);
}

#[test]
fn a_rental_past_its_date_shows_the_cover_and_says_it_ended() {
    let mut l = limits(None);
    l.not_after = Some(time::macros::datetime!(2026-02-01 00:00:00 UTC));
    let f = fixture(l);
    let clock = Arc::new(TestClock::at(
        time::macros::datetime!(2031-03-01 12:00:00 UTC),
    ));
    let mut h = f.harness_with(true, clock, true);
    settle(&mut h, "limited mode", |a| {
        a.reader()
            .is_some_and(|r| matches!(r.session.mode(), Mode::Limited(_)) && r.settled())
    });
    h.get_by_label("This rental has ended");
    h.key_press(Key::ArrowRight);
    h.step();
    assert_eq!(h.state().reader().unwrap().session.current(), 0);
    assert_eq!(f.count(|u| matches!(u, Usage::Open { .. })), 0);
    assert_eq!(f.count(|u| matches!(u, Usage::Pages { .. })), 0);
}

#[test]
fn a_returned_licence_shows_the_cover_and_says_so() {
    let f = fixture(limits(None));
    // The reader returned the licence (`tally-view return` writes this record).
    let mut card = tally_core::Card::new(Box::new(EmulatedCard::open(f.home.card_path()).unwrap()));
    let mut trail = Trail::open_or_create(
        f.home.trail_path(&f.identity.serial),
        &mut card,
        &f.identity,
    )
    .unwrap();
    trail
        .write(&mut card, &Body::now(Usage::Return { licence: f.licence }))
        .unwrap();
    drop((trail, card));
    let mut h = f.harness(true);
    settle(&mut h, "limited mode", |a| {
        a.reader()
            .is_some_and(|r| matches!(r.session.mode(), Mode::Limited(_)) && r.settled())
    });
    h.get_by_label("You returned this licence");
    let reason = match h.state().reader().unwrap().session.mode() {
        Mode::Limited(r) => r.to_string(),
        other => panic!("{other:?}"),
    };
    assert!(
        reason.starts_with("This licence was returned on "),
        "{reason}"
    );
    h.get_by_label(reason.as_str());
    h.key_press(Key::ArrowRight);
    h.step();
    assert_eq!(h.state().reader().unwrap().session.current(), 0);
    assert_eq!(f.count(|u| matches!(u, Usage::Open { .. })), 0);
}

#[test]
fn a_clock_set_back_is_refused() {
    let mut l = limits(None);
    l.not_after = Some(time::macros::datetime!(2099-01-01 00:00:00 UTC));
    let f = fixture(l);
    {
        let mut h = f.harness(true);
        settle(&mut h, "the first page", reading_settled);
    }
    let records = f.usages().len();
    let clock = Arc::new(TestClock::at(
        time::macros::datetime!(2020-01-01 00:00:00 UTC),
    ));
    let mut h = f.harness_with(true, clock, true);
    settle(&mut h, "the problem screen", |a| problem_of(a).is_some());
    assert!(
        matches!(
            problem_of(h.state()),
            Some(Problem::Refused(
                tally_core::policy::Reason::ClockSetBack { .. }
            ))
        ),
        "{:?}",
        problem_of(h.state())
    );
    h.get_by_label("Your computer's clock looks wrong");
    assert_eq!(f.usages().len(), records, "nothing charged");
}

#[test]
fn printing_is_charged_then_sent_to_the_printer_with_the_watermark() {
    let mut l = limits(None);
    l.rights.print = true;
    l.prints = Some(2);
    let f = fixture(l);
    // The system's print command is replaced by a script that keeps the job it is piped:
    // the job must be a PDF of the rasterized, watermarked page.
    let job = f.home.root().join("job.pdf");
    let printer = f.home.root().join("fake-lp.sh");
    std::fs::write(
        &printer,
        format!(
            "#!/bin/sh\ncat > '{}.part' && mv '{0}.part' '{0}'\n",
            job.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &printer,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut h = f.harness(true);
    settle(&mut h, "the first page", reading_settled);
    h.state_mut().reader_mut().unwrap().printer = Some(printer);
    // Page 2 is black text only: any reddish pixel in the job is the watermark.
    h.key_press(Key::ArrowRight);
    settle(&mut h, "page 2", |a| {
        reading_settled(a) && a.reader().is_some_and(|r| r.session.current() == 1)
    });
    h.get_by_label("Print…").click();
    settle(&mut h, "the print job", |a| {
        a.reader()
            .is_some_and(|r| r.notice.as_deref() == Some("Sent to the printer."))
    });
    let start = Instant::now();
    while !job.exists() {
        assert!(start.elapsed() < Duration::from_secs(30), "no print job");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pdf = std::fs::read(&job).unwrap();
    let pdfium = tally_viewer::render::pdfium().unwrap();
    let doc = pdfium.load_pdf_from_byte_slice(&pdf, None).unwrap();
    assert_eq!(doc.pages().len(), 1);
    let page = doc.pages().get(0).unwrap();
    let bitmap = page
        .render_with_config(
            &pdfium_render::prelude::PdfRenderConfig::new()
                .set_target_width(600)
                .set_reverse_byte_order(true),
        )
        .unwrap();
    let reddish = bitmap
        .as_raw_bytes()
        .chunks_exact(4)
        .filter(|px| {
            // RGBA (reverse byte order asked for above)
            let (r, g, b) = (i32::from(px[0]), i32::from(px[1]), i32::from(px[2]));
            r > g + 20 && r > b + 20
        })
        .count();
    assert!(
        reddish > 200,
        "watermark pixels in the print job: {reddish}"
    );
    assert_eq!(f.count(|u| matches!(u, Usage::Print { pages: 1, .. })), 1);

    // Ctrl+P prints once more; then the two printable pages are used up and it is refused.
    h.key_press_modifiers(egui::Modifiers::COMMAND, Key::P);
    settle(&mut h, "the second print", |a| {
        reading_settled(a) && a.reader().is_some_and(|r| r.print_available())
    });
    assert_eq!(f.count(|u| matches!(u, Usage::Print { .. })), 2);
    h.key_press_modifiers(egui::Modifiers::COMMAND, Key::P);
    settle(&mut h, "the refusal", |a| {
        a.reader().is_some_and(|r| {
            r.notice
                .as_deref()
                .is_some_and(|n| n.contains("printable pages"))
        })
    });
    assert_eq!(f.count(|u| matches!(u, Usage::Print { .. })), 2);
}

#[test]
fn card_removed_while_reading_shows_the_no_card_screen() {
    let f = fixture(limits(None));
    let mut h = f.harness(true);
    settle(&mut h, "the first page", reading_settled);
    // The card goes away; the prepaid block still covers nine more views.
    let card = std::fs::read(f.home.card_path()).unwrap();
    std::fs::remove_file(f.home.card_path()).unwrap();
    for key in std::iter::repeat_n(Key::ArrowRight, 6).chain(std::iter::repeat_n(Key::ArrowLeft, 3))
    {
        h.key_press(key);
        h.step();
    }
    assert!(matches!(
        h.state().reader().unwrap().session.mode(),
        Mode::Reading
    ));
    // The tenth view needs a new block: the card can't be reached.
    h.key_press(Key::ArrowLeft);
    settle(&mut h, "the problem screen", |a| problem_of(a).is_some());
    assert!(
        matches!(problem_of(h.state()), Some(Problem::NoCard(_))),
        "{:?}",
        problem_of(h.state())
    );
    h.get_by_label("Your card is not connected");
    h.snapshot("no_card");
    // Card back, "Try again": reading resumes with a new opening.
    std::fs::write(f.home.card_path(), card).unwrap();
    // Put back as `card init` makes it: a state file others may read is refused.
    std::fs::set_permissions(
        f.home.card_path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    h.get_by_label("Try again").click();
    settle(&mut h, "reading again", reading_settled);
    assert_eq!(f.count(|u| matches!(u, Usage::Open { .. })), 2);
}

#[test]
fn a_licence_that_requires_online_validation_is_refused_until_validated() {
    let server_key = CardState::generate(&mut OsRng, 0, "stand-in for the server key");
    let server = ServerInfo {
        url: "http://127.0.0.1:9".into(),
        public_key: PublicKey::from_verifying_key(server_key.key.verifying_key()),
        require_online_every_days: Some(7),
    };
    let f = fixture_with(limits(None), Some(server));
    let mut h = f.harness(true);
    // The opening tries the server itself (nobody listens on port 9), off the UI thread.
    settle(&mut h, "the problem screen", |a| problem_of(a).is_some());
    assert!(
        matches!(problem_of(h.state()), Some(Problem::ValidationNeeded(ref s))
            if s.contains("not been validated online yet")
                && s.contains("cannot reach the validation server http://127.0.0.1:9/v1/validate")),
        "{:?}",
        problem_of(h.state())
    );
    h.get_by_label("This rental needs to be checked online");
    assert_eq!(
        f.count(|u| matches!(u, Usage::Open { .. })),
        0,
        "nothing opened"
    );
}
