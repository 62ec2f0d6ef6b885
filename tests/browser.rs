//! A real browser's first WebSocket to a fresh server opens, at the
//! default pace, and agrees to permessage-deflate: headless Chromium,
//! which verifies the certificate between its TLS flights, driven over its
//! DevTools protocol. Runs where
//! `chromium` is installed (`apt-get install chromium`), and says SKIPPED
//! otherwise.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use common::certs::generate_pair;
use common::procs::{eventually, Proc};
use common::{Server, TempDir, PACE_DEFAULTS};
use sha2::{Digest, Sha256};
use tungstenite::Message as Ws;

/// How long the browser may take to start, load the page and echo.
const LIMIT: Duration = Duration::from_secs(20);

/// The page: one WebSocket to the server; its first message's echo, the
/// extensions the server agreed to, and whether a long (compressed) second
/// message came back intact, written into the body.
fn page(port: u16) -> String {
    format!(
        r#"<html><body>waiting<script>
const ws = new WebSocket("wss://localhost:{port}/echo");
const long = "a chat line that repeats, ".repeat(40);
let first = null;
ws.onopen = () => ws.send("from chromium");
ws.onmessage = (e) => {{
  if (first === null) {{ first = e.data; ws.send(long); return; }}
  document.body.textContent = "echo:" + first + "|" + ws.extensions + "|" + (e.data === long);
  ws.close(1000);
}};
ws.onerror = () => {{ document.body.textContent = "error"; }};
ws.onclose = (e) => {{ if (!document.body.textContent.startsWith("echo:"))
  document.body.textContent = "closed " + e.code; }};
</script></body></html>"#
    )
}

/// The first page target's DevTools WebSocket URL, from `/json/list`.
fn page_target(devtools_port: u16) -> Option<String> {
    let mut http = TcpStream::connect(("127.0.0.1", devtools_port)).ok()?;
    http.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!(
        "GET /json/list HTTP/1.1\r\nHost: 127.0.0.1:{devtools_port}\r\nConnection: close\r\n\r\n"
    );
    http.write_all(request.as_bytes()).ok()?;
    // Read until the first URL is whole: the server may keep the
    // connection open.
    let field = "\"webSocketDebuggerUrl\": \"";
    let mut body = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&body);
        if let Some(start) = text.find(field).map(|at| at + field.len()) {
            if let Some(len) = text[start..].find('"') {
                return Some(text[start..start + len].to_owned());
            }
        }
        match http.read(&mut chunk).ok()? {
            0 => return None,
            n => body.extend_from_slice(&chunk[..n]),
        }
    }
}

#[test]
fn chromiums_first_websocket_to_a_fresh_server_opens() {
    let Ok(chromium) = which("chromium") else {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED chromiums_first_websocket_to_a_fresh_server_opens: no chromium on PATH \
             (apt-get install chromium)"
        );
        return;
    };
    let dir = TempDir::new();
    let pair = generate_pair();
    let [cert, key, html, profile] =
        ["cert.pem", "key.pem", "page.html", "profile"].map(|f| dir.path().join(f));
    std::fs::write(&cert, &pair.cert).expect("write");
    std::fs::write(&key, &pair.key).expect("write");
    let (cert_s, key_s) = (common::utf8(&cert), common::utf8(&key));
    let files = ["--cert", &cert_s, "--key", &key_s];
    let server = Server::start_in(dir, cert.clone(), &[&files[..], &PACE_DEFAULTS].concat());
    std::fs::write(&html, page(server.addr.port())).expect("write the page");

    // Trusted by its key, so Chromium still verifies the chain as it would
    // a real one (no --ignore-certificate-errors).
    let spki = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&pair.spki));
    let browser = Proc::spawn(Command::new(chromium).args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        &format!("--user-data-dir={}", profile.display()),
        &format!("--ignore-certificate-errors-spki-list={spki}"),
        "--remote-debugging-port=0",
        "about:blank",
    ]));
    let listening = eventually(LIMIT, || {
        browser.line("DevTools listening on ws://127.0.0.1:")
    })
    .unwrap_or_else(|| panic!("Chromium did not start: {}", browser.log()));
    let devtools_port: u16 = listening
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|port| port.parse().ok())
        .expect("a DevTools port");
    let target = eventually(LIMIT, || page_target(devtools_port)).expect("a page target");
    let (mut devtools, _) = tungstenite::connect(&target).expect("DevTools WebSocket");
    let call = |devtools: &mut tungstenite::WebSocket<_>, id: u32, method: &str, params: String| {
        let command = format!(r#"{{"id":{id},"method":"{method}","params":{params}}}"#);
        devtools.send(Ws::Text(command)).expect("DevTools command");
        loop {
            let Ws::Text(reply) = devtools.read().expect("DevTools reply") else {
                continue;
            };
            if reply.starts_with(&format!(r#"{{"id":{id},"#)) {
                return reply;
            }
        }
    };
    let url = format!("file://{}", html.display());
    call(
        &mut devtools,
        1,
        "Page.navigate",
        format!(r#"{{"url":"{url}"}}"#),
    );
    let body = r#"{"expression":"document.body.textContent","returnByValue":true}"#;
    let mut id = 2;
    let outcome = eventually(LIMIT, || {
        id += 1;
        let reply = call(&mut devtools, id, "Runtime.evaluate", body.to_owned());
        ["echo:", "error", "closed "]
            .iter()
            .any(|end| reply.contains(&format!(r#""value":"{end}"#)))
            .then_some(reply)
    });
    let outcome = outcome.unwrap_or_else(|| panic!("the page never finished: {}", browser.log()));
    assert!(
        outcome.contains(
            r#""value":"echo:from chromium|permessage-deflate; server_no_context_takeover; client_no_context_takeover|true""#
        ),
        "{outcome}\n{:#?}",
        server.log()
    );
    let log = server.log();
    assert!(
        !log.iter().any(|l| l.contains("evicted 127.0.0.1")),
        "{log:#?}"
    );
}

/// The path of `program` on `PATH`.
fn which(program: &str) -> Result<std::path::PathBuf, ()> {
    let path = std::env::var_os("PATH").ok_or(())?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .ok_or(())
}
