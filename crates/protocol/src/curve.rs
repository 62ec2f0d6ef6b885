//! CURVE (ZeroMQ RFC 26) on a signed backend link: the keys, derived from
//! the key file, and the socket options that use them
//! (docs/protocol.md section 1).
//!
//! HMAC signatures say who sent a message, but only once libzmq has
//! handed the whole multipart message over, and libzmq holds an
//! unfinished one for as long as its sender keeps adding frames. CURVE
//! moves the check to the handshake: a peer that cannot prove it holds a
//! key of the node's key file never gets to send a frame.
//!
//! - Each key of the key file gives one client keypair: the secret is
//!   HMAC-SHA256(key secret, [`CLIENT_LABEL`]). A worker connects with the
//!   pair of its signing key; the node's ZAP handler admits the public key
//!   of any key in its file, so rotation works as it does for signatures.
//! - The node's keypair is the same for every node and public: the secret
//!   is SHA-256([`SERVER_LABEL`]), the public key [`SERVER_PUBLIC_Z85`].
//!   CURVE's ephemeral keys still hide the traffic from someone who only
//!   listens, but a public server key authenticates nothing: the node is
//!   known to be the node by its signatures, not by CURVE.

use hmac::Mac;
use sha2::{Digest, Sha256};

/// The label hashed into the node's CURVE secret.
pub const SERVER_LABEL: &[u8] = b"averyws backend CURVE server key 1";

/// The label a key's secret signs to make its CURVE client secret.
pub const CLIENT_LABEL: &[u8] = b"averyws backend CURVE client key 1";

/// The node's CURVE public key in Z85, what workers set as
/// `ZMQ_CURVE_SERVERKEY` (the X25519 public key of SHA-256
/// ([`SERVER_LABEL`])).
pub const SERVER_PUBLIC_Z85: &str = "zaOB5mk3GkBEu@D([#AIs@wZwmofUBJNQG]4m!Uy";

/// A CURVE keypair, raw 32-byte keys.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPair {
    /// The public key.
    pub public: [u8; 32],
    /// The secret key.
    pub secret: [u8; 32],
}

impl KeyPair {
    /// The pair of `secret`.
    pub fn from_secret(secret: [u8; 32]) -> KeyPair {
        KeyPair {
            public: x25519_public(&secret),
            secret,
        }
    }

    /// The node's pair (see the module docs).
    pub fn server() -> KeyPair {
        KeyPair::from_secret(Sha256::digest(SERVER_LABEL).into())
    }

    /// The client pair of the key whose HMAC state (after its key
    /// schedule) is `mac`.
    pub fn client(mac: &hmac::Hmac<Sha256>) -> KeyPair {
        KeyPair::from_secret(
            mac.clone()
                .chain_update(CLIENT_LABEL)
                .finalize()
                .into_bytes()
                .into(),
        )
    }
}

impl std::fmt::Debug for KeyPair {
    /// The public key only: secrets stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let z85 = zmq::z85_encode(&self.public).unwrap_or_default();
        f.debug_struct("KeyPair")
            .field("public", &z85)
            .finish_non_exhaustive()
    }
}

/// Whether this build of libzmq has CURVE; the error says what to fix.
pub fn available() -> Result<(), String> {
    if zmq::has("curve") == Some(true) {
        return Ok(());
    }
    Err(
        "this build's libzmq has no CURVE, which a signed backend link needs: \
         build with the CXXFLAGS of .cargo/config.toml (a CXXFLAGS of your own replaces it)"
            .to_owned(),
    )
}

/// Makes `socket` a CURVE server with the node's key; before `bind`.
pub fn serve(socket: &zmq::Socket) -> zmq::Result<()> {
    socket.set_curve_server(true)?;
    socket.set_curve_secretkey(&KeyPair::server().secret)
}

/// Makes `socket` a CURVE client of a node, as `client`; before
/// `connect`.
pub fn connect_as(socket: &zmq::Socket, client: &KeyPair) -> zmq::Result<()> {
    socket.set_curve_serverkey(&KeyPair::server().public)?;
    socket.set_curve_publickey(&client.public)?;
    socket.set_curve_secretkey(&client.secret)
}

/// The X25519 public key of a 32-byte secret (libsodium's
/// `crypto_scalarmult_base`, which clamps the secret as X25519 does).
fn x25519_public(secret: &[u8; 32]) -> [u8; 32] {
    let mut public = [0u8; 32];
    // SAFETY: sodium_init may be called any number of times, from any
    // thread; both buffers are 32 bytes (crypto_scalarmult_BYTES and
    // crypto_scalarmult_SCALARBYTES), live for the call and do not overlap.
    let rc = unsafe {
        libsodium_sys::sodium_init();
        libsodium_sys::crypto_scalarmult_base(public.as_mut_ptr(), secret.as_ptr())
    };
    // It fails only for an all-zero result, which no clamped scalar gives.
    debug_assert_eq!(rc, 0);
    public
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_server_key_is_the_derived_one() {
        let public = zmq::z85_encode(&KeyPair::server().public).expect("z85");
        assert_eq!(public, SERVER_PUBLIC_Z85);
    }

    /// docs/protocol.md section 1's example, checked against pyzmq's
    /// `curve_public`.
    #[test]
    fn the_documented_client_key_example_holds() {
        let mac = hmac::Hmac::<Sha256>::new_from_slice(b"0123456789abcdef0123456789abcdef")
            .expect("any length");
        let public = zmq::z85_encode(&KeyPair::client(&mac).public).expect("z85");
        assert_eq!(public, "H%q/4g#{uvGZleh1Wo7PP8A[Vle[xhC@sYg@+o7(");
    }

    #[test]
    fn client_keys_follow_the_secret() {
        let mac = |secret: &[u8]| hmac::Hmac::<Sha256>::new_from_slice(secret).expect("any length");
        let a = KeyPair::client(&mac(b"0123456789abcdef0123456789abcdef"));
        let again = KeyPair::client(&mac(b"0123456789abcdef0123456789abcdef"));
        let b = KeyPair::client(&mac(b"0123456789abcdef0123456789abcdeF"));
        assert_eq!(a, again);
        assert_ne!(a.public, b.public);
        assert_ne!(a.public, a.secret);
        assert_eq!(a.public, x25519_public(&a.secret));
    }

    #[test]
    fn this_build_has_curve() {
        available().expect("CURVE");
    }
}
