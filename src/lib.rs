//! Soho Partner Portal: the server as a library, so that `main.rs`, the tests and the other
//! binaries share it.

pub mod app;
pub mod cli;
pub mod commands;
pub mod config;
pub mod db;
pub mod http;
pub mod telemetry;
