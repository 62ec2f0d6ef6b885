//! Fuzz one client's sans-IO session with arbitrary plaintext, frames,
//! clock steps and node answers: upgrade heads (well-formed and not),
//! frames of any first byte and length, permessage-deflate offers and
//! compressed frames (valid and not), a pipe that fills and drains, the
//! auth service's verdicts, lost workers, ACL re-checks, shutdown and
//! hang-ups, in any order.
//!
//! Checks after every step:
//! - everything the server sent parses: at most one HTTP answer, and
//!   after a 101 only well-formed, unmasked frames;
//! - at most one Close from the server, and no data frame after it;
//! - a session that is done sends nothing more and has no deadline, and
//!   one that is not done always has one (nothing waits forever);
//! - the node sees at most one CONNECT, and client messages only after
//!   it, each within `--max-message-size` (once inflated, too);
//! - RSV1 on a server frame only once permessage-deflate was agreed;
//! - nothing is read while the session holds its input, and what it
//!   held back is never more than the client sent.
//!
//! Input layout: byte 0 picks the flags; then each step is an opcode
//! byte and the parameter bytes it reads.
#![no_main]

use std::time::Duration;

use averyws::backend::message::{AuthReply, List};
use averyws::node::connections::Outcome;
use averyws::session::testing::{
    client_deflate, client_frame, server_output, upgrade_request, Driver,
};
use averyws::ws::CloseCode;
use libfuzzer_sys::fuzz_target;

#[path = "shared/input.rs"]
mod input;
use input::Input;

const ACL: &str = "allow guest /w connect\nallow guest /q connect\nallow guest svc send\n\
                   allow guest /echo connect\nallow guest echo send\n";
const MAX_MESSAGE: usize = 512;
const PATHS: [&str; 4] = ["/echo", "/w", "/q", "/nope"];

/// What the checks remember of the server's output so far.
#[derive(Default)]
struct Seen {
    transcript: Vec<u8>,
    fed: usize,
}

fn driver(flags: u8) -> Driver {
    let mut args = vec![
        "--route",
        "/w=svc",
        "--route",
        "/q=quiet",
        "--max-message-size",
        "512",
    ];
    if flags & 1 != 0 {
        args.extend(["--auth-service", "auth"]);
    }
    if flags & 2 != 0 {
        args.extend(["--max-messages-per-s", "4", "--message-burst", "4"]);
    }
    Driver::with_acl(ACL, &args).expect("valid flags")
}

fn step(d: &mut Driver, input: &mut Input<'_>, seen: &mut Seen) {
    match input.byte() % 12 {
        0 => {
            let bytes = input.bytes(255).to_vec();
            seen.fed += bytes.len();
            d.feed(&bytes);
        }
        1 => {
            let path = PATHS[usize::from(input.byte()) % PATHS.len()];
            let extra = match input.byte() % 4 {
                0 => "",
                1 => "Sec-WebSocket-Protocol: x\r\n",
                2 => "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
                _ => "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=9\r\n",
            };
            let head = upgrade_request(path, extra);
            seen.fed += head.len();
            d.feed(&head);
        }
        2 => {
            let first = input.byte();
            let len = usize::from(input.byte()) * 4;
            let frame = client_frame(first, &vec![b'a'; len]);
            seen.fed += frame.len();
            d.feed(&frame);
        }
        3 => {
            d.advance(Duration::from_millis(u64::from(input.byte()) * 40));
        }
        4 => {
            d.to_deadline();
        }
        5 => d.rig.node.full = !d.rig.node.full,
        6 => d.resume(),
        7 => {
            let allow = input.byte() & 1 == 1;
            let reply = AuthReply {
                request: 1,
                allow,
                user: if allow { "alice" } else { "" },
                roles: List::from(&[][..]),
            };
            let mut ctx = d.rig.ctx();
            if d.session.on_auth_reply(&mut ctx, &reply) {
                d.resume();
            }
        }
        8 => {
            let outcome = match input.byte() % 3 {
                0 => Outcome::Moved,
                1 => Outcome::AuthLost,
                _ => Outcome::Close(CloseCode::SERVICE_RESTART, "worker lost"),
            };
            let mut ctx = d.rig.ctx();
            d.session.worker_lost(&mut ctx, outcome);
        }
        9 => {
            let mut ctx = d.rig.ctx();
            match input.byte() % 3 {
                0 => d.session.recheck_access(&mut ctx),
                1 => d.session.on_shutdown(&mut ctx),
                _ => d.session.close_by_worker(&mut ctx, CloseCode::NORMAL, "done"),
            }
        }
        10 => {
            // A compressed message: RSV1 and an opcode from the input,
            // its payload a repeated run, so it may inflate far past
            // --max-message-size.
            let first = 0x40 | input.byte();
            let run = input.bytes(16).to_vec();
            let times = usize::from(input.byte()) * 8;
            let compressed = client_deflate(&run.repeat(times));
            let frame = client_frame(first, &compressed);
            seen.fed += frame.len();
            d.feed(&frame);
        }
        _ => d.hang_up(),
    }
}

fn check(d: &mut Driver, seen: &mut Seen) {
    let out = d.rig.take_out();
    seen.transcript.extend_from_slice(&out);
    let (head, frames) = server_output(&seen.transcript).expect("the server's output parses");
    let refused = head.as_deref().is_some_and(|h| !h.starts_with("HTTP/1.1 101"));
    assert!(!refused || frames.is_empty());
    if let Some(close) = frames.iter().position(|(first, _)| first & 0x0f == 0x8) {
        let after = &frames[close + 1..];
        assert!(after.is_empty(), "the server sent {after:?} after its Close");
    }
    for (first, payload) in &frames {
        assert!(first & 0x80 != 0, "the server fragments nothing");
        assert!(first & 0x40 == 0 || d.session.deflate().is_some(), "RSV1 unagreed");
        assert!(payload.len() <= MAX_MESSAGE);
    }
    let deadline = d.session.deadline(&d.rig.config, 0);
    assert_eq!(d.session.is_done(), deadline.is_none(), "a live session always has a deadline");
    let node = &d.rig.node;
    assert!(node.opened.len() <= 1);
    assert!(node.messages.is_empty() || !node.opened.is_empty());
    assert!(node.messages.iter().all(|(_, m)| m.len() <= MAX_MESSAGE));
    assert!(d.kernel.len() <= seen.fed);
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mut d = driver(input.byte());
    let mut seen = Seen::default();
    for _ in 0..256 {
        if input.0.is_empty() {
            break;
        }
        let done_before = d.session.is_done();
        let sent_before = seen.transcript.len();
        step(&mut d, &mut input, &mut seen);
        check(&mut d, &mut seen);
        if done_before {
            assert_eq!(seen.transcript.len(), sent_before, "a done session sent more");
        }
    }
});
