//! An averyws backend worker that sends every message back to the
//! connection it came from (docs/protocol.md).
//!
//! ```text
//! cargo run --release --example echo_worker -- \
//!     --connect tcp://127.0.0.1:7100 --service worker-echo [--key-file FILE]
//! ```
//!
//! `--connect` is repeatable, one per node; route a path to the service on
//! each node with `--route /worker-echo=worker-echo`. SIGINT or SIGTERM
//! sends BYE to every node and exits. The handler is
//! [`averyws::backend::worker::echo`]; the tests drive it too.

use std::process::ExitCode;

use averyws::backend::worker;

fn main() -> ExitCode {
    worker::cli_main("echo_worker", "worker-echo", worker::echo)
}
