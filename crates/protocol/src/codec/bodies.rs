//! The body of each message type: decoded from its frames after the
//! header, and encoded into them (docs/protocol.md section 5).

use super::reader::{
    check_len, check_string, conn_id, count_byte, disconnect_code, initiator, Body,
};
use super::{kind_byte, put_payload, put_string, put_strings, DecodeError, Frames};
use crate::close::CloseCode;
use crate::message::{
    AclCommand, AclOp, AclResult, AclStatus, Auth, AuthReply, Author, Connect, Disconnect,
    ErrorCode, ErrorReply, Field, HttpHeader, List, Publish, Reactors, Ready, Subscription,
    Welcome, ACL_ARGS, CONNECT_REASSIGNED, PUBLISH_AUTHORED, VERSION, VERSION_2,
};

pub(super) fn decode_ready<'a>(body: &mut Body<'a>) -> Result<Ready<'a>, DecodeError> {
    let mut meta = body.meta()?;
    let instance = meta.u64()?;
    meta.end()?;
    let name = body.string(Field::WorkerName)?;
    let services = body.take(body.frames.len())?;
    check_len(Field::Services, services.len())?;
    for &service in services {
        check_string(Field::Service, service)?;
    }
    Ok(Ready {
        instance,
        name,
        services: List::wire(services),
    })
}

/// WELCOME: version 3 adds the reactor index and count to the meta frame.
pub(super) fn decode_welcome<'a>(
    version: u8,
    body: &mut Body<'a>,
) -> Result<Welcome<'a>, DecodeError> {
    let mut meta = body.meta()?;
    let boot = meta.u64()?;
    let heartbeat_ms = meta.u32()?;
    let max_payload = meta.u32()?;
    let liveness = meta.u8()?;
    let reactors = match version {
        VERSION | VERSION_2 => Reactors::ALONE,
        _ => Reactors {
            index: meta.u16()?,
            count: meta.u16()?,
        },
    };
    meta.end()?;
    if !reactors.is_valid() {
        return Err(DecodeError::InvalidReactor(reactors));
    }
    Ok(Welcome {
        boot,
        heartbeat_ms,
        liveness,
        max_payload,
        node: body.string(Field::Node)?,
        reactors,
    })
}

pub(super) fn decode_error<'a>(body: &mut Body<'a>) -> Result<ErrorReply<'a>, DecodeError> {
    let mut meta = body.meta()?;
    let code = ErrorCode(meta.u16()?);
    let about = meta.u8()?;
    meta.end()?;
    Ok(ErrorReply {
        code,
        about,
        detail: body.string(Field::Detail)?,
        conns: body.conn_ids(Field::Affected)?,
    })
}

pub(super) fn decode_connect<'a>(body: &mut Body<'a>) -> Result<Connect<'a>, DecodeError> {
    let mut meta = body.meta()?;
    let conn = meta.u64()?;
    let flags = meta.u8()?;
    let roles = usize::from(meta.u8()?);
    let headers = usize::from(meta.u8()?);
    meta.end()?;
    let conn = conn_id(conn)?;
    if flags & !CONNECT_REASSIGNED != 0 {
        return Err(DecodeError::UnknownFlags(flags));
    }
    check_len(Field::Roles, roles)?;
    check_len(Field::Headers, headers)?;
    // Seven strings, then the lists: check the count before reading any.
    if body.frames.len() != 7 + roles + 2 * headers {
        return Err(DecodeError::FrameCount);
    }
    let service = body.string(Field::Service)?;
    let node = body.string(Field::Node)?;
    let peer = body.string(Field::Peer)?;
    let path = body.string(Field::Path)?;
    let query = body.string(Field::Query)?;
    let subprotocol = body.string(Field::Subprotocol)?;
    let user = body.string(Field::User)?;
    let roles = body.strings(Field::Role, roles)?;
    let headers = body.headers(headers)?;
    Ok(Connect {
        conn,
        reassigned: flags & CONNECT_REASSIGNED != 0,
        service,
        node,
        peer,
        path,
        query,
        subprotocol,
        user,
        roles,
        headers,
    })
}

pub(super) fn decode_disconnect<'a>(body: &mut Body<'a>) -> Result<Disconnect<'a>, DecodeError> {
    let mut meta = body.meta()?;
    let conn = meta.u64()?;
    let code = meta.u16()?;
    let who = meta.u8()?;
    meta.end()?;
    Ok(Disconnect {
        conn: conn_id(conn)?,
        code: disconnect_code(CloseCode(code))?,
        initiator: initiator(who)?,
        reason: body.string(Field::Reason)?,
    })
}

pub(super) fn decode_subscription<'a>(
    body: &mut Body<'a>,
) -> Result<Subscription<'a>, DecodeError> {
    let mut meta = body.meta()?;
    let conn = meta.u64()?;
    meta.end()?;
    Ok(Subscription {
        conn: conn_id(conn)?,
        channel: body.string(Field::Channel)?,
    })
}

pub(super) fn decode_acl_command<'a>(body: &mut Body<'a>) -> Result<AclCommand<'a>, DecodeError> {
    let mut meta = body.meta()?;
    let request = meta.u64()?;
    let op = meta.u8()?;
    let counts = [meta.u8()?, meta.u8()?, meta.u8()?].map(usize::from);
    meta.end()?;
    let op = AclOp::from_u8(op).ok_or(DecodeError::InvalidOp(op))?;
    check_arity(op, counts)?;
    if body.frames.len() != counts.iter().sum::<usize>() {
        return Err(DecodeError::FrameCount);
    }
    let mut lists = [List::wire(&[]); ACL_ARGS];
    for (list, count) in lists.iter_mut().zip(counts) {
        let frames = body.take(count)?;
        for &name in frames {
            check_string(Field::AclName, name)?;
        }
        *list = List::wire(frames);
    }
    Ok(AclCommand {
        request,
        op,
        args: lists,
    })
}

pub(super) fn decode_acl_result<'a>(body: &mut Body<'a>) -> Result<AclResult<'a>, DecodeError> {
    let mut meta = body.meta()?;
    let request = meta.u64()?;
    let status = meta.u8()?;
    let decision = meta.u8()?;
    meta.end()?;
    let status = match status {
        0 => AclStatus::Ok,
        1 => AclStatus::Refused,
        2 => AclStatus::NotPersisted,
        _ => return Err(DecodeError::InvalidStatus(status)),
    };
    let decision = match decision {
        0 => None,
        1 => Some(true),
        2 => Some(false),
        _ => return Err(DecodeError::InvalidStatus(decision)),
    };
    Ok(AclResult {
        request,
        status,
        decision,
        detail: body.string(Field::Detail)?,
        explanation: body.string(Field::Explanation)?,
    })
}

pub(super) fn decode_auth<'a>(body: &mut Body<'a>) -> Result<Auth<'a>, DecodeError> {
    let mut meta = body.meta()?;
    let request = meta.u64()?;
    let headers = usize::from(meta.u8()?);
    meta.end()?;
    let request = conn_id(request)?;
    check_len(Field::Headers, headers)?;
    // Three strings, then the header pairs: check the count before reading.
    if body.frames.len() != 3 + 2 * headers {
        return Err(DecodeError::FrameCount);
    }
    Ok(Auth {
        request,
        peer: body.string(Field::Peer)?,
        path: body.string(Field::Path)?,
        query: body.string(Field::Query)?,
        headers: body.headers(headers)?,
    })
}

/// PUBLISH: v1's meta is kind and except; version 2's adds the author's
/// flags and role count, and the author's frames after the payload.
pub(super) fn decode_publish<'a>(
    version: u8,
    body: &mut Body<'a>,
) -> Result<Publish<'a>, DecodeError> {
    let mut meta = body.meta()?;
    let kind = meta.u8()?;
    let except = meta.u64()?;
    let (flags, roles) = match version {
        VERSION => (0, 0),
        _ => (meta.u8()?, usize::from(meta.u8()?)),
    };
    meta.end()?;
    if flags & !PUBLISH_AUTHORED != 0 {
        return Err(DecodeError::UnknownFlags(flags));
    }
    let authored = flags & PUBLISH_AUTHORED != 0;
    check_len(Field::Roles, roles)?;
    if !authored && roles != 0 {
        return Err(DecodeError::FrameCount);
    }
    let channel = body.string(Field::Channel)?;
    let payload = body.payload(kind)?;
    let author = if authored {
        Some(Author {
            user: body.string(Field::User)?,
            roles: body.strings(Field::Role, roles)?,
        })
    } else {
        None
    };
    Ok(Publish {
        channel,
        except: (except != 0).then_some(except),
        author,
        payload,
    })
}

pub(super) fn encode_publish(
    version: u8,
    publish: &Publish<'_>,
    out: &mut Frames,
) -> Result<(), DecodeError> {
    let except = publish.except.map(conn_id).transpose()?.unwrap_or(0);
    let kind = kind_byte(&publish.payload);
    match (version, &publish.author) {
        // v1 cannot carry an author: decode would never give one.
        (VERSION, Some(_)) => return Err(DecodeError::UnknownFlags(PUBLISH_AUTHORED)),
        (VERSION, None) => out.push_parts(&[&[kind], &except.to_be_bytes()]),
        (_, author) => {
            let flags = if author.is_some() {
                PUBLISH_AUTHORED
            } else {
                0
            };
            let roles = author.map_or(Ok(0), |a| count_byte(Field::Roles, a.roles.len()))?;
            out.push_parts(&[&[kind], &except.to_be_bytes(), &[flags, roles]]);
        }
    }
    put_string(out, Field::Channel, publish.channel)?;
    put_payload(out, &publish.payload)?;
    if let Some(author) = &publish.author {
        put_string(out, Field::User, author.user)?;
        put_strings(out, Field::Role, &author.roles)?;
    }
    Ok(())
}

pub(super) fn decode_auth_reply<'a>(body: &mut Body<'a>) -> Result<AuthReply<'a>, DecodeError> {
    let mut meta = body.meta()?;
    let request = meta.u64()?;
    let verdict = meta.u8()?;
    let roles = usize::from(meta.u8()?);
    meta.end()?;
    let request = conn_id(request)?;
    let allow = match verdict {
        0 => false,
        1 => true,
        _ => return Err(DecodeError::InvalidStatus(verdict)),
    };
    check_len(Field::Roles, roles)?;
    if body.frames.len() != 1 + roles {
        return Err(DecodeError::FrameCount);
    }
    Ok(AuthReply {
        request,
        allow,
        user: body.string(Field::User)?,
        roles: body.strings(Field::Role, roles)?,
    })
}

pub(super) fn encode_acl_command(
    command: &AclCommand<'_>,
    out: &mut Frames,
) -> Result<(), DecodeError> {
    let counts = command.args.map(|list| list.len());
    check_arity(command.op, counts)?;
    // Within the arity, every count fits a byte.
    let bytes = counts.map(|count| u8::try_from(count).unwrap_or(u8::MAX));
    out.push_parts(&[&command.request.to_be_bytes(), &[command.op as u8], &bytes]);
    for list in &command.args {
        put_strings(out, Field::AclName, list)?;
    }
    Ok(())
}

/// The op's bounds on each argument list's length.
pub(super) fn check_arity(op: AclOp, counts: [usize; ACL_ARGS]) -> Result<(), DecodeError> {
    let fits = op
        .arity()
        .iter()
        .zip(counts)
        .all(|(&(min, max), count)| (min..=max).contains(&count));
    if fits {
        Ok(())
    } else {
        Err(DecodeError::Length(Field::AclArgs))
    }
}

pub(super) fn encode_connect(connect: &Connect<'_>, out: &mut Frames) -> Result<(), DecodeError> {
    let flags = if connect.reassigned {
        CONNECT_REASSIGNED
    } else {
        0
    };
    // The counts travel as bytes: check them before narrowing.
    let roles = count_byte(Field::Roles, connect.roles.len())?;
    let headers = count_byte(Field::Headers, connect.headers.len())?;
    out.push_parts(&[
        &conn_id(connect.conn)?.to_be_bytes(),
        &[flags, roles, headers],
    ]);
    put_string(out, Field::Service, connect.service)?;
    put_string(out, Field::Node, connect.node)?;
    put_string(out, Field::Peer, connect.peer)?;
    put_string(out, Field::Path, connect.path)?;
    put_string(out, Field::Query, connect.query)?;
    put_string(out, Field::Subprotocol, connect.subprotocol)?;
    put_string(out, Field::User, connect.user)?;
    put_strings(out, Field::Role, &connect.roles)?;
    put_headers(out, &connect.headers)
}

pub(super) fn put_headers(
    out: &mut Frames,
    headers: &List<'_, HttpHeader<'_>>,
) -> Result<(), DecodeError> {
    for (name, value) in headers.iter() {
        put_string(out, Field::HeaderName, name)?;
        check_len(Field::HeaderValue, value.len())?;
        out.push(value);
    }
    Ok(())
}
