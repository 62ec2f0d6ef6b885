//! The built-in echo route through an independent client (tungstenite over
//! rustls) against the real binary.

mod common;

use common::Server;
use tungstenite::Message;

#[test]
fn echoes_text_and_binary() {
    let server = Server::start(&[]);
    let mut ws = server.ws("/echo");
    ws.send(Message::text("hello")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("hello"));
    ws.send(Message::binary(vec![0u8, 1, 2, 255])).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(vec![0u8, 1, 2, 255]));
    ws.close(None).unwrap();
}
