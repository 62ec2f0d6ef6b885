//! ACL administration by admin workers (docs/acl.md, docs/protocol.md
//! ACL_COMMAND) against the real binary: signed library workers change
//! the ACL of a running node, live clients follow, every change is in the
//! `--acl` file before it is in force, and a change that cannot be written
//! is undone and reported.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use averyws::auth::acl_file;
use averyws::backend::message::{AclOp, AclStatus, ErrorCode, MessageType};
use common::admin::{done, Admin, Reply};
use common::{assert_echo, free_endpoint, read_close, upgrade_status, utf8, Server, TempDir, TEXT};

const LIMIT: Duration = Duration::from_secs(10);
/// The node's key file: both keys verify; only `admin` is an admin key.
const NODE_KEYS: &str =
    "admin:0123456789abcdef0123456789abcdef\nplain:fedcba9876543210fedcba9876543210\n";
/// A worker's key file: the first key signs, every key verifies (the node
/// signs with `admin`, its first).
const ADMIN_KEYS: &str = "admin:0123456789abcdef0123456789abcdef\n";
const PLAIN_KEYS: &str =
    "plain:fedcba9876543210fedcba9876543210\nadmin:0123456789abcdef0123456789abcdef\n";
/// Guests may echo on /echo; /more is routed to the echo service too but
/// nobody may connect to it yet.
const ACL: &str = "allow guest /echo connect\nallow guest echo send\n";
const NO_NAMES: &[&str] = &[];

// ---------------------------------------------------------------- tests

#[test]
fn an_admin_grants_a_path_then_revokes_it_closing_a_live_client() {
    let acl = AclFile::new();
    let (server, endpoint) = node(&acl);
    let admin = Admin::start(&endpoint, ADMIN_KEYS);
    assert_eq!(upgrade_status(&server, "/more"), 401);

    let granted = admin.ask(AclOp::Allow, [&["guest"], &["/more"], &["connect"]]);
    assert_eq!(granted, done());
    assert!(acl.on_disk_allows("guest", "/more"), "{}", acl.text());
    let mut client = common::raw_ws(&server, "/more");
    assert_echo(&mut client, TEXT, b"in");

    let revoked = admin.ask(AclOp::RemoveAllow, [&["guest"], &["/more"], NO_NAMES]);
    assert_eq!(revoked, done());
    assert_eq!(read_close(&mut client), Some(1008));
    assert!(!acl.on_disk_allows("guest", "/more"), "{}", acl.text());
    assert_eq!(upgrade_status(&server, "/more"), 401);
}

#[test]
fn a_change_survives_a_restart() {
    let acl = AclFile::new();
    {
        let (_server, endpoint) = node(&acl);
        let admin = Admin::start(&endpoint, ADMIN_KEYS);
        let added = admin.ask(AclOp::AddUserRoles, [&["guest"], &["visitor"], NO_NAMES]);
        assert_eq!(added, done());
        let granted = admin.ask(AclOp::Allow, [&["visitor"], &["/more"], &["connect"]]);
        assert_eq!(granted, done());
    }
    assert!(acl.on_disk_allows("guest", "/more"), "{}", acl.text());
    assert!(!acl.dir.path().join("etc/acl.conf.tmp").exists());
    let (server, _) = node(&acl);
    let mut client = common::raw_ws(&server, "/more");
    assert_echo(&mut client, TEXT, b"still allowed");
}

#[test]
fn a_non_admin_key_is_forbidden_and_nothing_changes() {
    let acl = AclFile::new();
    let (server, endpoint) = node(&acl);
    let plain = Admin::start(&endpoint, PLAIN_KEYS);
    let before = acl.text();
    let reply = plain.ask(AclOp::Allow, [&["guest"], &["/more"], &["connect"]]);
    assert_eq!(
        reply,
        Reply::Error(ErrorCode::FORBIDDEN, MessageType::AclCommand as u8)
    );
    let explain = plain.ask(AclOp::Explain, [&["guest"], &["/echo"], &["connect"]]);
    assert!(matches!(explain, Reply::Error(ErrorCode::FORBIDDEN, _)));
    assert_eq!(acl.text(), before);
    assert_eq!(upgrade_status(&server, "/more"), 401);
    assert!(server
        .wait_log("not signed with an admin key", LIMIT)
        .is_some());
}

#[test]
fn explain_answers_and_refusals_say_why() {
    let acl = AclFile::new();
    let (_server, endpoint) = node(&acl);
    let admin = Admin::start(&endpoint, ADMIN_KEYS);
    let Reply::Result {
        status,
        decision,
        explanation,
        ..
    } = admin.ask(AclOp::Explain, [&["guest"], &["/echo"], &["connect"]])
    else {
        panic!("no ACL_RESULT");
    };
    assert_eq!((status, decision), (AclStatus::Ok, Some(true)));
    assert!(
        explanation.contains("guest is allowed connect on /echo"),
        "{explanation}"
    );
    let Reply::Result {
        decision,
        explanation,
        ..
    } = admin.ask(AclOp::Explain, [&["alice"], &["/more"], &["connect"]])
    else {
        panic!("no ACL_RESULT");
    };
    assert_eq!(decision, Some(false));
    assert!(
        explanation.contains("alice may not connect on /more"),
        "{explanation}"
    );

    let before = acl.text();
    let parents = admin.ask(AclOp::AddRoleParents, [&["a"], &["b"], NO_NAMES]);
    assert_eq!(parents, done());
    let Reply::Result { status, detail, .. } =
        admin.ask(AclOp::AddRoleParents, [&["b"], &["a"], NO_NAMES])
    else {
        panic!("no ACL_RESULT");
    };
    assert_eq!(status, AclStatus::Refused);
    assert!(detail.contains("cannot inherit"), "{detail}");
    let Reply::Result { status, detail, .. } =
        admin.ask(AclOp::Allow, [&["guest"], &["a*b"], &["connect"]])
    else {
        panic!("no ACL_RESULT");
    };
    assert_eq!(status, AclStatus::Refused);
    assert!(detail.contains("invalid resource name"), "{detail}");
    assert_ne!(acl.text(), before, "only the first change is written");
    assert!(acl.text().contains("role a inherits b"), "{}", acl.text());
}

#[test]
fn a_change_that_cannot_be_persisted_is_undone_and_reported() {
    let acl = AclFile::new();
    let (server, endpoint) = node(&acl);
    let admin = Admin::start(&endpoint, ADMIN_KEYS);
    // Tests run as root, which writes through any mode bits: without its
    // directory the file cannot be replaced by anyone.
    std::fs::remove_dir_all(acl.dir.path().join("etc")).expect("remove the ACL's directory");
    let Reply::Result { status, detail, .. } =
        admin.ask(AclOp::Allow, [&["guest"], &["/more"], &["connect"]])
    else {
        panic!("no ACL_RESULT");
    };
    assert_eq!(status, AclStatus::NotPersisted);
    assert!(detail.contains("acl.conf"), "{detail}");
    assert_eq!(upgrade_status(&server, "/more"), 401);
    let Reply::Result { decision, .. } =
        admin.ask(AclOp::Explain, [&["guest"], &["/more"], &["connect"]])
    else {
        panic!("no ACL_RESULT");
    };
    assert_eq!(decision, Some(false), "the change was rolled back");
}

// ------------------------------------------------------------- harness

/// An ACL file in `etc/` of its own directory, which outlives the nodes
/// that use it.
struct AclFile {
    dir: TempDir,
}

impl AclFile {
    fn new() -> AclFile {
        let dir = TempDir::new();
        std::fs::create_dir_all(dir.path().join("etc")).expect("mkdir");
        let acl = AclFile { dir };
        std::fs::write(acl.path(), ACL).expect("write the ACL");
        acl
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("etc/acl.conf")
    }

    fn text(&self) -> String {
        std::fs::read_to_string(self.path()).expect("read the ACL")
    }

    /// Whether the file on disk parses and lets `user` connect to `path`.
    fn on_disk_allows(&self, user: &str, path: &str) -> bool {
        let acl = acl_file::parse(&self.text(), "on disk").expect("the file parses");
        acl.is_allowed(user, path, &["connect"])
    }
}

/// A signed node using `acl`, with /echo and /more on the echo service,
/// `admin` as its admin key, and its backend endpoint.
fn node(acl: &AclFile) -> (Server, String) {
    let endpoint = free_endpoint();
    let dir = TempDir::new();
    let keys = dir.path().join("node.keys");
    std::fs::write(&keys, NODE_KEYS).expect("write keys");
    let cert = dir.path().join("dev-cert.pem");
    let (keys, cert_out, acl_path) = (utf8(&keys), utf8(&cert), utf8(&acl.path()));
    let args = [
        "--dev-cert-out",
        &cert_out,
        "--acl",
        &acl_path,
        "--route",
        "/echo=echo",
        "--route",
        "/more=echo",
        "--backend-bind",
        &endpoint,
        "--backend-key-file",
        &keys,
        "--backend-admin-key",
        "admin",
    ];
    (Server::start_in(dir, cert, &args), endpoint)
}
