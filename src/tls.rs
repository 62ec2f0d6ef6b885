//! rustls server configuration: certificate loading, the development
//! certificate, session resumption and reload on SIGHUP.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::ring as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};
use rustls::ServerConfig;
use sha2::{Digest, Sha256};

use crate::config::TlsSource;

/// Stateful resumption entries kept for TLS 1.2 clients without tickets.
const SESSION_CACHE_ENTRIES: usize = 4096;

/// Builds the [`ServerConfig`] for new connections and rebuilds it on
/// reload. The ticket keys and session cache survive a reload so clients
/// can still resume.
pub struct TlsContext {
    source: TlsSource,
    ticketer: Arc<dyn ProducesTickets>,
    sessions: Arc<dyn StoresServerSessions>,
    config: Arc<ServerConfig>,
    fingerprint: String,
}

/// Why a certificate/key pair could not be used.
#[derive(Debug)]
pub struct TlsError(String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

impl TlsContext {
    /// Loads (or, for [`TlsSource::Development`], generates) the
    /// certificate and builds the first configuration.
    pub fn new(source: TlsSource) -> Result<Self, TlsError> {
        let ticketer = provider::Ticketer::new()
            .map_err(|e| TlsError(format!("cannot create session ticketer: {e}")))?;
        let sessions: Arc<dyn StoresServerSessions> =
            ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
        let (chain, key) = match &source {
            TlsSource::Files { cert, key } => load_pair(cert, key)?,
            TlsSource::Development { out } => development_pair(out.as_deref())?,
        };
        let fingerprint = sha256_fingerprint(&chain[0]);
        let config = build_config(chain, key, &ticketer, &sessions)?;
        Ok(Self {
            source,
            ticketer,
            sessions,
            config,
            fingerprint,
        })
    }

    /// The configuration for connections accepted from now on.
    pub fn config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.config)
    }

    /// SHA-256 fingerprint of the leaf certificate, as colon-separated hex.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Re-reads the certificate and key files. On any error the current
    /// configuration stays in force. Live connections are never touched:
    /// they keep the configuration they were accepted with.
    pub fn reload(&mut self) -> Result<(), TlsError> {
        let TlsSource::Files { cert, key } = &self.source else {
            return Err(TlsError(
                "the development certificate has no files to reload".into(),
            ));
        };
        let (chain, key) = load_pair(cert, key)?;
        let fingerprint = sha256_fingerprint(&chain[0]);
        self.config = build_config(chain, key, &self.ticketer, &self.sessions)?;
        self.fingerprint = fingerprint;
        Ok(())
    }
}

type Pair = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn load_pair(cert: &Path, key: &Path) -> Result<Pair, TlsError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError(format!("{}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(TlsError(format!(
            "{}: no certificate found",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| TlsError(format!("{}: {e}", key.display())))?;
    Ok((chain, key))
}

/// A self-signed ECDSA P-256 certificate for localhost, 127.0.0.1 and ::1.
fn development_pair(out: Option<&Path>) -> Result<Pair, TlsError> {
    let names = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
    let generated = rcgen::generate_simple_self_signed(names)
        .map_err(|e| TlsError(format!("cannot generate development certificate: {e}")))?;
    if let Some(path) = out {
        std::fs::write(path, generated.cert.pem())
            .map_err(|e| TlsError(format!("{}: {e}", path.display())))?;
    }
    let key = PrivateKeyDer::try_from(generated.key_pair.serialize_der())
        .map_err(|e| TlsError(format!("development key: {e}")))?;
    Ok((vec![generated.cert.der().clone()], key))
}

fn build_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    ticketer: &Arc<dyn ProducesTickets>,
    sessions: &Arc<dyn StoresServerSessions>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError(format!("protocol versions: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            TlsError(format!(
                "certificate and key do not form a usable pair: {e}"
            ))
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // The provider lists its suites strongest first (AES-256-GCM, then
    // AES-128-GCM, then ChaCha20-Poly1305): that order, not the client's,
    // picks the suite, as a TLS scan expects of a server.
    config.ignore_client_order = true;
    config.ticketer = Arc::clone(ticketer);
    // One TLS 1.3 ticket is enough to resume; rustls' default of two costs
    // a second ticket encryption and record on every handshake.
    config.send_tls13_tickets = 1;
    config.session_storage = Arc::clone(sessions);
    Ok(Arc::new(config))
}

fn sha256_fingerprint(cert: &CertificateDer<'_>) -> String {
    let digest = Sha256::digest(cert.as_ref());
    let hex: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}
