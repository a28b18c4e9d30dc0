//! The `predictor` binary: check, route, demo.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::support::*;

fn predictor() -> Command {
    Command::new(env!("CARGO_BIN_EXE_predictor"))
}

fn folder(tenants: &str) -> Folder {
    Folder::new(
        &config_toml(
            &[("web", vec![("w", "127.0.0.1:9".parse().unwrap())])],
            None,
            "",
        ),
        tenants,
        "default = \"migrated\"\n",
    )
}

#[test]
fn check_names_a_broken_tenant_line() {
    let f = folder("a.example\tt1\tweb\tf1\n# fine\nb.example\tt2\tgold\tf1\nc.example\tt3\tweb\n");
    let out = predictor()
        .args(["check", "--config"])
        .arg(f.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let table = f.path().join("tenants.tsv");
    assert!(
        err.contains(&format!("{}:3: unknown tier \"gold\"", table.display())),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{}:4: expected 4 tab-separated fields",
            table.display()
        )),
        "{err}"
    );
    assert!(err.contains("2 problem(s)"), "{err}");
}

#[test]
fn check_summarises_a_good_folder() {
    let f =
        folder("a.example\tt1\tweb\tf1\nwww.a.example\tt1\tweb\tf1\n*.b.example\tt2\tweb\tf2\n");
    let out = predictor()
        .args(["check", "--config"])
        .arg(f.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("ok: 2 tenants, 3 hosts (1 wildcards), 1 tiers, 1 pools, 1 servers, 2 filers; tenants: 0 legacy, 0 maintenance, 2 migrated"),
        "{text}"
    );
}

#[test]
fn check_accepts_the_shipped_example() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let out = predictor()
        .args(["check", "--config"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn route_explains_a_host() {
    let f = folder("a.example\tt1\tweb\tf1\n");
    let out = predictor()
        .args(["route", "--config"])
        .arg(f.path())
        .arg("A.Example:80")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for line in [
        "host:      a.example (from \"A.Example:80\")",
        "tenant:    t1 (exact match)",
        "state:     migrated",
        "pool:      web",
        "1. w 127.0.0.1:9",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    let out = predictor()
        .args(["route", "--config"])
        .arg(f.path())
        .arg("bad host")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("answer 400"));
}

/// `predictor demo` prints three curl lines that answer as announced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_answers_as_printed() {
    let mut child = predictor()
        .args(["demo", "--tenants", "2000", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let done = line.starts_with("Stop with");
            lines.push(line);
            if done {
                break;
            }
        }
        lines
    });
    let lines = tokio::time::timeout(WAIT, lines).await.unwrap().unwrap();
    let curls: Vec<(String, String)> = lines
        .iter()
        .filter_map(|l| l.trim().strip_prefix("curl -i -H 'Host: "))
        .map(|rest| {
            let (host, url) = rest.split_once("' ").unwrap();
            (host.to_string(), url.to_string())
        })
        .collect();
    assert_eq!(curls.len(), 3, "{lines:#?}");
    let addr: std::net::SocketAddr = curls[0]
        .1
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();

    let migrated = get(addr, &curls[0].0, "/").await;
    assert_eq!(migrated.status.as_u16(), 200);
    assert!(
        migrated.body.starts_with("webserver web-"),
        "{}",
        migrated.body
    );
    assert!(
        migrated.body.contains("served tenant c"),
        "{}",
        migrated.body
    );
    let legacy = get(addr, &curls[1].0, "/").await;
    assert!(
        legacy.body.starts_with("legacy balancer"),
        "{}",
        legacy.body
    );
    let maintenance = get(addr, &curls[2].0, "/").await;
    assert_eq!(maintenance.status.as_u16(), 503);
    assert_eq!(maintenance.header("retry-after"), Some("300"));

    // The operator's side: the admin lines answer.
    let admin_urls: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.trim().strip_prefix("curl -s "))
        .map(|u| u.trim_matches('\''))
        .collect();
    assert_eq!(admin_urls.len(), 3, "{lines:#?}");
    for url in admin_urls {
        let rest = url.strip_prefix("http://").unwrap();
        let (admin, path) = rest.split_at(rest.find('/').unwrap());
        let reply = get(admin.parse().unwrap(), "admin", path).await;
        assert_eq!(reply.status.as_u16(), 200, "{url}");
        let expect = match path {
            "/status" => "\"generation\"",
            "/metrics" => "predictor_requests_total",
            _ => "state:     migrated",
        };
        assert!(reply.body.contains(expect), "{url}: {}", reply.body);
    }
    // The route line runs as copied, and asks the running demo.
    let route = lines
        .iter()
        .find(|l| l.contains(" route --config "))
        .expect("a route line");
    let words: Vec<&str> = route.split_whitespace().collect();
    let out = Command::new(words[0]).args(&words[1..]).output().unwrap();
    assert!(out.status.success(), "{route}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("live:      from the running instance"),
        "{text}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("kill -HUP")),
        "the folder is watched: no signal to send"
    );

    // SIGTERM drains and exits cleanly.
    Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap());
    assert!(
        tokio::time::timeout(WAIT, status)
            .await
            .unwrap()
            .unwrap()
            .success()
    );
}

/// `predictor run`: a filer flipped in the state file and `SIGHUP` moves its
/// sites; a broken state file and `SIGHUP` change nothing; `SIGTERM` exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_reloads_on_sighup_and_drains_on_sigterm() {
    let web = Backend::start("web").await;
    let legacy = Backend::start("legacy").await;
    let f = Folder::new(
        &config_toml(&[("web", vec![("w", web.addr)])], Some(legacy.addr), ""),
        "a.example\tt1\tweb\tf1\n",
        "default = \"legacy\"\n",
    );
    let mut run = process::Running::start(f.path());
    let addr = run.address("listening").await;
    assert_eq!(get(addr, "a.example", "/").await.body, "legacy");

    f.write(
        "migration.toml",
        "default = \"legacy\"\n[filers]\nf1 = \"migrated\"\n",
    );
    run.signal("-HUP");
    run.wait_for("config reloaded").await;
    assert_eq!(get(addr, "a.example", "/").await.body, "web");

    f.write(
        "migration.toml",
        "default = \"legacy\"\n[filers]\nf1 = \"moved\"\n",
    );
    run.signal("-HUP");
    let refused = run.wait_for("reload refused").await;
    assert!(refused.contains("problems=1"), "{refused}");
    // The folder watch may also have read the file between the write's
    // truncate and its bytes (a problem on line 1, refused just the
    // same): the signal's reload names line 3.
    let problem = run.wait_for("migration.toml:3").await;
    assert!(problem.contains("reload problem"), "{problem}");
    assert_eq!(
        get(addr, "a.example", "/").await.body,
        "web",
        "the good snapshot keeps serving"
    );

    run.signal("-TERM");
    let status = run.exit(WAIT).await;
    assert!(status.success(), "{status}");
}

/// Two processes given the same config place every tenant on the same
/// servers in the same order (nothing process-seeded in placement).
#[test]
fn two_instances_place_every_tenant_identically() {
    let servers: Vec<(String, std::net::SocketAddr)> = (0..12)
        .map(|i| {
            (
                format!("web-{i:02}"),
                format!("10.0.0.{}:80", i + 1).parse().unwrap(),
            )
        })
        .collect();
    let pool: Vec<(&str, std::net::SocketAddr)> =
        servers.iter().map(|(id, a)| (id.as_str(), *a)).collect();
    let mut tenants = String::new();
    for t in 0..400 {
        tenants.push_str(&format!("site{t}.example\tt{t}\tweb\tf{}\n", t % 7));
    }
    let f = Folder::new(
        &config_toml(&[("web", pool)], None, ""),
        &tenants,
        "default = \"migrated\"\n",
    );
    let route = |host: &str| -> String {
        let out = predictor()
            .args(["route", "--config"])
            .arg(f.path())
            .arg(host)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mut firsts = std::collections::HashSet::new();
    for t in (0..400).step_by(23) {
        let host = format!("site{t}.example");
        let (a, b) = (route(&host), route(&host));
        assert_eq!(a, b, "{host} placed differently by two processes");
        let first = a
            .lines()
            .find(|l| {
                l.trim_start()
                    .trim_start_matches('*')
                    .trim_start()
                    .starts_with("1. ")
            })
            .unwrap()
            .to_string();
        firsts.insert(first);
    }
    assert!(firsts.len() > 5, "tenants spread over the pool: {firsts:?}");
}

/// `predictor check` on `dir`, which must fail: what it printed.
fn check_fails(dir: &std::path::Path) -> String {
    let out = predictor()
        .args(["check", "--config"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// One `check` lists the problems of every file, even when
/// `predictor.toml` itself is refused; a server id used twice names both
/// places.
#[test]
fn check_reports_the_problems_of_every_file() {
    let f = Folder::new(
        "tenants = \"tenants.tsv\"\nmigration = \"migration.toml\"\nworkerz = 2\n\
         [[listen]]\naddress = \"127.0.0.1:0\"\n[tiers.web]\npool = \"web\"\n\
         [pools.web]\nservers = [{ id = \"w\", address = \"127.0.0.1:9\" }]\n",
        "a.example\tt1\tweb\tf1\nb.example\tt2\tgold\tf1\n",
        "default = \"migratd\"\n",
    );
    let err = check_fails(f.path());
    let at = |file: &str, line: usize| format!("{}:{line}:", f.path().join(file).display());
    assert!(err.contains(&at("predictor.toml", 3)), "{err}");
    assert!(err.contains("workerz"), "{err}");
    assert!(
        err.contains(&format!("{} unknown tier \"gold\"", at("tenants.tsv", 2))),
        "{err}"
    );
    assert!(err.contains(&at("migration.toml", 1)), "{err}");
    assert!(err.contains("3 problem(s)"), "{err}");

    // predictor.toml valid as TOML but wrong: a server id used twice is
    // named at both places; the state file names a filer of no host.
    f.write(
        "predictor.toml",
        "tenants = \"tenants.tsv\"\nmigration = \"migration.toml\"\n\
         [[listen]]\naddress = \"127.0.0.1:0\"\n[tiers.web]\npool = \"web\"\n\
         [pools.web]\nservers = [\n  { id = \"w\", address = \"127.0.0.1:9\" },\n  \
         { id = \"w\", address = \"127.0.0.1:10\" },\n]\n",
    );
    f.write("tenants.tsv", "a.example\tt1\tweb\tfiler-02\n");
    f.write(
        "migration.toml",
        "default = \"migrated\"\n[filers]\nfiler-20 = \"maintenance\"\n",
    );
    let err = check_fails(f.path());
    assert!(
        err.contains(&format!(
            "{} pools.web.servers[1].id: server id \"w\" is used twice: first at line 9 (pools.web.servers[0].id)",
            at("predictor.toml", 10)
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{} filer filer-20 has no host in the tenant table; did you mean filer-02?",
            at("migration.toml", 3)
        )),
        "{err}"
    );
    assert!(err.contains("2 problem(s)"), "{err}");
}

/// `--help` says what each command reads, what `run` reacts to and how
/// each ends.
#[test]
fn help_describes_the_config_the_signals_and_the_exit_status() {
    let help = |cmd: &str| {
        let out = predictor().args([cmd, "--help"]).output().unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for cmd in ["run", "check", "route"] {
        let text = help(cmd);
        assert!(text.contains("--config <DIR>"), "{cmd}: {text}");
        assert!(text.contains("The config folder"), "{cmd}: {text}");
        assert!(text.contains("Exit status"), "{cmd}: {text}");
    }
    let run = help("run");
    for word in ["watched", "SIGHUP", "SIGTERM", "SIGUSR1", "/readyz"] {
        assert!(run.contains(word), "run --help lacks {word}: {run}");
    }
    assert!(help("route").contains("[admin]"));
    let version = predictor().arg("--version").output().unwrap();
    let version = String::from_utf8_lossy(&version.stdout);
    assert!(version.contains("(allocator: "), "{version}");
}

/// `RUST_LOG` is read as target=level directives; one that is not
/// understood is said in the log, and predictor runs at `info`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_rust_log_is_said_and_info_logging_goes_on() {
    let f = folder("a.example\tt1\tweb\tf1\n");
    let mut run = process::Running::start_with(f.path(), &[("RUST_LOG", "predictor=loud")]);
    let said = run.wait_for("RUST_LOG not understood").await;
    assert!(said.contains("WARN"), "{said}");
    run.wait_for("config loaded").await;
    run.signal("-TERM");
    assert!(run.exit(WAIT).await.success());
}
