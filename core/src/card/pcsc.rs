//! A real card behind the PC/SC service (pcsc-lite's `pcscd`), through the `pcsc` crate.
//!
//! Every PC/SC quirk stays in this file (STYLE.md); the rest of core sees a
//! [`CardBackend`] like any other:
//!
//! - **Never reset a shared card.** `pcsc::Card`'s `Drop` disconnects with
//!   `SCARD_RESET_CARD`, which makes every other process using the card fail with
//!   `ResetCard`. [`PcscCard`] always ends with `Disposition::LeaveCard`, and never
//!   lets a live `pcsc::Card` drop.
//! - **Someone else reset the card.** pcsc-lite answers `SCARD_W_RESET_CARD` *before*
//!   sending anything when the card was reset since this handle last used it, so the
//!   command never reached the card and is safe to resend: we reconnect (leaving the
//!   card as it is), select our applet again if the session had selected it, and retry
//!   once.
//! - **Someone else powered the card off** (`SCARD_UNPOWER_CARD`). pcsc-lite then
//!   reports `ResetCard` to the other handles, leaves the card unpowered through a
//!   `LeaveCard` reconnect, and refuses new shared connections with `UnpoweredCard`. An
//!   unpowered card holds no session state, so we power it up with a reset: after a
//!   reconnect when the status lacks POWERED, and on connect through a direct
//!   connection reconnected with `ResetCard`.
//! - **Removed card, restarted pcscd.** A removed card or a dead handle is reconnected
//!   at the start of the next transaction (a new context if pcscd restarted). An error
//!   in the middle of a command is reported as [`TransportError::CardRemoved`]: the
//!   command may or may not have run, and the caller recovers with
//!   GET_LAST_SIGNATURE (the card signs and counts atomically, \[0053\]).
//! - **Exclusive sessions.** Each [`CardBackend::transaction`] is a PC/SC transaction
//!   (`SCardBeginTransaction`), so a whole Write is one uninterrupted exchange even
//!   with several viewers sharing the card (DESIGN threat 16).

use super::apdu::{Command, StatusWord};
use super::{AID, CardBackend, CardTransaction, TransportError};
use pcsc::{Context, Disposition, Protocols, Scope, ShareMode};
use std::ffi::{CStr, CString};

/// Largest response a short APDU can carry: 256 data bytes and the status word.
const RESPONSE_MAX: usize = 258;

/// A card in a PC/SC reader, connected in shared mode.
pub struct PcscCard {
    ctx: Context,
    reader: CString,
    /// Always `Some` while the value lives; taken only by `Drop` to disconnect politely.
    card: Option<pcsc::Card>,
}

impl std::fmt::Debug for PcscCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PcscCard({})", self.describe())
    }
}

/// Maps a PC/SC error onto the transport errors the rest of core knows.
fn map_err(e: pcsc::Error) -> TransportError {
    use pcsc::Error as E;
    match e {
        E::NoService | E::ServiceStopped | E::Shutdown => TransportError::NoService,
        E::NoReadersAvailable => TransportError::NoReader(String::new()),
        E::UnknownReader | E::ReaderUnavailable => {
            TransportError::NoReader(" (the reader went away)".into())
        }
        E::NoSmartcard => TransportError::NoCard,
        // NotTransacted: pcscd still thought a just-removed card was present (it polls
        // every ~400 ms) — for the caller that is a removed card too.
        E::RemovedCard | E::ResetCard | E::UnpoweredCard | E::NotTransacted => {
            TransportError::CardRemoved
        }
        other => TransportError::Other(format!("PC/SC: {other} ({other:?})")),
    }
}

fn context() -> Result<Context, TransportError> {
    Context::establish(Scope::User).map_err(map_err)
}

fn connect_to(ctx: &Context, reader: &CStr) -> Result<pcsc::Card, pcsc::Error> {
    match ctx.connect(reader, ShareMode::Shared, Protocols::ANY) {
        Err(pcsc::Error::UnpoweredCard) => {
            // Left unpowered by another application: a direct connection needs no power,
            // and reconnecting it shared with a reset powers the card up.
            let mut card = ctx.connect(reader, ShareMode::Direct, Protocols::UNDEFINED)?;
            if let Err(e) =
                card.reconnect(ShareMode::Shared, Protocols::ANY, Disposition::ResetCard)
            {
                leave(card);
                return Err(e);
            }
            // The pcsc crate panics on transmit over a handle without a protocol; a
            // successful shared reconnect sets one, but make sure.
            if !card.status2_owned().is_ok_and(|s| s.protocol2().is_some()) {
                leave(card);
                return Err(pcsc::Error::UnpoweredCard);
            }
            Ok(card)
        }
        other => other,
    }
}

/// `SCardReconnect` leaving the card as it is — then powering it up if someone had
/// powered it off (an unpowered card has no state a reset could destroy).
fn reconnect(card: &mut pcsc::Card) -> Result<(), pcsc::Error> {
    card.reconnect(ShareMode::Shared, Protocols::ANY, Disposition::LeaveCard)?;
    let powered = card
        .status2_owned()
        .map(|s| s.status().contains(pcsc::Status::POWERED))
        .unwrap_or(true);
    if !powered {
        card.reconnect(ShareMode::Shared, Protocols::ANY, Disposition::ResetCard)?;
    }
    Ok(())
}

/// Disconnects without resetting the card; never lets `Drop` reset it either.
fn leave(card: pcsc::Card) {
    if let Err((card, _)) = card.disconnect(Disposition::LeaveCard) {
        // The handle is dead (pcscd restarted or the card is gone). Dropping it would
        // call SCardDisconnect(RESET) on it; forgetting leaks one reference-counted
        // context handle, which is the lesser evil.
        std::mem::forget(card);
    }
}

/// Sends SELECT of our AID; true if the card answered 9000.
fn selects_our_applet(card: &pcsc::Card) -> Result<bool, pcsc::Error> {
    let mut buf = [0u8; RESPONSE_MAX];
    let resp = card.transmit(&Command::select(&AID).to_bytes(), &mut buf)?;
    Ok(resp.len() >= 2 && resp[resp.len() - 2..] == StatusWord::OK.to_bytes())
}

impl PcscCard {
    /// Names of the readers pcscd knows (empty if none).
    pub fn list_readers() -> Result<Vec<String>, TransportError> {
        let ctx = context()?;
        Ok(reader_names(&ctx)?
            .iter()
            .map(|r| r.to_string_lossy().into_owned())
            .collect())
    }

    /// Connects to the card in the reader called `reader`, or with `None` to the first
    /// reader whose card answers SELECT of our AID.
    pub fn connect(reader: Option<&str>) -> Result<Self, TransportError> {
        let ctx = context()?;
        let readers = reader_names(&ctx)?;
        if readers.is_empty() {
            return Err(TransportError::NoReader(String::new()));
        }
        match reader {
            Some(name) => {
                let reader = readers
                    .into_iter()
                    .find(|r| r.to_bytes() == name.as_bytes())
                    .ok_or_else(|| TransportError::NoReader(format!(" named {name:?}")))?;
                let card = connect_to(&ctx, &reader).map_err(map_err)?;
                Ok(Self {
                    ctx,
                    reader,
                    card: Some(card),
                })
            }
            None => {
                let mut cards_seen = 0;
                for reader in readers {
                    let card = match connect_to(&ctx, &reader) {
                        Ok(c) => c,
                        Err(_) => continue,
                    };
                    cards_seen += 1;
                    if let Ok(true) = selects_our_applet(&card) {
                        return Ok(Self {
                            ctx,
                            reader,
                            card: Some(card),
                        });
                    }
                    leave(card);
                }
                Err(if cards_seen == 0 {
                    TransportError::NoCard
                } else {
                    TransportError::NoApplet(cards_seen)
                })
            }
        }
    }

    /// The reader's name.
    pub fn reader(&self) -> String {
        self.reader.to_string_lossy().into_owned()
    }

    /// Drops a dead connection and connects again (new context if pcscd restarted).
    fn reconnect_fresh(&mut self) -> Result<(), TransportError> {
        if let Some(old) = self.card.take() {
            leave(old);
        }
        let card = match connect_to(&self.ctx, &self.reader) {
            Ok(c) => c,
            Err(_) => {
                self.ctx = context()?;
                connect_to(&self.ctx, &self.reader).map_err(map_err)?
            }
        };
        self.card = Some(card);
        Ok(())
    }
}

fn reader_names(ctx: &Context) -> Result<Vec<CString>, TransportError> {
    match ctx.list_readers_owned() {
        Ok(r) => Ok(r),
        Err(pcsc::Error::NoReadersAvailable) => Ok(Vec::new()),
        Err(e) => Err(map_err(e)),
    }
}

/// Errors after which the handle is worth a `SCardReconnect`.
fn needs_reconnect(e: pcsc::Error) -> bool {
    matches!(
        e,
        pcsc::Error::ResetCard | pcsc::Error::RemovedCard | pcsc::Error::UnpoweredCard
    )
}

/// Errors after which the handle (or the whole context) is dead.
fn handle_dead(e: pcsc::Error) -> bool {
    matches!(
        e,
        pcsc::Error::InvalidHandle
            | pcsc::Error::ServiceStopped
            | pcsc::Error::NoService
            | pcsc::Error::Shutdown
            | pcsc::Error::UnknownReader
            | pcsc::Error::ReaderUnavailable
            | pcsc::Error::NotTransacted
    )
}

impl CardBackend for PcscCard {
    fn transaction(&mut self) -> Result<Box<dyn CardTransaction + '_>, TransportError> {
        // First make sure the handle is alive; replacing it needs `&mut self`, which
        // can't happen once a transaction borrows the card.
        let probe = match self.card.as_mut() {
            None => Some(pcsc::Error::InvalidHandle),
            Some(card) => card.status2_owned().err(),
        };
        match probe {
            Some(e) if handle_dead(e) || e == pcsc::Error::RemovedCard => self.reconnect_fresh()?,
            _ => {}
        }
        let Some(card) = self.card.as_mut() else {
            return Err(TransportError::Other("PC/SC card handle lost".into()));
        };
        let tx = match card.transaction2() {
            Ok(tx) => tx,
            Err((card, e)) if needs_reconnect(e) => {
                reconnect(card).map_err(map_err)?;
                card.transaction().map_err(map_err)?
            }
            Err((_, e)) => return Err(map_err(e)),
        };
        Ok(Box::new(PcscTransaction {
            tx,
            selected: false,
        }))
    }

    fn describe(&self) -> String {
        format!("pcsc:{}", self.reader())
    }
}

impl Drop for PcscCard {
    fn drop(&mut self) {
        if let Some(card) = self.card.take() {
            leave(card);
        }
    }
}

struct PcscTransaction<'a> {
    tx: pcsc::Transaction<'a>,
    /// Whether this session selected our applet (to select it again after a reset).
    selected: bool,
}

impl PcscTransaction<'_> {
    fn send(&self, command: &[u8]) -> Result<Vec<u8>, pcsc::Error> {
        let mut buf = [0u8; RESPONSE_MAX];
        Ok(self.tx.transmit(command, &mut buf)?.to_vec())
    }
}

impl CardTransaction for PcscTransaction<'_> {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError> {
        let is_select = Command::parse(command)
            .is_ok_and(|c| (c.cla, c.ins, c.p1) == (0x00, 0xA4, 0x04) && c.data == AID);
        let resp = match self.send(command) {
            Ok(r) => r,
            Err(pcsc::Error::ResetCard) => {
                // The card was reset before our command reached it (pcsc-lite checks the
                // reset counter before sending): reconnect, restore the selection, and
                // send the command once more.
                self.tx
                    .reconnect(ShareMode::Shared, Protocols::ANY, Disposition::LeaveCard)
                    .map_err(map_err)?;
                let powered = self
                    .tx
                    .status2_owned()
                    .map(|s| s.status().contains(pcsc::Status::POWERED))
                    .unwrap_or(true);
                if !powered {
                    self.tx
                        .reconnect(ShareMode::Shared, Protocols::ANY, Disposition::ResetCard)
                        .map_err(map_err)?;
                }
                if self.selected && !is_select && !selects_our_applet(&self.tx).map_err(map_err)? {
                    return Err(TransportError::CardRemoved);
                }
                self.send(command).map_err(map_err)?
            }
            Err(e) => return Err(map_err(e)),
        };
        if is_select {
            self.selected = resp.len() >= 2 && resp[resp.len() - 2..] == StatusWord::OK.to_bytes();
        }
        Ok(resp)
    }
}
