//! The few operating-system facts std and mio do not expose. This is the
//! crate's only `unsafe` code: one `getsockopt(TCP_INFO)` call.
#![allow(unsafe_code)]

use std::os::fd::AsRawFd;
use std::time::Duration;

use crate::pace::Path;

/// The kernel's smoothed round-trip time estimate (`tcpi_rtt`) and
/// retransmission timeout (`tcpi_rto`) for a TCP socket, or `None` when the
/// kernel does not say.
pub fn tcp_path(socket: &impl AsRawFd) -> Option<Path> {
    // SAFETY: tcp_info is plain old data, so all-zero bytes are a valid
    // value; getsockopt writes at most `len` bytes into it and reports how
    // many it wrote, and the fd stays open for the duration of the call.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let rc = libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        );
        (rc == 0 && info.tcpi_rtt > 0).then(|| Path {
            rtt: Duration::from_micros(info.tcpi_rtt.into()),
            rto: Duration::from_micros(info.tcpi_rto.into()),
        })
    }
}

/// Raises the open-file limit to the hard limit, returning the new soft
/// limit: every connection is a file descriptor.
pub fn raise_nofile_limit() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_connection_has_a_round_trip_and_retransmission_time() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let path = tcp_path(&client).expect("the kernel reports a path after the handshake");
        assert!(path.rtt < Duration::from_secs(1));
        // Linux never sets a retransmission timeout below TCP_RTO_MIN.
        assert!(path.rto >= crate::pace::RTO_FLOOR, "{path:?}");
    }

    #[test]
    fn a_non_socket_has_no_round_trip_time() {
        let file = std::fs::File::open("/dev/null").unwrap();
        assert_eq!(tcp_path(&file), None);
    }
}
