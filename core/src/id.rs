//! 16-byte identifiers written as 32 lower-case hex digits (card serials, licence ids,
//! document ids): one definition, so they parse and print alike everywhere.

/// Defines a `Copy` newtype over `[u8; 16]` with `to_hex`, a strict lower-case `from_hex`,
/// `Display` (the hex) and `Debug` (`Name(hex)`).
macro_rules! id16 {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 16]);

        impl $name {
            /// 32 lower-case hex digits.
            #[allow(clippy::wrong_self_convention, reason = "`&self` keeps the ids' existing API")]
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// From exactly 32 lower-case hex digits (one spelling per value).
            pub fn from_hex(s: &str) -> Option<Self> {
                if s.bytes().any(|c| c.is_ascii_uppercase()) {
                    return None;
                }
                let mut out = [0u8; 16];
                hex::decode_to_slice(s, &mut out).ok()?;
                Some(Self(out))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }
    };
}

pub(crate) use id16;

#[cfg(test)]
mod tests {
    id16!(
        /// A test id.
        TestId
    );

    #[test]
    fn one_spelling_per_value() {
        let id = TestId([0xab; 16]);
        assert_eq!(TestId::from_hex(&id.to_hex()), Some(id));
        assert_eq!(TestId::from_hex(&id.to_hex().to_uppercase()), None);
        assert_eq!(TestId::from_hex("ab"), None);
        assert_eq!(format!("{id:?}"), format!("TestId({})", id.to_hex()));
    }
}
