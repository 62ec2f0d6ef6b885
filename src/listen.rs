//! The TLS listening sockets: one per reactor. With more than one reactor
//! each binds the same address with `SO_REUSEPORT`, so the kernel spreads
//! new connections over them (by a hash of the client's address and port)
//! and no reactor ever touches another's accept queue.

use std::io;
use std::net::SocketAddr;

use mio::net::TcpListener;
use socket2::{Domain, Protocol, Socket, Type};

/// Pending connections the kernel may queue per listener; Linux caps it
/// at `net.core.somaxconn` (docs/operations.md).
const BACKLOG: i32 = 4096;

/// Binds `count` listeners on `addr`; with port 0 the first one picks the
/// port and the others share it. `SO_REUSEPORT` only when `count` > 1, and
/// only once a plain bind of the port has succeeded (and been let go): a
/// second server started on the same port by mistake fails to bind
/// instead of silently taking part of the traffic.
pub fn bind(addr: SocketAddr, count: usize) -> io::Result<Vec<TcpListener>> {
    let mut listeners = Vec::with_capacity(count);
    let mut addr = addr;
    if count > 1 && addr.port() != 0 {
        drop(bind_one(addr, false)?);
    }
    for _ in 0..count.max(1) {
        let listener = bind_one(addr, count > 1)?;
        addr = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

fn bind_one(addr: SocketAddr, share: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // A restarted server must not wait for TIME_WAIT of its old sockets.
    socket.set_reuse_address(true)?;
    if share {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(TcpListener::from_std(socket.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_share_the_port_the_first_one_picked() {
        let listeners = bind("127.0.0.1:0".parse().unwrap(), 3).expect("bind");
        let ports: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().expect("addr").port())
            .collect();
        assert_eq!(ports.len(), 3);
        assert!(ports.iter().all(|&port| port == ports[0] && port != 0));
    }

    #[test]
    fn a_single_listener_keeps_its_port_to_itself() {
        let first = bind("127.0.0.1:0".parse().unwrap(), 1).expect("bind");
        let addr = first[0].local_addr().expect("addr");
        assert!(bind(addr, 1).is_err());
        assert!(
            bind(addr, 2).is_err(),
            "a shared bind cannot join a private one"
        );
    }

    #[test]
    fn a_second_server_cannot_share_a_port_by_mistake() {
        let first = bind("127.0.0.1:0".parse().unwrap(), 2).expect("bind");
        let addr = first[0].local_addr().expect("addr");
        assert!(bind(addr, 2).is_err(), "the port is taken");
        drop(first);
        assert_eq!(bind(addr, 2).expect("free again").len(), 2);
    }
}
