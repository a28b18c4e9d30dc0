//! The files of the config folder exactly as written, before validation.
//!
//! This is the only module that derives `Deserialize`. Every struct rejects
//! unknown keys, and values that need checking beyond their TOML type keep
//! their byte span ([`Spanned`]) so that the validated [`Config`] can name the
//! line of a bad value. Defaults are not filled in here but in validation, so
//! that the example file and the code cannot drift apart silently.
//!
//! [`Config`]: super::Config

use std::collections::BTreeMap;

use serde::Deserialize;
pub use toml::Spanned;

/// `predictor.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Path of the tenant table (TSV), relative to the config folder.
    pub tenants: Option<Spanned<String>>,
    /// Path of the migration state file, relative to the config folder.
    pub migration: Option<Spanned<String>>,
    #[serde(default)]
    pub proxy: RawProxy,
    #[serde(default)]
    pub listen: Vec<Spanned<RawListener>>,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub forward: RawForward,
    #[serde(default)]
    pub unknown_hosts: RawUnknownHosts,
    #[serde(default)]
    pub maintenance: RawMaintenance,
    pub legacy: Option<Spanned<RawLegacy>>,
    pub admin: Option<RawAdmin>,
    pub access_log: Option<RawAccessLog>,
    pub tls: Option<Spanned<RawTls>>,
    #[serde(default)]
    pub placement: RawPlacement,
    #[serde(default)]
    pub reload: RawReload,
    pub preview: Option<Spanned<RawPreview>>,
    #[serde(default)]
    pub shadow: RawShadow,
    #[serde(default)]
    pub tiers: BTreeMap<Spanned<String>, RawTier>,
    #[serde(default)]
    pub pools: BTreeMap<Spanned<String>, RawPool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProxy {
    pub name: Option<Spanned<String>>,
    pub workers: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub address: Spanned<String>,
    pub protocol: Option<Spanned<String>>,
    pub defer_accept: Option<Spanned<bool>>,
    pub proxy_protocol: Option<Spanned<Vec<Spanned<String>>>>,
    pub proxy_protocol_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    pub connect: Option<Spanned<String>>,
    pub request_header: Option<Spanned<String>>,
    pub client_idle: Option<Spanned<String>>,
    pub upstream_response: Option<Spanned<String>>,
    pub upstream_idle: Option<Spanned<String>>,
    pub drain: Option<Spanned<String>>,
    pub drain_notice: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_connections: Option<Spanned<i64>>,
    pub max_request_header_bytes: Option<Spanned<i64>>,
    pub h2_max_concurrent_streams: Option<Spanned<i64>>,
    pub upstream_idle_per_server: Option<Spanned<i64>>,
    pub upstream_attempts: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForward {
    pub tenant_header: Option<Spanned<String>>,
    pub trusted_proxies: Option<Vec<Spanned<String>>>,
    pub forwarded: Option<bool>,
    pub request_id_header: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUnknownHosts {
    pub action: Option<Spanned<String>>,
    pub status: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMaintenance {
    pub retry_after: Option<Spanned<String>>,
    pub page: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLegacy {
    pub address: Spanned<String>,
    pub protocol: Option<Spanned<String>>,
    pub connect_timeout: Option<Spanned<String>>,
    pub response_timeout: Option<Spanned<String>>,
    pub idle_timeout: Option<Spanned<String>>,
    pub max_lifetime: Option<Spanned<String>>,
    pub max_idle: Option<Spanned<i64>>,
    pub max_pending_connects: Option<Spanned<i64>>,
    pub hop_header: Option<Spanned<String>>,
    pub down_page: Option<Spanned<String>>,
    #[serde(default)]
    pub probe: RawProbe,
}

/// `[legacy.probe]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProbe {
    pub path: Option<Spanned<String>>,
    pub host: Option<Spanned<String>>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub rise: Option<Spanned<i64>>,
    pub fall: Option<Spanned<i64>>,
}

/// `[tls]`: certificates of the `https` listeners.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub certificates: Spanned<String>,
    pub default_certificate: Option<Spanned<String>>,
    pub key_cache: Option<Spanned<i64>>,
    pub handshake_timeout: Option<Spanned<String>>,
    pub misdirected: Option<Spanned<String>>,
    pub passthrough: Option<Spanned<RawPassthrough>>,
}

/// `[tls.passthrough]`: legacy sites' TLS passed on undecrypted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPassthrough {
    pub address: Spanned<String>,
    pub proxy_protocol: Option<Spanned<bool>>,
    pub prefer_local_certificate: Option<Spanned<bool>>,
    pub no_sni: Option<Spanned<String>>,
}

/// `[admin]`: the operators' listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub address: Spanned<String>,
}

/// `[access_log]`: one JSON line per request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccessLog {
    pub enabled: Option<bool>,
    pub output: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTier {
    pub pool: Spanned<String>,
    pub cost: Option<Spanned<i64>>,
    pub k_min: Option<Spanned<i64>>,
    pub k_max: Option<Spanned<i64>>,
    pub limits: Option<RawTierLimits>,
}

/// `[tiers.NAME.limits]`: per-tenant limits, fair share, priority.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTierLimits {
    pub concurrent: Option<Spanned<i64>>,
    pub rate: Option<Spanned<i64>>,
    pub burst: Option<Spanned<i64>>,
    pub client_rate: Option<Spanned<i64>>,
    pub client_burst: Option<Spanned<i64>>,
    pub share: Option<Spanned<i64>>,
    pub priority: Option<Spanned<i64>>,
}

/// `[pools.NAME.queue]`: where requests wait for a server under its
/// ceiling.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQueue {
    pub timeout: Option<Spanned<String>>,
    pub max: Option<Spanned<i64>>,
}

/// `[preview]`: who sees a site's new copy before its visitors do.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPreview {
    pub header: Option<Spanned<String>>,
    pub cookie: Option<Spanned<String>>,
    pub token: Option<Spanned<String>>,
    pub networks: Option<Vec<Spanned<String>>>,
}

/// `[shadow]`: how sites in the `shadow` state are verified.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShadow {
    pub share: Option<Spanned<String>>,
    pub max_in_flight: Option<Spanned<i64>>,
    pub header: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub max_body: Option<Spanned<i64>>,
    pub mirror_credentials: Option<bool>,
    pub credential_cookies: Option<Vec<Spanned<String>>>,
    pub min_samples: Option<Spanned<i64>>,
    pub max_mismatch: Option<Spanned<String>>,
    pub length_tolerance: Option<Spanned<String>>,
    pub digest_max: Option<Spanned<i64>>,
    pub rate: Option<Spanned<i64>>,
    #[serde(default)]
    pub filers: BTreeMap<Spanned<String>, RawShadowFiler>,
}

/// `[shadow.filers.NAME]`: one filer's share and rate.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShadowFiler {
    pub share: Option<Spanned<String>>,
    pub rate: Option<Spanned<i64>>,
}

/// `[reload]`: the guard against a disastrous reload.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReload {
    pub hold_changed: Option<Spanned<String>>,
    pub hold_dropped_hosts: Option<Spanned<String>>,
    pub hold_min: Option<Spanned<i64>>,
}

/// `[placement]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlacement {
    pub balance_factor: Option<Spanned<f64>>,
    pub hot_hold: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    #[serde(default)]
    pub servers: Vec<Spanned<RawServer>>,
    /// Active HTTP checks of every server (same keys as `[legacy.probe]`).
    pub check: Option<RawProbe>,
    pub agent: Option<RawAgent>,
    #[serde(default)]
    pub eject: RawEject,
    /// The in-flight ceiling of every server of the pool.
    pub max_in_flight: Option<Spanned<i64>>,
    #[serde(default)]
    pub queue: RawQueue,
}

/// `[pools.NAME.agent]`: the load and state each server reports.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    pub port: Spanned<i64>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
}

/// `[pools.NAME.eject]`: passive ejection on real traffic's failures.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEject {
    pub failures: Option<Spanned<i64>>,
    pub on: Option<Spanned<String>>,
    pub base: Option<Spanned<String>>,
    pub max: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub id: Spanned<String>,
    pub address: Spanned<String>,
    pub weight: Option<Spanned<i64>>,
    /// This server's in-flight ceiling (the pool's otherwise).
    pub max_in_flight: Option<Spanned<i64>>,
}

/// The migration state file (`migration.toml`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMigration {
    /// State of every filer and tenant not listed below.
    pub default: Spanned<RawState>,
    /// Filers that may have a state line before any of their hosts is in
    /// the tenant table (anywhere else, such a line is refused as a typo).
    #[serde(default)]
    pub prepared_filers: Vec<Spanned<String>>,
    #[serde(default)]
    pub filers: BTreeMap<Spanned<String>, Spanned<RawState>>,
    #[serde(default)]
    pub tenants: BTreeMap<Spanned<String>, Spanned<RawState>>,
}

/// A migration state as written in the state file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawState {
    Legacy,
    Shadow,
    Maintenance,
    Migrated,
}

/// Parses TOML text into `T`, reporting a syntax or type error with its line.
pub fn parse<T: serde::de::DeserializeOwned>(
    file: &std::path::Path,
    text: &str,
) -> Result<T, super::Problem> {
    toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| super::error::line_of(text, s.start));
        super::Problem {
            file: file.to_path_buf(),
            line,
            key: None,
            message: e.message().trim_end().to_string(),
        }
    })
}
