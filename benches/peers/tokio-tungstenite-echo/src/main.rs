//! tokio-tungstenite echo server on a current-thread runtime (one core, as
//! averyws), TLS 1.3 with a generated ECDSA P-256 certificate written to
//! the path given as the second argument.
//!
//! `tokio-tungstenite-echo 127.0.0.1:9443 /tmp/peer-cert.pem`

use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};
use rustls::pki_types::PrivateKeyDer;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9443".into());
    let cert_out = args.next().unwrap_or_else(|| "peer-cert.pem".into());
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    std::fs::write(&cert_out, generated.cert.pem()).expect("write cert");
    let key = PrivateKeyDer::try_from(generated.key_pair.serialize_der()).expect("key");
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(vec![generated.cert.der().clone()], key)
    .expect("config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(&addr).await.expect("bind");
    println!("listening on wss://{}", listener.local_addr().expect("addr"));
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else { return };
            let Ok(ws) = tokio_tungstenite::accept_async(tls).await else { return };
            // The echo server of tokio-tungstenite's own examples: forward
            // batches writes and flushes when the read side is pending.
            let (sink, stream) = ws.split();
            let data = stream.try_filter(|m| std::future::ready(m.is_text() || m.is_binary()));
            let _ = data.forward(sink).await;
        });
    }
}
