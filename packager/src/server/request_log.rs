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
    /// Says when the writer has written every queued line and ended (in a mutex: a
    /// receiver is not shared between threads, the server's state is).
    done: std::sync::Mutex<Receiver<()>>,
}

/// How long a server stopping waits for its queued lines to be written (a standard error
/// nobody reads would otherwise hold the exit forever).
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
        let counted = dropped.clone();
        let (ended, done) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("request-log".into())
            .spawn(move || {
                write_lines(queue, &counted, out);
                let _ = ended.send(());
            })?;
        Ok(Self {
            lines: Some(lines),
            dropped,
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
    /// Lets the writer write what is queued, waiting for it at most [`DRAIN_WAIT`].
    fn drop(&mut self) {
        drop(self.lines.take());
        let done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        let _ = done.recv_timeout(DRAIN_WAIT);
    }
}

/// The writer: each line in one `write` call, after a count of the lines dropped since the
/// last one written, if any. Ends when every sender is gone.
fn write_lines(queue: Receiver<String>, dropped: &AtomicU64, mut out: impl std::io::Write) {
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
        let kept: Vec<usize> = text
            .lines()
            .filter_map(|l| l.strip_prefix("line ")?.parse().ok())
            .collect();
        let dropped: usize = text
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
        assert_eq!(kept.first(), Some(&0));
        assert!(kept.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(kept.len() + dropped, n);
        // The queue, and at most the one line the writer was blocked on.
        assert!(dropped >= n - QUEUED_LINES - 1, "{dropped} dropped of {n}");
    }
}
