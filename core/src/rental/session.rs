//! The reading session: which page is shown, what is prepaid, what is left — and the
//! [`Meter`] it charges through. No egui types here: the UI reads this state and calls
//! these methods; every charge goes to a meter worker thread, so a slow or absent card
//! shows a status instead of freezing the window (DESIGN, "The viewer").
//!
//! Charges follow the policy ([`crate::policy`]): page views are prepaid in blocks (one
//! `pages` record per block, \[0048\]), reading time is charged at the start of each time
//! unit while a page is visible and the reader is not idle, and every opening and print is
//! a record of its own. A page is only shown once its view is paid for. A viewer forwards
//! page turns, print and copy requests, input and the clock ticks it sees; the session
//! decides what may be shown and what is charged.

use super::{Charge, Charged, Meter, Problem};
use crate::policy::{Decision, Reason, Remaining, Rights};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// An answer from the meter worker.
#[derive(Debug, Clone)]
pub enum MeterEvent {
    /// A charge went through.
    Charged(Charged, Decision),
    /// A charge was refused or failed.
    Failed(Charge, Problem),
    /// A new warning from the meter (see [`Meter::warning`]); reading goes on.
    Warning(String),
}

/// What the meter thread is asked to do: charges, in the order the session sends them,
/// and the automatic backup's requests ([`super::AutoBackup`]) — the same thread, so the
/// backup's records go through the same Write path, lock and card as the charges.
pub(crate) enum Job {
    /// A charge from the session.
    Charge(Charge),
    /// Where the trail stands for the backup.
    State(Sender<Option<super::BackupState>>),
    /// A validation server's answer to write ([`Meter::append_vouched`]).
    Append {
        /// The bodies, in order.
        bodies: Vec<crate::trail::Body>,
        /// The last counter sent to the server.
        after: u64,
        /// Where the result goes.
        reply: Sender<Result<Vec<crate::trail::Record>, crate::trail::TrailError>>,
    },
    /// Archive vouched records when the working trail holds more than this many.
    Archive(
        u64,
        Sender<Result<Option<crate::trail::Archive>, crate::trail::TrailError>>,
    ),
    /// The session ended: finish and stop.
    Stop,
}

/// A meter running on its own thread.
pub struct MeterWorker {
    tx: Option<Sender<Job>>,
    rx: Receiver<MeterEvent>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MeterWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MeterWorker")
    }
}

impl MeterWorker {
    /// Moves `meter` onto a new thread. `wake` is called after every answer.
    pub fn spawn(mut meter: Box<dyn Meter>, wake: Box<dyn Fn() + Send>) -> std::io::Result<Self> {
        let (tx, rx_job) = channel::<Job>();
        let (tx_ev, rx) = channel();
        let thread = std::thread::Builder::new()
            .name("tally-meter".into())
            .spawn(move || {
                let mut warned: Option<String> = None;
                while let Ok(job) = rx_job.recv() {
                    let c = match job {
                        Job::Charge(c) => c,
                        Job::Stop => return,
                        // The backup's requests: answered to the backup thread, never to the
                        // session (a closed reply channel means it gave up waiting).
                        Job::State(reply) => {
                            let _ = reply.send(meter.backup_state());
                            continue;
                        }
                        Job::Append {
                            bodies,
                            after,
                            reply,
                        } => {
                            let _ = reply.send(meter.append_vouched(&bodies, after));
                            continue;
                        }
                        Job::Archive(above, reply) => {
                            let _ = reply.send(meter.archive_vouched(above));
                            continue;
                        }
                    };
                    let ev = match meter.charge(c) {
                        Ok((charged, decision)) => MeterEvent::Charged(charged, decision),
                        Err(p) => MeterEvent::Failed(c, p),
                    };
                    if tx_ev.send(ev).is_err() {
                        return;
                    }
                    // Each warning once, when it appears (not after every charge).
                    let w = meter.warning();
                    if w != warned {
                        if let Some(text) = &w
                            && tx_ev.send(MeterEvent::Warning(text.clone())).is_err()
                        {
                            return;
                        }
                        warned = w;
                    }
                    wake();
                }
            })?;
        Ok(Self {
            tx: Some(tx),
            rx,
            thread: Some(thread),
        })
    }

    fn send(&self, c: Charge) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Job::Charge(c));
        }
    }

    fn try_recv(&self) -> Option<MeterEvent> {
        self.rx.try_recv().ok()
    }

    /// A handle for the automatic backup's thread, to ask this worker for the trail's
    /// state and to have records written through it.
    pub(crate) fn handle(&self) -> Option<MeterHandle> {
        self.tx.clone().map(MeterHandle)
    }
}

impl Drop for MeterWorker {
    fn drop(&mut self) {
        // Stop after the jobs already sent, so a record being written is never cut off
        // (the backup thread may still hold a sender: the channel alone would not close).
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Job::Stop);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The automatic backup's way to the meter thread ([`MeterWorker::handle`]).
#[derive(Clone)]
pub(crate) struct MeterHandle(Sender<Job>);

impl MeterHandle {
    /// Where the trail stands; `None` when the session ended.
    pub(crate) fn state(&self) -> Option<super::BackupState> {
        let (tx, rx) = channel();
        self.0.send(Job::State(tx)).ok()?;
        rx.recv().ok().flatten()
    }

    /// Archives through the meter; `Ok(None)` also when the session ended.
    pub(crate) fn archive(
        &self,
        above: u64,
    ) -> Result<Option<crate::trail::Archive>, crate::trail::TrailError> {
        let (tx, rx) = channel();
        if self.0.send(Job::Archive(above, tx)).is_err() {
            return Ok(None);
        }
        rx.recv().unwrap_or(Ok(None))
    }
}

impl super::VouchWriter for MeterHandle {
    fn append_vouched(
        &mut self,
        bodies: &[crate::trail::Body],
        after: u64,
    ) -> Result<Vec<crate::trail::Record>, crate::trail::TrailError> {
        let ended = || crate::trail::TrailError::NotArchivable("the reading session ended");
        let (tx, rx) = channel();
        self.0
            .send(Job::Append {
                bodies: bodies.to_vec(),
                after,
                reply: tx,
            })
            .map_err(|_| ended())?;
        rx.recv().map_err(|_| ended())?
    }
}

/// Facts about the rental the UI shows.
#[derive(Debug, Clone)]
pub struct RentalInfo {
    /// Document title.
    pub title: String,
    /// Customer name (also the watermark).
    pub customer: String,
    /// Print / copy rights.
    pub rights: Rights,
    /// How to renew, for the used-up screen (the vendor's address when the keyfile has one).
    pub renew_hint: String,
    /// When the publisher's service last validated this copy, if the licence uses one.
    pub validated: Option<time::OffsetDateTime>,
    /// No input for this long pauses the reading clock and hides the page: reading time is
    /// not charged for a window left open, and a page left open is not read for free. The
    /// publisher's `idle-pause` (five minutes by default); no viewer setting changes it.
    pub idle_pause: Duration,
}

/// Whether the session may show pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Reading normally.
    Reading,
    /// The rental is used up or out of its dates: the cover page only (claim 6).
    Limited(Reason),
    /// Something is wrong with the card, the trail or the clock: nothing is shown.
    Stopped(Problem),
}

/// The state of a reading session.
#[derive(Debug)]
pub struct Session {
    info: RentalInfo,
    page_count: usize,
    current: usize,
    paid_current: bool,
    prepaid: u32,
    pending_page: Option<usize>,
    in_flight: Vec<Charge>,
    mode: Mode,
    remaining: Option<Remaining>,
    unit_ends: Option<Instant>,
    time_pending: bool,
    print_pending: Option<u32>,
    print_ready: Option<u32>,
    paused: bool,
    copy_pending: bool,
    copy_ready: bool,
    last_input: Option<Instant>,
    notice: Option<String>,
    records: u64,
    // Declared before the meter: dropped first, so it lets go of the meter thread.
    backup: Option<super::AutoBackup>,
    meter: MeterWorker,
    contact: Option<std::thread::JoinHandle<super::contact::ContactResult>>,
    contacted: Option<super::contact::ContactResult>,
    returns: Option<std::thread::JoinHandle<Vec<super::PendingSent>>>,
    returned: Option<Vec<super::PendingSent>>,
}

impl Session {
    /// A session on an opened document whose `open` record is already written
    /// (`decision` is the policy's answer after it). Page 1 still has to be paid for:
    /// call [`Session::go_to`] with 0 to start.
    pub fn new(
        info: RentalInfo,
        page_count: usize,
        decision: Decision,
        meter: MeterWorker,
    ) -> Self {
        let mut s = Self {
            info,
            page_count: page_count.max(1),
            current: 0,
            paid_current: false,
            prepaid: 0,
            pending_page: None,
            in_flight: Vec::new(),
            mode: Mode::Reading,
            remaining: None,
            unit_ends: None,
            time_pending: false,
            print_pending: None,
            print_ready: None,
            paused: false,
            copy_pending: false,
            copy_ready: false,
            last_input: None,
            notice: None,
            records: 0,
            backup: None,
            meter,
            contact: None,
            contacted: None,
            returns: None,
            returned: None,
        };
        s.apply_decision(decision);
        s
    }

    /// The background contact with the licence's validation server (\[0104\]'s challenge,
    /// [`super::Opened::start`]); a thread that could not start is an ended contact
    /// ([`super::ContactError::Stopped`]).
    pub(crate) fn attach_contact(
        &mut self,
        handle: std::io::Result<std::thread::JoinHandle<super::contact::ContactResult>>,
    ) {
        match handle {
            Ok(h) => self.contact = Some(h),
            Err(_) => self.contacted = Some(Err(super::ContactError::Stopped)),
        }
    }

    /// How the background contact with the licence's validation server went, once it has
    /// ended: a challenge answered, none pending, or why it could not be made (an
    /// unreachable server changes nothing for the reading). `None` while it runs, or when
    /// the licence names no server.
    pub fn server_contact(&mut self) -> Option<&super::contact::ContactResult> {
        if self.contact.as_ref().is_some_and(|h| h.is_finished())
            && let Some(h) = self.contact.take()
        {
            self.contacted = Some(h.join().unwrap_or(Err(super::ContactError::Stopped)));
        }
        self.contacted.as_ref()
    }

    /// The background sending of receipts of returned licences still pending
    /// ([`super::send_pending`]); a thread that could not start sent none.
    pub(crate) fn attach_returns(
        &mut self,
        handle: std::io::Result<std::thread::JoinHandle<Vec<super::PendingSent>>>,
    ) {
        match handle {
            Ok(h) => self.returns = Some(h),
            Err(_) => self.returned = Some(Vec::new()),
        }
    }

    /// The receipts of returned licences this session sent in the background, each with the
    /// answer of its server, once that has ended (an empty list: none was pending, or none
    /// could be sent). `None` while it runs, or when the licence names no server.
    pub fn pending_returns_sent(&mut self) -> Option<&[super::PendingSent]> {
        if self.returns.as_ref().is_some_and(|h| h.is_finished())
            && let Some(h) = self.returns.take()
        {
            self.returned = Some(h.join().unwrap_or_default());
        }
        self.returned.as_deref()
    }

    /// Starts the automatic backup of this session's trail ([`super::AutoBackup`]) on a
    /// thread of its own, writing through this session's meter.
    pub(crate) fn start_backup(&mut self, plan: super::BackupPlan) {
        if let Some(handle) = self.meter.handle() {
            self.backup = super::AutoBackup::start(plan, handle);
        }
    }

    /// Where the automatic backup of the trail stands (`None`: it is not running — the
    /// licence names no validation server, or the reader turned it off).
    pub fn backup_status(&self) -> Option<super::BackupStatus> {
        self.backup.as_ref().map(super::AutoBackup::status)
    }

    /// The rental's facts.
    pub fn info(&self) -> &RentalInfo {
        &self.info
    }

    /// Pages in the document.
    pub fn page_count(&self) -> usize {
        self.page_count
    }

    /// Sets the page count once the renderer knows it (the package header may not say).
    pub fn set_page_count(&mut self, n: usize) {
        self.page_count = n.max(1);
        self.current = self.current.min(self.page_count - 1);
    }

    /// The page being shown (0-based). In limited mode, always the cover.
    pub fn current(&self) -> usize {
        self.current
    }

    /// True once the current page's view is paid for (or it is the cover in limited mode),
    /// and the reader is not idle: a paused session hides its page.
    pub fn page_shown(&self) -> bool {
        match &self.mode {
            Mode::Reading => self.paid_current && !self.paused,
            Mode::Limited(_) => true,
            Mode::Stopped(_) => false,
        }
    }

    /// The page waiting for its view to be charged, if any.
    pub fn pending_page(&self) -> Option<usize> {
        self.pending_page
    }

    /// Reading, limited or stopped.
    pub fn mode(&self) -> &Mode {
        &self.mode
    }

    /// What is left, as the policy last said (during a session: openings counted with this
    /// one still running; [`Session::left_lines`] says it the way `status` does).
    pub fn remaining(&self) -> Option<&Remaining> {
        self.remaining.as_ref()
    }

    /// What is left, in the reader's words, the same lines a standing check prints
    /// ([`super::left_lines`]): openings after this one, and pages from the trail with
    /// the views this session already paid for said apart.
    pub fn left_lines(&self, now: time::OffsetDateTime) -> Vec<String> {
        let Some(rem) = &self.remaining else {
            return Vec::new();
        };
        let mut rem = rem.clone();
        // The reading phase counts this session's own opening as not yet used.
        rem.opens = rem.opens.map(|o| o.saturating_sub(1));
        let mut lines = super::left_lines(&rem, self.info.rights.print, now);
        if self.prepaid > 0 {
            lines.push(format!(
                "Paid for in this session: {}",
                super::plural(u64::from(self.prepaid), "page", "pages")
            ));
        }
        lines
    }

    /// True while the reader is idle ([`Session::note_input`] not called for the idle
    /// time): the page is hidden and no reading time is charged until the next input.
    pub fn paused(&self) -> bool {
        self.paused
    }

    /// The reader did something deliberate (a key, a click, a scroll): a pause ends.
    pub fn note_input(&mut self, now: Instant) {
        self.last_input = Some(now);
        self.paused = false;
    }

    /// The pointer moved over the window: the reader is there, so the idle time starts
    /// again, but a pause (the page hidden) ends only with [`Session::note_input`] — a
    /// pointer drifting over a paused window is not someone reading.
    pub fn note_motion(&mut self, now: Instant) {
        if !self.paused {
            self.last_input = Some(now);
        }
    }

    /// Page views prepaid and not yet used.
    pub fn prepaid_views(&self) -> u32 {
        self.prepaid
    }

    /// True while a charge is being recorded (the status bar says so).
    pub fn busy(&self) -> bool {
        !self.in_flight.is_empty()
    }

    /// Charges recorded by this session so far.
    pub fn records_written(&self) -> u64 {
        self.records
    }

    /// A one-line message for the reader (a refused print, a refused copy…), taken once.
    pub fn take_notice(&mut self) -> Option<String> {
        self.notice.take()
    }

    /// Pages whose print was just paid for: the UI now sends them to the printer.
    pub fn take_print_ready(&mut self) -> Option<u32> {
        self.print_ready.take()
    }

    fn send(&mut self, c: Charge) {
        self.in_flight.push(c);
        self.meter.send(c);
    }

    fn apply_decision(&mut self, d: Decision) {
        match d {
            Decision::Allowed { remaining } => {
                self.remaining = Some(remaining);
            }
            Decision::Limited { reason } => {
                if !matches!(self.mode, Mode::Stopped(_)) {
                    self.enter_limited(reason);
                }
            }
            Decision::Denied { reason } => {
                self.mode = Mode::Stopped(Problem::Refused(reason));
            }
        }
    }

    /// The policy's view right after a charge went through. "Used up" here means the
    /// charge just bought the last of something: what was bought (prepaid page views, the
    /// running time unit) is still the reader's, so reading goes on, and the next charge
    /// is the one refused. Only a refusal for tampering stops at once.
    fn apply_after_charge(&mut self, d: Decision) {
        match d {
            Decision::Allowed { .. } | Decision::Denied { .. } => self.apply_decision(d),
            Decision::Limited { reason } => {
                // Show the exhausted measure as nothing left (beyond what is prepaid).
                if let Some(r) = &mut self.remaining {
                    match reason {
                        Reason::PagesUsedUp { .. } => r.pages = Some(0),
                        Reason::TimeUsedUp { .. } => r.seconds = Some(0),
                        Reason::UnitsUsedUp { left, .. } => r.units = Some(left),
                        _ => {}
                    }
                }
            }
        }
    }

    fn enter_limited(&mut self, reason: Reason) {
        self.mode = Mode::Limited(reason);
        self.current = 0;
        self.pending_page = None;
        self.unit_ends = None;
    }

    /// Asks for page `page` (0-based, clamped). Shown at once when a view is prepaid,
    /// otherwise a new block is charged first. Ignored in limited and stopped modes
    /// (the cover stays).
    pub fn go_to(&mut self, page: usize) {
        if !matches!(self.mode, Mode::Reading) {
            return;
        }
        let page = page.min(self.page_count - 1);
        if page == self.current && self.paid_current && self.pending_page.is_none() {
            return;
        }
        if self.prepaid > 0 {
            self.prepaid -= 1;
            self.current = page;
            self.paid_current = true;
            self.pending_page = None;
            return;
        }
        let already = self
            .in_flight
            .iter()
            .any(|c| matches!(c, Charge::Pages { .. }));
        self.pending_page = Some(page);
        if !already {
            let first = u32::try_from(page + 1).unwrap_or(u32::MAX);
            self.send(Charge::Pages { first });
        }
    }

    /// Next page.
    pub fn next(&mut self) {
        let p = self.pending_page.unwrap_or(self.current);
        if p + 1 < self.page_count {
            self.go_to(p + 1);
        }
    }

    /// Previous page.
    pub fn previous(&mut self) {
        let p = self.pending_page.unwrap_or(self.current);
        if p > 0 {
            self.go_to(p - 1);
        }
    }

    /// Asks to print `pages` pages; [`Session::take_print_ready`] says when it is paid.
    pub fn request_print(&mut self, pages: u32) {
        if !matches!(self.mode, Mode::Reading) {
            self.notice = Some("Printing is not available now.".into());
            return;
        }
        if !self.info.rights.print {
            self.notice = Some(Reason::PrintNotAllowed.to_string());
            return;
        }
        if self.print_pending.is_none() {
            self.print_pending = Some(pages);
            self.send(Charge::Print { pages });
        }
    }

    /// Whether to offer copying (a menu entry, a button): the licence has the right and
    /// the rental is running. Offering is not allowing: [`Session::request_copy`] asks the
    /// policy (dates, thresholds) and only [`Session::take_copy_ready`] says yes.
    pub fn copy_offered(&self) -> bool {
        self.info.rights.copy && matches!(self.mode, Mode::Reading)
    }

    /// Asks to copy a selection of `chars` characters (what the UI would put on the
    /// clipboard); [`Session::take_copy_ready`] says when it is allowed and recorded, and a
    /// refusal comes as a notice. The UI copies the text only after that yes.
    pub fn request_copy(&mut self, chars: usize) {
        if !matches!(self.mode, Mode::Reading) {
            self.notice = Some("Copying is not available now.".into());
            return;
        }
        if !self.info.rights.copy {
            self.notice = Some(Reason::CopyNotAllowed.to_string());
            return;
        }
        if chars == 0 {
            self.notice = Some("There is no text to copy.".into());
            return;
        }
        if !self.copy_pending {
            self.copy_pending = true;
            let chars = u32::try_from(chars).unwrap_or(u32::MAX);
            self.send(Charge::Copy { chars });
        }
    }

    /// True once, after a copy request the policy allowed: the UI now copies the text.
    pub fn take_copy_ready(&mut self) -> bool {
        std::mem::take(&mut self.copy_ready)
    }

    /// Called every frame (and by a timer): takes the meter's answers, pauses an idle
    /// session and starts a time unit when one is due — while the page is `visible` on
    /// the screen (focused or not: a page one can read is charged, T35) and shown. A
    /// window that is not visible (minimised) is charged nothing; it does not pause by
    /// itself, because window systems report "minimised" for windows that are on screen
    /// too (X11 without a window manager does, while mapping): when it is back, its
    /// reader is there.
    pub fn tick(&mut self, now: Instant, visible: bool) {
        while let Some(ev) = self.meter.try_recv() {
            self.on_event(ev, now);
        }
        let last = *self.last_input.get_or_insert(now);
        if now.saturating_duration_since(last) >= self.info.idle_pause {
            self.paused = true;
        }
        if !matches!(self.mode, Mode::Reading) || !visible || !self.page_shown() {
            return;
        }
        if self.time_pending || !self.paid_current {
            return;
        }
        if self.unit_ends.is_none_or(|end| now >= end) {
            self.time_pending = true;
            self.send(Charge::Time);
        }
    }

    /// When the current time unit ends (the UI schedules a repaint for then).
    pub fn unit_ends(&self) -> Option<Instant> {
        self.unit_ends
    }

    fn on_event(&mut self, ev: MeterEvent, now: Instant) {
        if let MeterEvent::Warning(w) = ev {
            self.notice = Some(w);
            return;
        }
        let charge = match &ev {
            MeterEvent::Charged(c, _) => match c {
                Charged::Open => Charge::Open,
                Charged::Pages { .. } => Charge::Pages { first: 0 },
                Charged::Time { .. } => Charge::Time,
                Charged::Print { pages } => Charge::Print { pages: *pages },
                Charged::Copy { chars } => Charge::Copy { chars: *chars },
            },
            MeterEvent::Failed(c, _) => *c,
            MeterEvent::Warning(_) => return,
        };
        if let Some(pos) = self
            .in_flight
            .iter()
            .position(|c| std::mem::discriminant(c) == std::mem::discriminant(&charge))
        {
            self.in_flight.remove(pos);
        }
        match ev {
            MeterEvent::Charged(charged, decision) => {
                self.records += 1;
                match charged {
                    Charged::Open => {}
                    Charged::Pages { count } => {
                        self.prepaid = self.prepaid.saturating_add(count);
                        if let Some(p) = self.pending_page.take() {
                            self.prepaid = self.prepaid.saturating_sub(1);
                            self.current = p;
                            self.paid_current = true;
                        }
                    }
                    Charged::Time { seconds } => {
                        self.time_pending = false;
                        self.unit_ends = Some(now + Duration::from_secs(u64::from(seconds)));
                    }
                    Charged::Print { pages } => {
                        self.print_pending = None;
                        self.print_ready = Some(pages);
                    }
                    Charged::Copy { .. } => {
                        self.copy_pending = false;
                        self.copy_ready = true;
                    }
                }
                self.apply_after_charge(decision);
            }
            // Taken care of before the charge bookkeeping above.
            MeterEvent::Warning(_) => {}
            MeterEvent::Failed(charge, problem) => {
                if matches!(charge, Charge::Time) {
                    self.time_pending = false;
                }
                if matches!(charge, Charge::Copy { .. }) {
                    self.copy_pending = false;
                }
                match (charge, problem) {
                    (Charge::Print { .. } | Charge::Copy { .. }, Problem::Refused(r)) => {
                        self.print_pending = None;
                        self.notice = Some(r.to_string());
                    }
                    (_, Problem::Refused(r)) if !r.is_suspicious() => self.enter_limited(r),
                    (_, p) => {
                        self.print_pending = None;
                        self.mode = Mode::Stopped(p);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "a test fails loudly on any unexpected error"
    )]
    use super::*;

    /// A meter whose warning appears after its first charge and stays.
    struct Warns(u32);

    impl Meter for Warns {
        fn charge(&mut self, _: Charge) -> Result<(Charged, Decision), Problem> {
            self.0 += 1;
            Ok((
                Charged::Open,
                Decision::Allowed {
                    remaining: crate::policy::Remaining::default(),
                },
            ))
        }
        fn standing(&mut self) -> Result<Decision, Problem> {
            Ok(Decision::Allowed {
                remaining: crate::policy::Remaining::default(),
            })
        }
        fn warning(&self) -> Option<String> {
            (self.0 >= 1).then(|| "mirror gone".to_string())
        }
    }

    fn next(w: &MeterWorker) -> MeterEvent {
        let t0 = Instant::now();
        loop {
            if let Some(e) = w.try_recv() {
                return e;
            }
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(10),
                "no event"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    #[test]
    fn a_meter_warning_is_sent_once_after_the_charge_that_raised_it() {
        let w = MeterWorker::spawn(Box::new(Warns(0)), Box::new(|| {})).unwrap();
        w.send(Charge::Open);
        assert!(matches!(next(&w), MeterEvent::Charged(Charged::Open, _)));
        assert!(matches!(next(&w), MeterEvent::Warning(m) if m == "mirror gone"));
        w.send(Charge::Open);
        assert!(matches!(next(&w), MeterEvent::Charged(Charged::Open, _)));
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(w.try_recv().is_none(), "the same warning is not repeated");
    }
}
