//! A real HAProxy (the Debian package) as the legacy balancer: the test
//! writes its config, starts it in the foreground, and can kill and
//! restart it on the same port.
//!
//! `.ci/run` installs HAProxy and sets `PREDICTOR_REQUIRE_HAPROXY=1`, so
//! there a missing binary fails the test. Elsewhere (`cargo test` on a
//! machine without it) these tests say they are skipped and pass.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Haproxy {
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// Whether HAProxy can be run here; `false` prints why the caller skips.
pub fn available(test: &str) -> bool {
    super::tool(test, "haproxy", &["-v"], "PREDICTOR_REQUIRE_HAPROXY")
}

/// A free loopback port (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Haproxy {
    /// Starts HAProxy with `sections` (frontends and backends) after a
    /// common `global`/`defaults`; `{port}` in them is its listening port.
    pub fn start(sections: &str) -> Haproxy {
        Self::start_on(free_port(), sections)
    }

    /// Like [`Haproxy::start`], on a port chosen by the caller (so that
    /// predictor's config can name it first).
    pub fn start_on(port: u16, sections: &str) -> Haproxy {
        let dir = tempfile::tempdir().unwrap();
        let cfg = format!(
            "global\n  maxconn 4096\n\
             defaults\n  mode http\n  timeout connect 2s\n  timeout client 30s\n  \
             timeout server 30s\n  timeout http-keep-alive 30s\n{}",
            sections.replace("{port}", &port.to_string())
        );
        std::fs::write(dir.path().join("haproxy.cfg"), cfg).unwrap();
        let mut h = Haproxy {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
            child: None,
        };
        h.restart();
        h
    }

    /// (Re)starts the process on the same port and waits until it accepts.
    pub fn restart(&mut self) {
        let cfg = self.dir.path().join("haproxy.cfg");
        let check = Command::new("haproxy")
            .arg("-c")
            .arg("-f")
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "haproxy refused its config: {}",
            String::from_utf8_lossy(&check.stdout) + String::from_utf8_lossy(&check.stderr)
        );
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(self.addr).is_err() {
            assert!(Instant::now() < deadline, "haproxy did not start listening");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process at once (SIGKILL): its connections reset.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        self.kill();
    }
}
