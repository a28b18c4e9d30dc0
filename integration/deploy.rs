//! What operators install with (`deploy/`), checked by the tools they
//! would use: `promtool` for the alert rules (and their unit tests) and
//! the scrape config, `systemd-analyze verify` for the unit; and the
//! dashboard, the alerts and `docs/operations.md` against the metrics a
//! running predictor actually exports.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::prom::Exposition;
use crate::support::*;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn promtool_here(test: &str) -> bool {
    tool(
        test,
        "promtool",
        &["--version"],
        "PREDICTOR_REQUIRE_PROMETHEUS",
    )
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd:?}:\n{text}");
    text
}

#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    if !promtool_here("the_alert_rules_pass_promtool_and_their_unit_tests") {
        return;
    }
    let dir = repo("deploy/prometheus");
    let checked = run_ok(
        Command::new("promtool")
            .args(["check", "rules", "alerts.yml"])
            .current_dir(&dir),
    );
    assert!(checked.contains("SUCCESS"), "{checked}");
    // Each alert fires on the series that should fire it, and not on
    // healthy ones.
    let tested = run_ok(
        Command::new("promtool")
            .args(["test", "rules", "alerts.test.yml"])
            .current_dir(&dir),
    );
    assert!(tested.contains("SUCCESS"), "{tested}");
}

#[test]
fn the_scrape_config_passes_promtool() {
    if !promtool_here("the_scrape_config_passes_promtool") {
        return;
    }
    let dir = repo("deploy/prometheus");
    let out = Command::new("promtool")
        .args(["check", "config", "prometheus.yml"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        return;
    }
    // Debian builds Prometheus without Kubernetes discovery: check the
    // file without its Kubernetes job (the last one) there.
    assert!(
        text.contains("field kubernetes_sd_configs not found"),
        "{text}"
    );
    eprintln!("promtool has no Kubernetes discovery: checking the other jobs");
    let config = std::fs::read_to_string(dir.join("prometheus.yml")).unwrap();
    let cut = config
        .find("  - job_name: predictor-kubernetes")
        .expect("the Kubernetes job");
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("prometheus.yml"), &config[..cut]).unwrap();
    std::fs::copy(dir.join("alerts.yml"), tmp.path().join("alerts.yml")).unwrap();
    let checked = run_ok(
        Command::new("promtool")
            .args(["check", "config", "prometheus.yml"])
            .current_dir(tmp.path()),
    );
    assert!(checked.contains("SUCCESS"), "{checked}");
}

#[test]
fn the_systemd_unit_verifies() {
    let test = "the_systemd_unit_verifies";
    // Only where systemd is: not required.
    if !tool(
        test,
        "systemd-analyze",
        &["--version"],
        "PREDICTOR_REQUIRE_SYSTEMD",
    ) {
        return;
    }
    // The unit names the installed binary; point it at the one built.
    let unit = std::fs::read_to_string(repo("deploy/predictor.service"))
        .unwrap()
        .replace("/usr/local/bin/predictor", env!("CARGO_BIN_EXE_predictor"));
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("predictor.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    let about_unit: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("predictor.service"))
        .collect();
    assert!(about_unit.is_empty(), "{text}");
}

/// The metric families a predictor with every feature on exports (TLS,
/// legacy, an admin listener), by their HELP lines.
async fn exported() -> BTreeSet<String> {
    let web = Backend::start("web").await;
    let legacy = Backend::start("legacy").await;
    let toml = config_toml(
        &[("web", vec![("w", web.addr)])],
        Some(legacy.addr),
        "[tls]\ncertificates = \"certs\"\n[admin]\naddress = \"127.0.0.1:0\"\n",
    );
    let f = Folder::new(&toml, "s.example\tt\tweb\tf\n", "default = \"migrated\"\n");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["s.example".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::create_dir_all(f.path().join("certs")).unwrap();
    f.write("certs/s.pem", &(cert.pem() + &key.serialize_pem()));
    let p = Proxy::start(&f);
    get(p.addr, "s.example", "/").await;
    let admin = p.server().admin_addr().unwrap();
    let m = Exposition::parse(&get(admin, "admin", "/metrics").await.body);
    m.0.docs.keys().cloned().collect()
}

/// Every `predictor_*` name in `text`, with a histogram's `_bucket`,
/// `_sum` and `_count` series taken to their family.
fn referenced(text: &str, families: &BTreeSet<String>) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("predictor_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| families.contains(*f)))
            .unwrap_or(name);
        names.insert(family.to_string());
        rest = &tail[end..];
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_alerts_and_docs_name_only_exported_metrics() {
    let families = exported().await;
    assert!(families.len() > 30, "{families:?}");
    let dashboard = std::fs::read_to_string(repo("deploy/grafana/predictor.json")).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    assert!(!parsed["panels"].as_array().unwrap().is_empty());
    let alerts = std::fs::read_to_string(repo("deploy/prometheus/alerts.yml")).unwrap();
    let docs = std::fs::read_to_string(repo("docs/operations.md")).unwrap();
    for (file, text) in [
        ("deploy/grafana/predictor.json", &dashboard),
        ("deploy/prometheus/alerts.yml", &alerts),
        ("docs/operations.md", &docs),
    ] {
        let unknown: Vec<_> = referenced(text, &families)
            .into_iter()
            .filter(|n| !families.contains(n))
            .collect();
        assert!(
            unknown.is_empty(),
            "{file} names metrics not exported: {unknown:?}"
        );
    }
    // The operators' guide documents every family.
    let documented = referenced(&docs, &families);
    let missing: Vec<_> = families.difference(&documented).collect();
    assert!(missing.is_empty(), "docs/operations.md misses {missing:?}");
}
