//! permessage-deflate (RFC 7692), sans-IO: the offer judged
//! ([`negotiate`]) and whole messages compressed and inflated with
//! bounded memory ([`codec`]). The decoder marks a compressed message by
//! its RSV1 bit; the session inflates it before serving it, and deflates
//! what it sends.

pub mod codec;
pub mod negotiate;

pub use codec::{Codec, InflateError};
pub use negotiate::{negotiate, Agreed, Policy};
