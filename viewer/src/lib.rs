//! tally-view as a library: the reader UI, its renderer and commands, for the binary and
//! tests. The reading session and every rule of the rental are tally-core's
//! ([`tally_core::rental`]); this crate draws, takes input and moves bytes.

pub mod app;
pub mod cli;
pub mod commands;
pub mod demo;
pub mod online;
pub mod render;
pub mod ui;
