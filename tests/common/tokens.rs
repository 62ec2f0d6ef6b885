//! HS256 tokens signed with the test secret, as an identity provider
//! would issue them.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The secret of key id `k1` in [`secrets_file`].
pub const SECRET: &str = "a-test-secret-of-at-least-32-bytes!";

/// The contents of a `--jwt-secret-file` holding [`SECRET`] as `k1`.
pub fn secrets_file() -> String {
    format!("k1:{SECRET}\n")
}

/// A token for `claims` (a JSON object text) with header `header`.
pub fn sign(header: &str, claims: &str, secret: &str) -> String {
    let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(input.as_bytes());
    format!("{input}.{}", b64(&mac.finalize().into_bytes()))
}

/// A valid token for `sub` with `roles`, expiring in an hour.
pub fn token(sub: &str, roles: &[&str]) -> String {
    let roles: Vec<String> = roles.iter().map(|r| format!("\"{r}\"")).collect();
    let claims = format!(
        r#"{{"sub":"{sub}","roles":[{}],"exp":{}}}"#,
        roles.join(","),
        now() + 3600
    );
    sign(r#"{"alg":"HS256","kid":"k1"}"#, &claims, SECRET)
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}
