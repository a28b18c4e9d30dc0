//! The pool of one worker: idle connections per address, most recent
//! first (checked without a system call unless the reactor saw them
//! readable), connects in progress bounded per address, and the request
//! buffers kept for reuse.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::super::clock;
use super::super::error::ProxyError;
use super::Settings;
use super::conn::Conn;
use super::received::Home;

/// Request buffers a worker keeps for reuse.
const SPARE_BUFFERS: usize = 256;
/// A request buffer's first capacity (a head is a few hundred bytes).
const REQUEST_BUFFER: usize = 1024;
/// A buffer grown past this (by a body) is not kept.
const MAX_SPARE_CAPACITY: usize = 64 * 1024;

struct IdleConn {
    conn: Box<Conn>,
    since: Instant,
}

/// The upstream connections of one worker.
pub struct Upstreams {
    idle: RefCell<HashMap<SocketAddr, Vec<IdleConn>, foldhash::fast::FixedState>>,
    pending: RefCell<HashMap<SocketAddr, Arc<Semaphore>, foldhash::fast::FixedState>>,
    /// Request buffers kept for the next requests (their capacity reused:
    /// one per request in flight, at most [`SPARE_BUFFERS`]).
    spare: RefCell<Vec<Vec<u8>>>,
}

impl Upstreams {
    pub fn new() -> Rc<Self> {
        Rc::new(Upstreams {
            idle: RefCell::new(HashMap::default()),
            pending: RefCell::new(HashMap::default()),
            spare: RefCell::new(Vec::new()),
        })
    }

    /// An empty request (or response fields) buffer.
    pub(super) fn buffer(&self) -> Vec<u8> {
        self.spare
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(REQUEST_BUFFER))
    }

    /// A request (or response fields) buffer back for reuse.
    pub fn give_back(&self, mut bytes: Vec<u8>) {
        let mut spare = self.spare.borrow_mut();
        if spare.len() < SPARE_BUFFERS && bytes.capacity() <= MAX_SPARE_CAPACITY {
            bytes.clear();
            spare.push(bytes);
        }
    }

    /// Number of idle connections to `addr`.
    pub fn idle_count(&self, addr: SocketAddr) -> usize {
        self.idle.borrow().get(&addr).map_or(0, Vec::len)
    }

    pub(super) fn checkout(
        &self,
        addr: SocketAddr,
        settings: &Settings<'_>,
        now: Instant,
    ) -> Option<Box<Conn>> {
        let mut map = self.idle.borrow_mut();
        let list = map.get_mut(&addr)?;
        while let Some(mut c) = list.pop() {
            if now.duration_since(c.since) >= settings.idle {
                // The rest were parked earlier: all stale.
                list.clear();
                return None;
            }
            if settings
                .max_lifetime
                .is_some_and(|l| now.duration_since(c.conn.born) >= l)
            {
                continue;
            }
            if c.conn.is_usable() {
                return Some(c.conn);
            }
        }
        None
    }

    /// A connection whose response was read to its end, back to the pool.
    pub(super) fn checkin(&self, home: Home, conn: Box<Conn>) {
        if home.max_idle == 0
            || home
                .max_lifetime
                .is_some_and(|l| clock::now().duration_since(conn.born) >= l)
        {
            // Old enough: closed, so that connections get spread anew.
            return;
        }
        let mut map = self.idle.borrow_mut();
        let list = map.entry(home.addr).or_default();
        if list.len() >= home.max_idle {
            list.remove(0);
        }
        list.push(IdleConn {
            conn,
            since: clock::now(),
        });
    }

    /// Closes idle connections older than `idle_for(their address)` or
    /// closed by the server.
    pub fn sweep(&self, idle_for: impl Fn(SocketAddr) -> Duration) {
        let now = Instant::now();
        self.idle.borrow_mut().retain(|addr, list| {
            let idle = idle_for(*addr);
            list.retain_mut(|c| now.duration_since(c.since) < idle && c.conn.is_usable());
            !list.is_empty()
        });
    }

    /// A slot for one more connect to `addr`, waiting up to the connect
    /// timeout when `max_pending` are in progress.
    async fn connect_slot(
        &self,
        addr: SocketAddr,
        settings: &Settings<'_>,
    ) -> Result<Option<OwnedSemaphorePermit>, ProxyError> {
        let Some(max) = settings.max_pending else {
            return Ok(None);
        };
        let sem = {
            let mut map = self.pending.borrow_mut();
            let sem = map
                .entry(addr)
                .or_insert_with(|| Arc::new(Semaphore::new(max)));
            sem.clone()
        };
        if let Ok(p) = sem.clone().try_acquire_owned() {
            return Ok(Some(p));
        }
        match tokio::time::timeout(settings.connect, sem.acquire_owned()).await {
            Ok(Ok(p)) => Ok(Some(p)),
            _ => Err(ProxyError::ConnectQueueFull {
                addr,
                pending: max,
                after: settings.connect,
            }),
        }
    }

    /// A pooled connection to `addr` (unless `fresh`), else a new one
    /// within the connect slots; `Ok((conn, reused))`.
    pub(super) async fn connection(
        &self,
        addr: SocketAddr,
        settings: &Settings<'_>,
        fresh: bool,
    ) -> Result<(Box<Conn>, bool), ProxyError> {
        if !fresh {
            if let Some(c) = self.checkout(addr, settings, clock::now()) {
                return Ok((c, true));
            }
        }
        let slot = self.connect_slot(addr, settings).await?;
        // A connection may have come back while this waited.
        if !fresh && slot.is_some() {
            if let Some(c) = self.checkout(addr, settings, clock::now()) {
                return Ok((c, true));
            }
        }
        let stream = open(addr, settings.connect).await?;
        drop(slot);
        Ok((Box::new(Conn::new(stream)), false))
    }
}

/// Opens a TCP connection within `timeout`, without Nagle (small requests
/// and responses must not wait).
pub(super) async fn open(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ProxyError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => {
            return Err(ProxyError::ConnectTimeout {
                addr,
                after: timeout,
            });
        }
        Ok(Err(source)) => return Err(ProxyError::ConnectFailed { addr, source }),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    Ok(stream)
}
