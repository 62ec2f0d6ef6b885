//! The client's TLS session, through rustls' unbuffered API: the
//! connection owns the buffers, so between messages it holds none. Bytes
//! are read into the reactor's shared buffer and decrypted there (rustls
//! 0.23 then copies each record's plaintext into a queue of its own, which
//! we empty into the reactor's plaintext buffer at once); only the start
//! of a record that has not fully arrived is kept,
//! and only records the socket did not take wait in `outgoing`. (The
//! buffered `ServerConnection` keeps a 4 KiB read buffer for the life of
//! every connection, half of an idle connection's memory.)

use std::io::{self, Read, Write};
use std::sync::Arc;

use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    AppDataRecord, ConnectionState, EncodeError, EncodeTlsData, EncryptError, UnbufferedStatus,
    WriteTraffic,
};
use rustls::{Error, ServerConfig};

use super::backlog::Backlog;

/// Most TLS bytes read from the socket at once: the size of the reactor's
/// shared read buffer.
pub const READ_SIZE: usize = 64 << 10;

/// Per-record room asked for beyond the plaintext when encrypting: a TLS
/// 1.2 GCM record adds 29 bytes, a TLS 1.3 one 22. A short guess costs a
/// retry, never an error.
const RECORD_OVERHEAD: usize = 64;

/// Why receiving failed.
#[derive(Debug)]
pub enum ReceiveError {
    /// The socket's error (`WouldBlock` included).
    Io(io::Error),
    /// The peer broke TLS; an alert may be queued (see [`Tls::encode_alert`]).
    Tls(Error),
}

/// One client's TLS session and the bytes it holds.
pub struct Tls {
    conn: UnbufferedServerConnection,
    /// Received bytes not processed yet: an incomplete record.
    incoming: Backlog,
    /// Records waiting for the socket.
    outgoing: Backlog,
    /// Most bytes of records kept for the socket
    /// (`Protection::tls_backlog_bytes`).
    backlog_limit: usize,
    /// The client's close_notify arrived.
    peer_closed: bool,
}

impl Tls {
    /// A server session under `config`, keeping at most `backlog_limit`
    /// bytes of records for the socket.
    pub fn new(config: Arc<ServerConfig>, backlog_limit: usize) -> Result<Self, Error> {
        Ok(Tls {
            conn: UnbufferedServerConnection::new(config)?,
            incoming: Backlog::default(),
            outgoing: Backlog::default(),
            backlog_limit,
            peer_closed: false,
        })
    }

    /// True until the handshake has completed.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// True while records wait for the socket.
    pub fn wants_write(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// True once the client's close_notify has been read.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Reads once from `socket` into `scratch` and processes every
    /// complete record: application data is appended to `plain`, handshake
    /// records are queued to send. Usually nothing is kept and the records
    /// are processed where they were read; behind kept bytes, the read is
    /// appended to them instead, so a client dribbling a large message
    /// costs a copy of each byte once, not of everything kept on every
    /// read. More than `max_kept` bytes left incomplete is an error.
    /// `Ok(0)` is the end of the stream.
    pub fn receive(
        &mut self,
        socket: &mut impl Read,
        scratch: &mut [u8],
        plain: &mut Vec<u8>,
        max_kept: usize,
    ) -> Result<usize, ReceiveError> {
        let room = scratch.len().min(READ_SIZE);
        let read = socket
            .read(&mut scratch[..room])
            .map_err(ReceiveError::Io)?;
        if read == 0 {
            return Ok(0);
        }
        // Kept even on an error: rustls' handshake deframer holds offsets
        // into these bytes, and the alert it encodes next reads them.
        let processed = if self.incoming.is_empty() {
            let (consumed, processed) = self.process(&mut scratch[..read], plain);
            self.incoming.extend_from_slice(&scratch[consumed..read]);
            processed
        } else {
            self.incoming.extend_from_slice(&scratch[..read]);
            let mut kept = std::mem::take(&mut self.incoming);
            let (consumed, processed) = self.process(kept.as_mut_slice(), plain);
            kept.consume(consumed);
            self.incoming = kept;
            processed
        };
        self.incoming.release_if_empty();
        processed.map_err(ReceiveError::Tls)?;
        if self.incoming.len() > max_kept {
            let too_long = Error::General("TLS message too long".into());
            return Err(ReceiveError::Tls(too_long));
        }
        Ok(read)
    }

    /// Encrypts as much of `data` as keeps the records waiting for the
    /// socket within the backlog limit, and returns how much that was;
    /// nothing before the handshake has completed.
    pub fn write_plaintext(&mut self, data: &[u8]) -> usize {
        let room = self.backlog_limit.saturating_sub(self.outgoing.len());
        let take = data.len().min(room);
        if take == 0 || self.conn.is_handshaking() {
            return 0;
        }
        let data = &data[..take];
        let guess = take + RECORD_OVERHEAD * (take / (16 << 10) + 1);
        let written = self.with_write_traffic(|traffic, out| {
            append(out, guess, |buf| traffic.encrypt(data, buf).map_err(needed))
        });
        if written {
            take
        } else {
            0
        }
    }

    /// Queues a close_notify alert.
    pub fn send_close_notify(&mut self) {
        self.with_write_traffic(|traffic, out| {
            append(out, RECORD_OVERHEAD, |buf| {
                traffic.queue_close_notify(buf).map_err(needed)
            })
        });
    }

    /// After a [`ReceiveError::Tls`], queues the alert rustls has for the
    /// peer, if any.
    pub fn encode_alert(&mut self) {
        // Only while rustls has records queued (the alert may follow the
        // rest of its flight): it hands those out before it deframes
        // anything, and deframing the bytes that failed again would fail
        // again (and trip its assertion that one fatal alert is sent). The
        // kept bytes, not an empty slice: it may hold offsets into them.
        let mut kept = std::mem::take(&mut self.incoming);
        while self.conn.wants_write() {
            let UnbufferedStatus { state, .. } = self.conn.process_tls_records(kept.as_mut_slice());
            let Ok(ConnectionState::EncodeTlsData(mut data)) = state else {
                break;
            };
            if !encode(self.outgoing.vec_mut(), &mut data) {
                break;
            }
        }
    }

    /// Writes queued records to `socket` (one call); `Ok(0)` once none wait.
    pub fn write_tls(&mut self, socket: &mut impl Write) -> io::Result<usize> {
        if self.outgoing.is_empty() {
            return Ok(0);
        }
        let n = socket.write(&self.outgoing)?;
        self.outgoing.consume(n);
        self.outgoing.release_if_empty();
        Ok(n)
    }

    /// Runs rustls over `incoming` until it needs more bytes or has
    /// nothing to say; returns how many bytes it used up, and the error
    /// that stopped it, if one did.
    fn process(&mut self, incoming: &mut [u8], plain: &mut Vec<u8>) -> (usize, Result<(), Error>) {
        let mut consumed = 0;
        loop {
            let UnbufferedStatus { mut discard, state } =
                self.conn.process_tls_records(&mut incoming[consumed..]);
            let step = match state {
                Ok(ConnectionState::ReadTraffic(mut traffic)) => loop {
                    match traffic.next_record() {
                        Some(Ok(AppDataRecord {
                            discard: more,
                            payload,
                        })) => {
                            discard += more;
                            plain.extend_from_slice(payload);
                        }
                        Some(Err(e)) => break Err(e),
                        None => break Ok(true),
                    }
                },
                Ok(ConnectionState::EncodeTlsData(mut data)) => {
                    match encode(self.outgoing.vec_mut(), &mut data) {
                        true => Ok(true),
                        false => Err(Error::General("cannot encode a TLS record".into())),
                    }
                }
                // The records are in `outgoing`; `flush` writes them.
                Ok(ConnectionState::TransmitTlsData(data)) => {
                    data.done();
                    Ok(true)
                }
                Ok(ConnectionState::PeerClosed) => {
                    self.peer_closed = true;
                    Ok(true)
                }
                Ok(
                    ConnectionState::BlockedHandshake
                    | ConnectionState::WriteTraffic(_)
                    | ConnectionState::Closed,
                ) => Ok(false),
                // Early data is off (`max_early_data_size` 0), and no
                // other state exists in this rustls version.
                Ok(_) => Err(Error::General("unexpected TLS state".into())),
                Err(e) => Err(e),
            };
            consumed += discard;
            match step {
                Ok(true) => {}
                Ok(false) => return (consumed, Ok(())),
                Err(e) => return (consumed, Err(e)),
            }
        }
    }

    /// Runs `write` with the session's write state and the outgoing
    /// buffer, once rustls has nothing else to send; false if it cannot.
    fn with_write_traffic(
        &mut self,
        mut write: impl FnMut(&mut WriteTraffic<'_, ServerConnectionData>, &mut Vec<u8>) -> bool,
    ) -> bool {
        // rustls' handshake deframer holds offsets into the kept bytes (a
        // handshake message split across records): they, not an empty
        // slice, are the buffer it must be shown.
        let mut kept = std::mem::take(&mut self.incoming);
        let written = loop {
            let UnbufferedStatus { discard, state } =
                self.conn.process_tls_records(kept.as_mut_slice());
            let done = match state {
                Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                    Some(write(&mut traffic, self.outgoing.vec_mut()))
                }
                Ok(ConnectionState::EncodeTlsData(mut data)) => {
                    (!encode(self.outgoing.vec_mut(), &mut data)).then_some(false)
                }
                Ok(ConnectionState::TransmitTlsData(data)) => {
                    data.done();
                    None
                }
                _ => Some(false),
            };
            kept.consume(discard);
            if let Some(written) = done {
                break written;
            }
        };
        kept.release_if_empty();
        self.incoming = kept;
        written
    }
}

/// Appends the handshake or alert record rustls has ready to `out`.
fn encode(out: &mut Vec<u8>, data: &mut EncodeTlsData<'_, ServerConnectionData>) -> bool {
    append(out, 4096, |buf| {
        data.encode(buf).map_err(|e| match e {
            EncodeError::InsufficientSize(size) => Some(size.required_size),
            _ => None,
        })
    })
}

/// The size an encryption needs, from its error; `None` for any other.
fn needed(error: EncryptError) -> Option<usize> {
    match error {
        EncryptError::InsufficientSize(size) => Some(size.required_size),
        _ => None,
    }
}

/// Appends what `write` puts into a buffer of `guess` bytes (or of the
/// size it says it needs) to `out`; false if it fails otherwise.
fn append(
    out: &mut Vec<u8>,
    guess: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, Option<usize>>,
) -> bool {
    let start = out.len();
    let mut room = guess;
    loop {
        out.resize(start + room, 0);
        match write(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return true;
            }
            Err(Some(needed)) if needed > room => room = needed,
            Err(_) => {
                out.truncate(start);
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TlsSource;
    use crate::config::{DEFAULT_MAX_PARTIAL_TLS_BYTES, DEFAULT_TLS_BACKLOG_BYTES};
    use crate::tls::TlsContext;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use rustls::{ClientConfig, ClientConnection, RootCertStore};

    /// A server session and a real rustls client that trusts it.
    fn pair() -> (Tls, ClientConnection) {
        // One file per pair: tests run in parallel, each its own certificate.
        static PAIRS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = PAIRS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("averyws-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = dir.join(format!("cert-{n}.pem"));
        let context = TlsContext::new(TlsSource::Development {
            out: Some(cert.clone()),
        })
        .unwrap();
        let mut roots = RootCertStore::empty();
        for der in CertificateDer::pem_file_iter(&cert).unwrap() {
            roots.add(der.unwrap()).unwrap();
        }
        std::fs::remove_file(&cert).unwrap();
        let mut client = ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.enable_secret_extraction = true;
        let name = ServerName::try_from("localhost").unwrap();
        let client = ClientConnection::new(Arc::new(client), name).unwrap();
        let tls = Tls::new(context.config(), DEFAULT_TLS_BACKLOG_BYTES).unwrap();
        (tls, client)
    }

    /// Moves the client's TLS bytes to the server `chunk` bytes a read,
    /// and the server's back; returns the plaintext the server got.
    fn exchange(server: &mut Tls, client: &mut ClientConnection, chunk: usize) -> Vec<u8> {
        let mut scratch = vec![0; READ_SIZE];
        let mut plain = Vec::new();
        for _ in 0..100 {
            let mut wire = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut wire).unwrap();
            }
            for mut piece in wire.chunks(chunk) {
                while !piece.is_empty() {
                    server
                        .receive(
                            &mut piece,
                            &mut scratch,
                            &mut plain,
                            DEFAULT_MAX_PARTIAL_TLS_BYTES,
                        )
                        .unwrap();
                }
            }
            let mut back = Vec::new();
            while server.write_tls(&mut back).unwrap() > 0 {}
            if wire.is_empty() && back.is_empty() {
                break;
            }
            client.read_tls(&mut back.as_slice()).unwrap();
            client.process_new_packets().unwrap();
        }
        plain
    }

    #[test]
    fn a_session_between_messages_holds_no_buffer() {
        let (mut server, mut client) = pair();
        exchange(&mut server, &mut client, usize::MAX);
        assert!(!server.is_handshaking() && !client.is_handshaking());
        client
            .writer()
            .write_all(b"GET / HTTP/1.1\r\n\r\n")
            .unwrap();
        assert_eq!(
            exchange(&mut server, &mut client, usize::MAX),
            b"GET / HTTP/1.1\r\n\r\n"
        );
        assert_eq!(server.write_plaintext(b"pong"), 4);
        exchange(&mut server, &mut client, usize::MAX);
        let mut got = [0; 4];
        client.reader().read_exact(&mut got).unwrap();
        assert_eq!(&got, b"pong");
        assert!(server.incoming.is_empty() && server.outgoing.is_empty());
        assert!(!server.incoming.is_allocated() && !server.outgoing.is_allocated());
    }

    #[test]
    fn records_split_across_reads_are_kept_until_whole() {
        let (mut server, mut client) = pair();
        exchange(&mut server, &mut client, 7);
        let message = vec![0x5a; 40_000];
        client.writer().write_all(&message).unwrap();
        assert_eq!(exchange(&mut server, &mut client, 1000), message);
        assert!(!server.incoming.is_allocated());
    }

    #[test]
    fn an_incomplete_record_over_the_cap_is_an_error() {
        let (mut server, mut client) = pair();
        exchange(&mut server, &mut client, usize::MAX);
        client.writer().write_all(&[7; 40_000]).unwrap();
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).unwrap();
        }
        let mut scratch = vec![0; READ_SIZE];
        let mut first = &wire[..2000];
        let got = server.receive(&mut first, &mut scratch, &mut Vec::new(), 1024);
        assert!(matches!(got, Err(ReceiveError::Tls(_))), "{got:?}");
    }

    #[test]
    fn output_beyond_the_limit_is_refused_not_buffered() {
        let (mut server, mut client) = pair();
        exchange(&mut server, &mut client, usize::MAX);
        let big = vec![1; DEFAULT_TLS_BACKLOG_BYTES + 10];
        assert_eq!(server.write_plaintext(&big), DEFAULT_TLS_BACKLOG_BYTES);
        assert_eq!(server.write_plaintext(b"more"), 0);
        assert!(server.wants_write());
    }

    #[test]
    fn the_clients_close_notify_is_seen() {
        let (mut server, mut client) = pair();
        exchange(&mut server, &mut client, usize::MAX);
        client.send_close_notify();
        exchange(&mut server, &mut client, usize::MAX);
        assert!(server.peer_closed());
    }

    /// Receives `bytes` in one read under the default cap.
    fn receive(server: &mut Tls, mut bytes: &[u8]) -> Result<usize, ReceiveError> {
        let mut scratch = vec![0; READ_SIZE];
        server.receive(
            &mut bytes,
            &mut scratch,
            &mut Vec::new(),
            DEFAULT_MAX_PARTIAL_TLS_BYTES,
        )
    }

    /// The alert the server sends after an error.
    fn alert(server: &mut Tls) -> Vec<u8> {
        server.encode_alert();
        let mut out = Vec::new();
        while server.write_tls(&mut out).unwrap() > 0 {}
        out
    }

    #[test]
    fn plaintext_http_is_a_tls_error_answered_with_an_alert() {
        let (mut server, _) = pair();
        let got = receive(&mut server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(
            matches!(got, Err(ReceiveError::Tls(Error::InvalidMessage(_)))),
            "{got:?}"
        );
        // A fatal alert record: type 21, level 2.
        let alert = alert(&mut server);
        assert_eq!((alert[0], alert.get(5)), (0x15, Some(&2)), "{alert:02x?}");
    }

    /// Regression (review of the unbuffered change): one byte of a
    /// ClientHello, then a ChangeCipherSpec. rustls refuses it while it
    /// holds an offset into the kept byte; encoding the alert over an
    /// empty buffer then panicked the reactor ("range start index 6").
    /// rustls queues no alert for this error (the buffered API neither).
    #[test]
    fn a_record_between_pieces_of_a_client_hello_is_refused_without_a_panic() {
        let (mut server, _) = pair();
        let got = receive(&mut server, &[0x16, 3, 1, 0, 1, 0x01, 0x14, 3, 3, 0, 1, 1]);
        assert!(
            matches!(
                got,
                Err(ReceiveError::Tls(Error::PeerMisbehaved(
                    rustls::PeerMisbehaved::MessageInterleavedWithHandshakeMessage
                )))
            ),
            "{got:?}"
        );
        assert_eq!(alert(&mut server), b"");
    }

    /// A TLS 1.3 record sealed with the client's extracted keys: what a
    /// client library sends only when it chooses to.
    struct Sealer {
        key: ring::aead::LessSafeKey,
        iv: [u8; 12],
        seq: u64,
    }

    impl Sealer {
        fn new(client: ClientConnection) -> Self {
            let secrets = client.dangerous_extract_secrets().unwrap();
            let (seq, secret) = secrets.tx;
            let (algorithm, key, iv) = match secret {
                rustls::ConnectionTrafficSecrets::Aes256Gcm { key, iv } => {
                    (&ring::aead::AES_256_GCM, key, iv)
                }
                rustls::ConnectionTrafficSecrets::Aes128Gcm { key, iv } => {
                    (&ring::aead::AES_128_GCM, key, iv)
                }
                _ => panic!("unexpected suite"),
            };
            let key = ring::aead::UnboundKey::new(algorithm, key.as_ref()).unwrap();
            Sealer {
                key: ring::aead::LessSafeKey::new(key),
                iv: iv.as_ref().try_into().unwrap(),
                seq,
            }
        }

        fn record(&mut self, content_type: u8, payload: &[u8]) -> Vec<u8> {
            let mut inner = payload.to_vec();
            inner.push(content_type);
            let len = u16::try_from(inner.len() + 16).unwrap().to_be_bytes();
            let header = [0x17, 3, 3, len[0], len[1]];
            let mut nonce = self.iv;
            for (at, byte) in self.seq.to_be_bytes().iter().enumerate() {
                nonce[4 + at] ^= byte;
            }
            self.seq += 1;
            let nonce = ring::aead::Nonce::assume_unique_for_key(nonce);
            let aad = ring::aead::Aad::from(header);
            self.key
                .seal_in_place_append_tag(nonce, aad, &mut inner)
                .unwrap();
            [&header[..], &inner].concat()
        }
    }

    /// Regression (review of the unbuffered change): a KeyUpdate split
    /// across two records is legal; writing between them showed rustls an
    /// empty buffer where it held an offset, and panicked.
    #[test]
    fn writing_between_the_records_of_a_split_key_update_works() {
        let (mut server, mut client) = pair();
        exchange(&mut server, &mut client, usize::MAX);
        let mut sealer = Sealer::new(client);
        let mut first = sealer.record(0x17, b"ping");
        first.extend(sealer.record(0x16, &[0x18, 0, 0]));
        let second = sealer.record(0x16, &[1, 0]);
        receive(&mut server, &first).unwrap();
        assert!(server.incoming.is_allocated(), "the half message is kept");
        assert_eq!(server.write_plaintext(b"pong"), 4);
        receive(&mut server, &second).unwrap();
        assert!(!server.incoming.is_allocated());
        assert_eq!(server.write_plaintext(b"pong"), 4);
        server.send_close_notify();
        assert!(server.wants_write());
    }
}
