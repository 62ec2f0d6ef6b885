//! averyws: a TLS-only, RFC 6455-exact WebSocket gateway on a hand-written
//! mio reactor.
//!
//! The library holds everything the `averyws` binary is made of, so tests,
//! fuzz targets and benches reach the same code: the sans-IO protocol parts
//! in [`ws`], and the I/O shell around them.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod conn;
pub mod logging;
pub mod reactor;
pub mod tls;
pub mod ws;
