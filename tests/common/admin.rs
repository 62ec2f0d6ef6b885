//! An admin worker (docs/protocol.md, ACL_COMMAND): a signed library
//! worker that changes a node's ACL and reports what became of it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use averyws::backend::message::{AclOp, AclStatus, ErrorCode};
use averyws::backend::KeyRing;
use averyws_worker::{Config, Event, NodeId, Worker};

/// How long an answer may take.
const LIMIT: Duration = Duration::from_secs(10);

/// What the node answered to one ACL_COMMAND.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
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
pub fn done() -> Reply {
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
pub struct Admin {
    commands: Sender<Command>,
    replies: Receiver<(u64, Reply)>,
    next: std::cell::Cell<u64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Admin {
    pub fn start(endpoint: &str, keys: &str) -> Admin {
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
    pub fn ask(&self, op: AclOp, args: [&[&str]; 3]) -> Reply {
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
            super::procs::join(thread);
        }
    }
}
