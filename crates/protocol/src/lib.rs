//! The averyws backend protocol, versions 1 to 3, sans-IO: what travels between
//! averyws nodes and their ZeroMQ workers, and how it is signed.
//! `docs/protocol.md` is the specification; this module implements it.
//!
//! - [`message`]: the message types, their fields and the caps.
//! - [`batch`]: version 2's records frame, many client messages in one.
//! - [`codec`]: frames to [`Message`] ([`decode`], borrowing) and back
//!   ([`encode`] into a reusable [`Frames`]).
//! - [`signing`]: the key file, [`Signer`], [`Verifier`].
//! - [`replay`]: the per-sender replay window behind the verifier.
//! - [`curve`]: the CURVE keys a signed link's handshake uses, derived
//!   from the key file.
//! - [`siblings`]: where the other reactors of a process bind.
//! - [`close`]: WebSocket close codes, which CONNECT, DISCONNECT and
//!   CLOSE carry.
//!
//! Nothing here touches a socket or a clock. A receiver handles one
//! multipart message (the ROUTER's routing-id frame removed) like this,
//! dropping it, counting it and logging it (rate-limited) at the first
//! failure, never failing the link:
//!
//! 1. more than [`MAX_FRAMES`] frames: drop without reading further;
//! 2. with a key ring, [`Verifier::verify`] (header, key, MAC, recipient,
//!    timestamp, replay); without one, a SIGNED message is dropped;
//! 3. [`decode`];
//! 4. a type the sender's side may not send
//!    ([`MessageType::sent_by_worker`], [`MessageType::sent_by_node`]):
//!    drop.
//!
//! The averyws server and the `averyws-worker` crate both build on this
//! crate, so a node and a worker cannot disagree on a byte.
//!
//! The one `unsafe` call is libsodium's X25519 base-point multiplication
//! in [`curve`].

pub mod batch;
pub mod close;
pub mod codec;
pub mod curve;
pub mod message;
pub mod replay;
pub mod siblings;
pub mod signing;

pub use close::CloseCode;
pub use codec::{decode, encode, encode_in, DecodeError, Frames};
pub use message::{Message, MessageType, MAX_FRAMES, VERSION, VERSION_2, VERSION_3};
pub use signing::{KeyRing, ReplayPolicy, Signer, Verifier, VerifyError};
