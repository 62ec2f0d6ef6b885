//! Sans-IO WebSocket protocol code (RFC 6455): bytes in, values out.
//!
//! Nothing here touches a socket, a clock or randomness, so every part is
//! unit-testable, fuzzable and benchmarkable on its own.

pub use averyws_protocol::close;
pub mod decoder;
pub mod deflate;
pub mod encoder;
pub mod frame;
pub mod mask;
pub mod upgrade;
pub mod utf8;

pub use close::CloseCode;
pub use decoder::{Decoder, Event};
pub use frame::OpCode;

/// Hard caps for one connection's inbound WebSocket traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest payload of a single frame, in bytes. Default 16 MiB.
    pub max_frame_size: u64,
    /// Largest reassembled message, in bytes. Default 16 MiB.
    pub max_message_size: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_size: 16 << 20,
            max_message_size: 16 << 20,
        }
    }
}

/// Why the peer's input ended the connection; each maps to a close code
/// (RFC 6455 section 7.4.1).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The peer broke a framing rule (close 1002). The text says which.
    Protocol(&'static str),
    /// A text message or close reason was not UTF-8 (close 1007).
    InvalidUtf8,
    /// A frame or message exceeded [`Limits`] (close 1009), or a
    /// compressed message would inflate past them or its ratio cap.
    TooBig,
    /// A compressed message is not a valid DEFLATE stream (close 1007).
    BadCompression,
}

impl Error {
    /// The close code a server sends when this error fails the connection.
    pub fn close_code(self) -> CloseCode {
        match self {
            Error::Protocol(_) => CloseCode::PROTOCOL_ERROR,
            Error::InvalidUtf8 | Error::BadCompression => CloseCode::INVALID_PAYLOAD,
            Error::TooBig => CloseCode::MESSAGE_TOO_BIG,
        }
    }

    /// A short reason suitable for the close frame.
    pub fn reason(self) -> &'static str {
        match self {
            Error::Protocol(why) => why,
            Error::InvalidUtf8 => "invalid utf-8",
            Error::TooBig => "message too big",
            Error::BadCompression => "invalid compressed data",
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.reason(), self.close_code().0)
    }
}

impl std::error::Error for Error {}
