//! Loading whole config folders: the shipped example, every key's
//! validation with its file:line, the tenant table and state file against
//! the config, certificates. (Through the library's public API, as
//! `predictor run` and `check` load them.)

use std::path::{Path, PathBuf};

use predictor::config::*;
use predictor::snapshot::Snapshot;

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

fn folder(toml: &str, tenants: &str, migration: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(MAIN_FILE), toml).unwrap();
    std::fs::write(dir.path().join("tenants.tsv"), tenants).unwrap();
    std::fs::write(dir.path().join("migration.toml"), migration).unwrap();
    dir
}

const MINIMAL: &str = r#"
tenants = "tenants.tsv"
migration = "migration.toml"
[[listen]]
address = "127.0.0.1:0"
[tiers.basic]
pool = "p"
[pools.p]
servers = [{ id = "a", address = "127.0.0.1:9" }]
"#;

fn problems(e: ConfigError) -> Vec<Problem> {
    match e {
        ConfigError::Invalid(p) => p.iter().cloned().collect(),
        other => panic!("expected problems, got {other}"),
    }
}

/// Asserts that each `(line, key)` is among the problems.
/// The problems of a folder with `toml` (every tenant migrated), which
/// must be refused.
fn refused(toml: &str) -> Vec<Problem> {
    let dir = folder(toml, "", "default = \"migrated\"\n");
    problems(Config::load(dir.path()).unwrap_err())
}

/// The config of a folder with `toml` (every tenant migrated).
fn loaded(toml: &str) -> Config {
    let dir = folder(toml, "", "default = \"migrated\"\n");
    Config::load(dir.path()).unwrap()
}

fn assert_found(p: &[Problem], expected: &[(Option<usize>, &str)]) {
    let found: Vec<(Option<usize>, &str)> = p
        .iter()
        .map(|p| (p.line, p.key.as_deref().unwrap_or("")))
        .collect();
    for e in expected {
        assert!(found.contains(e), "missing {e:?} in {found:?}");
    }
}

#[test]
fn the_shipped_example_is_valid_and_complete() {
    let snap = Snapshot::load(&example_dir()).unwrap();
    let c = &snap.config;
    assert_eq!(c.listeners.len(), 3);
    assert_eq!(c.listeners[0].protocol, Protocol::Auto);
    assert_eq!(c.listeners[0].proxy_protocol, None);
    let behind = c.listeners[2].proxy_protocol.as_ref().unwrap();
    assert!(behind.expects("10.20.1.3".parse().unwrap()));
    assert_eq!(behind.timeout, std::time::Duration::from_secs(3));
    assert!(c.listeners.iter().all(|l| l.defer_accept));
    assert_eq!(c.timeouts.connect, std::time::Duration::from_secs(2));
    assert_eq!(c.timeouts.upstream_idle, std::time::Duration::from_secs(4));
    assert_eq!(c.limits.upstream_attempts, 2);
    assert_eq!(c.forward.tenant_header.as_ref().unwrap(), "x-tenant");
    assert_eq!(c.unknown_hosts, UnknownHosts::Legacy);
    let l = c.legacy.as_ref().unwrap();
    assert_eq!(l.address.to_string(), "10.20.0.10:80");
    assert_eq!(l.protocol, predictor::config::UpstreamProtocol::Http1);
    assert_eq!(l.max_lifetime, std::time::Duration::from_secs(600));
    assert_eq!(l.hop_header, "x-predictor-hop");
    assert_eq!((l.probe.rise, l.probe.fall), (2, 3));
    assert_eq!(l.probe.path, "/");
    assert!(c.forward.trusts("10.1.2.3".parse().unwrap()));
    assert!(c.forward.trusts("::ffff:192.0.2.10".parse().unwrap()));
    assert!(!c.forward.trusts("192.0.2.11".parse().unwrap()));
    assert!(!c.forward.forwarded);
    assert_eq!(c.admin, Some("127.0.0.1:9180".parse().unwrap()));
    let premium = c.tier(c.tier_by_name("premium").unwrap());
    assert_eq!((premium.cost, premium.k_min, premium.k_max), (4, 2, 4));
    assert_eq!(c.placement.balance_factor, 1.25);
    assert!(
        std::str::from_utf8(&snap.legacy_down_page)
            .unwrap()
            .contains("previous datacenter")
    );
    assert_eq!(
        c.tiers.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["premium", "shared"]
    );
    assert_eq!(c.pool(c.tiers[1].pool).name, "shared");
    assert_eq!(c.pool(c.tiers[1].pool).servers[2].weight, 2);
    assert!(
        std::str::from_utf8(&snap.maintenance_page)
            .unwrap()
            .contains("moving")
    );
    assert_eq!(snap.retry_after, "600");
    assert!(snap.warnings.is_empty(), "{:?}", snap.warnings);
    assert_eq!(snap.tenants.tenant_count(), 5);
}

/// Every key of every raw struct appears in the example, so operators
/// can find all of them there.
#[test]
fn the_example_shows_every_key() {
    let text = std::fs::read_to_string(example_dir().join(MAIN_FILE)).unwrap();
    let raw_src = include_str!("../src/config/raw.rs");
    let start = raw_src.find("pub struct RawConfig").unwrap();
    let end = raw_src.find("/// The migration state file").unwrap();
    for line in raw_src[start..end].lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("pub ") {
            if let Some((field, _)) = rest.split_once(':') {
                if !field.contains(' ') {
                    let shown = text.contains(&format!("{field} ="))
                        || text.contains(&format!("[{field}"))
                        || text.contains(&format!(".{field}]"))
                        || text.contains(&format!("[[{field}"));
                    assert!(shown, "key {field} is missing from config/predictor.toml");
                }
            }
        }
    }
}

#[test]
fn defaults_fill_what_is_not_written() {
    let dir = folder(MINIMAL, "", "default = \"migrated\"\n");
    let c = Config::load(dir.path()).unwrap();
    assert_eq!(
        c.proxy,
        ProxySettings {
            name: "predictor".into(),
            workers: 0
        }
    );
    assert_eq!(
        c.timeouts.request_header,
        std::time::Duration::from_secs(10)
    );
    assert_eq!(c.limits.max_connections, 100_000);
    assert_eq!(
        c.unknown_hosts,
        UnknownHosts::Reject(http::StatusCode::MISDIRECTED_REQUEST)
    );
    assert!(c.legacy.is_none());
    assert_eq!(c.maintenance.retry_after.as_secs(), 600);
    assert_eq!(c.tenants_file, dir.path().join("tenants.tsv"));
}

#[test]
fn an_unknown_key_is_named_with_its_line() {
    let text = MINIMAL.replace("[[listen]]", "[timeouts]\nconect = \"1s\"\n[[listen]]");
    let dir = folder(&text, "", "default = \"migrated\"\n");
    let p = problems(Config::load(dir.path()).unwrap_err());
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].line, Some(5));
    assert!(p[0].message.contains("conect"), "{}", p[0]);
    assert!(
        p[0].to_string()
            .starts_with(&format!("{}:5:", dir.path().join(MAIN_FILE).display()))
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = r#"
tenants = "tenants.tsv"
migration = "migration.toml"
[timeouts]
connect = "soon"
[[listen]]
address = "localhost:80"
[unknown_hosts]
action = "legacy"
status = 500
[tiers.basic]
pool = "nope"
[pools.p]
servers = [
  { id = "a", address = "127.0.0.1:9" },
  { id = "a", address = "127.0.0.1:10", weight = 0 },
]
[pools.empty]
servers = []
"#;
    let p = refused(text);
    assert_found(
        &p,
        &[
            (Some(5), "timeouts.connect"),
            (Some(7), "listen[0].address"),
            (Some(9), "unknown_hosts.action"),
            (Some(10), "unknown_hosts.status"),
            (Some(12), "tiers.basic.pool"),
            (Some(16), "pools.p.servers[1].id"),
            (Some(16), "pools.p.servers[1].weight"),
            (Some(18), "pools.empty.servers"),
        ],
    );
}

#[test]
fn tenant_table_problems_name_their_lines() {
    let tenants = "# comment\n\
        a.example\tt1\tbasic\tf1\n\
        b.example\tt1\tbasic\n\
        bad host\tt2\tbasic\tf1\n\
        c.example\tt3\tgold\tf1\n\
        a.example\tt4\tbasic\tf1\n\
        d.example\tt1\tbasic\tf2\n\
        \n\
        ok.example\tt5\tbasic\tf1\n\
        cut.exa";
    let dir = folder(MINIMAL, tenants, "default = \"migrated\"\n");
    let p = problems(Snapshot::load(dir.path()).map(|_| ()).unwrap_err());
    let lines: Vec<(usize, &str)> = p
        .iter()
        .map(|p| (p.line.unwrap(), p.message.as_str()))
        .collect();
    assert_eq!(lines.len(), 6, "{lines:#?}");
    assert!(
        lines[0].0 == 3 && lines[0].1.contains("expected 4 tab-separated fields"),
        "{lines:?}"
    );
    assert!(
        lines[1].0 == 4 && lines[1].1.contains("bad host \"bad host\""),
        "{lines:?}"
    );
    assert!(
        lines[2].0 == 5
            && lines[2]
                .1
                .contains("unknown tier \"gold\" (expected one of: basic)"),
        "{lines:?}"
    );
    assert!(
        lines[3].0 == 6
            && lines[3]
                .1
                .contains("claimed by tenant t4 here and by tenant t1 on line 2"),
        "{lines:?}"
    );
    assert!(
        lines[4].0 == 7 && lines[4].1.contains("filer f1 on line 2 but f2 here"),
        "{lines:?}"
    );
    assert!(
        lines[5].0 == 10 && lines[5].1.contains("no line end"),
        "{lines:?}"
    );
    assert!(p.iter().all(|p| p.file.ends_with("tenants.tsv")));
}

/// Problems far apart in a big table (found by the two threads of a
/// parse, in different batches): the first lines of repeats are found
/// again, and the first problems by line are the ones kept.
#[test]
fn big_table_problems_keep_line_order_and_first_lines() {
    let mut tenants = String::new();
    for i in 0..12_000 {
        match i {
            // Line 9,001 repeats line 6's host (written differently).
            9_000 => tenants.push_str("SITE5.example.\tother\tbasic\tf1\n"),
            // Line 10,001: tenant t7 (line 8) with another filer.
            10_000 => tenants.push_str("alias7.example\tt7\tbasic\tf2\n"),
            // Line 11,001: t3 again, far from line 4, agreeing: fine.
            11_000 => tenants.push_str("alias3.example\tt3\tbasic\tf1\n"),
            _ => tenants.push_str(&format!("site{i}.example\tt{i}\tbasic\tf1\n")),
        }
    }
    let dir = folder(MINIMAL, &tenants, "default = \"migrated\"\n");
    let p = problems(Snapshot::load(dir.path()).map(|_| ()).unwrap_err());
    let lines: Vec<(usize, &str)> = p
        .iter()
        .map(|p| (p.line.unwrap(), p.message.as_str()))
        .collect();
    assert_eq!(
        lines,
        [
            (
                9_001,
                "host site5.example is claimed by tenant other here and by tenant t5 on line 6"
            ),
            (
                10_001,
                "tenant t7 is on filer f1 on line 8 but f2 here; all lines of a tenant name the same filer"
            ),
        ]
    );

    // Over the cap: the first problems by line, whichever thread found
    // them (bad hosts on the host thread, bad tiers on the reading one).
    let mut tenants = String::new();
    for i in 0..300 {
        if i % 2 == 0 {
            tenants.push_str(&format!("bad host{i}.example\tt{i}\tbasic\tf1\n"));
        } else {
            tenants.push_str(&format!("s{i}.example\tt{i}\tgold\tf1\n"));
        }
    }
    let dir = folder(MINIMAL, &tenants, "default = \"migrated\"\n");
    match Snapshot::load(dir.path()).map(|_| ()).unwrap_err() {
        ConfigError::Invalid(p) => {
            assert_eq!(p.total(), 300);
            let kept: Vec<usize> = p.iter().map(|p| p.line.unwrap()).collect();
            assert_eq!(kept, (1..=MAX_REPORTED).collect::<Vec<_>>());
        }
        other => panic!("{other}"),
    }
}

#[test]
fn migration_problems_are_reported_with_tenant_problems() {
    let dir = folder(
        MINIMAL,
        "a.example\tt1\tbasic\tf1\tx\n",
        "default = \"migrated\"\n[filers]\nf1 = \"moved\"\n",
    );
    let p = problems(Snapshot::load(dir.path()).map(|_| ()).unwrap_err());
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(
        p.iter()
            .any(|p| p.file.ends_with("tenants.tsv") && p.line == Some(1))
    );
    assert!(p.iter().any(|p| p.file.ends_with("migration.toml")
        && p.line == Some(3)
        && p.message.contains("moved")));
}

#[test]
fn legacy_state_needs_a_legacy_balancer() {
    let dir = folder(
        MINIMAL,
        "a.example\tt1\tbasic\tf1\n",
        "default = \"migrated\"\n[filers]\nf1 = \"legacy\"\n",
    );
    let p = problems(Snapshot::load(dir.path()).map(|_| ()).unwrap_err());
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].line, Some(3));
    assert!(p[0].message.contains("[legacy]"));
}

#[test]
fn an_unknown_filer_is_refused_with_the_nearest_names_and_an_unknown_tenant_warned() {
    let table = "a.example\tt1\tbasic\tfiler-01\nb.example\tt2\tbasic\tfiler-02\n\
                 c.example\tt3\tbasic\tfiler-10\n";
    let dir = folder(
        MINIMAL,
        table,
        "default = \"migrated\"\n[filers]\nfiler-01 = \"migrated\"\nfiler-20 = \"maintenance\"\n",
    );
    let p = problems(Snapshot::load(dir.path()).map(|_| ()).unwrap_err());
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].file.ends_with("migration.toml"));
    assert_eq!(p[0].line, Some(4));
    assert!(
        p[0].message.contains(
            "filer filer-20 has no host in the tenant table; did you mean filer-02 or filer-10?"
        ),
        "{}",
        p[0].message
    );

    // Prepared before its sites are in the table: taken, and silent.
    let dir = folder(
        MINIMAL,
        table,
        "default = \"migrated\"\nprepared_filers = [\"filer-20\"]\n[filers]\nfiler-20 = \"maintenance\"\n\
         [tenants]\nt1 = \"maintenance\"\nt9 = \"migrated\"\n",
    );
    let snap = Snapshot::load(dir.path()).unwrap();
    let w: Vec<String> = snap.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains(":7: tenant t9 has no host"), "{w:?}");

    let dir = folder(
        MINIMAL,
        table,
        "default = \"migrated\"\nprepared_filers = [\"bad name\"]\n",
    );
    let p = problems(Snapshot::load(dir.path()).map(|_| ()).unwrap_err());
    assert_found(&p, &[(Some(2), "prepared_filers")]);
}

#[test]
fn a_missing_file_is_named() {
    let dir = folder(MINIMAL, "", "default = \"migrated\"\n");
    std::fs::remove_file(dir.path().join("tenants.tsv")).unwrap();
    let e = Snapshot::load(dir.path()).map(|_| ()).unwrap_err();
    assert!(
        matches!(e, ConfigError::Read { ref path, .. } if path.ends_with("tenants.tsv")),
        "{e}"
    );
}

#[test]
fn legacy_and_forward_problems_name_their_lines() {
    let text = r#"
tenants = "tenants.tsv"
migration = "migration.toml"
[[listen]]
address = "127.0.0.1:80"
[forward]
trusted_proxies = ["10.0.0.0/8", "10.0.0.0/33", "proxy.example"]
[legacy]
address = "10.0.0.1:80"
protocol = "h3"
hop_header = "X-Forwarded-For"
max_pending_connects = 0
[legacy.probe]
interval = "1s"
timeout = "2s"
path = "health"
[tiers.basic]
pool = "p"
[pools.p]
servers = [{ id = "a", address = "127.0.0.1:9" }]
"#;
    let p = refused(text);
    assert_found(
        &p,
        &[
            (Some(7), "forward.trusted_proxies[1]"),
            (Some(7), "forward.trusted_proxies[2]"),
            (Some(10), "legacy.protocol"),
            (Some(11), "legacy.hop_header"),
            (Some(12), "legacy.max_pending_connects"),
            (Some(15), "legacy.probe.timeout"),
            (Some(16), "legacy.probe.path"),
        ],
    );
    assert_eq!(p.len(), 7, "{p:?}");
}

#[test]
fn placement_keys_are_checked() {
    let text = r#"
tenants = "tenants.tsv"
migration = "migration.toml"
[[listen]]
address = "127.0.0.1:80"
[placement]
balance_factor = 0.9
[tiers.a]
pool = "p"
cost = 0
k_min = 3
k_max = 2
[tiers.b]
pool = "p"
k_min = 9
[pools.p]
servers = [{ id = "a", address = "127.0.0.1:9" }]
"#;
    let p = refused(text);
    assert_found(
        &p,
        &[
            (Some(7), "placement.balance_factor"),
            (Some(10), "tiers.a.cost"),
            (Some(12), "tiers.a.k_max"),
            (Some(15), "tiers.b.k_min"),
        ],
    );
    assert_eq!(p.len(), 4, "{p:?}");

    let ok = text
        .replace("balance_factor = 0.9", "")
        .replace("cost = 0\nk_min = 3\nk_max = 2\n", "")
        .replace("k_min = 9\n", "k_min = 2\n");
    let c = loaded(&ok);
    assert_eq!(c.placement.balance_factor, 1.25);
    let (a, b) = (c.tier(0), c.tier(1));
    assert_eq!((a.cost, a.k_min, a.k_max), (1, 1, 4));
    assert_eq!((b.k_min, b.k_max), (2, 4));
}

#[test]
fn health_keys_are_checked_with_their_lines() {
    let text = r#"tenants = "tenants.tsv"
migration = "migration.toml"
[[listen]]
address = "127.0.0.1:0"
[tiers.basic]
pool = "p"
[pools.p]
servers = [{ id = "a", address = "127.0.0.1:9" }]
[pools.p.check]
path = "nope"
timeout = "5s"
[pools.p.agent]
port = 70000
[pools.p.eject]
on = "sometimes"
base = "1m"
max = "10s"
"#;
    let p = refused(text);
    assert_found(
        &p,
        &[
            (Some(10), "pools.p.check.path"),
            (Some(11), "pools.p.check.timeout"),
            (Some(13), "pools.p.agent.port"),
            (Some(15), "pools.p.eject.on"),
            (Some(17), "pools.p.eject.max"),
        ],
    );
    assert_eq!(p.len(), 5, "{p:?}");
}

#[test]
fn health_defaults() {
    let c = loaded(MINIMAL);
    let p = &c.pools[0];
    assert_eq!((p.check.clone(), p.agent), (None, None));
    assert_eq!(p.eject.failures, 5);
    assert_eq!(p.eject.on, predictor::config::EjectOn::Gateway);
    assert_eq!(p.eject.base, std::time::Duration::from_secs(10));
    assert_eq!(p.eject.max, std::time::Duration::from_secs(300));
    let example = Config::load(&example_dir()).unwrap();
    let shared = example.pools.iter().find(|p| p.name == "shared").unwrap();
    assert_eq!(shared.check.as_ref().unwrap().path, "/healthz");
    assert_eq!(shared.agent.unwrap().port, 9777);
}

#[test]
fn listeners_defer_accepts_unless_told_not_to() {
    let dir = folder(MINIMAL, "", "default = \"migrated\"\n");
    assert!(Config::load(dir.path()).unwrap().listeners[0].defer_accept);
    let off = MINIMAL.replace(
        "address = \"127.0.0.1:0\"\n",
        "address = \"127.0.0.1:0\"\ndefer_accept = false\n",
    );
    let dir = folder(&off, "", "default = \"migrated\"\n");
    assert!(!Config::load(dir.path()).unwrap().listeners[0].defer_accept);
    let bad = MINIMAL.replace(
        "address = \"127.0.0.1:0\"\n",
        "address = \"127.0.0.1:0\"\ndefer_accept = \"yes\"\n",
    );
    let dir = folder(&bad, "", "default = \"migrated\"\n");
    let err = Config::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("predictor.toml:6"), "{err}");
}

#[test]
fn proxy_protocol_sources_and_timeout_are_checked_with_their_lines() {
    let on = MINIMAL.replace(
        "address = \"127.0.0.1:0\"\n",
        "address = \"127.0.0.1:0\"\nproxy_protocol = [\"10.0.0.0/24\", \"192.0.2.7\"]\n",
    );
    let c = loaded(&on);
    let p = c.listeners[0].proxy_protocol.as_ref().unwrap();
    assert_eq!(p.timeout, std::time::Duration::from_secs(5));
    assert!(p.expects("10.0.0.9".parse().unwrap()));
    assert!(p.expects("::ffff:192.0.2.7".parse().unwrap()));
    assert!(!p.expects("192.0.2.8".parse().unwrap()));
    // Off unless written.
    let dir = folder(MINIMAL, "", "default = \"migrated\"\n");
    assert_eq!(
        Config::load(dir.path()).unwrap().listeners[0].proxy_protocol,
        None
    );

    for (keys, line, key) in [
        (
            "proxy_protocol = [\"10.0.0.0/24\", \"the balancer\"]\n",
            6,
            "listen[0].proxy_protocol[1]",
        ),
        ("proxy_protocol = []\n", 6, "listen[0].proxy_protocol"),
        (
            "proxy_protocol = [\"10.0.0.1\"]\nproxy_protocol_timeout = \"0s\"\n",
            7,
            "listen[0].proxy_protocol_timeout",
        ),
        (
            "proxy_protocol_timeout = \"3s\"\n",
            6,
            "listen[0].proxy_protocol_timeout",
        ),
    ] {
        let text = MINIMAL.replace(
            "address = \"127.0.0.1:0\"\n",
            &format!("address = \"127.0.0.1:0\"\n{keys}"),
        );
        let p = refused(&text);
        assert_found(&p, &[(Some(line), key)]);
    }
}

#[test]
fn the_drain_notice_is_off_unless_set_and_checked_with_its_line() {
    let c = loaded(MINIMAL);
    assert_eq!(c.timeouts.drain_notice, std::time::Duration::ZERO);
    for (value, secs) in [("\"0s\"", 0), ("\"3s\"", 3)] {
        let text = format!("{MINIMAL}[timeouts]\ndrain_notice = {value}\n");
        let c = loaded(&text);
        assert_eq!(
            c.timeouts.drain_notice,
            std::time::Duration::from_secs(secs)
        );
    }
    let text = format!("{MINIMAL}[timeouts]\ndrain_notice = \"soon\"\n");
    let p = refused(&text);
    assert_found(&p, &[(Some(11), "timeouts.drain_notice")]);
}

#[test]
fn tls_keys_are_checked_with_their_lines() {
    // An https listener needs [tls].
    let text = MINIMAL.replace(
        "address = \"127.0.0.1:0\"\n",
        "address = \"127.0.0.1:0\"\nprotocol = \"https\"\n",
    );
    let p = refused(&text);
    assert_found(&p, &[(Some(6), "listen[0].protocol")]);

    let text = format!(
        "{MINIMAL}[tls]\ncertificates = \"\"\ndefault_certificate = \"a/b.pem\"\nkey_cache = 0\nhandshake_timeout = \"soon\"\nmisdirected = \"nope\"\n"
    );
    let p = refused(&text);
    assert_found(
        &p,
        &[
            (Some(11), "tls.certificates"),
            (Some(12), "tls.default_certificate"),
            (Some(13), "tls.key_cache"),
            (Some(14), "tls.handshake_timeout"),
            (Some(15), "tls.misdirected"),
        ],
    );
}

#[test]
fn a_missing_certificate_folder_or_default_refuses_the_load() {
    let text = format!("{MINIMAL}[tls]\ncertificates = \"certs\"\n");
    let dir = folder(&text, "", "default = \"migrated\"\n");
    let p = problems(Snapshot::load(dir.path()).map(|_| ()).unwrap_err());
    assert_found(&p, &[(None, "tls.certificates")]);

    std::fs::create_dir(dir.path().join("certs")).unwrap();
    let text = format!("{text}default_certificate = \"default.pem\"\n");
    std::fs::write(dir.path().join("predictor.toml"), text).unwrap();
    let p = problems(Snapshot::load(dir.path()).map(|_| ()).unwrap_err());
    assert_found(&p, &[(None, "tls.default_certificate")]);
    assert!(p[0].message.contains("default.pem"), "{p:?}");

    // A bad certificate file is a warning, not a refusal.
    std::fs::write(dir.path().join("certs/default.pem"), "junk").unwrap();
    std::fs::write(
        dir.path().join("predictor.toml"),
        format!("{MINIMAL}[tls]\ncertificates = \"certs\"\n"),
    )
    .unwrap();
    let snap = Snapshot::load(dir.path()).unwrap();
    assert_eq!(snap.warnings.len(), 1, "{:?}", snap.warnings);
    assert!(snap.warnings[0].file.ends_with("certs/default.pem"));
    assert!(snap.warnings[0].message.contains("no certificate"));
    assert_eq!(snap.certs.refused().len(), 1);
    let mut gauges = String::new();
    predictor::admin::scrape::certificates(&mut gauges, &snap, 0);
    assert!(
        gauges.contains("predictor_tls_certificates_refused 1\n"),
        "{gauges}"
    );
}

#[test]
fn passthrough_keys_are_checked_with_their_lines() {
    let text = format!(
        "{MINIMAL}[tls]\ncertificates = \"certs\"\n[tls.passthrough]\naddress = \"nowhere\"\nno_sni = \"maybe\"\nproxy_protocol = false\n"
    );
    let p = refused(&text);
    assert_found(
        &p,
        &[
            (Some(13), "tls.passthrough.address"),
            (Some(14), "tls.passthrough.no_sni"),
        ],
    );
    let text = format!(
        "{MINIMAL}[tls]\ncertificates = \"certs\"\n[tls.passthrough]\naddress = \"10.0.0.1:443\"\nno_sni = \"close\"\nproxy_protocol = false\n"
    );
    let c = loaded(&text);
    let p = c.tls.unwrap().passthrough.unwrap();
    assert_eq!(
        (
            p.address.to_string(),
            p.proxy_protocol,
            p.prefer_local_certificate,
            p.no_sni
        ),
        (
            "10.0.0.1:443".to_string(),
            false,
            true,
            predictor::config::NoSni::Close
        )
    );
}

#[test]
fn the_admin_address_must_not_overlap_a_listener() {
    let with = |listen: &str, admin: &str| {
        let text =
            MINIMAL.replace("127.0.0.1:0", listen) + &format!("[admin]\naddress = \"{admin}\"\n");
        let dir = folder(&text, "", "default = \"migrated\"\n");
        Config::load(dir.path()).map(|c| c.admin)
    };
    for (listen, admin) in [
        ("127.0.0.1:80", "127.0.0.1:80"),
        ("0.0.0.0:80", "127.0.0.1:80"),
    ] {
        let p = problems(with(listen, admin).unwrap_err());
        assert_found(&p, &[(Some(11), "admin.address")]);
        assert!(p[0].message.contains("address of its own"), "{p:?}");
    }
    for (listen, admin) in [
        ("127.0.0.1:80", "127.0.0.1:9180"),
        ("127.0.0.1:80", "127.0.0.2:80"),
        ("[::1]:80", "127.0.0.1:80"),
        ("127.0.0.1:0", "127.0.0.1:0"),
    ] {
        assert!(with(listen, admin).is_ok(), "{listen} {admin}");
    }
}

#[test]
fn access_log_and_request_id_keys_are_checked_with_their_lines() {
    let load = |extra: &str| {
        let dir = folder(&format!("{MINIMAL}{extra}"), "", "default = \"migrated\"\n");
        Config::load(dir.path())
    };
    let p = problems(
        load("[forward]\nrequest_id_header = \"bad header\"\n[access_log]\noutput = \"logs/a.log\"\n")
            .unwrap_err(),
    );
    assert_found(
        &p,
        &[
            (Some(11), "forward.request_id_header"),
            (Some(13), "access_log.output"),
        ],
    );
    assert!(p[1].message.contains("absolute file path"), "{p:?}");
    let c = load("[access_log]\noutput = \"/var/log/p.log\"\n").unwrap();
    assert_eq!(c.access_log, Some(LogOutput::File("/var/log/p.log".into())));
    assert_eq!(c.forward.request_id_header, "x-request-id");
    let c = load("[access_log]\nenabled = false\noutput = \"/var/log/p.log\"\n").unwrap();
    assert_eq!(c.access_log, None);
    assert_eq!(
        load("[access_log]\n").unwrap().access_log,
        Some(LogOutput::Stdout)
    );
    assert_eq!(load("").unwrap().access_log, None);
}

#[test]
fn isolation_keys_are_checked_with_their_lines() {
    let text = r#"tenants = "tenants.tsv"
migration = "migration.toml"
[[listen]]
address = "127.0.0.1:0"
[tiers.basic]
pool = "p"
[tiers.basic.limits]
concurrent = -1
burst = 10
client_rate = 5
share = 0
priority = 300
surge = 1
[pools.p]
max_in_flight = -5
servers = [{ id = "a", address = "127.0.0.1:9", max_in_flight = "many" }]
[pools.p.queue]
timeout = "soon"
max = 0
"#;
    // An unknown key stops the parse at its line (serde), as anywhere.
    let unknown = text.replace("\"many\"", "1");
    let p = refused(&unknown);
    assert_eq!((p.len(), p[0].line), (1, Some(13)), "{p:?}");
    assert!(p[0].message.contains("surge"), "{}", p[0]);
    let text = text
        .replace("surge = 1\n", "")
        .replace("\"many\"", "7000000");
    let p = refused(&text);
    assert_found(
        &p,
        &[
            (Some(8), "tiers.basic.limits.concurrent"),
            (Some(9), "tiers.basic.limits.burst"),
            (Some(11), "tiers.basic.limits.share"),
            (Some(12), "tiers.basic.limits.priority"),
            (Some(14), "pools.p.max_in_flight"),
            (Some(15), "pools.p.servers[0].max_in_flight"),
            (Some(17), "pools.p.queue.timeout"),
            (Some(18), "pools.p.queue.max"),
        ],
    );
    assert_eq!(p.len(), 8, "{p:?}");
}

#[test]
fn isolation_defaults_protect_and_the_example_sets_each_key() {
    let c = loaded(MINIMAL);
    let t = c.isolation.tiers[0];
    assert_eq!(
        (t.concurrent, t.rate, t.client_rate, t.share, t.priority),
        (256, 0, 0, 1, 0)
    );
    let p = &c.isolation.pools[0];
    assert_eq!(p.max_in_flight, vec![128]);
    assert_eq!(
        (p.queue_timeout, p.queue_max),
        (std::time::Duration::from_secs(5), 4096)
    );
    let example = Config::load(&example_dir()).unwrap();
    let premium = example
        .tiers
        .iter()
        .position(|t| t.name == "premium")
        .unwrap();
    let l = example.isolation.tiers[premium];
    assert_eq!(
        (
            l.concurrent,
            l.rate,
            l.burst,
            l.client_rate,
            l.share,
            l.priority
        ),
        (512, 2000, 4000, 200, 4, 10)
    );
    let shared = example
        .pools
        .iter()
        .position(|p| p.name == "shared")
        .unwrap();
    assert_eq!(
        example.isolation.pools[shared].max_in_flight,
        vec![128, 128, 256]
    );
}

#[test]
fn preview_and_reload_keys_are_checked_with_their_lines() {
    let text = r#"tenants = "tenants.tsv"
migration = "migration.toml"
[[listen]]
address = "127.0.0.1:0"
[tiers.basic]
pool = "p"
[pools.p]
servers = [{ id = "a", address = "127.0.0.1:9" }]
[reload]
hold_changed = "5"
hold_dropped_hosts = "150%"
hold_min = -1
[preview]
header = "bad header"
cookie = "a;b"
token = "short"
networks = ["10.0.0.0/33"]
"#;
    let p = refused(text);
    assert_found(
        &p,
        &[
            (Some(10), "reload.hold_changed"),
            (Some(11), "reload.hold_dropped_hosts"),
            (Some(12), "reload.hold_min"),
            (Some(14), "preview.header"),
            (Some(15), "preview.cookie"),
            (Some(16), "preview.token"),
            (Some(17), "preview.networks[0]"),
        ],
    );
    // [shadow], each key at its line.
    let text = MINIMAL.to_string()
        + "[shadow]\nshare = \"ten\"\nmax_in_flight = 0\nheader = \"a b\"\ntimeout = \"soon\"\n\
           max_mismatch = \"200%\"\n[shadow.filers.f1]\nrate = -1\n";
    let p = refused(&text);
    assert_found(
        &p,
        &[
            (Some(11), "shadow.share"),
            (Some(12), "shadow.max_in_flight"),
            (Some(13), "shadow.header"),
            (Some(14), "shadow.timeout"),
            (Some(15), "shadow.max_mismatch"),
            (Some(17), "shadow.filers.f1.rate"),
        ],
    );
    assert_eq!(p.len(), 6, "{p:?}");
    // A [shadow.filers] name the table does not have: a warning at load.
    let text = MINIMAL.to_string() + "[shadow.filers.f9]\nshare = \"50%\"\n";
    let dir = folder(
        &text,
        "a.example\tt\tbasic\tf1\n",
        "default = \"migrated\"\n",
    );
    let snap = predictor::snapshot::Snapshot::load(dir.path()).unwrap();
    assert!(
        snap.warnings
            .iter()
            .any(|w| w.to_string().contains("no filer \"f9\"")),
        "{:?}",
        snap.warnings
    );
    // A header without a token.
    let text = MINIMAL.to_string() + "[preview]\nheader = \"X-Preview\"\n";
    let p = refused(&text);
    assert_found(&p, &[(Some(10), "preview")]);
    let ok = MINIMAL.to_string()
        + "[reload]\nhold_changed = \"0.5%\"\n[preview]\nnetworks = [\"192.0.2.7\"]\n";
    let c = loaded(&ok);
    assert_eq!(c.reload.changed, 0.005);
    assert_eq!(c.preview.unwrap().networks[0].to_string(), "192.0.2.7/32");
}
