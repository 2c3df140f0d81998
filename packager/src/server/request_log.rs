//! The server's one line per request, written to standard error by a thread of its own.
//!
//! A request only queues its line: a standard error nobody reads (a full pipe, a stopped
//! log collector) or a slow disk must not stop the server answering, and writing on the
//! async runtime's threads would (every request waits for the one thread blocked in
//! `write`, holding the lock). When the queue is full a line is dropped and counted, and
//! the writer says how many before its next line.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};

/// Lines queued for the writer at most; past this, lines are dropped (and counted).
const QUEUED_LINES: usize = 1024;

/// Where requests put their log lines.
pub(crate) struct RequestLog {
    lines: Option<SyncSender<String>>,
    dropped: Arc<AtomicU64>,
    /// Lines written so far: a stopping server waits while this moves.
    written: Arc<AtomicU64>,
    /// Says when the writer has written every queued line and ended (in a mutex: a
    /// receiver is not shared between threads, the server's state is).
    done: std::sync::Mutex<Receiver<()>>,
}

/// How long a server stopping waits for the writer to write its next line: as long as lines
/// are being written it waits for all of them; when none is written for this long (a
/// standard error nobody reads would otherwise hold the exit forever), it stops waiting.
const DRAIN_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

impl RequestLog {
    /// Starts the writer thread, writing to standard error.
    pub(crate) fn start() -> std::io::Result<Self> {
        Self::start_to(std::io::stderr())
    }

    /// Starts the writer thread, writing to `out`.
    fn start_to(out: impl std::io::Write + Send + 'static) -> std::io::Result<Self> {
        let (lines, queue) = std::sync::mpsc::sync_channel(QUEUED_LINES);
        let dropped = Arc::new(AtomicU64::new(0));
        let written = Arc::new(AtomicU64::new(0));
        let (counted, progress) = (dropped.clone(), written.clone());
        let (ended, done) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("request-log".into())
            .spawn(move || {
                write_lines(queue, &counted, &progress, out);
                let _ = ended.send(());
            })?;
        Ok(Self {
            lines: Some(lines),
            dropped,
            written,
            done: std::sync::Mutex::new(done),
        })
    }

    /// Queues `line` (ending in a newline); drops it when the writer is that far behind.
    pub(crate) fn line(&self, line: String) {
        let Some(lines) = &self.lines else {
            return;
        };
        match lines.try_send(line) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for RequestLog {
    /// Lets the writer write what is queued, waiting for it as long as it makes progress
    /// (a line at least every [`DRAIN_WAIT`]).
    fn drop(&mut self) {
        drop(self.lines.take());
        let done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        let mut seen = self.written.load(Ordering::Relaxed);
        while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = done.recv_timeout(DRAIN_WAIT) {
            let now = self.written.load(Ordering::Relaxed);
            if now == seen {
                return;
            }
            seen = now;
        }
    }
}

/// The writer: each line in one `write` call, after a count of the lines dropped since the
/// last one written, if any (a line is dropped only when the queue is full, so a line
/// queued before it always comes next to carry the count). Ends when every sender is gone.
fn write_lines(
    queue: Receiver<String>,
    dropped: &AtomicU64,
    written: &AtomicU64,
    mut out: impl std::io::Write,
) {
    for line in queue {
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            let _ = out.write_all(
                format!(
                    "log: {lost} request lines dropped (standard error was not read fast enough)\n"
                )
                .as_bytes(),
            );
        }
        let _ = out.write_all(line.as_bytes());
        written.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Condvar, Mutex};

    /// An output that blocks every write until let go, and keeps what was written.
    #[derive(Clone, Default)]
    struct Held(Arc<HeldState>);

    /// Whether writes may go on, what was written; and the signal that they may.
    #[derive(Default)]
    struct HeldState {
        written: Mutex<(bool, Vec<u8>)>,
        opened: Condvar,
    }

    impl std::io::Write for Held {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let HeldState { written, opened } = &*self.0;
            let mut st = opened
                .wait_while(written.lock().unwrap(), |(open, _)| !*open)
                .unwrap();
            st.1.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Held {
        fn open(&self) {
            self.0.written.lock().unwrap().0 = true;
            self.0.opened.notify_all();
        }
        fn text(&self) -> String {
            String::from_utf8(self.0.written.lock().unwrap().1.clone()).unwrap()
        }
    }

    /// An output taking `0` to write each line.
    struct Slow(std::time::Duration, Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Slow {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            std::thread::sleep(self.0);
            self.1.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stopping_server_waits_for_a_slow_output_while_it_writes() {
        // 300 lines at 5 ms each: 1.5 s, longer than DRAIN_WAIT; none is lost. (Waiting
        // DRAIN_WAIT in all, as before, loses about a third.)
        let text = Arc::new(Mutex::new(Vec::new()));
        let log =
            RequestLog::start_to(Slow(std::time::Duration::from_millis(5), text.clone())).unwrap();
        for i in 0..300 {
            log.line(format!("line {i}\n"));
        }
        drop(log);
        let text = String::from_utf8(text.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 300, "{text}");
    }

    #[test]
    fn a_stopping_server_does_not_wait_for_an_output_nobody_reads() {
        let out = Held::default();
        let log = RequestLog::start_to(out.clone()).unwrap();
        log.line("blocked\n".into());
        log.line("queued\n".into());
        let (stopped, has_stopped) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(log);
            let _ = stopped.send(());
        });
        // Without the give-up the drop never returns: the test then lets the output go
        // (so its threads end) and fails, rather than hanging.
        let ended = has_stopped.recv_timeout(DRAIN_WAIT * 30);
        out.open();
        assert!(
            ended.is_ok(),
            "the stopping server waited for a blocked output"
        );
    }

    /// The numbers of the lines `line N` written, and the sum of the drop counts written.
    fn kept_and_dropped(text: &str) -> (Vec<usize>, usize) {
        let kept = text
            .lines()
            .filter_map(|l| l.strip_prefix("line ")?.parse().ok())
            .collect();
        let dropped = text
            .lines()
            .filter_map(|l| {
                l.strip_prefix("log: ")?
                    .strip_suffix(
                        " request lines dropped (standard error was not read fast enough)",
                    )?
                    .parse::<usize>()
                    .ok()
            })
            .sum();
        (kept, dropped)
    }

    #[test]
    fn a_blocked_output_never_blocks_a_request_and_the_dropped_lines_are_counted() {
        let out = Held::default();
        let log = RequestLog::start_to(out.clone()).unwrap();
        // The writer takes the first line and blocks on it; the queue then fills.
        let n = QUEUED_LINES + 500;
        for i in 0..n {
            log.line(format!("line {i}\n"));
        }
        out.open();
        // Waits for room (the test's own; a request never waits).
        log.lines.as_ref().unwrap().send("after\n".into()).unwrap();
        // Dropped, it lets the writer finish what is queued.
        drop(log);
        let text = out.text();
        assert!(text.ends_with("after\n"));
        // The lines kept, in order from the first; the rest counted (when the writer took
        // its first line decides where the count lands, not what it adds up to).
        let (kept, dropped) = kept_and_dropped(&text);
        assert_eq!(kept.first(), Some(&0));
        assert!(kept.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(kept.len() + dropped, n);
        // The queue, and at most the one line the writer was blocked on.
        assert!(dropped >= n - QUEUED_LINES - 1, "{dropped} dropped of {n}");
    }
}
