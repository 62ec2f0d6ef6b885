//! Worker commands on clients (sections 5 and 7): SEND, PUBLISH, SUBSCRIBE and UNSUBSCRIBE under the ACL, CLOSE.

use super::*;

/// Section 3 SEND: delivered to each open connection listed (any worker's
/// or none's); the others get one NO_SUCH_CONNECTION listing them; over
/// `max_payload`, TOO_BIG and nothing delivered.
#[test]
fn send_delivers_to_open_connections() {
    let no_such = |conns: &[u64]| err(ErrorCode::NO_SUCH_CONNECTION, MessageType::Send, "", conns);
    let too_big = err(ErrorCode::TOO_BIG, MessageType::Send, "", &[]);
    #[rustfmt::skip]
    let rows: [(&str, Ids, Bytes, Ids, Replies); 5] = [
        ("all open",                 &[1, 2],     b"hi",        &[1, 2], vec![]),
        ("some not open",            &[1, 9, 10], b"hi",        &[1],    vec![no_such(&[9, 10])]),
        ("closing is not open",      &[3],        b"hi",        &[],     vec![no_such(&[3])]),
        ("payload at max_payload",   &[1],        b"12345678",  &[1],    vec![]),
        ("payload over max_payload", &[1, 9],     b"123456789", &[],     vec![too_big]),
    ];
    for (name, conns, payload, received, replies) in rows {
        let mut h = Harness::new();
        h.join(A, &["chat"]);
        h.edge.open(1, &[]);
        h.edge.open(2, &[]);
        h.edge.conns.insert(3, TableConn::default());
        assert_eq!(h.from(A, &send(conns, payload)), Outcome::Done, "{name}");
        assert_eq!(h.received(payload), received, "{name}");
        assert_eq!(h.replies(A), replies, "{name}");
    }
}

/// Section 3 PUBLISH: delivered to every subscriber but `except`; an
/// `except` open here publishes on its behalf and needs `publish` (else
/// FORBIDDEN, nothing delivered); `except` 0 or not open: no check.
#[test]
fn publish_reaches_the_subscribers_but_except() {
    let forbidden = err(ErrorCode::FORBIDDEN, MessageType::Publish, "room", &[2]);
    let too_big = err(ErrorCode::TOO_BIG, MessageType::Publish, "", &[]);
    #[rustfmt::skip]
    let rows: [(&str, &str, u64, Bytes, Ids, Replies); 6] = [
        ("except 0",                         "room", 0, b"hi",        &[1, 2, 3], vec![]),
        ("except an author who may publish", "room", 1, b"hi",        &[2, 3],    vec![]),
        ("except an author who may not",     "room", 2, b"hi",        &[],        vec![forbidden]),
        ("except a connection not open",     "room", 9, b"hi",        &[1, 2, 3], vec![]),
        ("a channel nobody is in",           "hall", 0, b"hi",        &[],        vec![]),
        ("payload over max_payload",         "room", 0, b"123456789", &[],        vec![too_big]),
    ];
    for (name, channel, except, payload, received, replies) in rows {
        let mut h = Harness::new();
        h.join(A, &["chat"]);
        h.edge.open(1, &[("room", SUBSCRIBE), ("room", PUBLISH)]);
        for conn in [2, 3] {
            h.edge.open(conn, &[("room", SUBSCRIBE)]);
        }
        for conn in [1, 2, 3] {
            h.from(A, &subscribe(conn, "room"));
        }
        let outcome = h.from(A, &publish(channel, except, payload));
        assert_eq!(outcome, Outcome::Done, "{name}");
        assert_eq!(h.received(payload), received, "{name}");
        assert_eq!(h.replies(A), replies, "{name}");
    }
}

/// Section 3 SUBSCRIBE, UNSUBSCRIBE: the `subscribe` grant is needed
/// (FORBIDDEN), the connection must be open (NO_SUCH_CONNECTION);
/// subscribing twice or unsubscribing when not in is no error.
#[test]
fn subscribe_checks_the_acl_and_unsubscribe_ends_it() {
    let forbidden = err(ErrorCode::FORBIDDEN, MessageType::Subscribe, "room", &[2]);
    let no_such = err(
        ErrorCode::NO_SUCH_CONNECTION,
        MessageType::Subscribe,
        "",
        &[3],
    );
    let (sub, unsub) = (
        |conn| subscribe(conn, "room"),
        |conn| unsubscribe(conn, "room"),
    );
    #[rustfmt::skip]
    let rows: [(&str, Vec<Message>, Ids, Replies); 6] = [
        ("granted",                vec![sub(1)],           &[1], vec![]),
        ("twice",                  vec![sub(1), sub(1)],   &[1], vec![]),
        ("not granted",            vec![sub(2)],           &[],  vec![forbidden]),
        ("not open",               vec![sub(3)],           &[],  vec![no_such]),
        ("then unsubscribed",      vec![sub(1), unsub(1)], &[],  vec![]),
        ("unsubscribed, never in", vec![unsub(1)],         &[],  vec![]),
    ];
    for (name, script, subscribers, replies) in rows {
        let mut h = Harness::new();
        h.join(A, &["chat"]);
        h.edge.open(1, &[("room", SUBSCRIBE)]);
        h.edge.open(2, &[("room", PUBLISH)]);
        for message in &script {
            assert_eq!(h.from(A, message), Outcome::Done, "{name}");
        }
        assert_eq!(h.subscribers("room"), subscribers, "{name}");
        assert_eq!(h.replies(A), replies, "{name}");
    }
}

/// A connection is in at most MAX_CHANNELS_PER_CONN channels: one more is
/// FORBIDDEN like a refused SUBSCRIBE (section 3).
#[test]
fn subscriptions_per_connection_are_capped() {
    // The default cap, and one set in the configuration.
    for cap in [MAX_CHANNELS_PER_CONN, 2] {
        let mut h = Harness::with(|config| config.max_channels_per_conn = cap);
        h.join(A, &["chat"]);
        let channels: Vec<String> = (0..=cap).map(|i| format!("c{i}")).collect();
        let grants: Vec<(&str, &str)> = channels.iter().map(|c| (c.as_str(), SUBSCRIBE)).collect();
        h.edge.open(1, &grants);
        let (allowed, over) = channels.split_at(cap);
        for channel in allowed {
            h.from(A, &subscribe(1, channel));
        }
        assert!(h.replies(A).is_empty());
        h.from(A, &subscribe(1, &over[0]));
        let refused = err(ErrorCode::FORBIDDEN, MessageType::Subscribe, &over[0], &[1]);
        assert_eq!(h.replies(A), [refused]);
        assert!(h.subscribers(&over[0]).is_empty());
        assert_eq!(h.subscribers(&allowed[0]), [1]);
    }
}

/// Section 3 SUBSCRIBE: when an ACL change takes `subscribe` away, the
/// subscription ends and the worker holding the connection (not the one
/// that subscribed it) gets FORBIDDEN about SUBSCRIBE, unasked.
#[test]
fn a_revoked_grant_ends_the_subscription_and_tells_the_holder() {
    let mut h = Harness::new();
    h.join(A, &["admin"]);
    let holder = h.join(B, &["chat"]);
    assert_eq!(h.serve("chat", 1), holder);
    for conn in [1, 2] {
        h.edge.open(conn, &[("room", SUBSCRIBE)]);
        h.from(A, &subscribe(conn, "room"));
    }
    h.edge.conns.get_mut(&1).expect("open").grants.clear();
    h.node.recheck_subscriptions(&mut h.wire, &h.edge, h.t);
    assert_eq!(h.subscribers("room"), [2]);
    let revoked = err(ErrorCode::FORBIDDEN, MessageType::Subscribe, "room", &[1]);
    assert_eq!(h.replies(B), [revoked]);
    assert!(h.replies(A).is_empty());
}

/// Subscriptions end with the connection (section 3 SUBSCRIBE, section
/// 5 DISCONNECT).
#[test]
fn close_ends_its_subscriptions() {
    let mut h = Harness::new();
    h.join(A, &["chat"]);
    for conn in [1, 2] {
        h.serve("chat", conn);
        h.edge
            .open(conn, &[("room", SUBSCRIBE), ("hall", SUBSCRIBE)]);
        h.from(A, &subscribe(conn, "room"));
        h.from(A, &subscribe(conn, "hall"));
    }
    h.close(1, (CloseCode::NORMAL, Initiator::Client));
    assert_eq!(h.subscribers("room"), [2]);
    assert_eq!(h.subscribers("hall"), [2]);
}

/// Section 3 CLOSE: an open connection is the caller's to close with the
/// code and reason; one not open gets NO_SUCH_CONNECTION.
#[test]
fn close_an_open_connection() {
    let reason = "done".to_owned();
    let closing = Outcome::Close {
        conn: 1,
        code: 4000,
        reason,
    };
    let no_such = err(ErrorCode::NO_SUCH_CONNECTION, MessageType::Close, "", &[9]);
    let rows = [
        ("open", 1, closing, vec![]),
        ("not open", 9, Outcome::Done, vec![no_such]),
    ];
    for (name, conn, outcome, replies) in rows {
        let mut h = Harness::new();
        h.join(A, &["chat"]);
        h.edge.open(1, &[]);
        let code = CloseCode(4000);
        let close = Message::Close(Close {
            conn,
            code,
            reason: "done",
        });
        assert_eq!(h.from(A, &close), outcome, "{name}");
        assert_eq!(h.replies(A), replies, "{name}");
    }
}
