//! Nodes with a backend: the server routing `/w` to the workers' service
//! `svc` on an endpoint of the test's choosing, its key file, and what it
//! logs about its link.

use std::time::Duration;

use super::raw::KEYS;
use super::{Server, TempDir};

/// How long to wait for a log line that should come.
const LIMIT: Duration = Duration::from_secs(8);

/// The nodes' heartbeat interval: with liveness 3, either side of the
/// link is taken for dead after 1.5 s of silence.
pub const HEARTBEAT: Duration = Duration::from_millis(500);

/// A node routing `/w` to service `svc`, its ROUTER on `endpoint`,
/// heartbeating every [`HEARTBEAT`].
pub fn node<S: AsRef<str>>(endpoint: &str, extra: &[S]) -> Server {
    let heartbeat = HEARTBEAT.as_millis().to_string();
    let mut args = vec!["--route", "/w=svc", "--backend-bind", endpoint];
    args.extend(["--backend-heartbeat-ms", &heartbeat]);
    args.extend(extra.iter().map(AsRef::as_ref));
    Server::start(&args)
}

/// The extra arguments of a node on `endpoint` and of a worker process
/// serving `svc` there, signing with a key file of [`KEYS`] written in
/// `dir` when `signed`.
pub fn link_args(dir: &TempDir, endpoint: &str, signed: bool) -> (Vec<String>, Vec<String>) {
    let worker = ["--connect", endpoint, "--service", "svc"];
    let (mut node_args, mut worker_args) = (vec![], worker.map(str::to_owned).to_vec());
    if signed {
        let path = dir.path().join("backend.keys");
        std::fs::write(&path, KEYS).expect("key file");
        let path = path.to_str().expect("UTF-8 path").to_owned();
        node_args.extend(["--backend-key-file".to_owned(), path.clone()]);
        worker_args.extend(["--key-file".to_owned(), path]);
    }
    (node_args, worker_args)
}

/// Waits until the node logged, after line `from`, a worker named by
/// each tag registering.
pub fn wait_ready<S: AsRef<str>>(server: &Server, from: usize, tags: &[S]) {
    for tag in tags {
        log_line(server, from, &format!("{} ready for ", tag.as_ref()));
    }
}

/// The first line after `from` that contains `needle`; fails the test,
/// showing the log, if none comes.
pub fn log_line(server: &Server, from: usize, needle: &str) -> String {
    server
        .wait_log_from(from, needle, LIMIT)
        .unwrap_or_else(|| panic!("no {needle:?} in the log: {:#?}", server.log()))
}

/// The endpoint the node bound, its port 0 resolved, from its start line
/// (`backend: NAME bound on ENDPOINT, boot ...`).
pub fn bound_endpoint(server: &Server) -> String {
    let line = server
        .wait_log(" bound on tcp://", LIMIT)
        .unwrap_or_else(|| panic!("no bound endpoint logged: {:#?}", server.log()));
    let rest = line.split(" bound on ").nth(1).expect("an endpoint");
    let endpoint = rest.split(',').next().expect("an endpoint").to_owned();
    assert!(!endpoint.ends_with(":0"), "port 0 not resolved: {line}");
    endpoint
}
