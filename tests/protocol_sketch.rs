//! docs/protocol.md section 12's Python worker, read from the document
//! and run as written against the real server, on an unsigned link and on
//! a signed one (signatures, the sender-boot check of section 9 step 6,
//! CURVE): what a worker author copies must work. Skipped, saying so,
//! where pyzmq is not installed (never under CI).

mod common;

use std::process::Command;

use common::clients::say;
use common::nodes::{link_args, log_line, node};
use common::procs::{python_with_zmq, Proc};
use common::{free_endpoint, TempDir};

/// The one `python` block of section 12.
fn sketch() -> &'static str {
    let doc = include_str!("../docs/protocol.md");
    doc.split("## 12. A worker in Python")
        .nth(1)
        .and_then(|section| section.split("```python\n").nth(1))
        .and_then(|block| block.split("```").next())
        .expect("section 12 has a python block")
}

#[test]
fn the_documented_python_worker_echoes_unsigned_and_signed() {
    if !python_with_zmq() {
        return;
    }
    for signed in [false, true] {
        let dir = TempDir::new();
        let script = dir.path().join("sketch.py");
        std::fs::write(&script, sketch()).expect("write the sketch");
        let endpoint = free_endpoint();
        let (node_args, worker_args) = link_args(&dir, &endpoint, signed);
        let server = node(&endpoint, &node_args);
        // The sketch takes ENDPOINT SERVICE [KEY-FILE].
        let mut command = Command::new("python3");
        command.arg(&script).args([&endpoint, "svc"]);
        if let Some(keys) = worker_args.last().filter(|_| signed) {
            command.arg(keys);
        }
        let worker = Proc::spawn(&mut command);
        let ready = log_line(&server, 0, "worker py-echo ready for svc");
        assert!(ready.contains("(protocol v1)"), "{ready}");
        for round in 0..3 {
            let text = format!("signed={signed} round {round}");
            let mut ws = server.ws("/w");
            assert_eq!(say(&mut ws, &text), text, "{}", worker.log());
        }
    }
}
