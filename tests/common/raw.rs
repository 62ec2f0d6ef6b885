//! Raw DEALER sockets speaking the backend codec by hand
//! (docs/protocol.md), for what no well-behaved worker sends: messages
//! signed or not, replayed, forged, or signed by hand where the codec will
//! not encode them.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use averyws::backend::curve;
use averyws::backend::message::{ErrorCode, ErrorReply, List, Payload, Ready, SendTo};
use averyws::backend::{decode, encode, Frames, KeyRing, Message, MessageType, Signer, VERSION};

/// How long to wait for a message that should come.
const LIMIT: Duration = Duration::from_secs(8);

/// A backend key file of one line: key id `k1`.
pub const KEYS: &str = "k1:0123456789abcdef0123456789abcdef\n";

/// A bare DEALER speaking the codec by hand: it sends what the test
/// says, signed or not, and reads with a deadline.
pub struct Raw {
    /// The instance id it signs as, and that its HEARTBEATs carry.
    pub instance: u64,
    pub socket: zmq::Socket,
    pub signer: Option<Signer>,
    _context: zmq::Context,
}

impl Raw {
    /// A DEALER connected to `endpoint`, signing as `instance` with the
    /// first line of `keys` when there are keys (and connecting with its
    /// CURVE keys then, as a signed node requires).
    pub fn connect(endpoint: &str, keys: Option<&str>, instance: u64) -> Raw {
        let context = zmq::Context::new();
        let socket = context.socket(zmq::DEALER).expect("dealer");
        socket.set_linger(0).expect("linger");
        let ring = keys.map(|text| KeyRing::parse(text.as_bytes()).expect("keys"));
        if let Some(ring) = &ring {
            curve::connect_as(&socket, &ring.curve_client()).expect("CURVE client");
        }
        socket.connect(endpoint).expect("connect");
        Raw {
            instance,
            socket,
            signer: ring.map(|ring| ring.signer(instance)),
            _context: context,
        }
    }

    /// `message` encoded, signed for `recipient` when there are keys.
    pub fn frames(&mut self, message: &Message<'_>, recipient: u64) -> Vec<Vec<u8>> {
        match &mut self.signer {
            Some(signer) => signed(signer, message, recipient),
            None => unsigned(message),
        }
    }

    /// Sends `message` (see [`Raw::frames`]); returns the frames sent.
    pub fn send(&mut self, message: &Message<'_>, recipient: u64) -> Vec<Vec<u8>> {
        let frames = self.frames(message, recipient);
        self.send_raw(&frames);
        frames
    }

    /// Sends HEARTBEAT (signed for the node's `boot` when there are keys).
    pub fn heartbeat(&mut self, boot: u64) {
        self.send(
            &Message::Heartbeat {
                boot: self.instance,
            },
            boot,
        );
    }

    pub fn send_raw(&self, frames: &[Vec<u8>]) {
        self.socket.send_multipart(frames, 0).expect("send");
    }

    /// The next message of type `kind` within [`LIMIT`], others skipped.
    pub fn expect(&self, kind: MessageType) -> Vec<Vec<u8>> {
        self.wait(kind, LIMIT)
            .unwrap_or_else(|| panic!("no {kind:?} within {LIMIT:?}"))
    }

    /// The next message of type `kind` if one comes within `limit`,
    /// others skipped.
    pub fn wait(&self, kind: MessageType, limit: Duration) -> Option<Vec<Vec<u8>>> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let millis = left.as_millis() as i64;
            if self.socket.poll(zmq::POLLIN, millis).expect("poll") == 0 {
                continue;
            }
            let frames = self.socket.recv_multipart(0).expect("recv");
            if frames[0].get(1) == Some(&(kind as u8)) {
                return Some(frames);
            }
        }
    }

    /// Waits for WELCOME; the node's boot id.
    pub fn welcomed(&self) -> u64 {
        let welcome = self.expect(MessageType::Welcome);
        u64::from_be_bytes(welcome[1][..8].try_into().expect("boot"))
    }
}

pub fn ready_message<'a>(instance: u64, name: &'a str, services: &'a [&'a str]) -> Message<'a> {
    Message::Ready(Ready {
        instance,
        name,
        services: List::from(services),
    })
}

pub fn send_to<'a>(conns: &'a [u64], text: &'a str) -> Message<'a> {
    Message::Send(SendTo {
        conns: List::from(conns),
        payload: Payload::Text(text),
    })
}

/// An ERROR's code, detail and connections.
pub fn error_of(frames: &[Vec<u8>]) -> (ErrorCode, String, Vec<u64>) {
    let views: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    match decode(&views).expect("decode") {
        Message::Error(ErrorReply {
            code,
            detail,
            conns,
            ..
        }) => (code, detail.to_owned(), conns.iter().collect()),
        other => panic!("not an ERROR: {other:?}"),
    }
}

pub fn signed(signer: &mut Signer, message: &Message<'_>, recipient: u64) -> Vec<Vec<u8>> {
    let mut out = Frames::new();
    signer
        .encode(VERSION, message, recipient, unix_ms(), &mut out)
        .expect("encode");
    owned(&out)
}

pub fn unsigned(message: &Message<'_>) -> Vec<Vec<u8>> {
    let mut out = Frames::new();
    encode(message, &mut out).expect("encode");
    owned(&out)
}

/// An unsigned message signed by hand with the key of [`KEYS`], as
/// `sender`, sequence 1: how to sign what the codec will not encode.
pub fn sign_by_hand(frames: Vec<Vec<u8>>, sender: u64, recipient: u64) -> Vec<Vec<u8>> {
    sign_with(frames, KEYS, sender, recipient, 1)
}

/// An unsigned message signed by hand with the key `KEYID:SECRET`, as
/// `sender` with `sequence`: whatever sender and sequence a key holder
/// cares to claim.
pub fn sign_with(
    mut frames: Vec<Vec<u8>>,
    key: &str,
    sender: u64,
    recipient: u64,
    sequence: u64,
) -> Vec<Vec<u8>> {
    use hmac::{Hmac, Mac};
    let (id, secret) = key.trim().split_once(':').expect("KEYID:SECRET");
    frames[0][2] |= 1;
    let mut signature = vec![id.len() as u8];
    signature.extend_from_slice(id.as_bytes());
    for field in [sender, recipient, sequence, unix_ms()] {
        signature.extend_from_slice(&field.to_be_bytes());
    }
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    for frame in frames.iter().chain([&signature]) {
        mac.update(&(frame.len() as u32).to_be_bytes());
        mac.update(frame);
    }
    signature.extend_from_slice(&mac.finalize().into_bytes());
    frames.push(signature);
    frames
}

pub fn owned(frames: &Frames) -> Vec<Vec<u8>> {
    frames.iter().map(<[u8]>::to_vec).collect()
}

pub fn unix_ms() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH);
    since.expect("clock").as_millis() as u64
}
