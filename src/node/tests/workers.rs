//! Worker registration and liveness (sections 3 and 4): READY and WELCOME, restarted instances, the worker table, heartbeats, BYE.

use super::*;

/// Section 3 READY and WELCOME, section 4 step 3: on an unsigned link a
/// READY registers at once and WELCOME states the node's parameters.
#[test]
fn ready_registers_and_is_welcomed() {
    let mut h = Harness::new();
    assert_eq!(h.from(A, &ready(A.instance, &["chat"])), Outcome::Done);
    assert_eq!(h.addressed_replies(A), [(welcome(), None)]);
    let worker = h.worker(A).expect("registered at once");
    assert_eq!(worker.instance, A.instance);
    assert_eq!(h.open("chat", 1), Some(worker));
}

/// Section 3 READY: a READY from a known worker replaces its service list,
/// is welcomed again, and its connections stay.
#[test]
fn ready_again_updates_services_and_keeps_connections() {
    for (name, node) in NODES {
        let mut h = node();
        let worker = h.join(A, &["chat"]);
        h.serve("chat", 7);
        assert_eq!(
            h.from(A, &ready(A.instance, &["news"])),
            Outcome::Done,
            "{name}"
        );
        assert_eq!(h.replies(A), [welcome()], "{name}");
        assert_eq!(h.worker(A), Some(worker), "{name}: the same worker");
        assert_eq!(h.conns_of(worker), [7], "{name}: its connections stay");
        assert_eq!(h.open("chat", 8), None, "{name}: chat no longer served");
        assert_eq!(h.open("news", 9), Some(worker), "{name}");
    }
}

/// Section 4: a restarted worker is a new worker; the one it replaces on
/// its pipe is lost with its connections (section 6: one that never sent
/// moves to the new instance, CONNECT with REASSIGNED). Unsigned, at the
/// new instance's READY.
#[test]
fn a_new_instance_on_the_same_pipe_replaces_the_old() {
    replaced_on_the_same_pipe(Harness::new, true);
}

/// The same on a signed link, at the new instance's first message signed
/// for this boot (section 4 step 3): until then the old instance keeps
/// the pipe, and a message signed by another instance does not speak for
/// it.
#[test]
fn a_new_instance_on_the_same_pipe_replaces_the_old_once_confirmed() {
    replaced_on_the_same_pipe(Harness::signed, false);
}

/// A's worker restarts as A2 on A's pipe: READY, then HEARTBEAT. The old
/// worker is lost at the READY (`at_ready`) or else at the HEARTBEAT.
fn replaced_on_the_same_pipe(node: NewNode, at_ready: bool) {
    let mut h = node();
    let old = h.join(A, &["chat"]);
    h.serve("chat", 7);
    let lost = Outcome::Lost(vec![resolved(7, Fate::Moved)]);
    let on_ready = h.from(A2, &ready(A2.instance, &["chat"]));
    let on_confirm = h.from(A2, &heartbeat(A2));
    let expected = match at_ready {
        true => (lost, Outcome::Done),
        false => (Outcome::Done, lost),
    };
    assert_eq!((on_ready, on_confirm), expected);
    let new = h.worker(A2).expect("registered");
    assert_eq!(new.instance, A2.instance);
    assert_ne!(new, old);
    assert_eq!(h.holder(7), Some(new));
    assert_eq!(h.replies(A2), [welcome(), connect(7, "chat", true)]);
}

/// Section 3 READY: claiming the reserved `echo` gets ERROR
/// RESERVED_SERVICE and registers (or proposes) nothing.
#[test]
fn ready_claiming_echo_is_refused() {
    let claims: [&[&str]; 2] = [&["echo"], &["chat", "echo"]];
    for ((name, node), services) in NODES.into_iter().flat_map(|n| claims.map(|c| (n, c))) {
        let mut h = node();
        assert_eq!(h.from(A, &ready(A.instance, services)), Outcome::Done);
        let refused = err(ErrorCode::RESERVED_SERVICE, MessageType::Ready, "echo", &[]);
        assert_eq!(h.replies(A), [refused], "{name} {services:?}");
        assert!(h.node.workers().is_empty(), "{name} {services:?}");
        assert_eq!(h.node.workers().pending(), 0, "{name} {services:?}");
    }
}

/// The worker table holds at most MAX_WORKERS: one READY more is ignored,
/// unanswered (its worker repeats READY, section 4 step 2).
#[test]
fn a_full_worker_table_ignores_ready() {
    // The default cap, and one set in the configuration.
    for cap in [MAX_WORKERS, 3] {
        let mut h = Harness::with(|config| config.max_workers = cap);
        let services = ["chat"];
        for i in 1..=cap as u64 {
            h.raw(&i.to_be_bytes(), &unsigned(VERSION, &ready(i, &services)));
        }
        assert_eq!(h.node.workers().len(), cap);
        let late = unsigned(VERSION, &ready(A.instance, &services));
        assert_eq!(h.raw(A.pipe, &late), Outcome::Done);
        assert!(h.replies(A).is_empty(), "no WELCOME");
        assert_eq!(h.worker(A), None);
        assert_eq!(h.node.workers().len(), cap);
    }
}

/// Section 4 step 3, section 9: a signed READY is only proposed (WELCOME
/// signed for the instance, no clients) until a message its instance
/// signed for this boot comes on its pipe; that message is then carried
/// out. From another pipe or another instance it is UNKNOWN_PEER.
#[test]
fn a_signed_ready_registers_once_confirmed_on_its_pipe() {
    let unknown = err(ErrorCode::UNKNOWN_PEER, MessageType::Send, "", &[]);
    #[rustfmt::skip]
    let rows: [(&str, Peer, Ids, Replies); 3] = [
        ("its instance on its pipe",     A,           &[1], vec![]),
        ("its instance on another pipe", A_ELSEWHERE, &[],  vec![unknown.clone()]),
        ("another instance on its pipe", A2,          &[],  vec![unknown]),
    ];
    for (name, confirmer, received, replies) in rows {
        let mut h = Harness::signed();
        h.edge.open(1, &[]);
        assert_eq!(h.from(A, &ready(A.instance, &["chat"])), Outcome::Done);
        let welcomed = [(welcome(), Some(A.instance))];
        assert_eq!(h.addressed_replies(A), welcomed, "{name}");
        assert_eq!(h.worker(A), None, "{name}: only proposed");
        assert_eq!(h.open("chat", 2), None, "{name}: no clients yet");
        assert_eq!(h.from(confirmer, &hi()), Outcome::Done, "{name}");
        assert_eq!(
            h.worker(A).is_some(),
            replies.is_empty(),
            "{name}: registered"
        );
        assert_eq!(h.received(b"hi"), received, "{name}: the command in it");
        assert_eq!(h.replies(confirmer), replies, "{name}");
    }
}

/// Section 4 step 3: a READY not confirmed within the liveness timeout is
/// forgotten at `tick`.
#[test]
fn an_unconfirmed_ready_is_forgotten_after_the_liveness_timeout() {
    let unknown = err(ErrorCode::UNKNOWN_PEER, MessageType::Heartbeat, "", &[]);
    for (waited_ms, replies) in [(3000, vec![]), (3001, vec![unknown])] {
        let kept = replies.is_empty();
        let mut h = Harness::signed();
        h.from(A, &ready(A.instance, &["chat"]));
        h.replies(A);
        h.advance(ms(waited_ms));
        assert!(h.tick().is_empty());
        assert_eq!(
            h.node.workers().pending(),
            usize::from(kept),
            "{waited_ms} ms"
        );
        h.from(A, &heartbeat(A));
        assert_eq!(h.worker(A).is_some(), kept, "{waited_ms} ms");
        assert_eq!(h.replies(A), replies, "{waited_ms} ms");
    }
}

/// Section 6: any message proves a worker alive; one silent for longer
/// than heartbeat × liveness is lost at `tick`, with its connections
/// (here none other serves them: 1013).
#[test]
fn silence_past_the_liveness_timeout_loses_a_worker() {
    let beat = Some((2000, heartbeat(A)));
    #[rustfmt::skip]
    let rows = [
        ("silent for the timeout",             None,                                 3000, false),
        ("silent past it",                     None,                                 3001, true),
        ("a HEARTBEAT restarts the count",     beat,                                 5000, false),
        ("silent past it since the HEARTBEAT", beat,                                 5001, true),
        ("any message counts",                 Some((2000, unsubscribe(4, "room"))), 5000, false),
    ];
    for (name, heard, tick_at, lost) in rows {
        let mut h = Harness::new();
        h.join(A, &["chat"]);
        h.serve("chat", 4);
        let mut elapsed = 0;
        if let Some((at, message)) = heard {
            h.advance(ms(at));
            h.from(A, &message);
            elapsed = at;
        }
        h.advance(ms(tick_at - elapsed));
        let expected = match lost {
            true => vec![resolved(4, NO_WORKER)],
            false => vec![],
        };
        assert_eq!(h.tick(), expected, "{name}");
        assert_eq!(h.worker(A).is_some(), !lost, "{name}");
    }
}

/// Section 6 "Send", section 7: `tick` sends HEARTBEAT to a worker the
/// node sent nothing to for an interval, but not on top of a backlog.
#[test]
fn tick_heartbeats_quiet_workers() {
    let beat = Reply::Heartbeat { boot: BOOT };
    #[rustfmt::skip]
    let rows = [
        ("quiet for less than an interval", 999,  false, vec![]),
        ("quiet for an interval",           1000, false, vec![beat]),
        ("quiet, its backlog waiting",      1000, true,  vec![]),
    ];
    for (name, quiet_ms, backlog, expected) in rows {
        let mut h = Harness::new();
        h.join(A, &["chat"]);
        if backlog {
            h.wire.full.insert(A.pipe.to_vec());
            h.from(A, &send(&[9], b"x"));
        }
        h.advance(ms(quiet_ms));
        assert!(h.tick().is_empty(), "{name}");
        assert_eq!(h.replies(A), expected, "{name}");
        assert_eq!(
            h.node.backlog_len(),
            usize::from(backlog),
            "{name}: nothing piled up"
        );
    }
}

/// Section 3 BYE, section 6: a worker's BYE loses it at once, its
/// connections reassigned (a fresh CONNECT, REASSIGNED, to another
/// worker) or closed (1012) as configured.
#[test]
fn bye_loses_the_worker_with_its_connections() {
    let moved = [connect(1, "chat", true), connect(3, "chat", true)];
    #[rustfmt::skip]
    let rows = [
        (WorkerLoss::Reassign, Fate::Moved,  moved.to_vec()),
        (WorkerLoss::Close,    WORKER_LOST,  vec![]),
    ];
    for (loss, fate, connects) in rows {
        let mut h = Harness::with(|config| config.worker_loss = loss);
        h.join(A, &["chat"]);
        h.serve("chat", 3);
        h.serve("chat", 1);
        let other = h.join(B, &["chat"]);
        let lost = Outcome::Lost(vec![resolved(1, fate), resolved(3, fate)]);
        assert_eq!(h.from(A, &Message::Bye), lost, "{loss:?}");
        assert_eq!(h.worker(A), None, "{loss:?}");
        assert!(h.replies(A).is_empty(), "{loss:?}");
        assert_eq!(h.replies(B), connects, "{loss:?}");
        let held = [1, 3].repeat(usize::from(!connects.is_empty()));
        assert_eq!(h.conns_of(other), held, "{loss:?}");
    }
}
