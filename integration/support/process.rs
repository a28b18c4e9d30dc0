//! The `predictor` binary as operators run it: `predictor run --config`,
//! its log read line by line, signals sent with `kill`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{ExitStatus, Stdio};

use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;

use super::WAIT;

pub struct Running {
    pub child: tokio::process::Child,
    pid: String,
    lines: mpsc::UnboundedReceiver<String>,
}

impl Running {
    /// `predictor run --config dir`, its stdout (the access log, when it
    /// goes there) discarded.
    pub fn start(dir: &Path) -> Running {
        Self::start_with(dir, &[])
    }

    /// [`Running::start`] with `env` added to its environment.
    pub fn start_with(dir: &Path, env: &[(&str, &str)]) -> Running {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_predictor"));
        command.envs(env.iter().copied());
        Self::spawn(command, dir)
    }

    /// [`Running::start`] inside the network namespace `ns` (`ip netns
    /// exec` enters it and then executes predictor in its own process:
    /// the pid signalled is predictor's).
    pub fn start_in_netns(ns: &str, dir: &Path) -> Running {
        let mut command = tokio::process::Command::new("ip");
        command.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_predictor")]);
        Self::spawn(command, dir)
    }

    fn spawn(mut command: tokio::process::Command, dir: &Path) -> Running {
        let mut child = command
            .args(["run", "--config"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = child.id().unwrap().to_string();
        let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running { child, pid, lines }
    }

    /// The next log line containing `needle` (lines before it are passed).
    pub async fn wait_for(&mut self, needle: &str) -> String {
        let mut passed = Vec::new();
        loop {
            let line = tokio::time::timeout(WAIT, self.lines.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!("no log line with {needle:?} in time; passed: {passed:#?}")
                })
                .unwrap_or_else(|| panic!("the log ended before {needle:?}"));
            assert!(
                !line.contains('\x1b'),
                "colour codes in a log file: {line:?}"
            );
            if line.contains(needle) {
                return line;
            }
            passed.push(line);
        }
    }

    /// The address logged on the next line containing `needle`
    /// (`address=IP:PORT`).
    pub async fn address(&mut self, needle: &str) -> SocketAddr {
        let line = self.wait_for(needle).await;
        line.split_whitespace()
            .find_map(|w| w.strip_prefix("address="))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .parse()
            .unwrap()
    }

    /// Sends a signal by name (`-HUP`, `-TERM`, `-USR1`).
    pub fn signal(&self, name: &str) {
        let ok = std::process::Command::new("kill")
            .args([name, self.pid.as_str()])
            .status()
            .unwrap();
        assert!(ok.success(), "kill {name} {}", self.pid);
    }

    /// Waits for the process to exit, at most `within`.
    pub async fn exit(&mut self, within: std::time::Duration) -> ExitStatus {
        tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("still running after {within:?}"))
            .unwrap()
    }
}
