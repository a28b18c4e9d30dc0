//! Network namespaces for the tests that need machines of their own (the
//! upgrade's per-namespace sysctl, a fleet): made with `ip netns`, deleted
//! when dropped, and this test binary run again inside one of them to do
//! the test's work there.

use super::{skipped, tool};

/// Namespaces made for one test, deleted when dropped.
pub struct Namespaces {
    pub names: Vec<String>,
    /// Held while the namespaces exist: the tests that use them run
    /// whole processes under load (an upgrade, a fleet) and are timed,
    /// so they take turns rather than share the two cores.
    _turn: std::sync::MutexGuard<'static, ()>,
}

static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Namespaces {
    /// Makes one namespace per name in `names` (prefixed with this
    /// process's id), with `lo` up in each. `None` (the test skipped)
    /// where this is not root, has no `ip`, or cannot make namespaces;
    /// with `PREDICTOR_REQUIRE_NETNS` set (CI) that fails the test.
    pub fn make(test: &str, names: &[&str]) -> Option<Namespaces> {
        let root = std::fs::read_to_string("/proc/self/status")
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
        let required = std::env::var_os("PREDICTOR_REQUIRE_NETNS").is_some();
        if !root || !tool(test, "ip", &["-V"], "PREDICTOR_REQUIRE_NETNS") {
            assert!(
                !required,
                "{test}: needs root and ip (PREDICTOR_REQUIRE_NETNS)"
            );
            skipped(test, "needs root and iproute2 for a network namespace");
            return None;
        }
        let mut made = Namespaces {
            names: Vec::new(),
            _turn: TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner()),
        };
        for name in names {
            let ns = format!("p{}-{name}", std::process::id());
            let added = std::process::Command::new("ip")
                .args(["netns", "add", &ns])
                .status()
                .is_ok_and(|s| s.success());
            if !added {
                assert!(
                    !required,
                    "{test}: cannot add a network namespace (PREDICTOR_REQUIRE_NETNS)"
                );
                skipped(test, "cannot add a network namespace here");
                return None;
            }
            made.names.push(ns.clone());
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        Some(made)
    }

    /// Runs the ignored test `inner` (its path in this binary) inside the
    /// namespace `ns` with `env` set, and checks that it passed. Returns
    /// its output.
    pub fn run_inside(&self, ns: &str, inner: &str, env: (&str, &str)) -> String {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", inner, "--ignored", "--nocapture"])
            .env(env.0, env.1)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("1 passed"), "{text}");
        text
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.names {
            let _ = std::process::Command::new("ip")
                .args(["netns", "delete", ns])
                .status();
        }
    }
}

/// `ip ARGS`, which must succeed.
pub fn ip(args: &[&str]) {
    let ok = std::process::Command::new("ip")
        .args(args)
        .status()
        .unwrap();
    assert!(ok.success(), "ip {args:?}");
}
