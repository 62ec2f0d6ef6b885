//! The backend link's protocol, versions 1 and 2, sans-IO: what travels between
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
#![forbid(unsafe_code)]

pub mod batch;
pub mod cidr;
pub mod codec;
pub mod curve;
pub mod link;
pub mod message;
pub mod monitor;
pub mod replay;
pub mod siblings;
pub mod signing;
pub mod worker;
pub mod zap;

pub use codec::{decode, encode, encode_in, DecodeError, Frames};
pub use message::{Message, MessageType, MAX_FRAMES, VERSION, VERSION_2, VERSION_3};
pub use signing::{KeyRing, ReplayPolicy, Signer, Verifier, VerifyError};
