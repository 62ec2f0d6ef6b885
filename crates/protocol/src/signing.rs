//! HMAC-SHA256 signatures over whole backend messages: the key file, the
//! sender's [`Signer`] and the receiver's [`Verifier`].
//!
//! A signed message has [`FLAG_SIGNED`] in its header and one more frame,
//! the signature frame (all integers big-endian):
//!
//! ```text
//! offset  size  field
//! 0       1     K, the key id length (1-32)
//! 1       K     key id (A-Z a-z 0-9 . _ -)
//! 1+K     8     sender: the sender's boot id (node) or instance id (worker)
//! 9+K     8     recipient: the receiver's id; 0 only in READY
//! 17+K    8     sequence, from 1, never reused by the sender
//! 25+K    8     timestamp, milliseconds since the Unix epoch
//! 33+K    32    HMAC-SHA256
//! ```
//!
//! The MAC covers every frame before the signature frame and the signature
//! frame's first 33+K bytes, each of these frames preceded by its length as
//! 4 big-endian bytes, in order. The length prefixes make the split between
//! frames part of what is signed.
//!
//! [`Verifier::verify`] checks in this order, and nothing after step 4 can
//! be reached without the key: header (version, type, flags); SIGNED flag;
//! signature frame shape; key id known; MAC (constant-time); recipient;
//! timestamp within the skew bound; sequence fresh for the sender. The
//! replay window is updated only when every check passed.
//!
//! Sans-IO: the clock is an argument (`now_ms`, milliseconds since the Unix
//! epoch), and so are the ids.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::codec::{encode_with_flags, parse_head, DecodeError, Frames};
use super::curve::KeyPair;
use super::message::{is_name, ErrorCode, Field, Message, MessageType, FLAG_SIGNED};
use super::replay::ReplayTable;

type HmacSha256 = Hmac<Sha256>;

/// Length of the MAC at the end of the signature frame.
pub const MAC_LEN: usize = 32;
/// Longest key id, in bytes.
pub const MAX_KEY_ID: usize = 32;
/// Shortest secret a key file may hold, in bytes (128 bits).
pub const MIN_SECRET: usize = 16;
/// The keys of a key file: the first signs, every one verifies.
///
/// The file has one `KEYID:SECRET` per line. Blank lines and lines starting
/// with `#` are skipped; `\r\n` line ends are fine. The key id is 1-32 bytes
/// of `A-Z a-z 0-9 . _ -`; the secret is everything after the first `:`,
/// without surrounding whitespace, at least [`MIN_SECRET`] bytes (for
/// example the output of `openssl rand -hex 32`). To rotate: add the new
/// key as a second line everywhere, then move it first everywhere, then
/// remove the old one.
#[derive(Clone)]
pub struct KeyRing {
    /// The signing key.
    first: Key,
    rest: Vec<Key>,
}

#[derive(Clone)]
struct Key {
    id: Box<str>,
    /// The HMAC state after the key schedule, cloned per message.
    mac: HmacSha256,
}

/// Why a key file was refused; `line` counts from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFileError {
    /// The line has no `:`.
    MissingColon {
        /// The line number.
        line: usize,
    },
    /// The key id is empty, longer than [`MAX_KEY_ID`] or has a character
    /// outside `A-Z a-z 0-9 . _ -`.
    InvalidKeyId {
        /// The line number.
        line: usize,
    },
    /// The secret is shorter than [`MIN_SECRET`] bytes.
    ShortSecret {
        /// The line number.
        line: usize,
    },
    /// An earlier line has the same key id.
    DuplicateKeyId {
        /// The line number.
        line: usize,
    },
    /// The file holds no key.
    NoKeys,
}

impl std::fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            KeyFileError::MissingColon { line } => {
                write!(f, "line {line}: expected KEYID:SECRET")
            }
            KeyFileError::InvalidKeyId { line } => write!(
                f,
                "line {line}: key id must be 1-{MAX_KEY_ID} bytes of A-Z a-z 0-9 . _ -"
            ),
            KeyFileError::ShortSecret { line } => {
                write!(f, "line {line}: secret shorter than {MIN_SECRET} bytes")
            }
            KeyFileError::DuplicateKeyId { line } => write!(f, "line {line}: duplicate key id"),
            KeyFileError::NoKeys => f.write_str("no KEYID:SECRET line"),
        }
    }
}

impl std::error::Error for KeyFileError {}

impl KeyRing {
    /// Parse a key file's contents.
    pub fn parse(text: &[u8]) -> Result<KeyRing, KeyFileError> {
        let mut keys: Vec<Key> = Vec::new();
        for (index, line) in text.split(|&byte| byte == b'\n').enumerate() {
            let line_no = index + 1;
            let line = line.trim_ascii();
            if line.is_empty() || line.starts_with(b"#") {
                continue;
            }
            let colon = line
                .iter()
                .position(|&byte| byte == b':')
                .ok_or(KeyFileError::MissingColon { line: line_no })?;
            let (id, secret) = (&line[..colon], line[colon + 1..].trim_ascii());
            let id = key_id(id).ok_or(KeyFileError::InvalidKeyId { line: line_no })?;
            if secret.len() < MIN_SECRET {
                return Err(KeyFileError::ShortSecret { line: line_no });
            }
            if keys.iter().any(|key: &Key| *key.id == *id) {
                return Err(KeyFileError::DuplicateKeyId { line: line_no });
            }
            // HMAC takes a key of any length, so this cannot fail.
            let mac = HmacSha256::new_from_slice(secret)
                .map_err(|_| KeyFileError::ShortSecret { line: line_no })?;
            keys.push(Key { id: id.into(), mac });
        }
        let mut keys = keys.into_iter();
        let first = keys.next().ok_or(KeyFileError::NoKeys)?;
        Ok(KeyRing {
            first,
            rest: keys.collect(),
        })
    }

    /// The key ids, the signing key first.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys().map(|key| &*key.id)
    }

    /// A signer with the first key, for the process whose id is `me`.
    pub fn signer(&self, me: u64) -> Signer {
        Signer {
            key: self.first.clone(),
            me,
            next_sequence: 1,
        }
    }

    /// The CURVE client keypair of the signing key, the one a worker
    /// connects with ([`super::curve`]).
    pub fn curve_client(&self) -> KeyPair {
        KeyPair::client(&self.first.mac)
    }

    /// The CURVE client public keys of every key, the ones the node's ZAP
    /// handler admits.
    pub fn curve_clients(&self) -> Vec<[u8; 32]> {
        self.keys()
            .map(|key| KeyPair::client(&key.mac).public)
            .collect()
    }

    fn keys(&self) -> impl Iterator<Item = &Key> {
        std::iter::once(&self.first).chain(&self.rest)
    }

    fn find(&self, id: &[u8]) -> Option<&Key> {
        self.keys().find(|key| key.id.as_bytes() == id)
    }
}

impl std::fmt::Debug for KeyRing {
    /// Key ids only: secrets stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("key_ids", &self.key_ids().collect::<Vec<_>>())
            .finish()
    }
}

/// Signs outgoing messages with one key and one sequence counter.
#[derive(Clone)]
pub struct Signer {
    key: Key,
    me: u64,
    next_sequence: u64,
}

impl Signer {
    /// Signs with the first key of `ring` from now on; the sequence
    /// counter carries on, so receivers see no replay.
    pub fn rekey(&mut self, ring: &KeyRing) {
        self.key = ring.first.clone();
    }

    /// Encode `message` in protocol `version` into `out`, signed for
    /// `recipient` (0 only for READY and UNSUPPORTED_VERSION) at `now_ms`.
    /// Uses the next sequence number. Fails as
    /// [`encode_in`](super::codec::encode_in) does.
    pub fn encode(
        &mut self,
        version: u8,
        message: &Message<'_>,
        recipient: u64,
        now_ms: u64,
        out: &mut Frames,
    ) -> Result<(), DecodeError> {
        encode_with_flags(message, version, FLAG_SIGNED, out)?;
        let key = &self.key;
        let sequence = self.next_sequence;
        // After 2^64 - 1 messages the counter sticks and receivers refuse
        // the repeats, which is the safe failure.
        self.next_sequence = sequence.saturating_add(1);
        let id_len = [key.id.len() as u8];
        let sender = self.me.to_be_bytes();
        let recipient = recipient.to_be_bytes();
        let sequence = sequence.to_be_bytes();
        let timestamp = now_ms.to_be_bytes();
        let fields: [&[u8]; 6] = [
            &id_len,
            key.id.as_bytes(),
            &sender,
            &recipient,
            &sequence,
            &timestamp,
        ];
        // Only a payload can reach 4 GiB, and `encode` refused that.
        let tag = mac_over(&key.mac, out.iter(), &fields)
            .ok_or(DecodeError::Length(Field::Payload))?
            .finalize()
            .into_bytes();
        let [id_len, key_id, sender, recipient, sequence, timestamp] = fields;
        out.push_parts(&[id_len, key_id, sender, recipient, sequence, timestamp, &tag]);
        Ok(())
    }
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("key_id", &&*self.key.id)
            .field("me", &self.me)
            .field("next_sequence", &self.next_sequence)
            .finish()
    }
}

/// Limits of the replay protection, with their defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayPolicy {
    /// Largest accepted difference between a message's timestamp and the
    /// receiver's clock, either way, in milliseconds. Default 30 000: NTP
    /// keeps hosts well within it, and a replay must come this soon.
    pub max_skew_ms: u64,
    /// Most senders whose replay windows are kept. Default 4096, far above
    /// the nodes or workers one peer talks to.
    pub max_peers: usize,
}

impl Default for ReplayPolicy {
    fn default() -> Self {
        ReplayPolicy {
            max_skew_ms: 30_000,
            max_peers: 4096,
        }
    }
}

/// What a verified signature frame said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// The sender's id (a node's boot id, a worker's instance id).
    pub sender: u64,
    /// The sender's sequence number.
    pub sequence: u64,
    /// The sender's clock, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The id of the key whose MAC matched: a node tells admin workers by
    /// it.
    pub key_id: KeyId,
}

/// A key id (1-32 bytes of `A-Z a-z 0-9 . _ -`), held inline so that
/// [`Verified`] stays `Copy`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId {
    len: u8,
    bytes: [u8; MAX_KEY_ID],
}

impl KeyId {
    /// `id` as a key id, or `None` if it is not one.
    pub fn new(id: &str) -> Option<KeyId> {
        Self::from_bytes(id.as_bytes())
    }

    fn from_bytes(id: &[u8]) -> Option<KeyId> {
        if !key_id_ok(id) {
            return None;
        }
        let mut bytes = [0; MAX_KEY_ID];
        bytes.get_mut(..id.len())?.copy_from_slice(id);
        Some(KeyId {
            len: u8::try_from(id.len()).ok()?,
            bytes,
        })
    }

    /// The key id.
    pub fn as_str(&self) -> &str {
        let id = self.bytes.get(..usize::from(self.len)).unwrap_or_default();
        // Checked to be ASCII when made.
        std::str::from_utf8(id).unwrap_or_default()
    }
}

impl std::fmt::Debug for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

/// Why a message failed verification. Every variant means "drop it, count
/// it, log it (rate-limited)"; none is fatal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyError {
    /// The header frame is not a v1 header ([`DecodeError::Header`],
    /// `UnknownVersion`, `UnknownType` or `UnknownFlags`).
    Header(DecodeError),
    /// No SIGNED flag, on a link that requires signatures.
    Unsigned,
    /// The signature frame is missing or has the wrong shape.
    SignatureFrame,
    /// The key id is not in the key ring.
    UnknownKey,
    /// The MAC does not match.
    BadSignature,
    /// Signed for another receiver (or another boot of this one). The
    /// MAC was valid, so the message is authentic: `sender` signed it.
    WrongRecipient {
        /// The signer's process id.
        sender: u64,
        /// Its timestamp is within the skew bound: not an old capture.
        fresh: bool,
    },
    /// The timestamp is further from `now_ms` than the skew bound.
    Stale,
    /// The sequence number was used already, or is too far behind.
    Replayed,
}

impl std::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VerifyError::Header(error) => write!(f, "bad header: {error}"),
            VerifyError::Unsigned => f.write_str("unsigned message"),
            VerifyError::SignatureFrame => f.write_str("malformed signature frame"),
            VerifyError::UnknownKey => f.write_str("unknown key id"),
            VerifyError::BadSignature => f.write_str("bad signature"),
            VerifyError::WrongRecipient { .. } => f.write_str("signed for another recipient"),
            VerifyError::Stale => f.write_str("timestamp outside the skew bound"),
            VerifyError::Replayed => f.write_str("replayed sequence number"),
        }
    }
}

impl std::error::Error for VerifyError {}

/// Checks incoming signed messages for the process whose id is `me`, and
/// keeps each sender's replay window.
#[derive(Debug, Clone)]
pub struct Verifier {
    ring: KeyRing,
    me: u64,
    max_skew_ms: u64,
    /// Windows per (key id, sender): see [`ReplayTable`].
    replay: ReplayTable<(KeyId, u64)>,
}

impl Verifier {
    /// A verifier for messages addressed to `me`.
    pub fn new(ring: KeyRing, me: u64, policy: ReplayPolicy) -> Self {
        Verifier {
            ring,
            me,
            max_skew_ms: policy.max_skew_ms,
            replay: ReplayTable::new(policy.max_peers, policy.max_skew_ms.saturating_mul(2)),
        }
    }

    /// Verifies with the keys of `ring` from now on; each sender's replay
    /// window carries on.
    pub fn rekey(&mut self, ring: KeyRing) {
        self.ring = ring;
    }

    /// Check the signature of one message (all its frames, routing id
    /// removed) at `now_ms`, in the order of the module docs. On success
    /// the sequence is recorded and [`decode`](super::codec::decode) may
    /// read the message.
    pub fn verify(&mut self, frames: &[&[u8]], now_ms: u64) -> Result<Verified, VerifyError> {
        let head = parse_head(frames).map_err(VerifyError::Header)?;
        if !head.signed {
            return Err(VerifyError::Unsigned);
        }
        let (&signature, signed) = match frames.split_last() {
            Some((signature, signed)) if !signed.is_empty() => (signature, signed),
            _ => return Err(VerifyError::SignatureFrame),
        };
        let frame = SignatureFrame::parse(signature).ok_or(VerifyError::SignatureFrame)?;
        let key = self
            .ring
            .find(frame.key_id)
            .ok_or(VerifyError::UnknownKey)?;
        let mac = mac_over(&key.mac, signed.iter().copied(), &[frame.signed_part])
            .ok_or(VerifyError::BadSignature)?;
        // `verify_slice` compares in constant time.
        mac.verify_slice(frame.tag)
            .map_err(|_| VerifyError::BadSignature)?;
        let to_anyone = frame.recipient == 0 && is_to_anyone(head.message_type, signed);
        if frame.recipient != self.me && !to_anyone {
            let sender = frame.sender;
            let fresh = now_ms.abs_diff(frame.timestamp_ms) <= self.max_skew_ms;
            return Err(VerifyError::WrongRecipient { sender, fresh });
        }
        if now_ms.abs_diff(frame.timestamp_ms) > self.max_skew_ms {
            return Err(VerifyError::Stale);
        }
        let key_id = KeyId::from_bytes(frame.key_id).ok_or(VerifyError::SignatureFrame)?;
        if !self
            .replay
            .accept((key_id, frame.sender), frame.sequence, now_ms)
        {
            return Err(VerifyError::Replayed);
        }
        Ok(Verified {
            sender: frame.sender,
            sequence: frame.sequence,
            timestamp_ms: frame.timestamp_ms,
            key_id,
        })
    }
}

/// The parts of a signature frame.
struct SignatureFrame<'a> {
    key_id: &'a [u8],
    sender: u64,
    recipient: u64,
    sequence: u64,
    timestamp_ms: u64,
    /// Everything but the MAC: what the MAC covers of this frame.
    signed_part: &'a [u8],
    tag: &'a [u8; MAC_LEN],
}

impl<'a> SignatureFrame<'a> {
    fn parse(frame: &'a [u8]) -> Option<Self> {
        let (signed_part, tag) = frame.split_last_chunk::<MAC_LEN>()?;
        let (&id_len, rest) = signed_part.split_first()?;
        let (key_id, fields) = rest.split_at_checked(usize::from(id_len))?;
        if !key_id_ok(key_id) {
            return None;
        }
        let (sender, fields) = fields.split_first_chunk::<8>()?;
        let (recipient, fields) = fields.split_first_chunk::<8>()?;
        let (sequence, timestamp) = fields.split_first_chunk::<8>()?;
        let timestamp: &[u8; 8] = timestamp.try_into().ok()?;
        Some(SignatureFrame {
            key_id,
            sender: u64::from_be_bytes(*sender),
            recipient: u64::from_be_bytes(*recipient),
            sequence: u64::from_be_bytes(*sequence),
            timestamp_ms: u64::from_be_bytes(*timestamp),
            signed_part,
            tag,
        })
    }
}

/// The two messages signed for recipient 0, since their sender knows no
/// id for the receiver (docs/protocol.md section 9): READY, and the
/// UNSUPPORTED_VERSION ERROR answering a message that could not be
/// verified.
fn is_to_anyone(kind: MessageType, frames: &[&[u8]]) -> bool {
    match kind {
        MessageType::Ready => true,
        MessageType::Error => frames
            .get(1)
            .is_some_and(|meta| meta.starts_with(&ErrorCode::UNSUPPORTED_VERSION.0.to_be_bytes())),
        _ => false,
    }
}

/// The HMAC state after `frames` and then one more frame made of `last`'s
/// parts, each frame preceded by its length (4 bytes, big-endian). `None`
/// when a frame is 4 GiB or longer.
fn mac_over<'f>(
    key: &HmacSha256,
    frames: impl Iterator<Item = &'f [u8]>,
    last: &[&[u8]],
) -> Option<HmacSha256> {
    let mut mac = key.clone();
    for frame in frames {
        mac.update(&u32::try_from(frame.len()).ok()?.to_be_bytes());
        mac.update(frame);
    }
    let last_len: usize = last.iter().map(|part| part.len()).sum();
    mac.update(&u32::try_from(last_len).ok()?.to_be_bytes());
    for part in last {
        mac.update(part);
    }
    Some(mac)
}

/// `id` as a key id, if it is one.
fn key_id(id: &[u8]) -> Option<&str> {
    key_id_ok(id).then(|| std::str::from_utf8(id).ok())?
}

fn key_id_ok(id: &[u8]) -> bool {
    (1..=MAX_KEY_ID).contains(&id.len()) && is_name(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::decode;
    use crate::message::{Data, List, Payload, Ready, VERSION};

    const KEYS: &[u8] = b"k1:0123456789abcdef0123456789abcdef\n";
    const NODE: u64 = 0x0102_0304_0506_0708;
    const WORKER: u64 = 0x1112_1314_1516_1718;
    const NOW: u64 = 1_700_000_000_000;

    fn ring(text: &[u8]) -> KeyRing {
        KeyRing::parse(text).expect("valid key file")
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    /// `message` signed by the node for the worker at `now_ms`, as owned
    /// frames, using (and advancing) `signer`.
    fn signed(
        signer: &mut Signer,
        message: &Message<'_>,
        recipient: u64,
        now_ms: u64,
    ) -> Vec<Vec<u8>> {
        let mut out = Frames::new();
        signer
            .encode(VERSION, message, recipient, now_ms, &mut out)
            .expect("encodable");
        out.iter().map(<[u8]>::to_vec).collect()
    }

    fn data() -> Message<'static> {
        Message::Message(Data {
            conn: 7,
            payload: Payload::Text("hello"),
        })
    }

    fn worker_verifier(keys: &[u8]) -> Verifier {
        Verifier::new(ring(keys), WORKER, ReplayPolicy::default())
    }

    fn check(
        verifier: &mut Verifier,
        frames: &[Vec<u8>],
        now_ms: u64,
    ) -> Result<Verified, VerifyError> {
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        verifier.verify(&refs, now_ms)
    }

    #[test]
    fn test_vector_of_the_protocol_document() {
        // Computed independently with Python's hmac module; docs/protocol.md
        // shows the same bytes.
        let mut signer = ring(KEYS).signer(NODE);
        let frames = signed(&mut signer, &Message::Heartbeat { boot: NODE }, WORKER, NOW);
        let frames: Vec<String> = frames.iter().map(|frame| hex(frame)).collect();
        assert_eq!(
            frames,
            [
                "010101",
                "0102030405060708",
                "026b31010203040506070811121314151617180000000000000001\
                 0000018bcfe56800\
                 085bee8a25bab7fd6a4e3c2ef0130e0a35b6301c581715dcb4064296a2c0d6a8",
            ]
        );
    }

    #[test]
    fn good_signature_verifies_and_decodes() {
        let mut signer = ring(KEYS).signer(NODE);
        let frames = signed(&mut signer, &data(), WORKER, NOW);
        let mut verifier = worker_verifier(KEYS);
        assert_eq!(
            check(&mut verifier, &frames, NOW + 5),
            Ok(Verified {
                sender: NODE,
                sequence: 1,
                timestamp_ms: NOW,
                key_id: KeyId::new("k1").expect("key id"),
            })
        );
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        assert_eq!(decode(&refs), Ok(data()));
    }

    #[test]
    fn key_ids_hold_only_key_id_syntax() {
        assert_eq!(
            KeyId::new("k-1.a_B").map(|id| id.as_str().to_owned()),
            Some("k-1.a_B".into())
        );
        assert_eq!(format!("{:?}", KeyId::new("k1").expect("valid")), "\"k1\"");
        let longest = "k".repeat(MAX_KEY_ID);
        assert_eq!(
            KeyId::new(&longest).map(|id| id.as_str().len()),
            Some(MAX_KEY_ID)
        );
        for bad in ["", "k/1", "k 1", &"k".repeat(MAX_KEY_ID + 1)] {
            assert_eq!(KeyId::new(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn any_key_of_the_ring_verifies() {
        let old = b"old:aaaaaaaaaaaaaaaaaaaa\n";
        let mut signer = ring(old).signer(NODE);
        let frames = signed(&mut signer, &data(), WORKER, NOW);
        let mut verifier = worker_verifier(b"new:bbbbbbbbbbbbbbbbbbbb\nold:aaaaaaaaaaaaaaaaaaaa\n");
        let verified = check(&mut verifier, &frames, NOW).expect("verifies");
        assert_eq!(verified.key_id.as_str(), "old", "the key that verified");
    }

    /// One test per row: `name: frames of data() signed at NOW => change,
    /// verified at now => result`.
    macro_rules! tampering {
        ($($name:ident: $change:expr => $expected:expr;)*) => {$(
            #[test]
            fn $name() {
                let mut signer = ring(KEYS).signer(NODE);
                let mut frames = signed(&mut signer, &data(), WORKER, NOW);
                let change: fn(&mut Vec<Vec<u8>>) = $change;
                change(&mut frames);
                assert_eq!(check(&mut worker_verifier(KEYS), &frames, NOW), Err($expected));
            }
        )*};
    }

    /// Where the fields of the test's signature frame ("k1") start.
    const SEQUENCE_AT: usize = 1 + 2 + 16;

    tampering! {
        payload_byte_flipped: |f| f[2][0] ^= 1 => VerifyError::BadSignature;
        type_byte_changed: |f| f[0][1] = MessageType::Connect as u8 => VerifyError::BadSignature;
        meta_changed: |f| f[1][7] = 8 => VerifyError::BadSignature;
        sequence_changed: |f| f[3][SEQUENCE_AT + 7] = 2 => VerifyError::BadSignature;
        mac_changed: |f| f[3][66] ^= 0x80 => VerifyError::BadSignature;
        frame_boundary_moved: |f| { let last = f[1].pop().unwrap_or(0); f[2].insert(0, last); } => VerifyError::BadSignature;
        frame_inserted: |f| f.insert(2, Vec::new()) => VerifyError::BadSignature;
        unknown_key_id: |f| f[3][2] = b'2' => VerifyError::UnknownKey;
        key_id_not_a_name: |f| f[3][2] = b' ' => VerifyError::SignatureFrame;
        signature_frame_truncated: |f| { f[3].pop(); } => VerifyError::SignatureFrame;
        signature_frame_removed: |f| { f.pop(); } => VerifyError::SignatureFrame;
        key_id_length_lies: |f| f[3][0] = 3 => VerifyError::SignatureFrame;
        only_a_header: |f| f.truncate(1) => VerifyError::SignatureFrame;
        flag_cleared: |f| f[0][2] = 0 => VerifyError::Unsigned;
        unknown_version: |f| f[0][0] = 4 => VerifyError::Header(DecodeError::UnknownVersion(4));
        no_frames: |f| f.clear() => VerifyError::Header(DecodeError::Header);
    }

    #[test]
    fn same_key_id_other_secret_is_a_bad_signature() {
        let mut signer = ring(KEYS).signer(NODE);
        let frames = signed(&mut signer, &data(), WORKER, NOW);
        let mut verifier = worker_verifier(b"k1:0123456789abcdef0123456789abcdeX\n");
        assert_eq!(
            check(&mut verifier, &frames, NOW),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn recipient_must_be_me_and_zero_only_for_ready() {
        let mut signer = ring(KEYS).signer(NODE);
        let mut verifier = worker_verifier(KEYS);
        let other = signed(&mut signer, &data(), WORKER + 1, NOW);
        assert_eq!(
            check(&mut verifier, &other, NOW),
            Err(VerifyError::WrongRecipient {
                sender: NODE,
                fresh: true
            })
        );
        let zero = signed(&mut signer, &data(), 0, NOW);
        assert_eq!(
            check(&mut verifier, &zero, NOW),
            Err(VerifyError::WrongRecipient {
                sender: NODE,
                fresh: true
            })
        );
        let services = ["chat"];
        let ready = Message::Ready(Ready {
            instance: NODE,
            name: "w",
            services: List::from(&services[..]),
        });
        let ready = signed(&mut signer, &ready, 0, NOW);
        assert!(check(&mut verifier, &ready, NOW).is_ok());
    }

    #[test]
    fn timestamp_skew_bound_is_inclusive_both_ways() {
        let mut signer = ring(KEYS).signer(NODE);
        let skew = ReplayPolicy::default().max_skew_ms;
        let table = [
            (NOW - skew, true),
            (NOW + skew, true),
            (NOW - skew - 1, false),
            (NOW + skew + 1, false),
        ];
        for (sent_at, ok) in table {
            let frames = signed(&mut signer, &data(), WORKER, sent_at);
            let result = check(&mut worker_verifier(KEYS), &frames, NOW);
            let expected = if ok {
                Ok(sent_at)
            } else {
                Err(VerifyError::Stale)
            };
            assert_eq!(
                result.map(|v| v.timestamp_ms),
                expected,
                "sent at {sent_at}"
            );
        }
    }

    #[test]
    fn replayed_sequence_is_refused() {
        let mut signer = ring(KEYS).signer(NODE);
        let frames = signed(&mut signer, &data(), WORKER, NOW);
        let mut verifier = worker_verifier(KEYS);
        assert!(check(&mut verifier, &frames, NOW).is_ok());
        assert_eq!(
            check(&mut verifier, &frames, NOW + 1),
            Err(VerifyError::Replayed)
        );
    }

    #[test]
    fn another_keys_holder_cannot_push_a_senders_window() {
        let both = b"k1:0123456789abcdef0123456789abcdef\nk2:fedcba9876543210fedcba9876543210\n";
        let mut honest = ring(KEYS).signer(NODE);
        let mut poisoner = ring(&both[36..]).signer(NODE);
        poisoner.next_sequence = u64::MAX;
        let mut verifier = worker_verifier(both);
        let poison = signed(&mut poisoner, &data(), WORKER, NOW);
        assert!(check(&mut verifier, &poison, NOW).is_ok());
        let frames = signed(&mut honest, &data(), WORKER, NOW);
        assert!(
            check(&mut verifier, &frames, NOW).is_ok(),
            "k1's window for the sender is its own"
        );
        assert_eq!(
            check(&mut verifier, &poison, NOW),
            Err(VerifyError::Replayed)
        );
    }

    #[test]
    fn reordered_within_window_is_accepted_once() {
        let mut signer = ring(KEYS).signer(NODE);
        let messages: Vec<_> = (0..70)
            .map(|_| signed(&mut signer, &data(), WORKER, NOW))
            .collect();
        let mut verifier = worker_verifier(KEYS);
        // Sequences 1..=70 arrive as 1, 3, 2, 2, then 70, then 7 (63 back)
        // and 6 (64 back, outside the window).
        let order = [
            (1, true),
            (3, true),
            (2, true),
            (2, false),
            (70, true),
            (7, true),
            (6, false),
        ];
        for (sequence, ok) in order {
            let result = check(&mut verifier, &messages[sequence - 1], NOW);
            assert_eq!(result.is_ok(), ok, "sequence {sequence}: {result:?}");
        }
    }

    #[test]
    fn failed_checks_do_not_consume_the_sequence() {
        let mut signer = ring(KEYS).signer(NODE);
        let frames = signed(&mut signer, &data(), WORKER, NOW);
        let mut verifier = worker_verifier(KEYS);
        let mut forged = frames.clone();
        forged[2][0] ^= 1;
        assert_eq!(
            check(&mut verifier, &forged, NOW),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            check(&mut verifier, &frames, NOW + 60_000),
            Err(VerifyError::Stale)
        );
        assert!(check(&mut verifier, &frames, NOW).is_ok());
    }

    #[test]
    fn each_sender_has_its_own_window() {
        let keys = ring(KEYS);
        let (mut a, mut b) = (keys.signer(NODE), keys.signer(NODE + 1));
        let mut verifier = worker_verifier(KEYS);
        assert!(check(&mut verifier, &signed(&mut a, &data(), WORKER, NOW), NOW).is_ok());
        assert!(check(&mut verifier, &signed(&mut b, &data(), WORKER, NOW), NOW).is_ok());
    }

    #[test]
    fn key_file_accepts_comments_blank_lines_and_crlf() {
        let text = b"# rotation in progress\r\n\r\nnew-2:  0123456789abcdef:with:colons \r\n  old.1:fedcba9876543210\n";
        let keys = ring(text);
        assert_eq!(keys.key_ids().collect::<Vec<_>>(), ["new-2", "old.1"]);
        let debug = format!("{keys:?}");
        assert!(
            debug.contains("new-2") && !debug.contains("0123456789abcdef"),
            "{debug}"
        );
        let signer = format!("{:?}", keys.signer(1));
        assert!(!signer.contains("0123456789abcdef"), "{signer}");
    }

    #[test]
    fn key_file_errors_name_the_line() {
        let table: &[(&[u8], KeyFileError)] = &[
            (b"", KeyFileError::NoKeys),
            (b"# only a comment\n\n", KeyFileError::NoKeys),
            (
                b"k1:0123456789abcdef\nno colon here\n",
                KeyFileError::MissingColon { line: 2 },
            ),
            (b":0123456789abcdef", KeyFileError::InvalidKeyId { line: 1 }),
            (
                b"a b:0123456789abcdef",
                KeyFileError::InvalidKeyId { line: 1 },
            ),
            (
                b"\xc3\xa9:0123456789abcdef",
                KeyFileError::InvalidKeyId { line: 1 },
            ),
            (&[b'k'; 33], KeyFileError::MissingColon { line: 1 }),
            (
                b"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk:0123456789abcdef",
                KeyFileError::InvalidKeyId { line: 1 },
            ),
            (
                b"\n\nk1:0123456789abcde",
                KeyFileError::ShortSecret { line: 3 },
            ),
            (
                b"k1:                  ",
                KeyFileError::ShortSecret { line: 1 },
            ),
            (
                b"k1:0123456789abcdef\nk1:fedcba9876543210",
                KeyFileError::DuplicateKeyId { line: 2 },
            ),
        ];
        for (text, expected) in table {
            assert_eq!(
                KeyRing::parse(text).map(|keys| keys.key_ids().count()),
                Err(*expected),
                "{}",
                String::from_utf8_lossy(text)
            );
        }
        assert_eq!(
            KeyFileError::ShortSecret { line: 3 }.to_string(),
            "line 3: secret shorter than 16 bytes"
        );
    }

    #[test]
    fn sequence_numbers_count_from_one() {
        let mut signer = ring(KEYS).signer(NODE);
        let mut verifier = worker_verifier(KEYS);
        for expected in 1..=3 {
            let frames = signed(&mut signer, &data(), WORKER, NOW);
            assert_eq!(
                check(&mut verifier, &frames, NOW).map(|v| v.sequence),
                Ok(expected)
            );
        }
    }
}
