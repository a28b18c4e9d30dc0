use http::StatusCode;

use super::host::normalize;
use super::migration::{MigrationState::*, MigrationStates, StateSource};
use super::tenants::{MatchKind, TenantTable, TenantTableBuilder};
use super::*;
use crate::config::{Config, RawDocument};

fn config(extra: &str) -> Config {
    let text = format!(
        r#"
tenants = "t.tsv"
migration = "m.toml"
[[listen]]
address = "127.0.0.1:0"
[tiers.shared]
pool = "small"
[tiers.premium]
pool = "big"
[pools.small]
servers = [{{ id = "s1", address = "127.0.0.1:1" }}]
[pools.big]
servers = [{{ id = "b1", address = "127.0.0.1:2" }}, {{ id = "b2", address = "127.0.0.1:3" }}]
{extra}
"#
    );
    Config::try_from(RawDocument::parse("predictor.toml".into(), text).unwrap()).unwrap()
}

/// premium = tier 0, shared = tier 1 (tiers are sorted by name).
fn table() -> TenantTable {
    let mut b = TenantTableBuilder::default();
    let mut add = |host: &str, tenant: &str, tier: u8, filer: &str| {
        b.add_line(host, tenant, tier, filer).unwrap();
    };
    add("shop.example", "t-shop", 1, "f-moved");
    add("www.shop.example", "t-shop", 1, "f-moved");
    add("*.apps.example", "t-apps", 0, "f-moved");
    add("old.example", "t-old", 1, "f-old");
    add("tonight.example", "t-night", 0, "f-night");
    add("pinned.example", "t-pinned", 1, "f-moved");
    b.build()
}

fn states(t: &TenantTable) -> MigrationStates {
    let mut m = MigrationStates::new(Legacy, t.filers().len());
    m.set_filer(t.filer_by_name("f-moved").unwrap(), Migrated);
    m.set_filer(t.filer_by_name("f-night").unwrap(), Maintenance);
    let pinned = t
        .tenants()
        .find(|(i, _)| t.name(*i) == "t-pinned")
        .unwrap()
        .0;
    m.set_tenant(pinned, Legacy);
    m
}

fn decide(c: &Config, t: &TenantTable, m: &MigrationStates, host: &str) -> Decision {
    route(c, t, m, &normalize(host.as_bytes()).unwrap())
}

#[test]
fn migrated_tenants_go_to_their_tiers_pool() {
    let c = config("[legacy]\naddress = \"127.0.0.1:4\"");
    let (t, m) = (table(), states(&table()));
    let d = decide(&c, &t, &m, "WWW.Shop.Example:80");
    assert_eq!(d.kind(), RouteKind::Local);
    let Action::Local { tier, pool, point } = d.action else {
        panic!("{d:?}")
    };
    assert_eq!(c.tier(tier).name, "shared");
    assert_eq!(c.pool(pool).name, "small");
    assert_eq!(point, crate::model::ring_point("t-shop"));
    assert_eq!(d.state, Some((Migrated, StateSource::Filer)));

    let d = decide(&c, &t, &m, "x.y.apps.example");
    assert_eq!(
        d.tenant.unwrap().kind,
        MatchKind::Wildcard { suffix_len: 12 }
    );
    let Action::Local { pool, .. } = d.action else {
        panic!("{d:?}")
    };
    assert_eq!(c.pool(pool).name, "big");
}

#[test]
fn legacy_maintenance_and_overrides() {
    let c = config("[legacy]\naddress = \"127.0.0.1:4\"");
    let (t, m) = (table(), states(&table()));
    let d = decide(&c, &t, &m, "old.example");
    assert_eq!((d.action, d.kind()), (Action::Legacy, RouteKind::Legacy));
    assert_eq!(d.state, Some((Legacy, StateSource::Default)));
    let d = decide(&c, &t, &m, "tonight.example");
    assert_eq!(
        (d.action, d.kind()),
        (Action::Maintenance, RouteKind::Maintenance)
    );
    let d = decide(&c, &t, &m, "pinned.example");
    assert_eq!(d.action, Action::Legacy);
    assert_eq!(d.state, Some((Legacy, StateSource::TenantOverride)));
}

#[test]
fn unknown_hosts_follow_the_policy() {
    let (t, m) = (table(), states(&table()));
    let c = config("[legacy]\naddress = \"127.0.0.1:4\"");
    let d = decide(&c, &t, &m, "nobody.example");
    assert_eq!(
        (d.action, d.kind(), d.tenant),
        (Action::Legacy, RouteKind::Unknown, None)
    );
    // The bare name under a wildcard is not covered by it.
    assert_eq!(
        decide(&c, &t, &m, "apps.example").kind(),
        RouteKind::Unknown
    );

    let c = config(
        "[unknown_hosts]\naction = \"reject\"\nstatus = 404\n[legacy]\naddress = \"127.0.0.1:4\"",
    );
    let d = decide(&c, &t, &m, "nobody.example");
    assert_eq!(
        (d.action, d.kind()),
        (Action::Reject(StatusCode::NOT_FOUND), RouteKind::Rejected)
    );
    let c = config("");
    assert_eq!(
        decide(&c, &t, &m, "nobody.example").action,
        Action::Reject(StatusCode::MISDIRECTED_REQUEST)
    );
    assert_eq!(
        route_unknown(&c).action,
        Action::Reject(StatusCode::MISDIRECTED_REQUEST)
    );
}

#[test]
fn route_kinds_have_bounded_labels() {
    let labels: Vec<&str> = [
        RouteKind::Local,
        RouteKind::Legacy,
        RouteKind::Maintenance,
        RouteKind::Unknown,
        RouteKind::Rejected,
    ]
    .iter()
    .map(|k| k.as_str())
    .collect();
    assert_eq!(
        labels,
        ["local", "legacy", "maintenance", "unknown", "rejected"]
    );
}
