//! Certificates for tests that bring their own files.

use rustls::pki_types::CertificateDer;

/// A certificate/key pair in PEM, the certificate's DER, and its public
/// key's SubjectPublicKeyInfo (DER), which a browser can be told to trust.
pub struct Pair {
    pub cert: String,
    pub key: String,
    pub der: CertificateDer<'static>,
    pub spki: Vec<u8>,
}

/// A fresh self-signed pair for `localhost`.
pub fn generate_pair() -> Pair {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    Pair {
        cert: generated.cert.pem(),
        key: generated.key_pair.serialize_pem(),
        der: generated.cert.der().clone(),
        spki: generated.key_pair.public_key_der(),
    }
}
