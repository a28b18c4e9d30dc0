//! A webserver that answers with scripted raw bytes (what no well-behaved
//! HTTP library would send), and records the raw requests it read.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the script does after a request.
pub struct Reply {
    /// Bytes written back as they are.
    pub bytes: Vec<u8>,
    /// Close the connection after writing.
    pub close: bool,
    /// Answer after the head, without reading the request's body.
    pub early: bool,
}

impl Reply {
    pub fn keep(bytes: impl Into<Vec<u8>>) -> Reply {
        Reply {
            bytes: bytes.into(),
            close: false,
            early: false,
        }
    }

    pub fn close(bytes: impl Into<Vec<u8>>) -> Reply {
        Reply {
            bytes: bytes.into(),
            close: true,
            early: false,
        }
    }
}

type Script = dyn Fn(&str) -> Reply + Send + Sync;

/// The scripted webserver.
pub struct Scripted {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    connections: Arc<AtomicUsize>,
    /// Connections the server saw closed by predictor.
    closed_by_peer: Arc<AtomicUsize>,
    /// Connections the server closed itself (a reply with `close`).
    closed_here: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Scripted {
    /// `script` maps a request's head (as text) to its reply.
    pub async fn start(script: impl Fn(&str) -> Reply + Send + Sync + 'static) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let closed_by_peer = Arc::new(AtomicUsize::new(0));
        let closed_here = Arc::new(AtomicUsize::new(0));
        let script: Arc<Script> = Arc::new(script);
        let (r, c, p, h) = (
            requests.clone(),
            connections.clone(),
            closed_by_peer.clone(),
            closed_here.clone(),
        );
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(s, script.clone(), r.clone(), p.clone(), h.clone()));
            }
        });
        Scripted {
            addr,
            requests,
            connections,
            closed_by_peer,
            closed_here,
            task,
        }
    }

    /// The raw requests read so far (head and body).
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn closed_by_peer(&self) -> usize {
        self.closed_by_peer.load(Ordering::SeqCst)
    }

    /// Connections this server has closed (their FIN is on the wire).
    pub fn closed_here(&self) -> usize {
        self.closed_here.load(Ordering::SeqCst)
    }
}

async fn serve(
    mut s: TcpStream,
    script: Arc<Script>,
    requests: Arc<Mutex<Vec<String>>>,
    closed_by_peer: Arc<AtomicUsize>,
    closed_here: Arc<AtomicUsize>,
) {
    let mut buf = Vec::new();
    loop {
        let Some(end) = read_until(&mut s, &mut buf, |b| find(b, b"\r\n\r\n").map(|i| i + 4)).await
        else {
            closed_by_peer.fetch_add(1, Ordering::SeqCst);
            return;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let reply = script(&head);
        let lower = head.to_ascii_lowercase();
        let mut taken = end;
        if !reply.early {
            if lower.contains("transfer-encoding: chunked") {
                match read_until(&mut s, &mut buf, |b| {
                    find(&b[end..], b"0\r\n\r\n").map(|i| end + i + 5)
                })
                .await
                {
                    Some(n) => taken = n,
                    None => return,
                }
            } else if let Some(len) = lower
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
            {
                match read_until(&mut s, &mut buf, |b| {
                    (b.len() >= end + len).then_some(end + len)
                })
                .await
                {
                    Some(n) => taken = n,
                    None => return,
                }
            }
        }
        requests
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(&buf[..taken]).into_owned());
        buf.drain(..taken);
        if s.write_all(&reply.bytes).await.is_err() {
            return;
        }
        if reply.close {
            drop(s);
            closed_here.fetch_add(1, Ordering::SeqCst);
            return;
        }
    }
}

/// Reads into `buf` until `done` finds the end; `None` when the
/// connection ends first.
async fn read_until(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    done: impl Fn(&[u8]) -> Option<usize>,
) -> Option<usize> {
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(n) = done(buf) {
            return Some(n);
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
