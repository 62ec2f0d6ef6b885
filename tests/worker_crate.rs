//! The `averyws-worker` crate as a Rust developer uses it: a package of
//! their own, outside this workspace, that depends on the crate by path
//! and nothing else of ours, built with cargo and run against a
//! two-reactor server it was given one endpoint of.
//!
//! The package lives in `target/worker-crate-user`, under this checkout
//! so that `.cargo/config.toml` (libzmq's CURVE flags) applies, with its
//! own target directory (the one `cargo test` builds in is locked while
//! the tests run). The first build compiles libzmq and libsodium, a few
//! minutes on two cores; later ones reuse them.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::clients::say;
use common::procs::{eventually, wait_registered, Proc};
use common::scrape::open_on_every_reactor;
use common::Server;

const LIMIT: Duration = Duration::from_secs(10);

/// The developer's program: the crate's command line and a handler of
/// their own, which answers in capitals so the test knows who answered.
const MAIN_RS: &str = r#"use averyws_worker::{cli_main, Event, Worker};

fn main() -> std::process::ExitCode {
    cli_main("shout", "shout", |worker: &mut Worker, event: Event| {
        if let Event::Message { node, conn, payload } = event {
            let loud = String::from_utf8_lossy(payload.as_bytes()).to_uppercase();
            let payload = averyws_worker::Payload::Text(&loud);
            if let Err(why) = worker.send(node, &[conn], payload) {
                eprintln!("shout: {why}");
            }
        }
    })
}
"#;

#[test]
fn a_package_of_its_own_builds_on_the_crate_and_serves_both_reactors() {
    let program = build_crate_user();
    let (first, second) = common::two_reactor_endpoints();
    let server = Server::start(&[
        "--threads",
        "2",
        "--route",
        "/shout=shout",
        "--backend-bind",
        &first,
        "--backend-heartbeat-ms",
        "100",
    ]);
    let worker = Proc::spawn(Command::new(program).args(["--connect", &first]));
    wait_registered(&server, &worker, 2);
    let linked = format!("linking to sibling reactor {second}");
    eventually(LIMIT, || worker.line(&linked))
        .unwrap_or_else(|| panic!("no {linked:?}: {}", worker.log()));
    let clients = open_on_every_reactor(&server, "/shout", 2);
    for (i, mut ws) in clients.into_iter().enumerate() {
        let text = format!("client {i}");
        let loud = text.to_uppercase();
        assert_eq!(say(&mut ws, &text), loud, "{}", worker.log());
    }
}

/// Writes the package and builds it with the cargo running this test:
/// the path of its binary.
fn build_crate_user() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let package = root.join("target/worker-crate-user");
    std::fs::create_dir_all(package.join("src")).expect("package dir");
    let manifest = format!(
        "[package]\nname = \"shout\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n\
         [dependencies]\naveryws-worker = {{ path = {:?} }}\n\n\
         # Not a member of the averyws workspace it sits under.\n[workspace]\n",
        root.join("crates/worker")
    );
    std::fs::write(package.join("Cargo.toml"), manifest).expect("Cargo.toml");
    std::fs::write(package.join("src/main.rs"), MAIN_RS).expect("main.rs");
    // The workspace's versions, so the build needs no registry.
    std::fs::copy(root.join("Cargo.lock"), package.join("Cargo.lock")).expect("Cargo.lock");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["build", "--offline", "--quiet"])
        .current_dir(&package)
        .env("CARGO_TARGET_DIR", package.join("target"))
        .output()
        .expect("run cargo");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the package does not build: {log}");
    package.join("target/debug/shout")
}
