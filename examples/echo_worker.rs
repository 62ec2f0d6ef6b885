//! An averyws backend worker that sends every message back to the
//! connection it came from (docs/protocol.md).
//!
//! ```text
//! cargo run --release --example echo_worker -- \
//!     --connect tcp://127.0.0.1:7100 --service worker-echo [--key-file FILE]
//! ```
//!
//! `--connect` is repeatable, one per averyws process (its other reactors
//! are found); route a path to the service with `--route
//! /worker-echo=worker-echo`. SIGINT or SIGTERM
//! sends BYE to every node and exits. The handler is
//! [`averyws_worker::echo`]; the tests drive it too.

use std::process::ExitCode;

fn main() -> ExitCode {
    averyws_worker::cli_main("echo_worker", "worker-echo", averyws_worker::echo)
}
