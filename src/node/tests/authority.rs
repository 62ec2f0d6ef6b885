//! Who may say what (sections 8 to 10): AUTH_REPLY from the worker asked, admin-only ACL commands, rate-limited errors, unverifiable or misdirected messages.

use super::*;

/// Section 3 AUTH, AUTH_REPLY: the AUTH goes to a worker of the `auth`
/// service; only that worker's reply counts, once: it ends the wait and
/// releases the worker. From another worker, for no pending request or a
/// second time it is dropped and counted.
#[test]
fn auth_reply_counts_only_from_the_worker_asked() {
    #[rustfmt::skip]
    let rows: [(&str, AuthReplies, Counts); 5] = [
        ("from the worker asked",        &[(A, 5)],         &[true]),
        ("a second time",                &[(A, 5), (A, 5)], &[true, false]),
        ("from another worker",          &[(B, 5)],         &[false]),
        ("from another, then the asked", &[(B, 5), (A, 5)], &[false, true]),
        ("for no pending request",       &[(A, 6)],         &[false]),
    ];
    for (name, script, counted) in rows {
        let mut h = Harness::new();
        let asked = h.join(A, &["auth"]);
        assert_eq!(h.ask_auth(5), Some(asked), "{name}");
        h.join(B, &["auth"]);
        assert_eq!(h.replies(A), [Reply::Auth { request: 5 }], "{name}");
        assert_eq!(h.conns_of(asked), [5], "{name}: counted as its");
        for (&(from, request), &counts) in script.iter().zip(counted) {
            let dropped = h.node.dropped();
            let roles = List::from(&[][..]);
            let reply = AuthReply {
                request,
                allow: true,
                user: "alice",
                roles,
            };
            let expected = match counts {
                true => Outcome::AuthReply {
                    conn: 5,
                    worker: asked,
                    user: "alice".to_owned(),
                },
                false => Outcome::Done,
            };
            assert_eq!(h.from(from, &Message::AuthReply(reply)), expected, "{name}");
            assert_eq!(h.node.dropped() - dropped, u64::from(!counts), "{name}");
            assert!(h.replies(from).is_empty(), "{name}: never answered");
        }
        let done = counted.contains(&true);
        let waits = h.node.sessions().auth_worker(5);
        assert_eq!(waits, (!done).then_some(asked), "{name}");
        let held: &[u64] = if done { &[] } else { &[5] };
        assert_eq!(h.conns_of(asked), held, "{name}: released");
    }
}

/// Section 3 ACL_COMMAND, section 9 "Admin keys": the caller gets the
/// command, admin only when signed with a key of `admin_keys`.
#[test]
fn acl_command_is_admin_only_with_an_admin_key() {
    #[rustfmt::skip]
    let rows: [(&str, NewNode, Bytes, bool); 3] = [
        ("unsigned: nobody is admin", Harness::new,    WORKER_KEYS, false),
        ("signed with another key",   Harness::signed, WORKER_KEYS, false),
        ("signed with an admin key",  Harness::signed, ADMIN_KEYS,  true),
    ];
    for (name, node, keys, admin) in rows {
        let mut h = node();
        h.use_keys(A, keys);
        let worker = h.join(A, &["admin"]);
        let expected = Outcome::AclCommand {
            worker,
            request: 5,
            admin,
        };
        assert_eq!(h.from(A, &explain(5)), expected, "{name}");
    }
}

/// Section 10: UNSUPPORTED_VERSION (detail "1 2 3", signed for recipient 0),
/// MALFORMED (registered workers only) and UNKNOWN_PEER (signed for the
/// sender, even for a previous boot while fresh) are sent at most once per
/// peer and code per heartbeat interval.
#[test]
fn errors_are_answered_at_most_once_per_interval() {
    let unsupported = err(
        ErrorCode::UNSUPPORTED_VERSION,
        MessageType::Heartbeat,
        "1 2 3",
        &[],
    );
    let why = "fixed-size frame of the wrong length";
    let malformed = err(ErrorCode::MALFORMED, MessageType::Heartbeat, why, &[]);
    let unknown = err(ErrorCode::UNKNOWN_PEER, MessageType::Send, "", &[]);
    let unsigned = |reply: &Reply| Some((reply.clone(), None));
    let signed_for = |reply: &Reply, to| Some((reply.clone(), Some(to)));
    #[rustfmt::skip]
    let rows: [(&str, NewNode, bool, Build, Answer); 8] = [
        ("version 4, unregistered",   Harness::new,    false, |_| versioned(4),      unsigned(&unsupported)),
        ("version 0, registered",     Harness::new,    true,  |_| versioned(0),      unsigned(&unsupported)),
        ("undecodable, registered",   Harness::new,    true,  |_| short_heartbeat(), unsigned(&malformed)),
        ("undecodable, unregistered", Harness::new,    false, |_| short_heartbeat(), None),
        ("a command, unregistered",   Harness::new,    false, |h| h.frames(A, &hi()), unsigned(&unknown)),
        ("signed: version 4",         Harness::signed, false, |_| versioned(4),      signed_for(&unsupported, 0)),
        ("signed: a command, unregistered", Harness::signed, false,
            |h| h.frames(A, &hi()), signed_for(&unknown, A.instance)),
        ("signed: for a previous boot", Harness::signed, false,
            |h| h.sign(A, OLD_BOOT, 0, &hi()), signed_for(&unknown, A.instance)),
    ];
    for (name, node, registered, build, answer) in rows {
        let mut h = node();
        if registered {
            h.join(A, &["chat"]);
        }
        for (wait_ms, answered) in [(0, true), (999, false), (1, true)] {
            h.advance(ms(wait_ms));
            let frames = build(&mut h);
            assert_eq!(h.raw(A.pipe, &frames), Outcome::Done, "{name}");
            let expected: Vec<_> = answer.iter().filter(|_| answered).cloned().collect();
            assert_eq!(
                h.addressed_replies(A),
                expected,
                "{name} after {wait_ms} ms"
            );
        }
    }
}

/// Sections 2, 9 and 10: a type only a node sends, a signed message on an
/// unsigned node, and on a signed node anything unsigned, with a bad MAC,
/// an unknown key, a stale timestamp (or for a previous boot and stale)
/// is dropped: counted, not carried out, not answered.
#[test]
fn unverifiable_or_misdirected_messages_are_dropped_unanswered() {
    #[rustfmt::skip]
    let rows: [(&str, NewNode, Build); 7] = [
        ("WELCOME from a worker",       Harness::new,    |_| unsigned(VERSION, &node_welcome())),
        ("signed, to an unsigned node", Harness::new,    |h| h.sign(A, BOOT, 0, &hi())),
        ("unsigned, to a signed node",  Harness::signed, |_| unsigned(VERSION, &hi())),
        ("a bad MAC",                   Harness::signed, |h| forged(h.frames(A, &hi()))),
        ("an unknown key",              Harness::signed, |h| {
            h.use_keys(A, STRANGER_KEYS);
            h.frames(A, &hi())
        }),
        ("stale",                       Harness::signed, |h| h.sign(A, BOOT, SKEW_MS + 1, &hi())),
        ("for a previous boot, stale",  Harness::signed, |h| h.sign(A, OLD_BOOT, SKEW_MS + 1, &hi())),
    ];
    for (name, node, build) in rows {
        let mut h = node();
        h.join(A, &["chat"]);
        h.edge.open(1, &[]);
        let dropped = h.node.dropped();
        let frames = build(&mut h);
        assert_eq!(h.raw(A.pipe, &frames), Outcome::Done, "{name}");
        assert_eq!(h.node.dropped(), dropped + 1, "{name}: counted");
        assert!(h.received(b"hi").is_empty(), "{name}: not carried out");
        assert!(h.replies(A).is_empty(), "{name}: not answered");
    }
}

/// A WELCOME, which only a node may send.
fn node_welcome() -> Message<'static> {
    Message::Welcome(Welcome {
        boot: 1,
        heartbeat_ms: 1000,
        liveness: LIVENESS,
        max_payload: MAX_PAYLOAD,
        node: "node-0",
        reactors: Reactors::ALONE,
    })
}

/// `frames` with one bit of the MAC flipped.
fn forged(mut frames: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let signature = frames.last_mut().expect("signed");
    *signature.last_mut().expect("a MAC") ^= 1;
    frames
}
