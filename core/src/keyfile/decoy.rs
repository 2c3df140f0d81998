//! Decoy bits and the keyed placement rule (\[0068\], \[0069\], \[0074\]).
//!
//! Every keyfile carries [`DECOY_BYTES`] random bytes (480,000 decoy bits, \[0068\]) with
//! the encrypted customer information string spliced in at an offset that differs for
//! every keyfile. The offset comes from a keyed, vendor-specific rule: HMAC-SHA-256
//! under the vendor's layout key over the keyfile's random salt and the CIS length.
//! Without the layout key the CIS's AES-GCM ciphertext is indistinguishable from the
//! decoys around it; with it (every viewer has it, in the vendor's public file) the
//! CIS is found in one step. The decoys disguise; the vendor's signature protects.

use rand_core::CryptoRngCore;

/// Random bytes around the CIS: 60,000 bytes = 480,000 decoy bits (\[0068\]).
pub const DECOY_BYTES: usize = 60_000;

const OFFSET_TAG: &[u8] = b"tally/keyfile-offset/v1";

/// Where the CIS starts inside the decoy region, in `0..=DECOY_BYTES`.
pub fn cis_offset(layout_key: &[u8; 32], salt: &[u8; 16], cis_len: u32) -> usize {
    let tag = crate::crypto::hmac_sha256(layout_key, &[OFFSET_TAG, salt, &cis_len.to_be_bytes()]);
    let mut first = [0u8; 8];
    first.copy_from_slice(&tag[..8]);
    // 2^64 mod 60,001 is tiny against 2^64: the bias is below 2^-47.
    (u64::from_be_bytes(first) % (DECOY_BYTES as u64 + 1)) as usize
}

/// The decoy region with `cis` spliced in at `offset`.
pub fn build_region(cis: &[u8], offset: usize, rng: &mut impl CryptoRngCore) -> Vec<u8> {
    let mut decoys = vec![0u8; DECOY_BYTES];
    rng.fill_bytes(&mut decoys);
    let offset = offset.min(DECOY_BYTES);
    let mut region = Vec::with_capacity(DECOY_BYTES + cis.len());
    region.extend_from_slice(&decoys[..offset]);
    region.extend_from_slice(cis);
    region.extend_from_slice(&decoys[offset..]);
    region
}

/// The CIS bytes inside `region`, or `None` when the region is not `DECOY_BYTES + cis_len`.
pub fn extract(region: &[u8], offset: usize, cis_len: usize) -> Option<&[u8]> {
    if region.len() != DECOY_BYTES + cis_len || offset > DECOY_BYTES {
        return None;
    }
    region.get(offset..offset + cis_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_depends_on_key_salt_and_length_and_stays_in_range() {
        let k1 = [1u8; 32];
        let k2 = [2u8; 32];
        let mut seen = std::collections::HashSet::new();
        for i in 0..200u8 {
            let salt = [i; 16];
            let o = cis_offset(&k1, &salt, 1024);
            assert!(o <= DECOY_BYTES);
            seen.insert(o);
        }
        // 200 salts give (almost surely) 200 places.
        assert!(seen.len() > 190, "{}", seen.len());
        let s = [9u8; 16];
        assert_ne!(cis_offset(&k1, &s, 1024), cis_offset(&k2, &s, 1024));
        assert_ne!(cis_offset(&k1, &s, 1024), cis_offset(&k1, &s, 1536));
        assert_eq!(cis_offset(&k1, &s, 1024), cis_offset(&k1, &s, 1024));
    }

    #[test]
    fn splice_and_extract_round_trip_at_the_edges() {
        let cis = [0xcc; 100];
        for offset in [0, 1, 30_000, DECOY_BYTES - 1, DECOY_BYTES] {
            let r = build_region(&cis, offset, &mut rand_core::OsRng);
            assert_eq!(r.len(), DECOY_BYTES + 100);
            assert_eq!(extract(&r, offset, 100), Some(&cis[..]));
        }
        let r = build_region(&cis, 5, &mut rand_core::OsRng);
        assert_eq!(extract(&r[1..], 5, 100), None);
        assert_eq!(extract(&r, DECOY_BYTES + 1, 100), None);
    }
}
