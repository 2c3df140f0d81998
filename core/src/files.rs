//! Files written the way Tally writes its own, for the tools beside the library — a
//! packager writing a package, a keyfile or a vendor's public file, a viewer putting a
//! mirror copy back: a file is replaced atomically (a crash leaves the old one or the new
//! one, never half of each), a secret is readable by its owner only from its first byte,
//! and a file that may be hostile is read with a bound, so it never makes a reader
//! allocate without limit.

pub use crate::fsutil::{atomic_write, atomic_write_private, parent_dir, read_bounded, sync_dir};
