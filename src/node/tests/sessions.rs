//! Client sessions (sections 5 and 6): the worker chosen, messages in flight, a full pipe, close, a lost worker's connections, authored publishes.

use super::*;

/// Section 5: a new connection goes to a live worker of its service with
/// the fewest connections, ties to the one assigned least recently, which
/// alone gets its CONNECT; with none, `open` is false and nobody is told.
/// A close gives the connection back (DISCONNECT to its worker).
#[test]
fn open_picks_the_least_loaded_then_least_recent_worker() {
    enum Step {
        Join(Peer, &'static str),
        Open(&'static str, u64, Option<Peer>),
        Close(Peer, u64),
    }
    use Step::{Close, Join, Open};
    let steps = [
        Join(A, "chat"),
        Open("chat", 1, Some(A)),
        Join(B, "chat"),
        Join(C, "other"),
        Open("chat", 2, Some(B)), // the fewest
        Open("chat", 3, Some(A)), // a tie: A was assigned less recently
        Open("chat", 4, Some(B)),
        Open("chat", 5, Some(A)),
        Close(A, 1),
        Close(A, 3),
        Open("chat", 6, Some(A)),
        Open("other", 7, Some(C)),
        Open("nobody", 8, None),
    ];
    let mut h = Harness::new();
    for step in steps {
        match step {
            Join(peer, service) => {
                h.join(peer, &[service]);
            }
            Open(service, conn, to) => {
                let expected = to.map(|peer| h.worker(peer).expect("joined"));
                assert_eq!(h.open(service, conn), expected, "connection {conn}");
                for peer in [A, B, C] {
                    let told = match to {
                        Some(to) if to.pipe == peer.pipe => vec![connect(conn, service, false)],
                        _ => vec![],
                    };
                    assert_eq!(h.replies(peer), told, "connection {conn}, {peer:?}");
                }
            }
            Close(peer, conn) => {
                h.close(conn, (CloseCode::NORMAL, Initiator::Client));
                let told = h.replies(peer);
                assert!(
                    matches!(told[..], [Reply::Disconnect { conn: c, .. }] if c == conn),
                    "connection {conn}: {told:?}"
                );
            }
        }
    }
    let held = [A, B, C].map(|peer| h.conns_of(h.worker(peer).expect("joined")));
    assert_eq!(held, [vec![5, 6], vec![2, 4], vec![7]]);
}

/// Section 5 stickiness, section 6: a client's message goes as MESSAGE to
/// the worker that got its CONNECT and no other, and counts as in flight
/// there; one for a connection no worker serves (it is closing, 1013) is
/// taken and goes nowhere.
#[test]
fn a_message_goes_to_its_worker_and_counts_in_flight() {
    #[rustfmt::skip]
    let steps: [(u64, Bytes, Option<Peer>); 4] = [
        (1, b"one",   Some(A)),
        (2, b"two",   Some(B)),
        (1, b"three", Some(A)),
        (3, b"four",  None),
    ];
    let mut h = Harness::new();
    h.join(A, &["chat"]);
    h.serve("chat", 1);
    h.join(B, &["chat"]);
    h.serve("chat", 2);
    assert_eq!(h.open("news", 3), None);
    for (conn, payload, to) in steps {
        assert!(h.message(conn, payload), "{conn}: taken");
        for peer in [A, B] {
            let told = match to {
                Some(to) if to.pipe == peer.pipe => vec![carried(conn, payload)],
                _ => vec![],
            };
            assert_eq!(h.replies(peer), told, "{conn} {payload:?}, {peer:?}");
        }
    }
    let in_flight = [1, 2, 3].map(|conn| h.node.sessions().get(conn).map(|s| s.in_flight));
    assert_eq!(in_flight, [Some(2), Some(1), Some(0)]);
    assert_eq!(h.node.blocked(), 0);
}

/// Section 7: a message the pipe does not take (it is full, or control
/// messages wait for it) is kept, one per connection, and `message` is
/// false; `retry` sends it once the pipe drains, exactly once, after what
/// waited before it, and names the connection, whose reading resumes.
#[test]
fn a_full_pipe_keeps_the_message_until_retry() {
    let no_such = err(ErrorCode::NO_SUCH_CONNECTION, MessageType::Send, "", &[9]);
    #[rustfmt::skip]
    let rows: [(&str, bool, Replies); 2] = [
        ("the pipe is full",           false, vec![carried(1, b"m")]),
        ("control messages wait",      true,  vec![no_such, carried(1, b"m")]),
    ];
    for (name, backlog, drained) in rows {
        let mut h = Harness::new();
        h.join(A, &["chat"]);
        h.serve("chat", 1);
        h.wire.full.insert(A.pipe.to_vec());
        if backlog {
            h.from(A, &send(&[9], b"x"));
            h.wire.full.clear();
        }
        assert!(!h.message(1, b"m"), "{name}: not taken");
        assert_eq!(h.node.blocked(), 1, "{name}");
        assert_eq!(h.retry(), [0; 0], "{name}: still full");
        assert_eq!(h.node.blocked(), 1, "{name}: still kept");
        assert!(h.replies(A).is_empty(), "{name}");
        let session = h.node.sessions().get(1).expect("served");
        assert_eq!(session.in_flight, 0, "{name}: not handed over yet");
        h.wire.full.clear();
        h.flush();
        assert_eq!(h.retry(), [1], "{name}: sent, reading resumes");
        assert_eq!(h.replies(A), drained, "{name}");
        assert_eq!(h.node.blocked(), 0, "{name}");
        let session = h.node.sessions().get(1).expect("served");
        assert_eq!(session.in_flight, 1, "{name}");
        assert!(h.retry().is_empty(), "{name}: once");
        assert!(h.replies(A).is_empty(), "{name}: once");
    }
}

/// Sections 5 and 7: a closed connection's worker gets the message that
/// still waited for its pipe, then DISCONNECT with the close code and who
/// closed (queued in order behind a full pipe); the worker no longer
/// holds it and the node forgets it.
#[test]
fn close_sends_the_waiting_message_then_disconnect() {
    let why = (CloseCode(4000), Initiator::Node);
    let disconnected = Reply::Disconnect {
        conn: 1,
        code: 4000,
        initiator: Initiator::Node,
    };
    let both = vec![carried(1, b"m"), disconnected.clone()];
    #[rustfmt::skip]
    let rows: [(&str, bool, bool, Replies); 3] = [
        ("nothing waiting",     false, false, vec![disconnected]),
        ("a message waiting",   true,  false, both.clone()),
        ("the pipe still full", true,  true,  both),
    ];
    for (name, waiting, still_full, replies) in rows {
        let mut h = Harness::new();
        let worker = h.join(A, &["chat"]);
        h.serve("chat", 1);
        if waiting {
            h.wire.full.insert(A.pipe.to_vec());
            assert!(!h.message(1, b"m"), "{name}");
        }
        if !still_full {
            h.wire.full.clear();
        }
        h.close(1, why);
        assert_eq!(h.conns_of(worker), [0; 0], "{name}: released");
        assert!(h.node.sessions().is_empty(), "{name}: forgotten");
        assert_eq!(h.node.blocked(), 0, "{name}: nothing waits");
        assert_eq!(h.node.backlog_len(), usize::from(still_full) * 2, "{name}");
        h.wire.full.clear();
        h.flush();
        assert_eq!(h.replies(A), replies, "{name}");
        assert!(h.retry().is_empty(), "{name}: nothing sent again");
        assert!(h.replies(A).is_empty(), "{name}: nothing sent again");
    }
}

/// Where connection 1 stands when its worker dies.
#[derive(Debug, Clone, Copy)]
enum Stand {
    /// Served, it never sent.
    Idle,
    /// It handed the worker two messages.
    Sent,
    /// Its one message waits for the worker's full pipe.
    Waiting,
    /// It handed the worker a message, and another waits.
    SentAndWaiting,
    /// Its upgrade waits for the worker's AUTH_REPLY.
    Upgrading,
}

/// The ways worker A dies (section 6): it says BYE, falls silent past its
/// liveness (while B speaks), or a send finds its pipe gone.
const DEATHS: [(&str, Act); 3] = [
    ("BYE", |h, _| match h.from(A, &Message::Bye) {
        Outcome::Lost(resolved) => resolved,
        other => panic!("BYE: {other:?}"),
    }),
    ("silence", |h, _| {
        h.advance(ms(2000));
        h.from(B, &heartbeat(B));
        h.advance(ms(1001));
        h.tick()
    }),
    ("a gone pipe", |h, worker| {
        h.wire.gone.insert(A.pipe.to_vec());
        h.control(worker, &Message::Heartbeat { boot: BOOT });
        h.take_lost()
    }),
];

/// Section 6: when A, holding connection 1, dies, however it dies: under
/// worker-loss reassign, a connection that never handed it a message
/// moves to B (CONNECT with REASSIGNED, then its waiting message at
/// `retry`), or is closed with 1013 when B does not serve it; one that
/// did is closed with 1012 "worker lost with messages in flight", each
/// message counted lost. Under worker-loss close it is 1012 "worker lost"
/// (or with messages in flight). An upgrade waiting for A's verdict is
/// AuthLost. Nothing is left waiting, and a later close tells only a
/// worker that holds the connection.
#[test]
fn a_lost_workers_connections_are_moved_or_closed() {
    use Stand::{Idle, Sent, SentAndWaiting, Upgrading, Waiting};
    use WorkerLoss::{Close, Reassign};
    let (chat, news): (Services, Services) = (&["chat"], &["news"]);
    let reconnect = || connect(1, "chat", true);
    #[rustfmt::skip]
    let rows: [(&str, WorkerLoss, Services, Stand, Fate, u64, Replies); 10] = [
        ("never sent: moved",         Reassign, chat, Idle,           Fate::Moved,   0, vec![reconnect()]),
        ("waiting: moved with it",    Reassign, chat, Waiting,        Fate::Moved,   0, vec![reconnect(), carried(1, b"w")]),
        ("sent: 1012",                Reassign, chat, Sent,           IN_FLIGHT,     2, vec![]),
        ("sent and waiting: 1012",    Reassign, chat, SentAndWaiting, IN_FLIGHT,     1, vec![]),
        ("none other serves: 1013",   Reassign, news, Idle,           NO_WORKER,     0, vec![]),
        ("waiting, none other: 1013", Reassign, news, Waiting,        NO_WORKER,     0, vec![]),
        ("close, never sent",         Close,    chat, Idle,           WORKER_LOST,   0, vec![]),
        ("close, waiting",            Close,    chat, Waiting,        WORKER_LOST,   0, vec![]),
        ("close, sent",               Close,    chat, Sent,           IN_FLIGHT,     2, vec![]),
        ("upgrading",                 Reassign, chat, Upgrading,      Fate::AuthLost, 0, vec![]),
    ];
    for ((name, loss, services, stand, fate, lost, told), (death, die)) in rows
        .into_iter()
        .flat_map(|row| DEATHS.map(|death| (row.clone(), death)))
    {
        let mut h = Harness::with(|config| config.worker_loss = loss);
        let worker = h.join(A, &["chat", "auth"]);
        match stand {
            Upgrading => assert_eq!(h.ask_auth(1), Some(worker)),
            _ => assert_eq!(h.open("chat", 1), Some(worker)),
        }
        if matches!(stand, Sent | SentAndWaiting) {
            assert!(h.message(1, b"m"), "{name}");
        }
        if matches!(stand, Sent) {
            assert!(h.message(1, b"m"), "{name}");
        }
        if matches!(stand, Waiting | SentAndWaiting) {
            h.wire.full.insert(A.pipe.to_vec());
            assert!(!h.message(1, b"w"), "{name}");
        }
        let other = h.join(B, services);
        let name = format!("{name}, {death}");
        assert_eq!(die(&mut h, worker), [resolved(1, fate)], "{name}");
        assert_eq!(h.worker(A), None, "{name}");
        assert_eq!(h.node.lost_messages(), lost, "{name}");
        let moved = fate == Fate::Moved;
        assert_eq!(h.holder(1), moved.then_some(other), "{name}");
        let resumed = [1].repeat(usize::from(moved && matches!(stand, Waiting)));
        let waits = h.node.blocked();
        assert_eq!(waits, resumed.len(), "{name}: only a moved message waits");
        assert_eq!(h.retry(), resumed, "{name}");
        assert_eq!(h.node.blocked(), 0, "{name}: nothing waits");
        let heard: Vec<Reply> = h
            .replies(B)
            .into_iter()
            .filter(|reply| !matches!(reply, Reply::Heartbeat { .. }))
            .collect();
        assert_eq!(heard, told, "{name}: B");
        assert_eq!(h.node.sessions().auth_worker(1), None, "{name}");
        h.close(1, (CloseCode::NORMAL, Initiator::Client));
        let disconnected = h
            .replies(B)
            .iter()
            .any(|reply| matches!(reply, Reply::Disconnect { conn: 1, .. }));
        assert_eq!(disconnected, moved, "{name}: B told of the close");
        assert_eq!(h.conns_of(other), [0; 0], "{name}");
        assert!(h.node.sessions().is_empty(), "{name}");
    }
}

/// An author's user and roles.
type Claim = (&'static str, &'static [&'static str]);

/// Section 13 PUBLISH: an authored copy whose client is on another node
/// (`except` not open here) is checked against the author's user and
/// roles; a client open here is judged by its own identity, whatever the
/// author frames claim.
#[test]
fn an_authored_publish_is_checked_on_every_node() {
    let forbidden = |conns: &[u64]| err(ErrorCode::FORBIDDEN, MessageType::Publish, "room", conns);
    #[rustfmt::skip]
    let rows: [(&str, u64, Claim, Ids, Replies); 6] = [
        ("a user granted",                  9, ("alice", &[]),       &[2, 3], vec![]),
        ("a role granted",                  9, ("bob",   &["ops"]),  &[2, 3], vec![]),
        ("neither",                         9, ("bob",   &["dev"]),  &[],     vec![forbidden(&[9])]),
        ("a guest, except 0",               0, ("",      &[]),       &[],     vec![forbidden(&[])]),
        ("the client here may not",         2, ("alice", &["ops"]),  &[],     vec![forbidden(&[2])]),
        ("the client here may, author not", 1, ("bob",   &[]),       &[2, 3], vec![]),
    ];
    for (name, except, (user, roles), received, replies) in rows {
        let mut h = Harness::new();
        h.join(V2, &["chat"]);
        h.edge.open(1, &[("room", SUBSCRIBE), ("room", PUBLISH)]);
        for conn in [2, 3] {
            h.edge.open(conn, &[("room", SUBSCRIBE)]);
        }
        for conn in [2, 3] {
            h.from(V2, &subscribe(conn, "room"));
        }
        for holder in ["alice", "ops"] {
            let grant = (holder.to_owned(), "room".to_owned(), PUBLISH.to_owned());
            h.edge.author_grants.insert(grant);
        }
        let message = Message::Publish(Publish {
            channel: "room",
            except: (except != 0).then_some(except),
            author: Some(Author {
                user,
                roles: List::from(roles),
            }),
            payload: Payload::Binary(b"hi"),
        });
        assert_eq!(h.from(V2, &message), Outcome::Done, "{name}");
        assert_eq!(h.received(b"hi"), received, "{name}");
        assert_eq!(h.replies(V2), replies, "{name}");
    }
}
