//! averyws: a TLS-only, RFC 6455-exact WebSocket gateway on a hand-written
//! mio reactor.
//!
//! The library holds everything the `averyws` binary is made of, so tests,
//! fuzz targets and benches reach the same code: the sans-IO protocol parts
//! in [`ws`], and the I/O shell around them.
#![deny(missing_docs)]
#![deny(unsafe_code)] // allowed only in `sys`: getsockopt(TCP_INFO), X25519

pub mod access;
pub mod acl_store;
pub mod auth;
pub mod backend;
pub mod cli;
pub mod config;
pub mod conn;
pub mod control;
pub mod link;
pub mod listen;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod outcome;
pub mod pace;
pub mod reactor;
pub mod session;
pub mod sys;
pub mod tls;
pub mod ws;
