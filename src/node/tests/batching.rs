//! Protocol versions 2 and 3 (sections 13 and 14): batches, and the WELCOME that names the reactor.

use super::*;

/// Section 13: a version 2 worker is welcomed in version 2, and the
/// client messages of a turn reach it as one MESSAGES at the end of the
/// turn, in order; a v1 worker on the same node gets one MESSAGE each.
#[test]
fn a_version_2_worker_gets_a_turn_of_messages_as_one_batch() {
    let mut h = Harness::new();
    h.from(V2, &ready(V2.instance, &["chat"]));
    let sent = h.wire.take(V2.pipe);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0][0], [2, 0x11, 0], "WELCOME in version 2");
    h.serve("chat", 1);
    h.serve("chat", 2);
    assert!(h.message(1, b"a") && h.message(2, b"b") && h.message(1, b"c"));
    assert!(
        h.replies(V2).is_empty(),
        "nothing before the end of the turn"
    );
    h.node.flush_batches(&mut h.wire, h.t);
    let batch = [(1, b"a".to_vec()), (2, b"b".to_vec()), (1, b"c".to_vec())];
    assert_eq!(h.replies(V2), [Reply::Batch(batch.to_vec())]);
    h.node.flush_batches(&mut h.wire, h.t);
    assert!(h.replies(V2).is_empty(), "each batch once");
    let in_flight = h.node.sessions().get(1).expect("served").in_flight;
    assert_eq!(in_flight, 2, "batched messages count as handed over");
}

/// Section 13: a batch goes before any other message to its worker, so
/// CONNECT, the client's messages and DISCONNECT keep their order; one
/// that would overflow 64 KiB goes first, and a payload too large for
/// any batch travels as a v1-layout MESSAGE after the batch before it.
#[test]
fn a_batch_goes_before_anything_else_and_when_full() {
    let mut h = Harness::with(|config| config.max_payload = 1 << 20);
    h.join(V2, &["chat"]);
    h.serve("chat", 1);
    assert!(h.message(1, b"first"));
    h.open("chat", 2);
    h.close(1, (CloseCode::NORMAL, Initiator::Client));
    let replies = h.replies(V2);
    assert!(
        matches!(
            &replies[..],
            [Reply::Batch(b), Reply::Connect { conn: 2, .. }, Reply::Disconnect { conn: 1, .. }]
                if *b == [(1, b"first".to_vec())]
        ),
        "{replies:?}"
    );
    let big = vec![7u8; MAX_BATCHED_PAYLOAD];
    assert!(h.message(2, b"x") && h.message(2, &big));
    assert_eq!(h.replies(V2), [Reply::Batch(vec![(2, b"x".to_vec())])]);
    let huge = vec![8u8; MAX_BATCHED_PAYLOAD + 1];
    assert!(h.message(2, &huge));
    let replies = h.replies(V2);
    assert_eq!(
        replies,
        [
            Reply::Batch(vec![(2, big.clone())]),
            Reply::Data {
                conn: 2,
                payload: huge
            }
        ]
    );
}

/// Sections 7 and 13: a batch that meets a full pipe waits first in the
/// worker's backlog; later client messages are not taken (their clients
/// stop reading) until it went, then `retry` sends them, in order.
#[test]
fn a_batch_meeting_a_full_pipe_waits_and_holds_back_the_rest() {
    let mut h = Harness::new();
    h.join(V2, &["chat"]);
    h.serve("chat", 1);
    assert!(h.message(1, b"a"));
    h.wire.full.insert(V2.pipe.to_vec());
    h.node.flush_batches(&mut h.wire, h.t);
    assert_eq!(h.node.backlog_len(), 1, "the batch waits");
    assert!(!h.message(1, b"b"), "behind it: not taken");
    h.wire.full.clear();
    h.flush();
    assert_eq!(h.replies(V2), [Reply::Batch(vec![(1, b"a".to_vec())])]);
    assert_eq!(h.retry(), [1], "reading resumes");
    h.node.flush_batches(&mut h.wire, h.t);
    assert_eq!(h.replies(V2), [Reply::Batch(vec![(1, b"b".to_vec())])]);
}

/// Section 13 SENDS: each record to its connection; records over the
/// payload cap draw one TOO_BIG and connections not open one
/// NO_SUCH_CONNECTION, both about 0x36, naming the connections; the rest
/// are delivered, in order.
#[test]
fn sends_delivers_each_record_and_names_what_it_could_not() {
    let mut h = Harness::new();
    h.join(V2, &["chat"]);
    h.edge.open(1, &[]);
    h.edge.open(2, &[]);
    let mut batch = BatchBuilder::default();
    batch.push(1, Payload::Binary(b"one"));
    batch.push(9, Payload::Binary(b"lost"));
    batch.push(2, Payload::Binary(&[0; MAX_PAYLOAD as usize + 1]));
    batch.push(2, Payload::Text("two"));
    batch.push(1, Payload::Binary(b"three"));
    assert_eq!(h.from(V2, &Message::Sends(batch.batch())), Outcome::Done);
    assert_eq!(
        h.edge.conns[&1].delivered,
        [b"one".to_vec(), b"three".to_vec()]
    );
    assert_eq!(h.edge.conns[&2].delivered, [b"two".to_vec()]);
    let too_big = err(ErrorCode::TOO_BIG, MessageType::Sends, "", &[2]);
    let missing = err(ErrorCode::NO_SUCH_CONNECTION, MessageType::Sends, "", &[9]);
    assert_eq!(h.replies(V2), [too_big, missing]);
}

/// A version 3 worker (docs/protocol.md section 14).
const V3: Peer = Peer {
    pipe: b"pipe-v3",
    instance: 0xD3,
    version: VERSION_3,
};

/// Section 14: a version 3 READY is welcomed in version 3 with the node's
/// place among its process's reactors; a version 1 or 2 READY to the same
/// node gets the WELCOME of its version, which cannot carry it.
#[test]
fn a_version_3_welcome_says_which_reactor_of_how_many() {
    let place = Reactors { index: 1, count: 2 };
    let mut h = Harness::with(|config| config.reactors = place);
    for (peer, version, reactors) in [
        (V3, VERSION_3, place),
        (V2, VERSION_2, Reactors::ALONE),
        (A, VERSION, Reactors::ALONE),
    ] {
        h.from(peer, &ready(peer.instance, &["chat"]));
        let sent = h.wire.take(peer.pipe);
        assert_eq!(sent.len(), 1, "v{version}");
        assert_eq!(sent[0][0], [version, 0x11, 0], "WELCOME in v{version}");
        let frames: Vec<&[u8]> = sent[0].iter().map(Vec::as_slice).collect();
        let welcome = decode(&frames).map(Reply::from);
        assert_eq!(welcome, Ok(welcome_as(reactors)), "v{version}");
    }
}
