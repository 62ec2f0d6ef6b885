//! `averyws acl check` as an operator runs it: the real binary on real ACL
//! files.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::TempDir;

const ACL: &str = "\
role chat-user inherits member
allow member chat/* subscribe
allow guest /echo connect
user alice roles chat-user
";

/// Runs `averyws acl ARGS...`.
fn acl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_averyws"))
        .arg("acl")
        .args(args)
        .output()
        .expect("run averyws")
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write the ACL file");
    path.to_str().expect("UTF-8 temp path").to_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn allowed_through_a_parent_role_is_explained() {
    let dir = TempDir::new();
    let file = write(dir.path(), "acl.conf", ACL);
    let output = acl(&["check", "--acl", &file, "alice", "chat/lobby", "subscribe"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "allowed\n\
         alice may subscribe on chat/lobby\n\
         \x20 alice has role chat-user (stored)\n\
         \x20 chat-user inherits member\n\
         \x20 member is allowed subscribe on chat/*\n"
    );
}

#[test]
fn denied_exits_1_and_says_why() {
    let dir = TempDir::new();
    let file = write(dir.path(), "acl.conf", ACL);
    let output = acl(&["check", "--acl", &file, "alice", "chat/lobby", "publish"]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert!(
        text.starts_with("denied\nalice may not publish on chat/lobby\n"),
        "{text}"
    );
    assert!(
        text.contains("member is allowed subscribe on chat/* (not publish)"),
        "{text}"
    );
}

#[test]
fn token_roles_count_for_the_check() {
    let dir = TempDir::new();
    let file = write(dir.path(), "acl.conf", ACL);
    let args = ["check", "--acl", &file, "bob", "chat/x", "subscribe"];
    assert_eq!(acl(&args).status.code(), Some(1));
    let output = acl(&[&args[..], &["--role", "viewer", "--role", "member"]].concat());
    assert_eq!(output.status.code(), Some(0));
    assert!(stdout(&output).contains("bob has role member (from the token)"));
}

#[test]
fn without_acl_the_embedded_default_lets_guests_echo() {
    let output = acl(&["check", "guest", "/echo", "connect"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains("guest has role guest (built in)"));
    // As on the server, a signed-in user holds `guest` too.
    let output = acl(&["check", "alice", "/echo", "connect"]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert!(stdout(&output).contains("alice has role guest (built in)"));
    assert_eq!(
        acl(&["check", "guest", "/other", "connect"]).status.code(),
        Some(1)
    );
}

#[test]
fn parse_error_names_file_and_line_and_exits_2() {
    let dir = TempDir::new();
    let file = write(dir.path(), "broken.conf", "# fine\nallow a b\n");
    let output = acl(&["check", "--acl", &file, "alice", "x", "y"]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr(&output),
        format!("averyws acl: {file}:2: expected `allow ROLES RESOURCES PERMISSIONS`\n")
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn usage_errors_exit_2_in_one_line() {
    let dir = TempDir::new();
    let missing = dir.path().join("missing.conf");
    let missing = missing.to_str().unwrap();
    for args in [
        &["check", "alice", "x"][..],
        &["check", "--bogus", "a", "b", "c"],
        &["frobnicate"],
        &[],
        &["check", "--acl", missing, "a", "b", "c"],
    ] {
        let output = acl(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let text = stderr(&output);
        assert!(
            text.starts_with("averyws acl: ") && text.lines().count() == 1,
            "{args:?}: {text}"
        );
    }
    let help = acl(&["check", "--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(stdout(&help).contains("--role"));
}
