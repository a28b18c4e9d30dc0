//! One corpus of requests, valid and hostile, sent as raw bytes through
//! predictor to a strict recording webserver: what the client gets, and
//! exactly what reaches the webserver. A hostile request is refused with
//! 400 and nothing of it (nor anything smuggled behind it) is forwarded;
//! a valid one arrives once, framed as it was meant.

use crate::support::scripted::{Reply, Scripted};
use crate::support::*;

/// What a request must come to.
enum Expect {
    /// Forwarded once: the webserver reads a request for this path whose
    /// body is this (de-chunked).
    Forwarded(&'static str, &'static str),
    /// Answered with this status; nothing reaches the webserver.
    Refused(u16),
}

const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// The corpus. The framing conflicts carry a request for `/smuggled`
/// behind their body, which must never reach the webserver nor be
/// answered as a request of its own.
fn corpus() -> Vec<(&'static str, &'static [u8], Expect)> {
    use Expect::*;
    vec![
        (
            "plain GET",
            b"GET /a HTTP/1.1\r\nHost: s.example\r\n\r\n",
            Forwarded("/a", ""),
        ),
        (
            "POST with a length",
            b"POST /b HTTP/1.1\r\nHost: s.example\r\nContent-Length: 5\r\n\r\nhello",
            Forwarded("/b", "hello"),
        ),
        (
            "POST chunked, with an extension and a trailer",
            b"POST /c HTTP/1.1\r\nHost: s.example\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;x=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
            Forwarded("/c", "hello"),
        ),
        (
            "HTTP/1.0 with a length",
            b"POST /d HTTP/1.0\r\nHost: s.example\r\nContent-Length: 2\r\n\r\nhi",
            Forwarded("/d", "hi"),
        ),
        (
            "Content-Length and Transfer-Encoding",
            b"POST /e HTTP/1.1\r\nHost: s.example\r\nContent-Length: 5\r\n\
              Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: s.example\r\n\r\n",
            Refused(400),
        ),
        (
            "Transfer-Encoding then Content-Length",
            b"POST /f HTTP/1.1\r\nHost: s.example\r\nTransfer-Encoding: chunked\r\n\
              Content-Length: 40\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: s.example\r\n\r\n",
            Refused(400),
        ),
        (
            "two different lengths",
            b"POST /g HTTP/1.1\r\nHost: s.example\r\nContent-Length: 5\r\nContent-Length: 40\r\n\r\nhello",
            Refused(400),
        ),
        (
            "signed length",
            b"POST /h HTTP/1.1\r\nHost: s.example\r\nContent-Length: +5\r\n\r\nhello",
            Refused(400),
        ),
        (
            "hex length",
            b"POST /i HTTP/1.1\r\nHost: s.example\r\nContent-Length: 0x5\r\n\r\nhello",
            Refused(400),
        ),
        (
            "overflowing length",
            b"POST /j HTTP/1.1\r\nHost: s.example\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            Refused(400),
        ),
        (
            "an encoding other than chunked",
            b"POST /k HTTP/1.1\r\nHost: s.example\r\nTransfer-Encoding: gzip\r\n\r\nhello",
            Refused(400),
        ),
        (
            "obs-fold",
            b"GET /l HTTP/1.1\r\nHost: s.example\r\nX-A: 1\r\n folded\r\n\r\n",
            Refused(400),
        ),
        (
            "NUL in a value",
            b"GET /m HTTP/1.1\r\nHost: s.example\r\nX-A: a\0b\r\n\r\n",
            Refused(400),
        ),
        (
            "bad chunk size",
            b"POST /n HTTP/1.1\r\nHost: s.example\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
            Refused(400),
        ),
        (
            "overflowing chunk size",
            b"POST /o HTTP/1.1\r\nHost: s.example\r\nTransfer-Encoding: chunked\r\n\r\n\
              10000000000000005\r\nhello\r\n0\r\n\r\n",
            Refused(400),
        ),
        (
            "two Hosts",
            b"GET /p HTTP/1.1\r\nHost: s.example\r\nHost: other.example\r\n\r\n",
            Refused(400),
        ),
        (
            "HTTP/1.1 without Host",
            b"GET /q HTTP/1.1\r\n\r\n",
            Refused(400),
        ),
        (
            "two equal lengths",
            b"POST /s HTTP/1.1\r\nHost: s.example\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
            Refused(400),
        ),
        (
            "a length list",
            b"POST /t HTTP/1.1\r\nHost: s.example\r\nContent-Length: 5, 5\r\n\r\nhello",
            Refused(400),
        ),
        (
            "bare LF line ends",
            b"GET /u HTTP/1.1\nHost: s.example\n\n",
            Refused(400),
        ),
        (
            "Transfer-Encoding in HTTP/1.0",
            b"POST /v HTTP/1.0\r\nHost: s.example\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            Refused(400),
        ),
        (
            "chunk extension with a bare LF",
            b"POST /w HTTP/1.1\r\nHost: s.example\r\nTransfer-Encoding: chunked\r\n\r\n5;x\nhello\r\n0\r\n\r\n",
            Refused(400),
        ),
        (
            "CR in a value",
            b"GET /x HTTP/1.1\r\nHost: s.example\r\nX-A: a\rb\r\n\r\n",
            Refused(400),
        ),
        (
            "chunked twice",
            b"POST /y HTTP/1.1\r\nHost: s.example\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            Refused(400),
        ),
        (
            "space before the colon",
            b"GET /r HTTP/1.1\r\nHost : s.example\r\n\r\n",
            Refused(400),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corpus_of_requests_reaches_the_webserver_as_meant() {
    let up = Scripted::start(|_| Reply::keep(OK)).await;
    let f = Folder::new(
        &config_toml(&[("web", vec![("w", up.addr)])], None, ""),
        "s.example\tt\tweb\tf\n",
        "default = \"migrated\"\n",
    );
    let p = Proxy::start(&f);
    let mut failures = Vec::new();
    for (what, bytes, expect) in corpus() {
        let before = up.requests().len();
        let smuggling = bytes.windows(9).any(|w| w == b"/smuggled");
        let answer = if smuggling {
            // Read until predictor closes: had it taken the smuggled bytes
            // for a request, it would have forwarded and answered it first.
            read_to_close(p.addr, bytes).await
        } else {
            raw(p.addr, bytes).await
        };
        // The webserver records a request before it answers it, so what it
        // read for this entry is all there once the answer is.
        let reached: Vec<String> = up.requests()[before..].to_vec();
        let status = status_of(&answer);
        match expect {
            Expect::Forwarded(path, body) => {
                let ok = status == 200
                    && reached.len() == 1
                    && reached[0].split(' ').nth(1) == Some(path)
                    && body_of(&reached[0]) == body;
                if !ok {
                    failures.push(format!("{what}: {status}, reached {reached:?}"));
                }
            }
            Expect::Refused(code) => {
                if status != code || !reached.is_empty() {
                    failures.push(format!(
                        "{what}: expected {code} and nothing forwarded, got {status} and {reached:?}"
                    ));
                }
            }
        }
        if answer.matches("HTTP/1.1 ").count() > 1 {
            failures.push(format!("{what}: more than one answer: {answer}"));
        }
        if reached.iter().any(|r| r.contains("/smuggled")) {
            failures.push(format!("{what}: a smuggled request reached the webserver"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The body of a raw request, de-chunked when it is chunked.
fn body_of(raw: &str) -> String {
    let Some((head, body)) = raw.split_once("\r\n\r\n") else {
        return String::new();
    };
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return body.to_string();
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((line, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("0"), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&after[..size.min(after.len())]);
        rest = after.get(size + 2..).unwrap_or("");
    }
    out
}

/// Sends `bytes` and reads until predictor closes the connection.
async fn read_to_close(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut got = Vec::new();
    // A reset after the answer ends the read as well as a close.
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut got))
        .await
        .expect("predictor did not close a connection whose framing it refused");
    String::from_utf8_lossy(&got).into_owned()
}
