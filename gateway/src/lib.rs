//! The gateway behind `llmux serve`, as a library: the `llmux` command
//! (`main.rs`) and the gateway fuzz targets (`fuzz/`) build on it.

pub mod config;
pub mod cursor;
pub mod dashboard;
pub mod error;
pub mod gemini;
pub mod keys;
pub mod limits;
pub mod record;
pub mod reload;
pub mod serve;
pub mod server;
pub mod tls;
pub mod tracing;

use std::io::Write;

/// One line on stderr, ignoring a closed stderr.
pub fn say(text: impl std::fmt::Display) {
    let _ = writeln!(std::io::stderr().lock(), "llmux: {text}");
}
