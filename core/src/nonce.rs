//! Nonces for audit records (\[0059\] step \[1\]).
//!
//! The seed builds nonces from a disk-timing random generator (\[0078\]–\[0089\]) mixed
//! with system parameters through a message digest (\[0077\], \[0090\]). Modern operating
//! systems expose a CSPRNG seeded from far better entropy than disk timing (and SSDs
//! have no seek-time variance to measure), so we take 32 bytes from the OS CSPRNG and,
//! keeping the seed's structure, mix them with system parameters (time, process and
//! thread ids, a per-process counter) through SHA-256. The parameters add nothing if the
//! CSPRNG is sound, but they keep nonces distinct even if it were ever misconfigured.

use rand::RngCore as _;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};

/// A 32-byte record nonce.
pub type Nonce = [u8; 32];

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// A fresh nonce.
pub fn generate() -> Nonce {
    let mut random = [0u8; 32];
    OsRng.fill_bytes(&mut random);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut h = Sha256::new();
    h.update(b"tally/nonce/v1");
    h.update(random);
    h.update(now.to_be_bytes());
    h.update(std::process::id().to_be_bytes());
    h.update(format!("{:?}", std::thread::current().id()).as_bytes());
    h.update(SEQUENCE.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    #[test]
    fn nonces_differ() {
        let a: std::collections::HashSet<_> = (0..1000).map(|_| super::generate()).collect();
        assert_eq!(a.len(), 1000);
    }
}
