//! Full and gone pipes (section 11): control messages queued in order, the backlog cap, a gone pipe, BYE to every worker.

use super::*;

/// Section 7: control messages that meet a full pipe wait in order; data
/// waits behind them (Blocked) until `flush_backlogs` has sent them.
#[test]
fn a_full_pipe_queues_control_messages_in_order() {
    let mut h = Harness::new();
    let worker = h.join(A, &["chat"]);
    h.wire.full.insert(A.pipe.to_vec());
    h.from(A, &send(&[8], b"x"));
    h.from(A, &send(&[9], b"x"));
    assert_eq!(h.node.backlog_len(), 2);
    assert_eq!(h.data(worker), Delivery::Blocked, "the pipe is full");
    h.flush();
    assert_eq!(h.node.backlog_len(), 2, "still full");
    h.wire.full.clear();
    assert_eq!(h.data(worker), Delivery::Blocked, "the backlog goes first");
    assert!(h.replies(A).is_empty());
    h.flush();
    let no_such = |conn| {
        err(
            ErrorCode::NO_SUCH_CONNECTION,
            MessageType::Send,
            "",
            &[conn],
        )
    };
    assert_eq!(h.replies(A), [no_such(8), no_such(9)]);
    assert!(!h.node.has_backlog());
    assert_eq!(h.data(worker), Delivery::Sent);
    assert_eq!(h.replies(A), [carried(1, b"event")]);
}

/// Section 7: past `worker_queue` messages an ERROR or HEARTBEAT for the
/// worker is dropped and counted, anything else loses the worker (and its
/// connection, none other serving it, section 6: 1013).
#[test]
fn over_the_backlog_cap_replies_drop_and_events_lose_the_worker() {
    let no_such = error(
        ErrorCode::NO_SUCH_CONNECTION,
        MessageType::Send as u8,
        "",
        &[9],
    );
    #[rustfmt::skip]
    let rows = [
        ("an ERROR",     no_such,                          1, false),
        ("a HEARTBEAT",  Message::Heartbeat { boot: BOOT }, 1, false),
        ("a DISCONNECT", disconnect(7),                    0, true),
    ];
    for (name, message, replies_dropped, lost) in rows {
        let mut h = Harness::new();
        let worker = h.join(A, &["chat"]);
        h.serve("chat", 7);
        h.wire.full.insert(A.pipe.to_vec());
        for _ in 0..QUEUE {
            h.from(A, &send(&[9], b"x"));
        }
        assert!(
            h.take_lost().is_empty(),
            "{name}: a full backlog is no loss"
        );
        h.control(worker, &message);
        assert_eq!(h.node.replies_dropped(), replies_dropped, "{name}");
        let expected = match lost {
            true => vec![resolved(7, NO_WORKER)],
            false => vec![],
        };
        assert_eq!(h.take_lost(), expected, "{name}");
        let waiting = if lost { 0 } else { QUEUE };
        assert_eq!(h.node.backlog_len(), waiting, "{name}");
    }
}

/// Section 6: a send to a worker whose pipe is gone (EHOSTUNREACH)
/// declares it dead, whatever sent it; its connection, none other
/// serving it, is closed with 1013.
#[test]
fn a_gone_pipe_loses_the_worker() {
    let rows: [(&str, Act); 5] = [
        ("send_data", |h, worker| {
            assert_eq!(h.data(worker), Delivery::Gone);
            h.take_lost()
        }),
        ("send_control", |h, worker| {
            h.control(worker, &disconnect(7));
            h.take_lost()
        }),
        ("a command's ERROR", |h, _| {
            h.from(A, &send(&[9], b"x"));
            h.take_lost()
        }),
        ("tick's HEARTBEAT", |h, _| {
            h.advance(BEAT);
            h.tick()
        }),
        ("flush_backlogs", |h, worker| {
            let gone = std::mem::take(&mut h.wire.gone);
            h.wire.full.insert(A.pipe.to_vec());
            h.control(worker, &disconnect(7));
            h.wire.full.clear();
            h.wire.gone = gone;
            h.flush();
            h.take_lost()
        }),
    ];
    for (name, act) in rows {
        let mut h = Harness::new();
        let worker = h.join(A, &["chat"]);
        h.serve("chat", 7);
        h.wire.gone.insert(A.pipe.to_vec());
        assert_eq!(act(&mut h, worker), [resolved(7, NO_WORKER)], "{name}");
        assert_eq!(h.worker(A), None, "{name}");
        assert!(!h.node.has_backlog(), "{name}");
    }
}

/// Section 3 BYE: a leaving node says BYE to every worker.
#[test]
fn bye_is_said_to_every_worker() {
    let mut h = Harness::new();
    h.join(A, &["chat"]);
    h.join(B, &["news"]);
    h.node.bye(&mut h.wire, h.t);
    for peer in [A, B] {
        assert_eq!(h.replies(peer), [Reply::Bye], "{peer:?}");
    }
}
