//! Active HTTP checks: every `interval`, a new connection to the server
//! and a `GET path` with `Host: host`; a 2xx or 3xx answer within `timeout`
//! is a success (HAProxy's `option httpchk` rule). `fall` failures in a
//! row take a server down, `rise` successes bring it back.
//!
//! The same exchange serves the legacy balancer's probe, where any answer
//! counts.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::ServerState;
use crate::config::Probe;

/// Consecutive results of active checks. A server starts up (like
/// HAProxy's default): the first checks can only take it down.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RiseFall {
    down: bool,
    run: u32,
}

impl RiseFall {
    /// Counts one result; returns `Some(up)` when the state changes.
    pub fn observe(&mut self, ok: bool, rise: u32, fall: u32) -> Option<bool> {
        // `run` counts results that disagree with the current state.
        if ok == self.down {
            self.run += 1;
        } else {
            self.run = 0;
        }
        let needed = if self.down { rise } else { fall };
        if self.run >= needed.max(1) {
            self.down = !self.down;
            self.run = 0;
            Some(!self.down)
        } else {
            None
        }
    }
}

/// Checks one server and records the result.
pub async fn run_one(server: Arc<ServerState>, probe: Probe) {
    let result = status(server.address, &probe, None).await;
    let ok = matches!(result, Ok(200..=399));
    if !ok {
        match &result {
            Ok(s) => tracing::debug!(server = %server.id, status = s, "health check failed"),
            Err(e) => tracing::debug!(server = %server.id, error = %e, "health check failed"),
        }
    }
    server.checked(ok, probe.rise, probe.fall);
}

/// One check exchange on a new connection: the status of the answer, or
/// why there was none. `extra` is one more header to send.
pub async fn status(
    addr: SocketAddr,
    probe: &Probe,
    extra: Option<(&str, &str)>,
) -> Result<u16, String> {
    let exchange = async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        let driver = tokio::spawn(conn);
        let mut req = Request::get(probe.path.as_str())
            .header(header::HOST, probe.host.clone())
            .header(header::USER_AGENT, "predictor-probe")
            .header(header::CONNECTION, "close");
        if let Some((name, value)) = extra {
            req = req.header(name, value);
        }
        let req = req.body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
        let response = sender.send_request(req).await.map_err(|e| e.to_string())?;
        driver.abort();
        Ok(response.status().as_u16())
    };
    match tokio::time::timeout(probe.timeout, exchange).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {:?}", probe.timeout)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fall_takes_down_and_rise_brings_back() {
        let mut r = RiseFall::default();
        assert_eq!(r.observe(false, 2, 3), None);
        assert_eq!(r.observe(false, 2, 3), None);
        assert_eq!(r.observe(true, 2, 3), None, "a success breaks the run");
        assert_eq!(r.observe(false, 2, 3), None);
        assert_eq!(r.observe(false, 2, 3), None);
        assert_eq!(
            r.observe(false, 2, 3),
            Some(false),
            "third failure in a row"
        );
        assert_eq!(r.observe(false, 2, 3), None, "already down");
        assert_eq!(r.observe(true, 2, 3), None);
        assert_eq!(r.observe(false, 2, 3), None, "a failure breaks the rise");
        assert_eq!(r.observe(true, 2, 3), None);
        assert_eq!(r.observe(true, 2, 3), Some(true), "second success in a row");
        assert_eq!(r.observe(true, 2, 3), None);
    }

    #[test]
    fn rise_and_fall_of_one_flip_at_once() {
        let mut r = RiseFall::default();
        assert_eq!(r.observe(false, 1, 1), Some(false));
        assert_eq!(r.observe(true, 1, 1), Some(true));
    }
}
