//! Listening sockets: one per address and worker, sharing the address with
//! `SO_REUSEPORT` so the kernel balances accepts over workers (and a second
//! instance can bind the same addresses during an upgrade).

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Socket, Type};

use crate::config::{Listener, Protocol};

/// Pending connections the kernel queues per socket.
const BACKLOG: i32 = 4096;

/// Sockets of one worker.
pub type WorkerSockets = Vec<(std::net::TcpListener, Protocol)>;

/// Binds every listener once per worker. Returns the bound addresses (a
/// port 0 resolved once, so all workers share it) and each worker's sockets.
pub fn bind_all(
    listeners: &[Listener],
    workers: usize,
) -> io::Result<(Vec<SocketAddr>, Vec<WorkerSockets>)> {
    let mut addrs = Vec::with_capacity(listeners.len());
    let mut per_worker: Vec<WorkerSockets> = (0..workers).map(|_| Vec::new()).collect();
    for l in listeners {
        let first = bind(l.address)?;
        let actual = first.local_addr()?;
        addrs.push(actual);
        let mut sockets = vec![first];
        for _ in 1..workers {
            sockets.push(bind(actual)?);
        }
        for (w, s) in per_worker.iter_mut().zip(sockets) {
            w.push((s, l.protocol));
        }
    }
    Ok((addrs, per_worker))
}

/// One listening socket on `addr`, shared by `SO_REUSEPORT`.
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let wrap = |e: io::Error| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"));
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(wrap)?;
    socket.set_reuse_address(true).map_err(wrap)?;
    socket.set_reuse_port(true).map_err(wrap)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(wrap)?;
    }
    // Accepted sockets inherit TCP_NODELAY from the listener on Linux.
    socket.set_tcp_nodelay(true).map_err(wrap)?;
    socket.set_nonblocking(true).map_err(wrap)?;
    socket.bind(&addr.into()).map_err(wrap)?;
    socket.listen(BACKLOG).map_err(wrap)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_is_resolved_once_for_all_workers() {
        let l = Listener {
            address: "127.0.0.1:0".parse().unwrap(),
            protocol: Protocol::Auto,
        };
        let (addrs, per_worker) = bind_all(&[l], 3).unwrap();
        assert_eq!(addrs.len(), 1);
        assert_ne!(addrs[0].port(), 0);
        assert_eq!(per_worker.len(), 3);
        for w in &per_worker {
            assert_eq!(w[0].0.local_addr().unwrap(), addrs[0]);
        }
    }

    #[test]
    fn a_taken_address_names_itself() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let l = Listener {
            address: taken.local_addr().unwrap(),
            protocol: Protocol::Http1,
        };
        let err = bind_all(&[l], 1).unwrap_err();
        assert!(err.to_string().contains(&l.address.to_string()), "{err}");
    }
}
