//! A fault-injecting card for tests: wraps any [`CardBackend`] and, at the N-th APDU
//! counted across transactions, either fails before the card sees the command (a transport
//! error: reader unplugged, pcscd gone) or lets the card execute it and then loses the
//! answer (power cut or reset on the way back — the card's state has changed, the host
//! never learns how). Everything else passes through unchanged.

// Shared by several test crates; each uses a part.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use tally_core::card::{CardBackend, CardTransaction, TransportError};

/// What happens at the chosen APDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The command never reaches the card.
    Fail,
    /// The card executes the command; its answer is lost.
    DropAnswer,
}

/// The shared plan and log of a [`FaultyCard`].
#[derive(Debug, Default)]
pub struct Plan {
    /// APDUs seen so far (including the faulty one).
    pub seen: usize,
    /// The 0-based APDU to fault, and how.
    pub fault_at: Option<(usize, Fault)>,
    /// Set once the fault has been injected.
    pub fired: bool,
    /// The INS byte of every APDU seen, in order.
    pub log: Vec<u8>,
}

/// A handle on the plan, kept by the test while the card is boxed inside a `Card`.
pub type SharedPlan = Arc<Mutex<Plan>>;

/// The wrapper.
pub struct FaultyCard<B> {
    inner: B,
    plan: SharedPlan,
}

impl<B: CardBackend> FaultyCard<B> {
    /// Wraps `inner`; the fault, if any, is set in the returned plan.
    pub fn new(inner: B, fault_at: Option<(usize, Fault)>) -> (Self, SharedPlan) {
        let plan = Arc::new(Mutex::new(Plan {
            fault_at,
            ..Plan::default()
        }));
        (
            Self {
                inner,
                plan: plan.clone(),
            },
            plan,
        )
    }
}

struct FaultyTx<'a> {
    inner: Box<dyn CardTransaction + 'a>,
    plan: SharedPlan,
}

impl CardTransaction for FaultyTx<'_> {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError> {
        let fault = {
            let mut p = self.plan.lock().unwrap_or_else(|e| e.into_inner());
            let n = p.seen;
            p.seen += 1;
            p.log.push(command.get(1).copied().unwrap_or(0));
            match p.fault_at {
                Some((at, f)) if at == n => {
                    p.fired = true;
                    Some(f)
                }
                _ => None,
            }
        };
        match fault {
            None => self.inner.transmit(command),
            Some(Fault::Fail) => Err(TransportError::Other("injected transport failure".into())),
            Some(Fault::DropAnswer) => {
                // The card runs the command to completion; its answer is thrown away.
                let _executed = self.inner.transmit(command)?;
                Err(TransportError::CardRemoved)
            }
        }
    }
}

impl<B: CardBackend> CardBackend for FaultyCard<B> {
    fn transaction(&mut self) -> Result<Box<dyn CardTransaction + '_>, TransportError> {
        let inner = self.inner.transaction()?;
        Ok(Box::new(FaultyTx {
            inner,
            plan: self.plan.clone(),
        }))
    }

    fn describe(&self) -> String {
        format!("faulty:{}", self.inner.describe())
    }
}
