//! Binding live state to snapshots: the [`Registry`] keeps every server's
//! state by (pool, id, address) across reloads; a [`LiveSet`] is one
//! snapshot's view, by pool and server index.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{PoolState, ServerState};
use crate::config::{Config, PoolId, ServerIdx};
use crate::isolation::queue::Slots;
use crate::placement::choose::{Admission, Totals};

type Key = (String, String, SocketAddr);

/// Every server's and pool's live state, by identity; outlives snapshots.
#[derive(Default)]
pub struct Registry {
    inner: Mutex<Known>,
}

#[derive(Default)]
struct Known {
    servers: HashMap<Key, Arc<ServerState>>,
    pools: HashMap<String, Arc<PoolState>>,
}

impl Registry {
    /// The live set of `config`: known servers keep their state (a server
    /// whose address or pool changed starts afresh); servers no longer in
    /// the config are forgotten (requests in flight still hold theirs).
    pub fn bind(&self, config: &Config) -> LiveSet {
        let mut known = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut servers = HashMap::new();
        let mut pools = HashMap::new();
        let live = config
            .pools
            .iter()
            .enumerate()
            .map(|(pi, p)| {
                let iso = config.isolation.pools.get(pi);
                let state = known
                    .pools
                    .remove(&p.name)
                    .unwrap_or_else(|| Arc::new(PoolState::default()));
                pools.insert(p.name.clone(), state.clone());
                let list: Box<[Arc<ServerState>]> = p
                    .servers
                    .iter()
                    .enumerate()
                    .map(|(si, s)| {
                        let key = (p.name.clone(), s.id.clone(), s.address);
                        let state = match known.servers.remove(&key) {
                            Some(st) if st.configured_weight() == s.weight => st,
                            // A new weight: a new state (in flight carries
                            // on in the old one until those requests end).
                            _ => Arc::new(ServerState::new(&s.id, s.address, s.weight)),
                        };
                        let ceiling = iso.and_then(|i| i.max_in_flight.get(si));
                        state.set_ceiling(ceiling.copied().unwrap_or(0));
                        servers.insert(key, state.clone());
                        state
                    })
                    .collect();
                let pool = Arc::new(PoolLive {
                    name: p.name.as_str().into(),
                    state,
                    servers: list,
                    eject: p.eject,
                    queue_timeout: iso.map_or(Duration::from_secs(5), |i| i.queue_timeout),
                    queue_max: iso.map_or(0, |i| i.queue_max),
                });
                pool.refresh_weight(super::now_ms());
                pool
            })
            .collect();
        *known = Known { servers, pools };
        LiveSet { pools: live }
    }
}

/// The live state of one snapshot's pools (a clone shares them).
#[derive(Debug, Default, Clone)]
pub struct LiveSet {
    pools: Box<[Arc<PoolLive>]>,
}

impl LiveSet {
    /// A set of fresh states for `config` (no history).
    pub fn fresh(config: &Config) -> LiveSet {
        Registry::default().bind(config)
    }

    pub fn pool(&self, id: PoolId) -> &Arc<PoolLive> {
        &self.pools[usize::from(id)]
    }

    pub fn pools(&self) -> &[Arc<PoolLive>] {
        &self.pools
    }
}

/// One pool's live state: its totals and its servers in config order.
#[derive(Debug)]
pub struct PoolLive {
    /// The pool's name (for its queue's series).
    pub name: Box<str>,
    state: Arc<PoolState>,
    servers: Box<[Arc<ServerState>]>,
    /// The pool's passive ejection settings.
    pub eject: crate::config::Eject,
    /// The longest a request waits in the pool's queue, and how many may.
    pub queue_timeout: Duration,
    pub queue_max: usize,
}

impl PoolLive {
    pub fn server(&self, i: ServerIdx) -> &Arc<ServerState> {
        &self.servers[usize::from(i)]
    }

    pub fn servers(&self) -> &[Arc<ServerState>] {
        &self.servers
    }

    /// Pool-wide state (hot tenants).
    pub fn state(&self) -> &PoolState {
        &self.state
    }

    pub fn totals(&self) -> Totals {
        Totals {
            weight: self.state.weight.load(Relaxed),
            in_flight: self.state.in_flight.load(Relaxed),
        }
    }

    /// Recomputes the total effective weight of the servers not down.
    pub fn refresh_weight(&self, now_ms: u64) {
        let w = self
            .servers
            .iter()
            .filter(|s| s.admission(now_ms) != Admission::Down)
            .map(|s| s.effective_weight())
            .sum();
        self.state.weight.store(w, Relaxed);
    }

    /// Counts a request in flight on server `i` until the guard drops
    /// (whatever its ceiling).
    pub fn begin(self: &Arc<Self>, i: ServerIdx) -> InFlight {
        self.server(i).add_in_flight(1);
        self.state.in_flight.fetch_add(1, Relaxed);
        self.adopt(i)
    }

    /// Counts a request in flight on server `i` if it is under its
    /// ceiling.
    #[inline]
    pub fn try_begin(self: &Arc<Self>, i: ServerIdx) -> Option<InFlight> {
        self.take_slot(i).then(|| self.adopt(i))
    }

    /// The guard of a slot of server `i` already counted.
    pub(super) fn adopt(self: &Arc<Self>, i: ServerIdx) -> InFlight {
        self.state.retry.deposit();
        InFlight {
            pool: self.clone(),
            server: i,
        }
    }

    fn take_slot(&self, i: ServerIdx) -> bool {
        let ok = self.server(i).try_add_in_flight();
        if ok {
            self.state.in_flight.fetch_add(1, Relaxed);
        }
        ok
    }

    /// A request on server `i` ended: its slot goes to the next request
    /// waiting for it, if any.
    fn release(&self, i: ServerIdx) {
        self.server(i).add_in_flight(-1);
        self.state.in_flight.fetch_sub(1, Relaxed);
        if !self.state.queue.is_empty() {
            self.state.queue.freed(i, self);
        }
    }
}

impl Slots for PoolLive {
    fn take(&self, i: ServerIdx) -> bool {
        self.take_slot(i)
    }

    fn give_back(&self, i: ServerIdx) {
        self.server(i).add_in_flight(-1);
        self.state.in_flight.fetch_sub(1, Relaxed);
    }
}

/// A request in flight on one server: counted from before it is sent
/// until its response body ends (or it fails).
#[derive(Debug)]
pub struct InFlight {
    pool: Arc<PoolLive>,
    server: ServerIdx,
}

impl InFlight {
    pub fn server(&self) -> ServerIdx {
        self.server
    }

    pub fn pool(&self) -> &Arc<PoolLive> {
        &self.pool
    }

    /// The request went to another server of the pool (the first could
    /// not be reached).
    pub fn move_to(&mut self, i: ServerIdx) {
        if i != self.server {
            // (The pool's total stays: one request, on another server.)
            self.pool.server(i).add_in_flight(1);
            self.pool.state.in_flight.fetch_add(1, Relaxed);
            self.pool.release(self.server);
            self.server = i;
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.pool.release(self.server);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawDocument;

    fn config(servers: &[(&str, &str)]) -> Config {
        let list = servers
            .iter()
            .map(|(id, a)| format!("{{ id = \"{id}\", address = \"{a}\" }}"))
            .collect::<Vec<_>>()
            .join(",");
        let toml = format!(
            "tenants = \"t\"\nmigration = \"m\"\n[[listen]]\naddress = \"127.0.0.1:1\"\n\
             [tiers.a]\npool = \"p\"\n[pools.p]\nservers = [{list}]\n"
        );
        Config::try_from(RawDocument::parse("predictor.toml".into(), toml).unwrap()).unwrap()
    }

    #[test]
    fn state_is_kept_by_identity_across_binds() {
        let r = Registry::default();
        let one = r.bind(&config(&[("a", "127.0.0.1:1"), ("b", "127.0.0.1:2")]));
        let eject = one.pool(0).eject;
        for t in 0..eject.failures {
            one.pool(0).server(1).failed(u64::from(t), &eject);
        }
        let _in_flight = one.pool(0).begin(0);
        // Reordered, one added: "b" keeps its ejection, "a" its count.
        let two = r.bind(&config(&[
            ("c", "127.0.0.1:3"),
            ("b", "127.0.0.1:2"),
            ("a", "127.0.0.1:1"),
        ]));
        let p = two.pool(0);
        assert_eq!(p.server(1).admission(10), Admission::Down);
        assert_eq!(p.server(2).in_flight(), 1);
        assert_eq!(p.server(0).in_flight(), 0);
        assert_eq!(p.totals().in_flight, 1);
        // A moved server starts afresh.
        let three = r.bind(&config(&[("b", "127.0.0.1:9")]));
        assert_eq!(three.pool(0).server(0).admission(10), Admission::Up);
    }

    #[test]
    fn the_pool_total_weight_leaves_out_servers_down() {
        let set = LiveSet::fresh(&config(&[("a", "127.0.0.1:1"), ("b", "127.0.0.1:2")]));
        let p = set.pool(0);
        assert_eq!(p.totals().weight, 200);
        p.server(0).agent_replied(&"maint".parse().unwrap());
        p.server(1).agent_replied(&"50%".parse().unwrap());
        p.refresh_weight(0);
        assert_eq!(p.totals().weight, 50);
    }

    #[test]
    fn in_flight_follows_the_request() {
        let set = LiveSet::fresh(&config(&[("a", "127.0.0.1:1"), ("b", "127.0.0.1:2")]));
        let p = set.pool(0);
        let mut g = p.begin(0);
        g.move_to(1);
        assert_eq!((p.server(0).in_flight(), p.server(1).in_flight()), (0, 1));
        drop(g);
        assert_eq!(p.totals().in_flight, 0);
        assert_eq!(p.server(1).in_flight(), 0);
    }
}
