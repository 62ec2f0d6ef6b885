//! ACL administration by admin workers (docs/acl.md, docs/protocol.md
//! ACL_COMMAND) against the real binary: signed library workers change
//! the ACL of a running node, live clients follow, every change is in the
//! `--acl` file before it is in force, and a change that cannot be written
//! is undone and reported.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use averyws::auth::acl_file;
use averyws::backend::message::{AclOp, AclStatus, ErrorCode, MessageType};
use averyws::backend::KeyRing;
use averyws_worker::{Config, Event, NodeId, Worker};
use common::{
    assert_echo, free_endpoint, read_close, read_response_head, send, status, upgrade_request,
    utf8, Server, TempDir, TEXT,
};

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

/// The status of an upgrade to `path` without a token.
fn upgrade_status(server: &Server, path: &str) -> u16 {
    let mut stream = server.tls();
    send(&mut stream, upgrade_request(path, "").as_bytes());
    status(&read_response_head(&mut stream))
}

/// What the node answered to one ACL_COMMAND.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    Result {
        status: AclStatus,
        decision: Option<bool>,
        detail: String,
        explanation: String,
    },
    /// ERROR: its code and `about`.
    Error(ErrorCode, u8),
}

/// The reply to a change that was carried out.
fn done() -> Reply {
    Reply::Result {
        status: AclStatus::Ok,
        decision: None,
        detail: String::new(),
        explanation: String::new(),
    }
}

type Command = (u64, AclOp, [Vec<String>; 3]);

/// A signed library worker on a thread that sends the ACL commands it is
/// given once the node has welcomed it, and passes the replies back.
struct Admin {
    commands: Sender<Command>,
    replies: Receiver<(u64, Reply)>,
    next: std::cell::Cell<u64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Admin {
    fn start(endpoint: &str, keys: &str) -> Admin {
        let mut config = Config::new(vec![endpoint.to_owned()], vec!["admin".to_owned()]);
        config.keys = Some(KeyRing::parse(keys.as_bytes()).expect("keys"));
        let (commands, inbox) = mpsc::channel::<Command>();
        let (outbox, replies) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut worker = Worker::new(config).expect("worker");
            let mut pending: Option<Command> = None;
            while !flag.load(Ordering::Relaxed) {
                if pending.is_none() {
                    pending = inbox.try_recv().ok();
                }
                if let Some((request, op, args)) = pending.take() {
                    let lists = args
                        .each_ref()
                        .map(|list| list.iter().map(String::as_str).collect::<Vec<_>>());
                    let sent = worker.acl_command(
                        NodeId(0),
                        request,
                        op,
                        lists.each_ref().map(Vec::as_slice),
                    );
                    if sent.is_err() {
                        // Not welcomed yet: try again after the next poll.
                        pending = Some((request, op, args));
                    }
                }
                let reply = match worker.poll(Duration::from_millis(10)) {
                    Some(Event::AclResult {
                        request,
                        status,
                        decision,
                        detail,
                        explanation,
                        ..
                    }) => (
                        request,
                        Reply::Result {
                            status,
                            decision,
                            detail,
                            explanation,
                        },
                    ),
                    Some(Event::Error { code, about, .. }) => (0, Reply::Error(code, about)),
                    _ => continue,
                };
                let _ = outbox.send(reply);
            }
            worker.bye();
        });
        Admin {
            commands,
            replies,
            next: std::cell::Cell::new(1),
            stop,
            thread: Some(thread),
        }
    }

    /// Sends one ACL_COMMAND and waits for its ACL_RESULT, or an ERROR.
    fn ask(&self, op: AclOp, args: [&[&str]; 3]) -> Reply {
        let request = self.next.get();
        self.next.set(request + 1);
        let args = args.map(|list| list.iter().map(|name| (*name).to_owned()).collect());
        self.commands
            .send((request, op, args))
            .expect("worker thread");
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (answered, reply) = self
                .replies
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no answer to {op:?} within {LIMIT:?}"));
            // An ERROR carries no request id: it answers the one in flight.
            if answered == request || answered == 0 {
                return reply;
            }
        }
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // A panic on the worker thread fails the test.
            common::procs::join(thread);
        }
    }
}
