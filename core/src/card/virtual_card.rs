//! A virtual card for the real pcscd: serves an emulated card's state file to
//! vsmartcard's `vpcd` reader driver, so the whole PC/SC path ([`super::pcsc`]) runs on
//! a machine without hardware.
//!
//! (The module is `virtual_card` because `virtual` is a reserved word in Rust.)
//!
//! **For demos and tests only**, like [`super::emulated`]: its state file can be copied
//! and rolled back.
//!
//! # The vpcd protocol
//! The card is a TCP *client* of vpcd (default [`DEFAULT_VPCD`]; vpcd listens on all
//! interfaces, so don't run it on a networked machine you don't trust). Every message
//! either way is a 2-byte big-endian length followed by that many bytes. A 1-byte
//! payload from vpcd is a control code: `00` power off, `01` power on, `02` reset,
//! `04` get ATR. Only `04` is answered (with [`ATR`]); the others reset the applet's
//! volatile state (the selection), never the persistent state. Any longer payload is a
//! command APDU, answered with one response APDU.
//!
//! # Atomicity (T13)
//! Each APDU runs through the same code as the emulated card, under the state file's
//! lock: load, process, persist atomically (temporary file, fsync, rename), answer. A
//! power-off, reset or dropped connection can only arrive between two APDUs, and a
//! process killed mid-APDU leaves the old or the new state file, never a mix: the
//! counter and the last signature always agree.
//!
//! # Latency
//! vpcd writes the length and the payload in two `send`s; with Nagle on our side and
//! delayed ACKs on both, each APDU then waits ~44 ms. We set `TCP_NODELAY`, re-arm
//! `TCP_QUICKACK` around every read (Linux clears it again), and write each reply with
//! one `write_all` (length and payload together): ~0.1 ms per APDU for TCP and pcscd,
//! plus the state file's lock and read (`cargo bench -p tally-core --bench card`).

use super::TransportError;
use super::apdu::StatusWord;
use super::applet::Applet;
use super::emulated;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Where vpcd's first reader ("Virtual PCD 00 00") listens by default.
pub const DEFAULT_VPCD: &str = "127.0.0.1:35963";

/// The virtual card's answer to reset: `3B 86 01 'T' 'A' 'L' 'L' 'Y' 01 CA`.
///
/// TS `3B` (direct convention); T0 `86`: TD1 follows, 6 historical bytes; TD1 `01`: no
/// further interface bytes, protocol T=1; historical bytes "TALLY" and the protocol
/// version 1 (proprietary, not ISO 7816-4 category coded); TCK `CA`, the XOR of T0
/// through the last historical byte (required when T=1 is offered).
pub const ATR: [u8; 10] = [0x3B, 0x86, 0x01, b'T', b'A', b'L', b'L', b'Y', 0x01, 0xCA];

/// The longest command APDU we accept: a short case-4 APDU (4 + 1 + 255 + 1 bytes).
/// Longer payloads are read, discarded and answered `6700` (wrong length).
pub const MAX_APDU: usize = 4 + 1 + 255 + 1;

/// vpcd's control codes (1-byte payloads).
mod control {
    pub const POWER_OFF: u8 = 0x00;
    pub const POWER_ON: u8 = 0x01;
    pub const RESET: u8 = 0x02;
    pub const GET_ATR: u8 = 0x04;
}

/// How often a blocked read or a reconnect wait looks at the stop flag.
const POLL: Duration = Duration::from_millis(100);
/// Pause between attempts to reach vpcd.
const RETRY: Duration = Duration::from_millis(200);

/// Something the server did, for logs and tests.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// Connected to vpcd at this address.
    Connected(SocketAddr),
    /// The connection ended (vpcd or pcscd went away, or a malformed frame); reconnecting.
    Disconnected(String),
    /// vpcd powered the card off, on, or reset it (the control code).
    Control(u8),
    /// The state file could not be used for an APDU; the card answered `6F00`.
    StateError(TransportError),
}

/// A virtual card serving one state file to vpcd.
#[derive(Debug)]
pub struct VirtualCard {
    state: PathBuf,
    vpcd: String,
    stop: Arc<AtomicBool>,
}

impl VirtualCard {
    /// A server for the card state at `state` (checked now), talking to vpcd at `vpcd`
    /// (`HOST:PORT`).
    pub fn new(state: impl Into<PathBuf>, vpcd: impl Into<String>) -> Result<Self, TransportError> {
        let state = state.into();
        emulated::load(&state)?;
        Ok(Self {
            state,
            vpcd: vpcd.into(),
            stop: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The state file served.
    pub fn state_path(&self) -> &Path {
        &self.state
    }

    /// Setting this flag makes [`VirtualCard::run`] return within ~100 ms (the card is
    /// "removed": vpcd sees the connection close).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Serves until the stop flag is set: connects to vpcd, answers it, and connects
    /// again whenever vpcd (or pcscd) goes away. Fails only if the address is invalid.
    pub fn run(&self, on_event: &mut dyn FnMut(Event)) -> Result<(), TransportError> {
        while !self.stopped() {
            let addrs: Vec<SocketAddr> = self
                .vpcd
                .to_socket_addrs()
                .map_err(|e| TransportError::Other(format!("vpcd address {:?}: {e}", self.vpcd)))?
                .collect();
            let stream = addrs
                .iter()
                .find_map(|a| TcpStream::connect_timeout(a, Duration::from_secs(1)).ok());
            let Some(stream) = stream else {
                std::thread::sleep(RETRY);
                continue;
            };
            if let Ok(peer) = stream.peer_addr() {
                on_event(Event::Connected(peer));
            }
            let why = match self.serve_connection(stream, on_event) {
                Ok(()) => "stopped".to_string(),
                Err(e) => e.to_string(),
            };
            on_event(Event::Disconnected(why));
        }
        Ok(())
    }

    /// Answers one vpcd connection until it closes (an error) or the stop flag is set
    /// (`Ok`). A fresh connection is a freshly inserted card: nothing selected.
    pub fn serve_connection(
        &self,
        mut stream: TcpStream,
        on_event: &mut dyn FnMut(Event),
    ) -> io::Result<()> {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(POLL))?;
        let mut applet = Applet::new();
        let mut buf = vec![0u8; MAX_APDU];
        loop {
            let mut len = [0u8; 2];
            if !self.read_full(&mut stream, &mut len, true)? {
                return Ok(());
            }
            let len = usize::from(u16::from_be_bytes(len));
            if len > MAX_APDU {
                // Hostile or extended-length: drain it in bounded chunks, refuse it.
                let mut left = len;
                while left > 0 {
                    let n = left.min(buf.len());
                    if !self.read_full(&mut stream, &mut buf[..n], false)? {
                        return Ok(());
                    }
                    left -= n;
                }
                send(&mut stream, &StatusWord::WRONG_LENGTH.to_bytes())?;
                continue;
            }
            let payload = &mut buf[..len];
            if !self.read_full(&mut stream, payload, false)? {
                return Ok(());
            }
            match *payload {
                // An empty frame carries nothing to answer.
                [] => {}
                [control::GET_ATR] => send(&mut stream, &ATR)?,
                [code @ (control::POWER_OFF | control::POWER_ON | control::RESET)] => {
                    applet.reset();
                    on_event(Event::Control(code));
                }
                // Unknown 1-byte control codes are not answered (vpcd expects nothing).
                [code] => on_event(Event::Control(code)),
                _ => {
                    let reply = match emulated::process_locked(&self.state, &mut applet, payload) {
                        Ok(r) => r,
                        Err(e) => {
                            on_event(Event::StateError(e));
                            StatusWord::UNKNOWN.to_bytes().to_vec()
                        }
                    };
                    send(&mut stream, &reply)?;
                }
            }
        }
    }

    /// Fills `buf`, waiting through read timeouts while not stopped. Returns false if
    /// stopped, or if the peer closed cleanly at a frame boundary (`at_boundary` and
    /// nothing read yet) — that is an error otherwise.
    fn read_full(
        &self,
        stream: &mut TcpStream,
        buf: &mut [u8],
        at_boundary: bool,
    ) -> io::Result<bool> {
        let mut got = 0;
        while got < buf.len() {
            if self.stopped() {
                return Ok(false);
            }
            quickack(stream);
            match stream.read(&mut buf[got..]) {
                Ok(0) if at_boundary && got == 0 => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "vpcd closed the connection",
                    ));
                }
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "vpcd closed the connection mid-frame",
                    ));
                }
                Ok(n) => got += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e),
            }
            quickack(stream);
        }
        Ok(true)
    }
}

/// Writes one frame (length and payload) with a single `write_all`.
fn send(stream: &mut TcpStream, payload: &[u8]) -> io::Result<()> {
    let len = u16::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "reply longer than a frame"))?;
    let mut frame = Vec::with_capacity(2 + payload.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(payload);
    stream.write_all(&frame)
}

/// Re-arms TCP_QUICKACK: Linux clears it after a while, and without it our ACK of
/// vpcd's length-only segment is delayed ~40 ms, stalling vpcd's payload behind Nagle.
fn quickack(stream: &TcpStream) {
    #[cfg(target_os = "linux")]
    {
        use std::os::linux::net::TcpStreamExt;
        // Best effort: failing only costs latency.
        let _ = stream.set_quickack(true);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = stream;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::apdu::{Command, Ins};
    use crate::card::applet::CardState;
    use crate::card::emulated::EmulatedCard;
    use crate::card::{AID, signed_message};
    use std::net::TcpListener;

    #[test]
    fn atr_check_byte_is_the_xor_of_t0_to_the_end() {
        let x = ATR[1..ATR.len() - 1].iter().fold(0u8, |a, b| a ^ b);
        assert_eq!(x, ATR[ATR.len() - 1]);
        assert_eq!(usize::from(ATR[1] & 0x0F), ATR.len() - 4);
    }

    /// A fake vpcd on a free port with a card server connected to it.
    struct Rig {
        dir: tempfile::TempDir,
        vpcd: Option<TcpStream>,
        stop: Arc<AtomicBool>,
        thread: Option<std::thread::JoinHandle<Vec<String>>>,
    }

    impl Rig {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("card");
            let state = CardState::generate(&mut rand_core::OsRng, 7, "test");
            EmulatedCard::create(&path, &state).unwrap();
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let card = VirtualCard::new(&path, listener.local_addr().unwrap().to_string()).unwrap();
            let stop = card.stop_flag();
            let thread = std::thread::spawn(move || {
                let mut events = Vec::new();
                card.run(&mut |e| events.push(format!("{e:?}"))).unwrap();
                events
            });
            let (vpcd, _) = listener.accept().unwrap();
            vpcd.set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            Self {
                dir,
                vpcd: Some(vpcd),
                stop,
                thread: Some(thread),
            }
        }

        fn path(&self) -> PathBuf {
            self.dir.path().join("card")
        }

        fn s(&mut self) -> &mut TcpStream {
            self.vpcd.as_mut().unwrap()
        }

        fn send_raw(&mut self, bytes: &[u8]) {
            self.s().write_all(bytes).unwrap();
        }

        fn frame(&mut self, payload: &[u8]) {
            let mut f = (payload.len() as u16).to_be_bytes().to_vec();
            f.extend_from_slice(payload);
            self.send_raw(&f);
        }

        fn recv(&mut self) -> Vec<u8> {
            let mut len = [0u8; 2];
            self.s().read_exact(&mut len).unwrap();
            let mut out = vec![0u8; usize::from(u16::from_be_bytes(len))];
            self.s().read_exact(&mut out).unwrap();
            out
        }

        fn apdu(&mut self, cmd: &[u8]) -> Vec<u8> {
            self.frame(cmd);
            self.recv()
        }

        fn stop(mut self) -> Vec<String> {
            self.stop.store(true, Ordering::Relaxed);
            self.thread.take().unwrap().join().unwrap()
        }
    }

    fn select() -> Vec<u8> {
        Command::select(&AID).to_bytes()
    }

    fn sign(h: &[u8; 32]) -> Vec<u8> {
        Command::new(Ins::SignAndIncrement, h, Some(64)).to_bytes()
    }

    /// Counter and last signature agree, and the signature verifies.
    fn assert_consistent(path: &Path, expect_counter: u64) {
        let s = EmulatedCard::open(path).unwrap().load().unwrap();
        assert_eq!(s.counter, expect_counter);
        let last = s.last.expect("a signature was made");
        assert_eq!(last.counter + 1, s.counter);
        assert!(
            crate::crypto::default_verifier().verify(
                &s.public_key(),
                &signed_message(&last.h, &s.serial, last.counter),
                &last.signature
            ),
            "last signature verifies"
        );
    }

    #[test]
    fn vpcd_start_sequence_and_protocol() {
        let mut rig = Rig::new();
        // What vpcd sends on connect: get ATR, get ATR, power on, get ATR.
        rig.frame(&[control::GET_ATR]);
        assert_eq!(rig.recv(), ATR);
        rig.frame(&[control::GET_ATR]);
        assert_eq!(rig.recv(), ATR);
        rig.frame(&[control::POWER_ON]);
        rig.frame(&[control::GET_ATR]);
        assert_eq!(rig.recv(), ATR);
        // Not selected yet.
        let get_counter = Command::new(Ins::GetCounter, &[], Some(8)).to_bytes();
        assert_eq!(rig.apdu(&get_counter), [0x69, 0x86]);
        assert_eq!(rig.apdu(&select()), [0x90, 0x00]);
        let mut want = 7u64.to_be_bytes().to_vec();
        want.extend_from_slice(&[0x90, 0x00]);
        assert_eq!(rig.apdu(&get_counter), want);
        // A reset forgets the selection, not the counter.
        rig.frame(&[control::RESET]);
        assert_eq!(rig.apdu(&get_counter), [0x69, 0x86]);
        assert_eq!(rig.apdu(&select()), [0x90, 0x00]);
        assert_eq!(rig.apdu(&get_counter), want);
        let events = rig.stop();
        assert!(
            events.iter().any(|e| e.contains("Control(2)")),
            "{events:?}"
        );
    }

    #[test]
    fn power_off_and_drop_mid_command_keep_counter_and_signature_consistent() {
        let mut rig = Rig::new();
        let path = rig.path();
        assert_eq!(rig.apdu(&select()), [0x90, 0x00]);
        // SIGN sent, then power off before the answer is read (T13).
        rig.frame(&sign(&[1; 32]));
        rig.frame(&[control::POWER_OFF]);
        let answer = rig.recv();
        assert_eq!(answer.len(), 66);
        assert_eq!(answer[64..], [0x90, 0x00]);
        rig.frame(&[control::POWER_ON]);
        // After the power cycle the applet must be selected again, and the card signed once.
        let get_last = Command::new(Ins::GetLastSignature, &[], Some(104)).to_bytes();
        assert_eq!(rig.apdu(&get_last), [0x69, 0x86]);
        assert_eq!(rig.apdu(&select()), [0x90, 0x00]);
        let last = rig.apdu(&get_last);
        assert_eq!(last[..32], [1; 32]);
        assert_eq!(last[32..40], 7u64.to_be_bytes());
        assert_eq!(last[40..104], answer[..64]);
        assert_consistent(&path, 8);
        // Half a SIGN frame, then the connection drops: the command never ran.
        let cmd = sign(&[2; 32]);
        let mut f = (cmd.len() as u16).to_be_bytes().to_vec();
        f.extend_from_slice(&cmd[..10]);
        rig.send_raw(&f);
        drop(rig.vpcd.take());
        std::thread::sleep(Duration::from_millis(300));
        assert_consistent(&path, 8);
        let events = rig.stop();
        assert!(events.iter().any(|e| e.contains("mid-frame")), "{events:?}");
    }

    #[test]
    fn malformed_frames_never_panic_and_stay_in_sync() {
        let mut rig = Rig::new();
        // Empty frame: ignored. Unknown control code: ignored.
        rig.frame(&[]);
        rig.frame(&[0x7F]);
        // Oversized frame: drained and refused with 6700.
        rig.frame(&vec![0xAB; 5000]);
        assert_eq!(rig.recv(), [0x67, 0x00]);
        rig.frame(&vec![0xCD; usize::from(u16::MAX)]);
        assert_eq!(rig.recv(), [0x67, 0x00]);
        // Garbage APDUs get status words, not panics.
        for junk in [
            &[0u8, 0][..],
            &[0x80, 0x10, 0, 0, 0, 0, 1],
            &[0xFF; 300][..261],
        ] {
            let r = rig.apdu(junk);
            assert_eq!(r.len(), 2, "{junk:02x?} → {r:02x?}");
        }
        // Still in sync.
        assert_eq!(rig.apdu(&select()), [0x90, 0x00]);
        rig.stop();
    }

    #[test]
    fn reconnects_when_vpcd_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("card");
        EmulatedCard::create(&path, &CardState::generate(&mut rand_core::OsRng, 0, "t")).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let card = VirtualCard::new(&path, addr.to_string()).unwrap();
        let stop = card.stop_flag();
        let t = std::thread::spawn(move || card.run(&mut |_| {}).unwrap());
        for _ in 0..3 {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(&[0, 1, control::GET_ATR]).unwrap();
            let mut got = [0u8; 12];
            s.read_exact(&mut got).unwrap();
            assert_eq!(got[2..], ATR);
        }
        stop.store(true, Ordering::Relaxed);
        t.join().unwrap();
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// Whatever bytes vpcd sends, the server answers or hangs up, and never panics.
        #[test]
        fn hostile_byte_streams_never_panic(
            chunks in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), 0..8)
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("card");
            EmulatedCard::create(&path, &CardState::generate(&mut rand_core::OsRng, 0, "p")).unwrap();
            let before = std::fs::read(&path).unwrap();
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let card = VirtualCard::new(&path, listener.local_addr().unwrap().to_string()).unwrap();
            let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (mut vpcd, _) = listener.accept().unwrap();
            let server = std::thread::spawn(move || {
                let _ = card.serve_connection(client, &mut |_| {});
            });
            for c in &chunks {
                if vpcd.write_all(c).is_err() {
                    break;
                }
            }
            drop(vpcd);
            server.join().expect("the server thread panicked");
            // Random bytes never select the applet, so nothing was signed.
            proptest::prop_assert_eq!(std::fs::read(&path).unwrap(), before);
        }
    }

    #[test]
    fn missing_state_is_refused_up_front() {
        let dir = tempfile::tempdir().unwrap();
        let err = VirtualCard::new(dir.path().join("none"), DEFAULT_VPCD).unwrap_err();
        assert!(matches!(err, TransportError::NotFound(_)), "{err}");
    }
}
