//! The routing snapshot: everything a request needs to be routed, immutable,
//! built off the request path and swapped whole.
//!
//! Owns loading a config folder into a [`Snapshot`] (every file validated
//! together, problems reported together) and the [`SharedSnapshot`] every
//! worker reads: one `ArcSwap`, loaded once per request. A request routes on
//! the snapshot it loaded, never on a mix of two.

pub mod held;
pub mod impact;
mod summary;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::HeaderValue;

use crate::config::stamp::FileStamp;
use crate::config::{self, Config, ConfigError, Problem, Problems, ServerIdx};
use crate::health::{LiveSet, Registry};
use crate::isolation::{TenantRegistry, TenantsLive};
use crate::model::headers::ViaValues;
use crate::placement::Placement;
use crate::routing::host::Host;
use crate::routing::migration::{MigrationState, MigrationStates};
use crate::routing::tenants::{TenantIdx, TenantTable};
use crate::routing::{self, Decision};
use crate::tls::store::{CertChanges, CertError, CertIndex};

pub use summary::Summary;

/// The page served with a maintenance 503 when the config names none.
pub const DEFAULT_MAINTENANCE_PAGE: &str = "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Maintenance</title></head>\n<body><h1>This site is being moved</h1>\n<p>It will be back in a few minutes. Please try again shortly.</p></body></html>\n";

/// The page of the 502 answered while the legacy balancer is down, when
/// the config names none.
pub const DEFAULT_LEGACY_DOWN_PAGE: &str = "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Temporarily unavailable</title></head>\n<body><h1>502 Bad Gateway</h1>\n<p>This site is still served from our previous datacenter, which cannot be reached right now. Please try again in a few minutes.</p></body></html>\n";

/// Everything needed to route a request, as of one load of the config folder.
pub struct Snapshot {
    /// Increases by one with every snapshot installed.
    pub generation: u64,
    pub config: Arc<Config>,
    pub tenants: Arc<TenantTable>,
    pub migration: Arc<MigrationStates>,
    pub placement: Arc<Placement>,
    /// Live state of every pool's servers, carried across snapshots by
    /// the [`SharedSnapshot`]'s registry.
    pub live: LiveSet,
    /// Every tenant's live counters and rate buckets (isolation), carried
    /// across snapshots by the [`SharedSnapshot`]'s tenant registry.
    pub tenants_live: Arc<TenantsLive>,
    pub maintenance_page: Bytes,
    /// `Retry-After` of maintenance answers, in whole seconds.
    pub retry_after: HeaderValue,
    /// This hop's `Via` values.
    pub via: ViaValues,
    /// The hop marker's value on requests to the legacy balancer (the
    /// proxy's name).
    pub hop_value: HeaderValue,
    /// The 502 page served while the legacy balancer is down.
    pub legacy_down_page: Bytes,
    /// The certificates of the `https` listeners, by name (empty without
    /// `[tls]`).
    pub certs: Arc<CertIndex>,
    /// Things worth a look that do not stop the load (a filer in the state
    /// file that has no host).
    pub warnings: Vec<Problem>,
    /// The tenant file as read (its stamp and digest, when it did not
    /// change while being read): a reload that finds it unchanged keeps
    /// the table (and placement).
    pub tenants_file: crate::load::tenants::TableFile,
    /// Counts for operators, computed on first ask (walks every tenant).
    summary: std::sync::OnceLock<Summary>,
    /// The request series of this config's routes, tiers and pools,
    /// registered by the first request that needs them.
    route_metrics: std::sync::OnceLock<crate::metrics::routes::RouteTable>,
    /// When reading its files began: files last written well before are
    /// known to be what it holds.
    pub read_from: std::time::SystemTime,
}

impl Snapshot {
    /// Loads and validates every file of the config folder `dir`.
    pub fn load(dir: &Path) -> Result<Snapshot, ConfigError> {
        let read_from = std::time::SystemTime::now();
        let config = match Config::load(dir) {
            Ok(config) => config,
            // The other files are checked as far as the refused one
            // allows: one look lists every problem of the folder.
            Err(ConfigError::Invalid(p)) => {
                return Err(ConfigError::Invalid(crate::load::salvage::check_rest(
                    dir, p,
                )));
            }
            Err(e) => return Err(e),
        };
        let mut snap = Self::from_config(config)?;
        snap.read_from = read_from;
        Ok(snap)
    }

    /// Loads `dir` again after `prev`: the tenant table (and the placement
    /// built on it) is kept when its file is the one `prev` read and the
    /// config would read it the same way, so that a change of the state
    /// file or of a setting costs no re-parse of a million-line table.
    ///
    /// The certificate index is `prev`'s with the files of `certs` looked
    /// at again (the whole folder for [`CertChanges::All`], or when the
    /// config names another folder).
    pub fn load_after(
        dir: &Path,
        prev: &Snapshot,
        certs: &CertChanges,
    ) -> Result<Snapshot, ConfigError> {
        let read_from = std::time::SystemTime::now();
        let config = Config::load(dir)?;
        let same_source = prev.config.tenants_file == config.tenants_file
            && tier_names(&prev.config) == tier_names(&config);
        let same_stamp = prev.tenants_file.stamp.is_some()
            && FileStamp::of(&config.tenants_file) == prev.tenants_file.stamp;
        let same_placement = prev.config.pools == config.pools
            && prev.config.tiers == config.tiers
            && prev.config.placement == config.placement;
        let kept = Kept {
            tenants: prev.tenants.clone(),
            file: prev.tenants_file,
            placement: same_placement.then(|| prev.placement.clone()),
        };
        let table = match (same_source, same_stamp, prev.tenants_file.digest) {
            (true, true, _) => Table::Kept(kept),
            // Other stamps (written just before the start, touched,
            // written again as it was): the content is compared before
            // anything is parsed.
            (true, false, Some(digest)) => Table::IfSame(kept, digest),
            (true, false, None) | (false, _, _) => Table::Load,
        };
        let mut snap = Self::build(config, table, Some((&prev.certs, certs)))?;
        snap.read_from = read_from;
        Ok(snap)
    }

    /// Loads the files named by an already validated `config`.
    pub fn from_config(config: Config) -> Result<Snapshot, ConfigError> {
        Self::build(config, Table::Load, None)
    }

    fn build(
        config: Config,
        table: Table,
        prev_certs: Option<(&Arc<CertIndex>, &CertChanges)>,
    ) -> Result<Snapshot, ConfigError> {
        use crate::load::tenants::{Loaded, TableFile, load_read, load_unless};
        let read_from = std::time::SystemTime::now();
        // Read both files before failing, to report all problems at once.
        let unread = TableFile {
            stamp: None,
            digest: None,
        };
        let (tenants, file, placement) = match table {
            Table::Kept(k) => (Ok(k.tenants), k.file, k.placement),
            Table::IfSame(k, digest) => match load_unless(&config, digest) {
                Ok(Loaded::Same(file)) => {
                    tracing::debug!("tenant table rewritten as it was; kept without parsing");
                    (Ok(k.tenants), file, k.placement)
                }
                Ok(Loaded::Table(t, file)) => (Ok(Arc::new(t)), file, None),
                Err(e) => (Err(e), unread, None),
            },
            Table::Load => match load_read(&config) {
                Ok((t, file)) => (Ok(Arc::new(t)), file, None),
                Err(e) => (Err(e), unread, None),
            },
        };
        let migration = crate::load::migration::load(&config.migration_file);
        let mut problems = Problems::default();
        let mut fail = |e: ConfigError| match e {
            ConfigError::Invalid(p) => {
                problems.extend(p);
                Ok(())
            }
            read => Err(read),
        };
        let tenants = match tenants {
            Ok(t) => Some(t),
            Err(e) => {
                fail(e)?;
                None
            }
        };
        let migration = match migration {
            Ok(m) => Some(m),
            Err(e) => {
                fail(e)?;
                None
            }
        };
        if let Some(m) = &migration {
            if config.legacy.is_none() {
                for (state, line) in m.states_used() {
                    if matches!(state, MigrationState::Legacy | MigrationState::Shadow) {
                        problems.push(crate::load::migration::needs_legacy(
                            &config.migration_file,
                            line,
                            state,
                        ));
                    }
                }
            }
        }
        let (Some(tenants), Some(migration)) = (tenants, migration) else {
            return Err(ConfigError::Invalid(problems));
        };
        let certs = match &config.tls {
            Some(tls) => match certificates(tls, prev_certs) {
                Ok(found) => found,
                Err(e) => {
                    problems.push(Problem {
                        file: config.file.clone(),
                        line: None,
                        key: Some("tls.certificates".into()),
                        message: e.to_string(),
                    });
                    Default::default()
                }
            },
            None => Default::default(),
        };
        if let Some(name) = config
            .tls
            .as_ref()
            .and_then(|t| t.default_certificate.as_ref())
        {
            if certs.by_file(name).is_none() {
                problems.push(Problem {
                    file: config.file.clone(),
                    line: None,
                    key: Some("tls.default_certificate".into()),
                    message: format!(
                        "{name} is not a usable certificate of the certificate folder"
                    ),
                });
            }
        }
        let resolved = migration.resolve(&tenants);
        problems.extend(resolved.problems);
        problems.into_result()?;
        let (states, mut warnings) = (resolved.states, resolved.warnings);
        // A certificate refused does not stop the load: its names go
        // without (to the default certificate), the others serve.
        warnings.extend(certs.refused().iter().map(|e| Problem {
            file: e.path().to_path_buf(),
            line: None,
            key: None,
            message: format!("certificate refused: {e}"),
        }));
        // A [shadow.filers] name the table does not have: a typo, most
        // likely (it changes nothing).
        for name in config.shadow.filers.keys() {
            if tenants.filer_by_name(name).is_none() {
                warnings.push(Problem {
                    file: config.file.clone(),
                    line: None,
                    key: Some(format!("shadow.filers.{name}")),
                    message: format!("no filer {name:?} in the tenant table"),
                });
            }
        }
        let maintenance_page = match &config.maintenance.page {
            Some(path) => Bytes::from(std::fs::read(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?),
            None => Bytes::from_static(DEFAULT_MAINTENANCE_PAGE.as_bytes()),
        };
        let retry_after = HeaderValue::from(config.maintenance.retry_after.as_secs().max(1));
        let legacy_down_page = match config.legacy.as_ref().and_then(|l| l.down_page.as_ref()) {
            Some(path) => Bytes::from(std::fs::read(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?),
            None => Bytes::from_static(DEFAULT_LEGACY_DOWN_PAGE.as_bytes()),
        };
        let hop_value = HeaderValue::from_str(&config.proxy.name)
            .unwrap_or_else(|_| HeaderValue::from_static("predictor"));
        let placement = placement.unwrap_or_else(|| Arc::new(Placement::new(&config, &tenants)));
        Ok(Snapshot {
            generation: 0,
            via: ViaValues::new(&config.proxy.name),
            hop_value,
            legacy_down_page,
            certs,
            placement,
            live: LiveSet::fresh(&config),
            tenants_live: Arc::new(TenantsLive::new(tenants.tenant_count())),
            config: Arc::new(config),
            tenants,
            tenants_file: file,
            summary: std::sync::OnceLock::new(),
            route_metrics: std::sync::OnceLock::new(),
            read_from,
            migration: Arc::new(states),
            maintenance_page,
            retry_after,
            warnings,
        })
    }

    /// Tenants and hosts by state, and the other counts (computed once).
    pub fn summary(&self) -> Summary {
        *self.summary.get_or_init(|| Summary::of(self))
    }

    /// The request series of this snapshot's routes, on `metrics` (the
    /// server's; one per snapshot, so registered once per reload).
    #[inline]
    pub fn route_metrics(
        &self,
        metrics: &crate::metrics::Metrics,
    ) -> &crate::metrics::routes::RouteTable {
        self.route_metrics
            .get_or_init(|| metrics.routes(&self.config))
    }

    /// Where a request for `host` goes.
    #[inline]
    pub fn route(&self, host: &Host) -> Decision {
        routing::route(&self.config, &self.tenants, &self.migration, host)
    }

    /// The first servers of a tenant's preference list in `pool`.
    #[inline]
    pub fn servers(
        &self,
        tenant: TenantIdx,
        pool: config::PoolId,
        point: u32,
        out: &mut [ServerIdx],
    ) -> usize {
        self.placement.servers(tenant, pool, point, out)
    }
}

/// What a reload keeps of the previous snapshot.
struct Kept {
    tenants: Arc<TenantTable>,
    file: crate::load::tenants::TableFile,
    placement: Option<Arc<Placement>>,
}

/// Where a snapshot's tenant table comes from.
enum Table {
    /// The previous snapshot's: its file has the stamp it was read with.
    Kept(Kept),
    /// The previous snapshot's if the file's content has this digest;
    /// parsed otherwise.
    IfSame(Kept, crate::load::tenants::Digest),
    /// Parsed from the file.
    Load,
}

/// The certificate index of `[tls]`: the previous one updated with the
/// files that changed, or the folder scanned (reusing what it can).
/// Nothing changed: the same index (shared, not rebuilt).
fn certificates(
    tls: &config::TlsSettings,
    prev: Option<(&Arc<CertIndex>, &CertChanges)>,
) -> Result<Arc<CertIndex>, CertError> {
    let default = tls.default_certificate.as_deref();
    let index = match prev {
        Some((index, changes)) if index.dir() == tls.certificates => match changes {
            CertChanges::None if index.default_name() == default => return Ok(Arc::clone(index)),
            CertChanges::None => index.update(&Default::default(), default),
            CertChanges::Files(files) => index.update(files, default),
            CertChanges::All => CertIndex::scan(&tls.certificates, default, Some(index))?,
        },
        Some((index, _)) => CertIndex::scan(&tls.certificates, default, Some(index))?,
        None => CertIndex::scan(&tls.certificates, default, None)?,
    };
    Ok(Arc::new(index))
}

/// The tier names in order: what a tenant table's tier ids mean.
fn tier_names(c: &Config) -> Vec<&str> {
    c.tiers.iter().map(|t| t.name.as_str()).collect()
}

/// The last good and last failed reload, for operators.
#[derive(Debug, Clone, Default)]
pub struct ReloadStatus {
    /// When, and the generation it installed.
    pub last_good: Option<(SystemTime, u64)>,
    /// The refused change still on disk: when, and every problem (one per
    /// line, with file:line). Cleared by the next reload taken, or when
    /// the folder is written back to the version serving.
    pub last_failed: Option<(SystemTime, String)>,
}

/// The snapshot every worker reads; replaced whole by a reload.
pub struct SharedSnapshot {
    current: ArcSwap<Snapshot>,
    generation: AtomicU64,
    /// Servers' live state by identity, bound into every snapshot stored.
    registry: Registry,
    /// Tenants' live counters, bound into every snapshot stored.
    tenant_registry: TenantRegistry,
    /// The last good and last failed reload (written by reloads only).
    reloads: std::sync::Mutex<ReloadStatus>,
    /// The reload held for confirmation, if any.
    pub guard: held::Guard,
    /// The verdicts of shadow verification (`shadow` state).
    pub verify: crate::verify::Verify,
}

impl SharedSnapshot {
    pub fn new(mut first: Snapshot) -> Self {
        first.generation = 1;
        let registry = Registry::default();
        first.live = registry.bind(&first.config);
        let tenant_registry = TenantRegistry::default();
        first.tenants_live =
            tenant_registry.bind(&first.tenants, &first.config, crate::health::now_ns());
        SharedSnapshot {
            current: ArcSwap::from_pointee(first),
            generation: AtomicU64::new(1),
            registry,
            tenant_registry,
            reloads: std::sync::Mutex::new(ReloadStatus {
                last_good: Some((std::time::SystemTime::now(), 1)),
                last_failed: None,
            }),
            guard: held::Guard::default(),
            verify: Default::default(),
        }
    }

    /// The last good and last failed reload.
    pub fn reload_status(&self) -> ReloadStatus {
        self.reloads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records a reload's result (`Ok(generation)` or the problems). A
    /// reload taken clears the last failure: disk and memory agree again.
    pub fn record_reload(&self, result: Result<u64, String>) {
        let mut s = self.reloads.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::SystemTime::now();
        match result {
            Ok(generation) => {
                s.last_good = Some((now, generation));
                s.last_failed = None;
            }
            Err(problems) => s.last_failed = Some((now, problems)),
        }
    }

    /// Clears the last failure without a reload: the folder was written
    /// back to the version serving. Returns whether there was one.
    pub fn clear_failure(&self) -> bool {
        let mut s = self.reloads.lock().unwrap_or_else(|e| e.into_inner());
        s.last_failed.take().is_some()
    }

    /// The current snapshot; cheap, meant to be called once per request.
    #[inline]
    pub fn load(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// The current snapshot, owned (for long-lived holders).
    pub fn load_full(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Installs `next`; requests already routed keep the one they loaded.
    pub fn store(&self, mut next: Snapshot) -> u64 {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        next.generation = generation;
        next.live = self.registry.bind(&next.config);
        next.tenants_live =
            self.tenant_registry
                .bind(&next.tenants, &next.config, crate::health::now_ns());
        self.current.store(Arc::new(next));
        generation
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn folder(tenants: &str, migration: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let w = |n: &str, t: &str| std::fs::write(dir.path().join(n), t).unwrap();
        w(
            "predictor.toml",
            "tenants = \"tenants.tsv\"\nmigration = \"migration.toml\"\n[[listen]]\naddress = \"127.0.0.1:0\"\n\
             [tiers.web]\npool = \"p\"\n[pools.p]\nservers = [{ id = \"a\", address = \"127.0.0.1:9\" }]\n",
        );
        w("tenants.tsv", tenants);
        w("migration.toml", migration);
        dir
    }

    /// Sets a file's modification time a minute back.
    fn age(path: &std::path::Path) {
        let f = std::fs::File::options().write(true).open(path).unwrap();
        let t = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        f.set_modified(t).unwrap();
    }

    #[test]
    fn a_reload_keeps_the_table_while_its_file_is_unchanged() {
        let dir = folder("a.example\tt1\tweb\tf1\n", "default = \"migrated\"\n");
        // Just written: too recent to be trusted by its stamp.
        let fresh = Snapshot::load(dir.path()).unwrap();
        assert!(fresh.tenants_file.stamp.is_none());
        age(&dir.path().join("tenants.tsv"));
        let first = Snapshot::load(dir.path()).unwrap();
        assert!(first.tenants_file.stamp.is_some());
        // The state file changes: the table and placement are kept.
        std::fs::write(
            dir.path().join("migration.toml"),
            "default = \"migrated\"\n[filers]\nf1 = \"maintenance\"\n",
        )
        .unwrap();
        let second = Snapshot::load_after(dir.path(), &first, &CertChanges::None).unwrap();
        assert!(Arc::ptr_eq(&first.tenants, &second.tenants));
        assert!(Arc::ptr_eq(&first.placement, &second.placement));
        let host = crate::routing::host::normalize(b"a.example").unwrap();
        assert_eq!(
            second.route(&host).action,
            crate::routing::Action::Maintenance
        );
        // The table changes: read again.
        std::fs::write(
            dir.path().join("tenants.tsv"),
            "a.example\tt1\tweb\tf1\nb.example\tt2\tweb\tf1\n",
        )
        .unwrap();
        let third = Snapshot::load_after(dir.path(), &second, &CertChanges::None).unwrap();
        assert!(!Arc::ptr_eq(&second.tenants, &third.tenants));
        assert_eq!(third.tenants.tenant_count(), 2);
        age(&dir.path().join("tenants.tsv"));
        let third = Snapshot::load_after(dir.path(), &third, &CertChanges::None).unwrap();
        // A pool change keeps the table, not the placement.
        let toml = std::fs::read_to_string(dir.path().join("predictor.toml")).unwrap();
        std::fs::write(
            dir.path().join("predictor.toml"),
            toml.replace(
                "127.0.0.1:9\" }",
                "127.0.0.1:9\" }, { id = \"b\", address = \"127.0.0.1:10\" }",
            ),
        )
        .unwrap();
        let fourth = Snapshot::load_after(dir.path(), &third, &CertChanges::None).unwrap();
        assert!(Arc::ptr_eq(&third.tenants, &fourth.tenants));
        assert!(!Arc::ptr_eq(&third.placement, &fourth.placement));
    }

    #[test]
    fn a_table_written_just_before_the_load_is_compared_not_parsed_again() {
        let table = "a.example\tt1\tweb\tf1\nb.example\tt2\tweb\tf1\n";
        let dir = folder(table, "default = \"migrated\"\n");
        let path = dir.path().join("tenants.tsv");
        // Just written (a deploy that renders the folder and starts at
        // once): its stamp cannot be trusted, its content can.
        let first = Snapshot::load(dir.path()).unwrap();
        assert!(first.tenants_file.stamp.is_none());
        assert!(first.tenants_file.digest.is_some());
        let second = Snapshot::load_after(dir.path(), &first, &CertChanges::None).unwrap();
        assert!(
            Arc::ptr_eq(&first.tenants, &second.tenants),
            "same content: kept"
        );
        assert!(Arc::ptr_eq(&first.placement, &second.placement));
        // Written again as it was, with another stamp: still kept.
        std::fs::write(&path, table).unwrap();
        age(&path);
        let third = Snapshot::load_after(dir.path(), &second, &CertChanges::None).unwrap();
        assert!(Arc::ptr_eq(&first.tenants, &third.tenants));
        assert!(
            third.tenants_file.stamp.is_some(),
            "settled now: known by stamp"
        );
        // Other content of the same length: parsed.
        std::fs::write(&path, table.replace("f1\nb", "f2\nb")).unwrap();
        let fourth = Snapshot::load_after(dir.path(), &third, &CertChanges::None).unwrap();
        assert!(!Arc::ptr_eq(&third.tenants, &fourth.tenants));
        assert_eq!(fourth.tenants.filers().len(), 2);
    }
}
