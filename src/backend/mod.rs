//! The server's end of the backend link: the ZeroMQ ROUTER and its
//! monitor, ZAP admission, and the peer allowlist. The protocol itself
//! (messages, codec, signing, CURVE keys) is the `averyws-protocol`
//! crate, re-exported here under its module names so that the server
//! and the worker crate share one implementation.
#![forbid(unsafe_code)]

pub use averyws_protocol::{batch, codec, curve, message, replay, siblings, signing};

pub mod cidr;
pub mod endpoint;
pub mod key_file;
pub mod monitor;
pub mod zap;

pub use codec::{decode, encode, encode_in, DecodeError, Frames};
pub use message::{Message, MessageType, MAX_FRAMES, VERSION, VERSION_2, VERSION_3};
pub use signing::{KeyRing, ReplayPolicy, Signer, Verifier, VerifyError};
