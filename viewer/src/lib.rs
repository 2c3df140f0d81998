//! tally-view as a library: the reader UI, its session and metering, for the binary and tests.

pub mod app;
pub mod cli;
pub mod commands;
pub mod demo;
pub mod meter;
pub mod online;
pub mod render;
pub mod session;
pub mod ui;
