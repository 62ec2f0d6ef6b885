//! permessage-deflate (RFC 7692) over real TLS against the real binary:
//! the Python `websockets` library in every window size and context
//! takeover combination it can offer, a deflate bomb that ends in 1009
//! with the server's memory bounded, and the RSV1 rules on the wire.

mod common;

use common::procs::{proc_status_kib, python_imports};
use common::{
    client_frame, client_frame_raw, header, raw_ws, read_close, read_frame_raw, read_response_head,
    send, status, upgrade_request, Server, TlsStream,
};

use averyws::session::testing::{client_deflate, client_inflate};

/// The offer browsers send.
const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
const AGREED: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// A connection upgraded to `/echo` with permessage-deflate agreed.
fn deflate_ws(server: &Server) -> TlsStream {
    let mut tls = server.tls();
    send(&mut tls, upgrade_request("/echo", OFFER).as_bytes());
    let head = read_response_head(&mut tls);
    assert_eq!(status(&head), 101, "{head}");
    assert_eq!(
        header(&head, "Sec-WebSocket-Extensions"),
        Some(AGREED),
        "{head}"
    );
    tls
}

#[test]
fn python_websockets_agrees_and_echoes_in_every_window_and_takeover_combination() {
    if !python_imports("websockets", "websockets") {
        return;
    }
    let server = Server::start(&[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/deflate_echo.py");
    let url = format!("wss://localhost:{}/echo", server.addr.port());
    // Bounded: 100 connections, each giving up after 10 s.
    let output = std::process::Command::new("python3")
        .args([script, "--url", &url, "--ca", &common::utf8(&server.cert)])
        .args(["--timeout", "10"])
        .output()
        .expect("run the script");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("agreed and echoed 100 of 100 offers"),
        "{stdout}{}\n{:#?}",
        String::from_utf8_lossy(&output.stderr),
        server.log()
    );
}

#[test]
fn a_64_kib_frame_that_inflates_to_64_mib_closes_1009_with_bounded_memory() {
    let server = Server::start(&[]);
    let bomb = client_deflate(&vec![0; 64 << 20]);
    assert!(bomb.len() <= 70 << 10, "{}", bomb.len());
    let rss_before = proc_status_kib(server.pid(), "VmRSS");
    let mut tls = deflate_ws(&server);
    send(&mut tls, &client_frame_raw(0xc2, &bomb));
    assert_eq!(read_close(&mut tls), Some(1009));
    let peak = proc_status_kib(server.pid(), "VmHWM");
    assert!(
        peak.saturating_sub(rss_before) <= 32 << 10,
        "RSS {rss_before} KiB before, peak {peak} KiB"
    );
    // The next client is served, compressed both ways.
    let mut next = deflate_ws(&server);
    let text = "after the bomb, ".repeat(40);
    send(
        &mut next,
        &client_frame_raw(0xc1, &client_deflate(text.as_bytes())),
    );
    let (first, payload) = read_frame_raw(&mut next).expect("the echo");
    assert_eq!(first, 0xc1, "FIN, RSV1, text");
    assert_eq!(client_inflate(&payload), text.as_bytes());
}

#[test]
fn rsv1_is_a_protocol_error_without_the_extension_and_on_control_frames() {
    let server = Server::start(&[]);
    let compressed = client_deflate(b"hello");
    let mut plain = raw_ws(&server, "/echo");
    send(&mut plain, &client_frame_raw(0xc1, &compressed));
    assert_eq!(read_close(&mut plain), Some(1002), "not negotiated");
    let mut agreed = deflate_ws(&server);
    send(&mut agreed, &client_frame_raw(0xc9, b""));
    assert_eq!(read_close(&mut agreed), Some(1002), "RSV1 on a ping");
    let mut agreed = deflate_ws(&server);
    send(&mut agreed, &client_frame(false, 0x1, b"a"));
    send(&mut agreed, &client_frame_raw(0xc0, b"b"));
    assert_eq!(
        read_close(&mut agreed),
        Some(1002),
        "RSV1 on a continuation"
    );
    // Off by flag: no extension in the answer.
    let off = Server::start(&["--permessage-deflate", "off"]);
    let mut tls = off.tls();
    send(&mut tls, upgrade_request("/echo", OFFER).as_bytes());
    let head = read_response_head(&mut tls);
    assert_eq!(status(&head), 101, "{head}");
    assert_eq!(header(&head, "Sec-WebSocket-Extensions"), None, "{head}");
}
