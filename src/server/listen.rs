//! Listening sockets: one per address and worker, sharing the address with
//! `SO_REUSEPORT` so the kernel balances accepts over workers (and a second
//! instance can bind the same addresses during an upgrade).
//!
//! Client listeners defer accepts until the client's first bytes are there
//! (`TCP_DEFER_ACCEPT`, nginx's `deferred`, HAProxy's `defer-accept`): every
//! protocol predictor serves has the client speak first (a request head,
//! the HTTP/2 preface, a TLS ClientHello), and tokio takes an accepted
//! socket as readable, so without it a connection accepted before its
//! request arrived cost a read that found nothing, and the wait for its
//! request one more turn of the event loop. With it the first read finds
//! the request: per `Connection: close` request 2.5 system calls fewer
//! (`accept4` 1.73 → 1.07, `epoll_wait` 1.73 → 0.13, `recvfrom` 2.99 →
//! 2.00) and ~15 % less CPU (`docs/performance.md`). A client that connects
//! and sends nothing is accepted anyway once the deferral (1 s, counted by
//! the kernel in SYN-ACK retransmissions) has passed, and then gets
//! `timeouts.request_header` like any other.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Socket, Type};

use crate::config::Listener;

/// Pending connections the kernel queues per socket.
const BACKLOG: i32 = 4096;

/// One listening socket of a worker, with the listener it was bound for.
#[derive(Debug)]
pub struct Bound {
    pub socket: std::net::TcpListener,
    /// The listener's position in the config's `[[listen]]` tables.
    pub index: usize,
    /// The listener as configured at start-up.
    pub listener: Listener,
}

/// Sockets of one worker.
pub type WorkerSockets = Vec<Bound>;

/// Binds every listener once per worker. Returns the bound addresses (a
/// port 0 resolved once, so all workers share it) and each worker's sockets.
pub fn bind_all(
    listeners: &[Listener],
    workers: usize,
) -> io::Result<(Vec<SocketAddr>, Vec<WorkerSockets>)> {
    let mut addrs = Vec::with_capacity(listeners.len());
    let options = |l: &Listener| Options {
        defer_accept: l.defer_accept,
    };
    let mut per_worker: Vec<WorkerSockets> = (0..workers).map(|_| Vec::new()).collect();
    for (index, l) in listeners.iter().enumerate() {
        let first = bind(l.address, options(l))?;
        let actual = first.local_addr()?;
        addrs.push(actual);
        let mut sockets = vec![first];
        for _ in 1..workers {
            sockets.push(bind(actual, options(l))?);
        }
        for (w, s) in per_worker.iter_mut().zip(sockets) {
            w.push(Bound {
                socket: s,
                index,
                listener: l.clone(),
            });
        }
    }
    Ok((addrs, per_worker))
}

/// How a listening socket is set up beyond its address.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Accept a connection only once its first bytes are there.
    pub defer_accept: bool,
}

/// Seconds a silent connection waits in the kernel before it is accepted
/// anyway (the kernel rounds them to SYN-ACK retransmissions: one).
const DEFER_ACCEPT_SECONDS: libc::c_int = 1;

/// One listening socket on `addr`, shared by `SO_REUSEPORT`.
pub fn bind(addr: SocketAddr, options: Options) -> io::Result<std::net::TcpListener> {
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
    if options.defer_accept {
        defer_accept(&socket, DEFER_ACCEPT_SECONDS).map_err(wrap)?;
    }
    socket.bind(&addr.into()).map_err(wrap)?;
    socket.listen(BACKLOG).map_err(wrap)?;
    Ok(socket.into())
}

/// Sets `TCP_DEFER_ACCEPT` (Linux; `socket2` has no setter for it).
#[allow(unsafe_code)]
fn defer_accept(socket: &Socket, seconds: libc::c_int) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let len = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>())
        .map_err(|_| io::Error::other("socklen_t"))?;
    // SAFETY: the descriptor is the socket's own, open for this call's
    // length; the option value points at a live `c_int` and `len` is its
    // size; setsockopt only reads it.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&seconds as *const libc::c_int).cast(),
            len,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Protocol;

    #[test]
    fn port_zero_is_resolved_once_for_all_workers() {
        let l = Listener {
            address: "127.0.0.1:0".parse().unwrap(),
            protocol: Protocol::Auto,
            defer_accept: true,
            proxy_protocol: None,
        };
        let (addrs, per_worker) = bind_all(&[l], 3).unwrap();
        assert_eq!(addrs.len(), 1);
        assert_ne!(addrs[0].port(), 0);
        assert_eq!(per_worker.len(), 3);
        for w in &per_worker {
            assert_eq!(w[0].socket.local_addr().unwrap(), addrs[0]);
        }
    }

    #[test]
    fn a_taken_address_names_itself() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let l = Listener {
            address: taken.local_addr().unwrap(),
            protocol: Protocol::Http1,
            defer_accept: false,
            proxy_protocol: None,
        };
        let err = bind_all(std::slice::from_ref(&l), 1).unwrap_err();
        assert!(err.to_string().contains(&l.address.to_string()), "{err}");
    }

    /// Accepts within `limit`, retrying while nothing is there.
    fn accept_within(
        listener: &std::net::TcpListener,
        limit: std::time::Duration,
    ) -> Option<std::net::SocketAddr> {
        let until = std::time::Instant::now() + limit;
        loop {
            match listener.accept() {
                Ok((_, peer)) => return Some(peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if std::time::Instant::now() >= until {
                        return None;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    }

    #[test]
    fn a_deferring_listener_accepts_a_client_once_it_has_spoken() {
        deferring(
            bind(
                "127.0.0.1:0".parse().unwrap(),
                Options { defer_accept: true },
            )
            .unwrap(),
        );
        // IPv6 too, where the machine has it (the option is TCP's, the
        // same for both).
        if std::net::TcpListener::bind("[::1]:0").is_ok() {
            deferring(bind("[::1]:0".parse().unwrap(), Options { defer_accept: true }).unwrap());
        }
    }

    #[test]
    fn the_listeners_setting_reaches_its_socket() {
        for defer_accept in [true, false] {
            let l = Listener {
                address: "127.0.0.1:0".parse().unwrap(),
                protocol: Protocol::Auto,
                defer_accept,
                proxy_protocol: None,
            };
            // One worker: with two, `SO_REUSEPORT` would hand a test
            // connection to either socket.
            let (_, mut per_worker) = bind_all(&[l], 1).unwrap();
            let listener = per_worker.remove(0).remove(0).socket;
            if defer_accept {
                deferring(listener);
            } else {
                accepting_at_once(listener);
            }
        }
    }

    /// A speaking client is accepted before a silent one that connected
    /// first, and the silent one a second later.
    fn deferring(listener: std::net::TcpListener) {
        use std::io::Write;
        let addr = listener.local_addr().unwrap();
        let start = std::time::Instant::now();
        let silent = std::net::TcpStream::connect(addr).unwrap();
        let mut speaking = std::net::TcpStream::connect(addr).unwrap();
        speaking.write_all(b"GET / HTTP/1.1\r\n").unwrap();
        let first = accept_within(&listener, std::time::Duration::from_secs(5));
        let nothing_else =
            matches!(listener.accept(), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
        // The kernel hands the silent one over after its SYN-ACK is sent
        // again, a second after it connected: the order only shows if
        // this machine took less than that to get here.
        if start.elapsed() < std::time::Duration::from_millis(800) {
            assert_eq!(first, Some(speaking.local_addr().unwrap()));
            assert!(nothing_else, "the silent client was accepted at once");
        }
        let later = accept_within(&listener, std::time::Duration::from_secs(10));
        let mut both = [first, later];
        both.sort();
        let mut want = [
            Some(speaking.local_addr().unwrap()),
            Some(silent.local_addr().unwrap()),
        ];
        want.sort();
        assert_eq!(both, want);
    }

    /// A silent client is accepted at once.
    fn accepting_at_once(listener: std::net::TcpListener) {
        let silent = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let first = accept_within(&listener, std::time::Duration::from_secs(5));
        assert_eq!(first, Some(silent.local_addr().unwrap()));
    }

    #[test]
    fn without_deferral_a_silent_client_is_accepted_at_once() {
        accepting_at_once(bind("127.0.0.1:0".parse().unwrap(), Options::default()).unwrap());
    }
}
