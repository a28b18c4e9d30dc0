//! The routing snapshot: everything a request needs to be routed, immutable,
//! built off the request path and swapped whole.
//!
//! Owns loading a config folder into a [`Snapshot`] (every file validated
//! together, problems reported together) and the [`SharedSnapshot`] every
//! worker reads: one `ArcSwap`, loaded once per request. A request routes on
//! the snapshot it loaded, never on a mix of two.

mod summary;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::HeaderValue;

use crate::config::{self, Config, ConfigError, Problem, Problems, ServerIdx};
use crate::health::{LiveSet, Registry};
use crate::placement::Placement;
use crate::proxy::forwarding::ViaValues;
use crate::routing::host::Host;
use crate::routing::migration::{MigrationState, MigrationStates};
use crate::routing::tenants::{TenantIdx, TenantTable};
use crate::routing::{self, Decision};

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
    /// Things worth a look that do not stop the load (a filer in the state
    /// file that has no host).
    pub warnings: Vec<Problem>,
}

impl Snapshot {
    /// Loads and validates every file of the config folder `dir`.
    pub fn load(dir: &Path) -> Result<Snapshot, ConfigError> {
        let config = Config::load(dir)?;
        Self::from_config(config)
    }

    /// Loads the files named by an already validated `config`.
    pub fn from_config(config: Config) -> Result<Snapshot, ConfigError> {
        // Read both files before failing, to report all problems at once.
        let tenants = config::tenants::load(&config);
        let migration = config::migration::load(&config.migration_file);
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
                    if state == MigrationState::Legacy {
                        problems.push(Problem {
                            file: config.migration_file.clone(),
                            line,
                            key: None,
                            message: "state \"legacy\" needs a [legacy] section with the legacy balancer's address in predictor.toml".into(),
                        });
                    }
                }
            }
        }
        let (Some(tenants), Some(migration)) = (tenants, migration) else {
            return Err(ConfigError::Invalid(problems));
        };
        problems.into_result()?;
        let (states, warnings) = migration.resolve(&tenants);
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
        Ok(Snapshot {
            generation: 0,
            via: ViaValues::new(&config.proxy.name),
            hop_value,
            legacy_down_page,
            placement: Arc::new(Placement::new(&config, &tenants)),
            live: LiveSet::fresh(&config),
            config: Arc::new(config),
            tenants: Arc::new(tenants),
            migration: Arc::new(states),
            maintenance_page,
            retry_after,
            warnings,
        })
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

/// The snapshot every worker reads; replaced whole by a reload.
pub struct SharedSnapshot {
    current: ArcSwap<Snapshot>,
    generation: AtomicU64,
    /// Servers' live state by identity, bound into every snapshot stored.
    registry: Registry,
}

impl SharedSnapshot {
    pub fn new(mut first: Snapshot) -> Self {
        first.generation = 1;
        let registry = Registry::default();
        first.live = registry.bind(&first.config);
        SharedSnapshot {
            current: ArcSwap::from_pointee(first),
            generation: AtomicU64::new(1),
            registry,
        }
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
        self.current.store(Arc::new(next));
        generation
    }
}
