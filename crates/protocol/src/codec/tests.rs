use super::*;
use crate::message::{
    AclCommand, AclOp, AclResult, AclStatus, Auth, AuthReply, Author, Close, Connect, Data,
    Disconnect, ErrorCode, ErrorReply, Field, HttpHeader, Initiator, List, Publish, Reactors,
    Ready, SendTo, Subscription, Welcome, FLAG_SIGNED, MAX_ACL_NAMES, MAX_CONN_IDS, MAX_HEADERS,
    MAX_ROLES, MAX_SERVICES, PUBLISH_AUTHORED, VERSION_2, VERSION_3,
};

const SERVICES: &[&str] = &["chat", "rooms.v2"];
const ROLES: &[&str] = &["admin", "user"];
const HEADERS: &[HttpHeader<'static>] = &[
    ("origin", b"https://example.com"),
    ("cookie", b"sid=\xff\x00"),
    ("x-empty", b""),
];
const IDS: &[u64] = &[1, 2, u64::MAX];

fn connect() -> Connect<'static> {
    Connect {
        conn: 42,
        reassigned: false,
        service: "chat",
        node: "node-a",
        peer: "203.0.113.7:51234",
        path: "/chat/lobby",
        query: "v=2&x=%20",
        subprotocol: "chat.v1",
        user: "alice",
        roles: List::from(ROLES),
        headers: List::from(HEADERS),
    }
}

/// At least one of every type, and the edge of every optional field.
fn samples() -> Vec<Message<'static>> {
    vec![
        Message::Heartbeat { boot: 0 },
        Message::Heartbeat { boot: u64::MAX },
        Message::Bye,
        Message::Ready(Ready {
            instance: 0x0123_4567_89ab_cdef,
            name: "worker-1@host",
            services: List::from(SERVICES),
        }),
        Message::Welcome(Welcome {
            boot: 7,
            heartbeat_ms: 1000,
            liveness: 3,
            max_payload: 16 << 20,
            node: "node-a",
            reactors: Reactors::ALONE,
        }),
        Message::Error(ErrorReply {
            code: ErrorCode::NO_SUCH_CONNECTION,
            about: MessageType::Send as u8,
            detail: "not open here",
            conns: List::from(IDS),
        }),
        Message::Error(ErrorReply {
            code: ErrorCode(999),
            about: 0,
            detail: "",
            conns: List::from(&[][..]),
        }),
        Message::Connect(connect()),
        Message::Connect(Connect {
            reassigned: true,
            peer: "",
            query: "",
            subprotocol: "",
            user: "",
            roles: List::from(&[][..]),
            headers: List::from(&[][..]),
            ..connect()
        }),
        Message::Message(Data {
            conn: 1,
            payload: Payload::Text("h\u{e9}llo"),
        }),
        Message::Message(Data {
            conn: u64::MAX,
            payload: Payload::Binary(b"\x00\xff"),
        }),
        Message::Message(Data {
            conn: 3,
            payload: Payload::Text(""),
        }),
        Message::Disconnect(Disconnect {
            conn: 42,
            code: CloseCode::NORMAL,
            initiator: Initiator::Client,
            reason: "bye",
        }),
        Message::Disconnect(Disconnect {
            conn: 42,
            code: CloseCode::ABNORMAL,
            initiator: Initiator::Node,
            reason: "",
        }),
        Message::Disconnect(Disconnect {
            conn: 42,
            code: CloseCode::NO_STATUS,
            initiator: Initiator::Worker,
            reason: "",
        }),
        Message::Send(SendTo {
            conns: List::from(IDS),
            payload: Payload::Binary(b"blob"),
        }),
        Message::Send(SendTo {
            conns: List::from(&[9][..]),
            payload: Payload::Text("hi"),
        }),
        Message::Publish(Publish {
            channel: "rooms/lobby",
            except: Some(42),
            author: None,
            payload: Payload::Text("hi all"),
        }),
        Message::Publish(Publish {
            channel: "t",
            except: None,
            author: None,
            payload: Payload::Binary(b""),
        }),
        Message::Subscribe(Subscription {
            conn: 42,
            channel: "rooms/lobby",
        }),
        Message::Unsubscribe(Subscription {
            conn: 42,
            channel: "rooms/lobby",
        }),
        Message::Close(Close {
            conn: 42,
            code: CloseCode::TRY_AGAIN_LATER,
            reason: "overloaded",
        }),
        Message::Close(Close {
            conn: 42,
            code: CloseCode(4000),
            reason: "",
        }),
        acl_allow(),
        Message::AclCommand(AclCommand {
            request: u64::MAX,
            op: AclOp::RemoveRoleParents,
            args: [
                List::from(&ROLES[..1]),
                List::from(&[][..]),
                List::from(&[][..]),
            ],
        }),
        Message::AclResult(AclResult {
            request: 7,
            status: AclStatus::Ok,
            decision: Some(true),
            detail: "",
            explanation: "user alice\nallowed",
        }),
        Message::AclResult(AclResult {
            request: 8,
            status: AclStatus::NotPersisted,
            decision: None,
            detail: "acl.conf: read-only file system",
            explanation: "",
        }),
        Message::AclResult(AclResult {
            request: 9,
            status: AclStatus::Refused,
            decision: Some(false),
            detail: "",
            explanation: "",
        }),
        auth(),
        Message::Auth(Auth {
            request: u64::MAX,
            peer: "",
            path: "/",
            query: "",
            headers: List::from(&[][..]),
        }),
        auth_reply(),
        Message::AuthReply(AuthReply {
            request: u64::MAX,
            allow: false,
            user: "",
            roles: List::from(&[][..]),
        }),
    ]
}

fn auth() -> Message<'static> {
    Message::Auth(Auth {
        request: 42,
        peer: "203.0.113.7:51234",
        path: "/chat",
        query: "v=2",
        headers: List::from(HEADERS),
    })
}

fn auth_reply_fields() -> AuthReply<'static> {
    AuthReply {
        request: 42,
        allow: true,
        user: "alice",
        roles: List::from(ROLES),
    }
}

fn auth_reply() -> Message<'static> {
    Message::AuthReply(auth_reply_fields())
}

/// ALLOW [admin, user] [chat/*] [publish, subscribe], request 5.
fn acl_allow() -> Message<'static> {
    const RESOURCES: &[&str] = &["chat/*"];
    const PERMISSIONS: &[&str] = &["publish", "subscribe"];
    Message::AclCommand(AclCommand {
        request: 5,
        op: AclOp::Allow,
        args: [
            List::from(ROLES),
            List::from(RESOURCES),
            List::from(PERMISSIONS),
        ],
    })
}

fn acl_result() -> Message<'static> {
    Message::AclResult(AclResult {
        request: 1,
        status: AclStatus::Ok,
        decision: None,
        detail: "",
        explanation: "",
    })
}

/// The frames `encode` writes for `message`.
fn encoded(message: &Message<'_>) -> Vec<Vec<u8>> {
    let mut out = Frames::new();
    encode(message, &mut out).expect("encodable");
    out.iter().map(<[u8]>::to_vec).collect()
}

fn decode_owned(frames: &[Vec<u8>]) -> Result<String, DecodeError> {
    let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    decode(&refs).map(|message| format!("{message:?}"))
}

#[test]
fn every_sample_round_trips() {
    let mut out = Frames::new();
    let mut types = std::collections::HashSet::new();
    for message in samples() {
        types.insert(message.message_type());
        encode(&message, &mut out).expect("encodable");
        let frames: Vec<&[u8]> = out.iter().collect();
        assert_eq!(decode(&frames), Ok(message));
        // Re-encoding the borrowed (wire-form) value gives the same bytes.
        let decoded = decode(&frames).expect("decodes");
        let again = encoded(&decoded);
        assert_eq!(again, frames, "{message:?}");
    }
    assert_eq!(types.len(), 17, "every message type is sampled");
}

/// Version 2: every v1 sample (PUBLISH with or without an author),
/// MESSAGES and SENDS round-trip; v1 refuses what it cannot carry.
#[test]
fn version_2_round_trips_and_v1_refuses_its_additions() {
    let mut batch = crate::batch::BatchBuilder::default();
    batch.push(7, Payload::Text("hi"));
    let roles = ["admin", "ops"];
    let authored = Message::Publish(Publish {
        channel: "rooms/lobby",
        except: None,
        author: Some(Author {
            user: "alice",
            roles: List::from(&roles[..]),
        }),
        payload: Payload::Text("hi all"),
    });
    let guest = Message::Publish(Publish {
        channel: "t",
        except: Some(3),
        author: Some(Author {
            user: "",
            roles: List::from(&[][..]),
        }),
        payload: Payload::Binary(b""),
    });
    let v2_only = [
        Message::Messages(batch.batch()),
        Message::Sends(batch.batch()),
        authored,
        guest,
    ];
    let mut out = Frames::new();
    for message in samples().into_iter().chain(v2_only) {
        encode_in(VERSION_2, &message, &mut out).expect("encodable in v2");
        let frames: Vec<&[u8]> = out.iter().collect();
        assert_eq!(frames[0][0], VERSION_2);
        assert_eq!(decode(&frames), Ok(message), "{message:?}");
    }
    for message in v2_only {
        assert!(
            encode_in(VERSION, &message, &mut out).is_err(),
            "{message:?}"
        );
    }
    encode_in(VERSION_2, &authored, &mut out).expect("encodable");
    let frames: Vec<Vec<u8>> = out.iter().map(<[u8]>::to_vec).collect();
    assert_eq!(frames[1][9..], [PUBLISH_AUTHORED, 2], "flags and roles");
    assert_eq!(frames.len(), 1 + 3 + 1 + 2);
    let bad = |edit: fn(&mut Vec<Vec<u8>>)| {
        let mut frames = frames.clone();
        edit(&mut frames);
        decode_owned(&frames)
    };
    assert_eq!(bad(|f| f[1][9] = 2), Err(DecodeError::UnknownFlags(2)));
    assert_eq!(
        bad(|f| f[1][10] = 33),
        Err(DecodeError::Length(Field::Roles))
    );
    assert_eq!(bad(|f| f[1][10] = 3), Err(DecodeError::FrameCount));
    assert_eq!(
        bad(|f| f[1][9] = 0),
        Err(DecodeError::FrameCount),
        "roles without the flag"
    );
}

/// Version 3 (section 14): every v1 and v2 message round-trips with
/// version byte 3 and v2's body; WELCOME carries the reactors, which
/// v1 and v2 leave out; the document's example.
#[test]
fn version_3_is_version_2_with_the_reactors_in_welcome() {
    let mut batch = crate::batch::BatchBuilder::default();
    batch.push(7, Payload::Text("hi"));
    let mut out = Frames::new();
    for message in samples().into_iter().chain([Message::Sends(batch.batch())]) {
        encode_in(VERSION_2, &message, &mut out).expect("encodable in v2");
        let v2: Vec<Vec<u8>> = out.iter().map(<[u8]>::to_vec).collect();
        encode_in(VERSION_3, &message, &mut out).expect("encodable in v3");
        let frames: Vec<&[u8]> = out.iter().collect();
        assert_eq!(frames[0], [VERSION_3, v2[0][1], v2[0][2]]);
        if !matches!(message, Message::Welcome(_)) {
            assert_eq!(frames[1..], v2[1..], "v2's body: {message:?}");
        }
        assert_eq!(decode(&frames), Ok(message), "{message:?}");
    }
    let second = Welcome {
        boot: 1,
        heartbeat_ms: 1000,
        liveness: 3,
        max_payload: 65536,
        node: "node.1",
        reactors: Reactors { index: 1, count: 2 },
    };
    let welcome = Message::Welcome(second);
    encode_in(VERSION_3, &welcome, &mut out).expect("encodable");
    let frames: Vec<&[u8]> = out.iter().collect();
    let meta = b"\0\0\0\0\0\0\0\x01\0\0\x03\xe8\0\x01\0\0\x03\0\x01\0\x02";
    assert_eq!(frames, [&[3, 0x11, 0][..], meta, b"node.1"]);
    assert_eq!(decode(&frames), Ok(welcome));
    for version in [VERSION, VERSION_2] {
        encode_in(version, &welcome, &mut out).expect("encodable");
        let frames: Vec<&[u8]> = out.iter().collect();
        assert_eq!(frames[1].len(), 17, "v{version} cannot say it");
        let Ok(Message::Welcome(decoded)) = decode(&frames) else {
            panic!("v{version} WELCOME decodes");
        };
        assert_eq!(decoded.reactors, Reactors::ALONE);
    }
    let nowhere = Message::Welcome(Welcome {
        reactors: Reactors { index: 2, count: 2 },
        ..second
    });
    let refused = encode_in(VERSION_3, &nowhere, &mut out);
    assert_eq!(
        refused,
        Err(DecodeError::InvalidReactor(Reactors { index: 2, count: 2 }))
    );
}

#[test]
fn layouts_match_the_protocol_document() {
    let hex = |frames: Vec<Vec<u8>>| -> Vec<String> {
        frames
            .iter()
            .map(|frame| frame.iter().map(|byte| format!("{byte:02x}")).collect())
            .collect()
    };
    assert_eq!(
        hex(encoded(&Message::Heartbeat { boot: 0x1122 })),
        ["010100", "0000000000001122"]
    );
    assert_eq!(hex(encoded(&Message::Bye)), ["010200"]);
    assert_eq!(
        hex(encoded(&Message::Message(Data {
            conn: 7,
            payload: Payload::Text("hi"),
        }))),
        ["012100", "000000000000000701", "6869"]
    );
    assert_eq!(
        hex(encoded(&Message::Send(SendTo {
            conns: List::from(&[7, 8][..]),
            payload: Payload::Binary(b"\x01"),
        }))),
        ["013000", "02", "00000000000000070000000000000008", "01"]
    );
    assert_eq!(
        hex(encoded(&Message::Welcome(Welcome {
            boot: 1,
            heartbeat_ms: 1000,
            liveness: 3,
            max_payload: 65536,
            node: "n",
            reactors: Reactors::ALONE,
        }))),
        ["011100", "0000000000000001000003e80001000003", "6e"]
    );
    let connect = encoded(&Message::Connect(connect()));
    assert_eq!(connect.len(), 9 + ROLES.len() + 2 * HEADERS.len());
    assert_eq!(hex(connect)[1], "000000000000002a000203");
    assert_eq!(
        hex(encoded(&acl_allow())),
        [
            "014000",
            "000000000000000501020102",
            "61646d696e",
            "75736572",
            "636861742f2a",
            "7075626c697368",
            "737562736372696265"
        ]
    );
    assert_eq!(
        hex(encoded(&Message::AclResult(AclResult {
            request: 5,
            status: AclStatus::Ok,
            decision: Some(false),
            detail: "",
            explanation: "no",
        }))),
        ["014100", "00000000000000050002", "", "6e6f"]
    );
    let origin: &[HttpHeader] = &[("origin", b"o")];
    assert_eq!(
        hex(encoded(&Message::Auth(Auth {
            request: 7,
            peer: "p",
            path: "/a",
            query: "",
            headers: List::from(origin),
        }))),
        [
            "012300",
            "000000000000000701",
            "70",
            "2f61",
            "",
            "6f726967696e",
            "6f"
        ]
    );
    assert_eq!(
        hex(encoded(&Message::AuthReply(AuthReply {
            request: 7,
            allow: true,
            user: "u",
            roles: List::from(&ROLES[..1]),
        }))),
        ["013500", "00000000000000070101", "75", "61646d696e"]
    );
}

#[test]
fn every_acl_op_round_trips_at_its_widest() {
    let names: Vec<&str> = (0..MAX_ACL_NAMES).map(|_| "n").collect();
    let long = "x".repeat(256);
    for byte in 1..=9 {
        let op = AclOp::from_u8(byte).expect("op");
        let lists = op.arity().map(|(_, max)| {
            let list: &[&str] = if max == 1 {
                &[long.as_str()][..]
            } else {
                &names[..max]
            };
            list.to_vec()
        });
        let message = Message::AclCommand(AclCommand {
            request: 1,
            op,
            args: [0, 1, 2].map(|i| List::from(&lists[i][..])),
        });
        let frames = encoded(&message);
        assert!(frames.len() < MAX_FRAMES);
        assert_eq!(decode_owned(&frames), Ok(format!("{message:?}")), "{op:?}");
    }
}

#[test]
fn caps_are_inclusive() {
    let services: Vec<&str> = (0..MAX_SERVICES).map(|_| "s").collect();
    let roles: Vec<&str> = (0..MAX_ROLES).map(|_| "r").collect();
    let headers: Vec<HttpHeader> = (0..MAX_HEADERS).map(|_| ("h", &b"v"[..])).collect();
    let ids: Vec<u64> = (1..=MAX_CONN_IDS as u64).collect();
    let long_path = "/".repeat(8192);
    let reason = "r".repeat(123);
    let big = [
        Message::Ready(Ready {
            instance: 1,
            name: &"n".repeat(64),
            services: List::from(&services[..]),
        }),
        Message::Connect(Connect {
            path: &long_path,
            roles: List::from(&roles[..]),
            headers: List::from(&headers[..]),
            ..connect()
        }),
        Message::Send(SendTo {
            conns: List::from(&ids[..]),
            payload: Payload::Binary(b""),
        }),
        Message::Close(Close {
            conn: 1,
            code: CloseCode::NORMAL,
            reason: &reason,
        }),
        Message::Auth(Auth {
            request: 1,
            peer: &"p".repeat(64),
            path: &long_path,
            query: &long_path,
            headers: List::from(&headers[..]),
        }),
        Message::AuthReply(AuthReply {
            request: 1,
            allow: true,
            user: &"u".repeat(256),
            roles: List::from(&roles[..]),
        }),
    ];
    for message in big {
        let frames = encoded(&message);
        assert!(frames.len() <= MAX_FRAMES);
        assert_eq!(decode_owned(&frames), Ok(format!("{message:?}")));
    }
}

/// `sample`'s frames with frame `index` replaced by `edit` of it.
fn edit(sample: &Message<'_>, index: usize, change: impl FnOnce(&mut Vec<u8>)) -> Vec<Vec<u8>> {
    let mut frames = encoded(sample);
    change(&mut frames[index]);
    frames
}

/// `sample`'s frames with `extra` appended (or, for `None`, the last one
/// removed).
fn resize(sample: &Message<'_>, extra: Option<&[u8]>) -> Vec<Vec<u8>> {
    let mut frames = encoded(sample);
    match extra {
        Some(frame) => frames.push(frame.to_vec()),
        None => drop(frames.pop()),
    }
    frames
}

fn heartbeat() -> Message<'static> {
    Message::Heartbeat { boot: 5 }
}

fn text(conn: u64) -> Message<'static> {
    Message::Message(Data {
        conn,
        payload: Payload::Text("hi"),
    })
}

fn ready() -> Message<'static> {
    Message::Ready(Ready {
        instance: 1,
        name: "w",
        services: List::from(SERVICES),
    })
}

fn send() -> Message<'static> {
    Message::Send(SendTo {
        conns: List::from(IDS),
        payload: Payload::Binary(b"x"),
    })
}

fn disconnect() -> Message<'static> {
    Message::Disconnect(Disconnect {
        conn: 1,
        code: CloseCode::NORMAL,
        initiator: Initiator::Client,
        reason: "",
    })
}

fn close() -> Message<'static> {
    Message::Close(Close {
        conn: 1,
        code: CloseCode::NORMAL,
        reason: "",
    })
}

fn publish() -> Message<'static> {
    Message::Publish(Publish {
        channel: "c",
        except: None,
        author: None,
        payload: Payload::Text("x"),
    })
}

fn connect_message() -> Message<'static> {
    Message::Connect(connect())
}

/// Byte offsets in CONNECT's meta frame.
const CONNECT_FLAGS: usize = 8;
const CONNECT_ROLES: usize = 9;
const CONNECT_HEADERS: usize = 10;
/// Frame indexes in CONNECT: header, meta, service, node, peer, path,
/// query, subprotocol, user, roles..., headers...
const PATH: usize = 5;
const FIRST_ROLE: usize = 9;
const FIRST_HEADER: usize = FIRST_ROLE + ROLES.len();

/// One test per row: `name: frames => error;`.
macro_rules! rejects {
    ($($name:ident: $frames:expr => $expected:expr;)*) => {$(
        #[test]
        fn $name() {
            let frames: Vec<Vec<u8>> = $frames;
            assert_eq!(decode_owned(&frames), Err($expected));
        }
    )*};
}

use DecodeError::*;

rejects! {
    auth_request_0: edit(&auth(), 1, |m| m[..8].fill(0)) => ZeroConnId;
    auth_meta_short: edit(&auth(), 1, |m| m.truncate(8)) => FrameLength;
    auth_header_count_above_frames: edit(&auth(), 1, |m| m[8] = 4) => FrameCount;
    auth_header_count_over_cap: edit(&auth(), 1, |m| m[8] = 33) => Length(Field::Headers);
    auth_without_query: resize(&auth(), None) => FrameCount;
    auth_empty_path: edit(&auth(), 3, Vec::clear) => Length(Field::Path);
    auth_peer_too_long: edit(&auth(), 2, |p| p.resize(65, b'p')) => Length(Field::Peer);
    auth_header_name_uppercase: edit(&auth(), 5, |n| n[0] = b'O') => InvalidName(Field::HeaderName);
    auth_header_value_too_long: edit(&auth(), 6, |v| v.resize(8193, b'v')) => Length(Field::HeaderValue);
    auth_reply_verdict_2: edit(&auth_reply(), 1, |m| m[8] = 2) => InvalidStatus(2);
    auth_reply_request_0: edit(&auth_reply(), 1, |m| m[..8].fill(0)) => ZeroConnId;
    auth_reply_role_count_over_cap: edit(&auth_reply(), 1, |m| m[9] = 33) => Length(Field::Roles);
    auth_reply_role_count_below_frames: edit(&auth_reply(), 1, |m| m[9] = 1) => FrameCount;
    auth_reply_extra_frame: resize(&auth_reply(), Some(b"r")) => FrameCount;
    auth_reply_empty_role: edit(&auth_reply(), 3, Vec::clear) => Length(Field::Role);
    auth_reply_user_too_long: edit(&auth_reply(), 2, |u| u.resize(257, b'u')) => Length(Field::User);
    auth_reply_user_not_utf8: edit(&auth_reply(), 2, |u| u[0] = 0xff) => InvalidUtf8(Field::User);
    no_frames: vec![] => Header;
    header_too_short: vec![vec![1, 1]] => Header;
    header_too_long: vec![vec![1, 1, 0, 0], vec![0; 8]] => Header;
    empty_header: vec![vec![]] => Header;
    version_0: edit(&heartbeat(), 0, |h| h[0] = 0) => UnknownVersion(0);
    version_4_any_header_length: vec![vec![4]] => UnknownVersion(4);
    version_3_welcome_short: vec![vec![3, 0x11, 0], vec![0; 17], b"n".to_vec()] => FrameLength;
    version_3_welcome_no_reactors: vec![vec![3, 0x11, 0], [vec![0; 17], vec![0, 0, 0, 0]].concat(), b"n".to_vec()] => InvalidReactor(Reactors { index: 0, count: 0 });
    version_3_welcome_reactor_past_count: vec![vec![3, 0x11, 0], [vec![0; 17], vec![0, 2, 0, 2]].concat(), b"n".to_vec()] => InvalidReactor(Reactors { index: 2, count: 2 });
    version_2_header_too_short: vec![vec![2, 0x24]] => Header;
    version_1_has_no_batches: vec![vec![1, 0x24, 0], vec![0; 14]] => UnknownType(0x24);
    unknown_type: edit(&heartbeat(), 0, |h| h[1] = 0x03) => UnknownType(0x03);
    acl_admin_reserved: edit(&heartbeat(), 0, |h| h[1] = 0x42) => UnknownType(0x42);
    acl_command_op_0: edit(&acl_allow(), 1, |m| m[8] = 0) => InvalidOp(0);
    acl_command_op_10: edit(&acl_allow(), 1, |m| m[8] = 10) => InvalidOp(10);
    acl_command_count_above_frames: edit(&acl_allow(), 1, |m| m[11] = 3) => FrameCount;
    acl_command_count_below_frames: edit(&acl_allow(), 1, |m| m[11] = 1) => FrameCount;
    acl_command_empty_list: edit(&acl_allow(), 1, |m| m[10] = 0) => Length(Field::AclArgs);
    acl_command_over_cap: edit(&acl_allow(), 1, |m| m[9] = MAX_ACL_NAMES as u8 + 1) => Length(Field::AclArgs);
    acl_command_arity: edit(&acl_allow(), 1, |m| m[8] = AclOp::Explain as u8) => Length(Field::AclArgs);
    acl_command_meta_short: edit(&acl_allow(), 1, |m| { m.pop(); }) => FrameLength;
    acl_command_empty_name: edit(&acl_allow(), 2, Vec::clear) => Length(Field::AclName);
    acl_command_name_too_long: edit(&acl_allow(), 2, |n| n.resize(257, b'n')) => Length(Field::AclName);
    acl_command_name_not_utf8: edit(&acl_allow(), 4, |n| n.push(0xff)) => InvalidUtf8(Field::AclName);
    acl_result_status_3: edit(&acl_result(), 1, |m| m[8] = 3) => InvalidStatus(3);
    acl_result_decision_3: edit(&acl_result(), 1, |m| m[9] = 3) => InvalidStatus(3);
    acl_result_meta_long: edit(&acl_result(), 1, |m| m.push(0)) => FrameLength;
    acl_result_explanation_too_long: edit(&acl_result(), 3, |e| e.resize(16385, b'e')) => Length(Field::Explanation);
    acl_result_without_explanation: resize(&acl_result(), None) => FrameCount;
    unknown_header_flag: edit(&heartbeat(), 0, |h| h[2] = 0x02) => UnknownFlags(0x02);
    too_many_frames: vec![vec![1, 2, 0]; MAX_FRAMES + 1] => FrameCount;
    heartbeat_without_body: resize(&heartbeat(), None) => FrameCount;
    heartbeat_extra_frame: resize(&heartbeat(), Some(b"")) => FrameCount;
    heartbeat_meta_short: edit(&heartbeat(), 1, |m| { m.pop(); }) => FrameLength;
    heartbeat_meta_long: edit(&heartbeat(), 1, |m| m.push(0)) => FrameLength;
    bye_with_body: resize(&Message::Bye, Some(b"")) => FrameCount;
    signed_flag_without_signature_frame: vec![vec![1, 2, FLAG_SIGNED]] => FrameCount;
    signed_flag_takes_the_last_frame: edit(&heartbeat(), 0, |h| h[2] = FLAG_SIGNED) => FrameCount;
    ready_without_services: resize(&Message::Ready(Ready { instance: 1, name: "w", services: List::from(&SERVICES[..1]) }), None) => Length(Field::Services);
    ready_over_cap: (0..=MAX_SERVICES).fold(encoded(&ready()), |mut f, _| { f.push(b"s".to_vec()); f }) => Length(Field::Services);
    ready_service_with_slash: edit(&ready(), 3, |s| s.push(b'/')) => InvalidName(Field::Service);
    ready_service_too_long: edit(&ready(), 3, |s| s.resize(65, b'a')) => Length(Field::Service);
    ready_empty_service: edit(&ready(), 3, Vec::clear) => Length(Field::Service);
    ready_empty_name: edit(&ready(), 2, Vec::clear) => Length(Field::WorkerName);
    ready_name_not_utf8: edit(&ready(), 2, |n| *n = b"\xc3".to_vec()) => InvalidUtf8(Field::WorkerName);
    ready_meta_short: edit(&ready(), 1, |m| { m.pop(); }) => FrameLength;
    welcome_meta_short: edit(&Message::Welcome(Welcome { boot: 1, heartbeat_ms: 1, liveness: 1, max_payload: 1, node: "n", reactors: Reactors::ALONE }), 1, |m| { m.pop(); }) => FrameLength;
    welcome_empty_node: edit(&Message::Welcome(Welcome { boot: 1, heartbeat_ms: 1, liveness: 1, max_payload: 1, node: "n", reactors: Reactors::ALONE }), 2, Vec::clear) => Length(Field::Node);
    error_detail_too_long: edit(&Message::Error(ErrorReply { code: ErrorCode(1), about: 0, detail: "", conns: List::from(IDS) }), 2, |d| d.resize(257, b'd')) => Length(Field::Detail);
    error_ids_over_cap: edit(&Message::Error(ErrorReply { code: ErrorCode(1), about: 0, detail: "", conns: List::from(IDS) }), 3, |i| i.resize(8 * (MAX_CONN_IDS + 1), 1)) => Length(Field::Affected);
    error_without_ids_frame: resize(&Message::Error(ErrorReply { code: ErrorCode(1), about: 0, detail: "", conns: List::from(IDS) }), None) => FrameCount;
    connect_zero_id: edit(&connect_message(), 1, |m| m[..8].fill(0)) => ZeroConnId;
    connect_unknown_flag: edit(&connect_message(), 1, |m| m[CONNECT_FLAGS] = 0x02) => UnknownFlags(0x02);
    connect_roles_over_cap: edit(&connect_message(), 1, |m| m[CONNECT_ROLES] = MAX_ROLES as u8 + 1) => Length(Field::Roles);
    connect_headers_over_cap: edit(&connect_message(), 1, |m| m[CONNECT_HEADERS] = MAX_HEADERS as u8 + 1) => Length(Field::Headers);
    connect_count_above_frames: edit(&connect_message(), 1, |m| m[CONNECT_ROLES] += 1) => FrameCount;
    connect_count_below_frames: edit(&connect_message(), 1, |m| m[CONNECT_HEADERS] -= 1) => FrameCount;
    connect_meta_long: edit(&connect_message(), 1, |m| m.push(0)) => FrameLength;
    connect_empty_path: edit(&connect_message(), PATH, Vec::clear) => Length(Field::Path);
    connect_path_too_long: edit(&connect_message(), PATH, |p| p.resize(8193, b'a')) => Length(Field::Path);
    connect_path_not_utf8: edit(&connect_message(), PATH, |p| p.push(0xff)) => InvalidUtf8(Field::Path);
    connect_service_reserved_chars: edit(&connect_message(), 2, |s| s.push(b' ')) => InvalidName(Field::Service);
    connect_role_not_utf8: edit(&connect_message(), FIRST_ROLE, |r| r.push(0x80)) => InvalidUtf8(Field::Role);
    connect_empty_role: edit(&connect_message(), FIRST_ROLE, Vec::clear) => Length(Field::Role);
    connect_header_name_uppercase: edit(&connect_message(), FIRST_HEADER, |n| n[0] = b'O') => InvalidName(Field::HeaderName);
    connect_header_name_with_colon: edit(&connect_message(), FIRST_HEADER, |n| n.push(b':')) => InvalidName(Field::HeaderName);
    connect_header_value_too_long: edit(&connect_message(), FIRST_HEADER + 1, |v| v.resize(8193, b'v')) => Length(Field::HeaderValue);
    message_zero_conn: encoded(&text(1)).into_iter().enumerate().map(|(i, mut f)| { if i == 1 { f[7] = 0; } f }).collect() => ZeroConnId;
    message_kind_3: edit(&text(1), 1, |m| m[8] = 3) => InvalidKind(3);
    message_kind_0: edit(&text(1), 1, |m| m[8] = 0) => InvalidKind(0);
    message_text_not_utf8: edit(&text(1), 2, |p| p.push(0xc0)) => InvalidUtf8(Field::Payload);
    message_without_payload: resize(&text(1), None) => FrameCount;
    message_meta_short: edit(&text(1), 1, |m| { m.pop(); }) => FrameLength;
    disconnect_code_1004: edit(&disconnect(), 1, |m| m[8..10].copy_from_slice(&1004u16.to_be_bytes())) => InvalidCloseCode(1004);
    disconnect_code_1015: edit(&disconnect(), 1, |m| m[8..10].copy_from_slice(&1015u16.to_be_bytes())) => InvalidCloseCode(1015);
    disconnect_initiator_3: edit(&disconnect(), 1, |m| m[10] = 3) => InvalidInitiator(3);
    disconnect_reason_too_long: edit(&disconnect(), 2, |r| r.resize(124, b'r')) => Length(Field::Reason);
    send_no_ids: edit(&send(), 2, Vec::clear) => Length(Field::Targets);
    send_ids_over_cap: edit(&send(), 2, |i| i.resize(8 * (MAX_CONN_IDS + 1), 1)) => Length(Field::Targets);
    send_ids_not_multiple_of_8: edit(&send(), 2, |i| i.push(1)) => FrameLength;
    send_zero_id_in_list: edit(&send(), 2, |i| i[8..16].fill(0)) => ZeroConnId;
    send_without_payload: resize(&send(), None) => FrameCount;
    send_kind_9: edit(&send(), 1, |m| m[0] = 9) => InvalidKind(9);
    publish_empty_channel: edit(&publish(), 2, Vec::clear) => Length(Field::Channel);
    publish_channel_too_long: edit(&publish(), 2, |c| c.resize(257, b'c')) => Length(Field::Channel);
    publish_meta_short: edit(&publish(), 1, |m| { m.pop(); }) => FrameLength;
    subscribe_channel_not_utf8: edit(&Message::Subscribe(Subscription { conn: 1, channel: "c" }), 2, |c| c.push(0xfe)) => InvalidUtf8(Field::Channel);
    unsubscribe_zero_conn: edit(&Message::Unsubscribe(Subscription { conn: 1, channel: "c" }), 1, |m| m.fill(0)) => ZeroConnId;
    close_code_1005: edit(&close(), 1, |m| m[8..10].copy_from_slice(&1005u16.to_be_bytes())) => InvalidCloseCode(1005);
    close_code_999: edit(&close(), 1, |m| m[8..10].copy_from_slice(&999u16.to_be_bytes())) => InvalidCloseCode(999);
    close_without_reason: resize(&close(), None) => FrameCount;
}

#[test]
fn encode_refuses_what_decode_refuses() {
    let too_many_roles: Vec<&str> = (0..=MAX_ROLES).map(|_| "r").collect();
    let uppercase: [HttpHeader; 1] = [("Origin", b"")];
    let table: Vec<(Message, DecodeError)> = vec![
        (
            Message::Connect(Connect {
                roles: List::from(&too_many_roles[..]),
                ..connect()
            }),
            Length(Field::Roles),
        ),
        (
            Message::Connect(Connect {
                service: "echo/x",
                ..connect()
            }),
            InvalidName(Field::Service),
        ),
        (
            Message::Connect(Connect {
                headers: List::from(&uppercase[..]),
                ..connect()
            }),
            InvalidName(Field::HeaderName),
        ),
        (
            Message::Connect(Connect {
                conn: 0,
                ..connect()
            }),
            ZeroConnId,
        ),
        (
            Message::Close(Close {
                conn: 1,
                code: CloseCode::NO_STATUS,
                reason: "",
            }),
            InvalidCloseCode(1005),
        ),
        (
            Message::Publish(Publish {
                channel: "c",
                except: Some(0),
                author: None,
                payload: Payload::Text(""),
            }),
            ZeroConnId,
        ),
        (
            Message::Send(SendTo {
                conns: List::from(&[][..]),
                payload: Payload::Text(""),
            }),
            Length(Field::Targets),
        ),
        (
            Message::Send(SendTo {
                conns: List::from(&[1, 0][..]),
                payload: Payload::Text(""),
            }),
            ZeroConnId,
        ),
        (
            Message::Ready(Ready {
                instance: 1,
                name: "",
                services: List::from(SERVICES),
            }),
            Length(Field::WorkerName),
        ),
        (
            Message::Disconnect(Disconnect {
                conn: 1,
                code: CloseCode(1016),
                initiator: Initiator::Node,
                reason: "",
            }),
            InvalidCloseCode(1016),
        ),
        (
            Message::AclCommand(AclCommand {
                request: 1,
                op: AclOp::RemoveRole,
                args: [List::from(ROLES), List::from(&[][..]), List::from(&[][..])],
            }),
            Length(Field::AclArgs),
        ),
        (
            Message::AclCommand(AclCommand {
                request: 1,
                op: AclOp::RemoveRole,
                args: [
                    List::from(&[""][..]),
                    List::from(&[][..]),
                    List::from(&[][..]),
                ],
            }),
            Length(Field::AclName),
        ),
        (
            Message::AuthReply(AuthReply {
                roles: List::from(&too_many_roles[..]),
                ..auth_reply_fields()
            }),
            Length(Field::Roles),
        ),
        (
            Message::AuthReply(AuthReply {
                request: 0,
                ..auth_reply_fields()
            }),
            ZeroConnId,
        ),
        (
            Message::Auth(Auth {
                request: 1,
                peer: "",
                path: "/",
                query: "",
                headers: List::from(&uppercase[..]),
            }),
            InvalidName(Field::HeaderName),
        ),
    ];
    let mut out = Frames::new();
    for (message, expected) in table {
        assert_eq!(encode(&message, &mut out), Err(expected), "{message:?}");
    }
}

#[test]
fn frames_reuse_small_buffers_and_release_large_ones() {
    let mut out = Frames::new();
    let big = vec![7u8; KEEP_CAPACITY + 1];
    let message = Message::Message(Data {
        conn: 1,
        payload: Payload::Binary(&big),
    });
    encode(&message, &mut out).expect("encodable");
    assert_eq!(out.len(), 3);
    out.clear();
    assert!(out.is_empty());
    assert!(out.bufs.iter().all(|buf| buf.capacity() <= KEEP_CAPACITY));
    encode(&Message::Bye, &mut out).expect("encodable");
    assert_eq!(out.iter().collect::<Vec<_>>(), [&[1, 2, 0][..]]);
}

#[test]
fn head_reports_type_and_signed_flag() {
    let frames: [&[u8]; 1] = [&[1, 0x34, FLAG_SIGNED]];
    assert_eq!(
        parse_head(&frames),
        Ok(Head {
            version: 1,
            message_type: MessageType::Close,
            signed: true
        })
    );
}
