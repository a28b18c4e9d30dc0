//! The load and state each webserver reports, read the way HAProxy's
//! `agent-check` reads it, so that operators keep their agents: a TCP
//! connection to the server's address on the agent port, one line back,
//! made of words separated by spaces, tabs or commas, in any order:
//!
//! * `75%`: the effective weight, as a share of the configured weight (a
//!   busy server says less and gets fewer requests and a lower cap);
//!   `weight:N` sets it to `N` configured units;
//! * `ready`, `drain`, `maint`: the administrative state (`drain` takes no
//!   new sites, keeps serving the ones it has; `maint` takes nothing);
//! * `up`, or `down`, `fail`, `stopped` (optionally `#reason`): the
//!   operational state;
//! * `maxconn:N`: the most requests the server takes at once now; lowers
//!   (never raises) its configured `max_in_flight` (`maxconn:0` lifts the
//!   agent's bound: the configured ceiling alone applies).
//!
//! What a reply does not name is left as it was. An agent that cannot be
//! reached changes nothing (reachability is the health checks' business).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::ServerState;
use crate::config::Agent;

/// The administrative state an agent sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum AdminState {
    Ready = 0,
    Drain = 1,
    Maint = 2,
}

impl AdminState {
    pub(super) fn from_u8(v: u8) -> AdminState {
        match v {
            1 => AdminState::Drain,
            2 => AdminState::Maint,
            _ => AdminState::Ready,
        }
    }
}

/// A weight an agent reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightReport {
    /// Percent of the configured weight (0-1000).
    Percent(u32),
    /// Configured weight units (0-256).
    Absolute(u32),
}

/// One agent reply, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentReply {
    pub weight: Option<WeightReport>,
    pub admin: Option<AdminState>,
    /// `Some(true)`: `down`/`fail`/`stopped`; `Some(false)`: `up`.
    pub down: Option<bool>,
    pub reason: Option<String>,
    /// `maxconn:N` (0: no bound of the agent's).
    pub maxconn: Option<u32>,
}

/// Why a reply was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    #[error("empty reply")]
    Empty,
    #[error(
        "unknown word {0:?} (expected N%, weight:N, ready, drain, maint, up, down, fail, stopped)"
    )]
    Unknown(String),
    #[error("bad number in {0:?}")]
    BadNumber(String),
}

impl FromStr for AgentReply {
    type Err = AgentError;

    fn from_str(line: &str) -> Result<AgentReply, AgentError> {
        let line = line.trim_end_matches(['\r', '\n', '\0']);
        // Everything after '#' is a free-text reason.
        let (words, reason) = match line.split_once('#') {
            Some((w, r)) => (w, Some(r.trim().to_string())),
            None => (line, None),
        };
        let mut reply = AgentReply {
            reason,
            ..AgentReply::default()
        };
        let mut any = false;
        for word in words.split([' ', '\t', ',']).filter(|w| !w.is_empty()) {
            any = true;
            let lower = word.to_ascii_lowercase();
            let number = |s: &str, max: u32| {
                s.parse::<u32>()
                    .ok()
                    .filter(|n| *n <= max)
                    .ok_or_else(|| AgentError::BadNumber(word.to_string()))
            };
            match lower.as_str() {
                "ready" => reply.admin = Some(AdminState::Ready),
                "drain" => reply.admin = Some(AdminState::Drain),
                "maint" => reply.admin = Some(AdminState::Maint),
                "up" => reply.down = Some(false),
                "down" | "fail" | "stopped" => reply.down = Some(true),
                w if w.ends_with('%') => {
                    reply.weight = Some(WeightReport::Percent(number(&w[..w.len() - 1], 1000)?))
                }
                w if w.starts_with("weight:") => {
                    reply.weight = Some(WeightReport::Absolute(number(&w[7..], 256)?))
                }
                w if w.starts_with("maxconn:") => {
                    reply.maxconn = Some(number(&w[8..], u32::MAX)?);
                }
                _ => return Err(AgentError::Unknown(word.to_string())),
            }
        }
        if !any && reply.reason.is_none() {
            return Err(AgentError::Empty);
        }
        Ok(reply)
    }
}

/// Reads one server's agent and applies its reply.
pub async fn probe(server: Arc<ServerState>, agent: Agent) {
    let addr = std::net::SocketAddr::new(server.address.ip(), agent.port);
    match read_line(addr, agent.timeout).await {
        Ok(line) => match line.parse::<AgentReply>() {
            Ok(reply) => server.agent_replied(&reply),
            Err(e) => {
                tracing::warn!(server = %server.id, agent = %addr, reply = %line.trim_end(), error = %e, "agent reply refused")
            }
        },
        Err(e) => {
            tracing::debug!(server = %server.id, agent = %addr, error = %e, "agent unreachable")
        }
    }
}

/// Connects and reads until a newline, the end, or 512 bytes.
async fn read_line(addr: std::net::SocketAddr, timeout: Duration) -> std::io::Result<String> {
    let read = async {
        let mut stream = TcpStream::connect(addr).await?;
        let mut buf = Vec::with_capacity(64);
        let mut chunk = [0u8; 128];
        while buf.len() < 512 && !buf.contains(&b'\n') {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
        Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::other(format!(
                "no reply within {timeout:?}"
            )))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> AgentReply {
        s.parse().unwrap()
    }

    #[test]
    fn haproxy_agent_replies() {
        assert_eq!(parse("75%").weight, Some(WeightReport::Percent(75)));
        assert_eq!(parse("75%\n").weight, Some(WeightReport::Percent(75)));
        let r = parse("drain 50%");
        assert_eq!(r.admin, Some(AdminState::Drain));
        assert_eq!(r.weight, Some(WeightReport::Percent(50)));
        assert_eq!(r.down, None);
        assert_eq!(parse("maint").admin, Some(AdminState::Maint));
        assert_eq!(parse("READY,UP").admin, Some(AdminState::Ready));
        assert_eq!(parse("ready\tup").down, Some(false));
        for word in ["down", "fail", "stopped"] {
            assert_eq!(parse(word).down, Some(true), "{word}");
        }
        let r = parse("down#php-fpm not running");
        assert_eq!(r.down, Some(true));
        assert_eq!(r.reason.as_deref(), Some("php-fpm not running"));
        assert_eq!(parse("weight:3").weight, Some(WeightReport::Absolute(3)));
        assert_eq!(
            parse("up maxconn:30 80%").weight,
            Some(WeightReport::Percent(80))
        );
        assert_eq!(parse("# just a note").admin, None);
    }

    #[test]
    fn bad_replies_are_refused() {
        assert_eq!("".parse::<AgentReply>(), Err(AgentError::Empty));
        assert_eq!(" \r\n".parse::<AgentReply>(), Err(AgentError::Empty));
        assert!(matches!(
            "busy".parse::<AgentReply>(),
            Err(AgentError::Unknown(_))
        ));
        assert!(matches!(
            "x%".parse::<AgentReply>(),
            Err(AgentError::BadNumber(_))
        ));
        assert!(matches!(
            "-5%".parse::<AgentReply>(),
            Err(AgentError::BadNumber(_))
        ));
        assert!(matches!(
            "weight:999".parse::<AgentReply>(),
            Err(AgentError::BadNumber(_))
        ));
        assert!(matches!(
            "HTTP/1.1 200 OK".parse::<AgentReply>(),
            Err(AgentError::Unknown(_))
        ));
    }
}
