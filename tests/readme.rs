//! The README works as written: its worker example, read from README.md
//! itself, is run command for command (the server and the Rust workers as
//! built by this test run, the Python package installed into a fresh
//! venv where Python is at hand),
//! and serves what the text around it says. And what the server says at
//! start about the ACL: the development ACL without `--acl`, a route no
//! role may connect to with one.

mod common;

use std::path::Path;
use std::time::Duration;

use common::clients::{next_chat, say, sync_room};
use common::procs::{install_python_package, python_with_zmq, wait_registered, Proc};
use common::{Server, TempDir, WebSocket};
use tungstenite::Message as Ws;

/// How long to wait for workers to register and the server to log.
const LIMIT: Duration = Duration::from_secs(15);

/// The shell commands of the README's "Backend workers" example block.
fn readme_worker_example() -> Vec<Vec<String>> {
    let readme = include_str!("../README.md");
    let section = readme
        .split("## Backend workers")
        .nth(1)
        .expect("README has a Backend workers section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the section starts with a sh block");
    block
        .lines()
        .map(|line| line.split_whitespace().map(str::to_owned).collect())
        .collect()
}

/// What a README command runs: the server (the arguments after
/// `cargo run --release --`), an example, or the Python worker.
enum Command {
    Server(Vec<String>),
    Example(String, Vec<String>),
    /// `pip install PATH`, relative to the checkout: into a fresh venv.
    PipInstall(String),
    /// `python3 -m MODULE ARGS`, run by that venv's interpreter.
    PythonModule(String, Vec<String>),
}

fn parse(words: &[String]) -> Command {
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let owned = |args: &[&str]| args.iter().map(|a| (*a).to_owned()).collect();
    match words[..] {
        ["cargo", "run", "--release", "--", ref args @ ..] => Command::Server(owned(args)),
        ["cargo", "run", "--release", "--example", name, "--", ref args @ ..] => {
            Command::Example(name.to_owned(), owned(args))
        }
        ["pip", "install", package] => Command::PipInstall(package.to_owned()),
        ["python3", "-m", module, ref args @ ..] => {
            Command::PythonModule(module.to_owned(), owned(args))
        }
        _ => panic!("a README command this test does not know: {words:?}"),
    }
}

#[test]
fn the_readme_worker_example_serves_as_written() {
    let commands: Vec<Command> = readme_worker_example().iter().map(|w| parse(w)).collect();
    let Some(Command::Server(server_args)) = commands.first() else {
        panic!("the example starts the server first");
    };
    // As written, plus only what lets the test reach it: an ephemeral
    // listener and the development certificate where the client finds it.
    let dir = TempDir::new();
    let cert = dir.path().join("dev-cert.pem");
    let cert_arg = common::utf8(&cert);
    let mut args: Vec<&str> = server_args.iter().map(String::as_str).collect();
    args.extend(["--dev-cert-out", &cert_arg]);
    let server = Server::start_in(dir, cert.clone(), &args);
    let warning = server
        .wait_log("NO --acl: USING THE DEVELOPMENT ACL", LIMIT)
        .unwrap_or_else(|| panic!("no development-ACL warning: {:#?}", server.log()));
    assert!(
        warning.contains(" WARN ") && warning.contains("/chat"),
        "{warning}"
    );

    let mut workers = Vec::new();
    let (python_dir, mut venv) = (TempDir::new(), None);
    for command in &commands[1..] {
        match command {
            Command::Server(_) => panic!("a second server in the example"),
            Command::Example(name, args) => workers.push(Proc::example(name, args)),
            Command::PipInstall(package) if python_with_zmq() => {
                let package = Path::new(env!("CARGO_MANIFEST_DIR")).join(package);
                venv = Some(install_python_package(python_dir.path(), &package));
            }
            Command::PythonModule(module, args) if python_with_zmq() => {
                let python = venv
                    .as_ref()
                    .expect("the README installs the package first");
                let mut command = std::process::Command::new(python);
                workers.push(Proc::spawn(command.arg("-m").arg(module).args(args)));
            }
            Command::PipInstall(_) | Command::PythonModule(..) => {}
        }
    }
    // Every worker reaches both reactors' nodes.
    for worker in &workers {
        wait_registered(&server, worker, 2);
    }

    // "/w" echoes through a worker, "/chat" is a room; guests are let in.
    let mut echo = server.ws("/w");
    assert_eq!(say(&mut echo, "through a worker"), "through a worker");
    let mut members: Vec<WebSocket> = (0..2).map(|_| server.ws("/chat")).collect();
    sync_room(&mut members);
    members[0]
        .send(Ws::Text("hello, room".into()))
        .expect("send");
    assert_eq!(next_chat(&mut members[1]), "hello, room");
}

#[test]
fn an_acl_that_lets_nobody_connect_to_a_route_is_named_at_start() {
    let dir = TempDir::new();
    let acl = dir.path().join("acl.conf");
    std::fs::write(
        &acl,
        "allow guest /echo connect\nallow member /chat connect\n",
    )
    .expect("write the ACL");
    let server = Server::start(&[
        "--route",
        "/echo=echo",
        "--route",
        "/chat=chat",
        "--route",
        "/w=worker-echo",
        "--acl",
        &common::utf8(&acl),
        // Not the README example's port, which the other test binds.
        "--backend-bind",
        &common::free_endpoint(),
    ]);
    let named = format!("--acl {}: no role may connect to the route ", acl.display());
    let warning = server
        .wait_log(&named, LIMIT)
        .unwrap_or_else(|| panic!("no `{named}` warning: {:#?}", server.log()));
    assert!(
        warning.ends_with("route /w: every client gets 401 or 403 there"),
        "{warning}"
    );
    // Only /w: the others are reachable by some role, and the ACL was
    // given, so no development warning.
    let log = server.log();
    let warned: Vec<&String> = log.iter().filter(|l| l.contains(&named)).collect();
    assert_eq!(warned.len(), 1, "{log:#?}");
    assert!(
        !log.iter().any(|l| l.contains("DEVELOPMENT ACL")),
        "{log:#?}"
    );
}
