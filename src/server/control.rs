//! The control thread: work that is not a client's request. It runs the
//! legacy balancer's probe, the webservers' health checks and agents
//! ([`crate::health::run`]), the scan of tenants' counters for `/top`, the
//! admin listener and metrics upkeep on its
//! own small runtime, so none of it competes with client traffic for a
//! worker or for the connection limit. It stops after the workers have
//! drained, so `/readyz` says "draining" and the checks go on meanwhile.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::admin::Admin;
use crate::legacy::probe;

pub(super) struct Control {
    pub admin: Admin,
    pub listener: Option<std::net::TcpListener>,
}

impl Control {
    pub fn run(self, mut shutdown: watch::Receiver<bool>) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the control runtime");
                return;
            }
        };
        let admin = Arc::new(self.admin);
        runtime.block_on(async move {
            let shared = admin.snapshot.clone();
            let probe = tokio::spawn(probe::run(
                admin.tunnel.clone(),
                move || shared.load().config.clone(),
                admin.metrics.clone(),
                shutdown.clone(),
            ));
            let shared = admin.snapshot.clone();
            let current = move || {
                let snap = shared.load();
                (snap.config.clone(), snap.live.clone())
            };
            let health = tokio::spawn(crate::health::run(current, shutdown.clone()));
            let metrics = admin.metrics.clone();
            let (top, shared) = (admin.top.clone(), admin.snapshot.clone());
            let serving = match self.listener.map(tokio::net::TcpListener::from_std) {
                Some(Ok(listener)) => Some(tokio::spawn(crate::admin::serve(listener, admin))),
                Some(Err(e)) => {
                    tracing::error!(error = %e, "cannot use the admin socket");
                    None
                }
                None => None,
            };
            let mut upkeep = tokio::time::interval(Duration::from_secs(5));
            let mut scan = tokio::time::interval(Duration::from_secs(1));
            scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = upkeep.tick() => metrics.upkeep(),
                    // Who is hot: every tenant's counters, once a second.
                    _ = scan.tick() => top.tick(&shared.load().tenants_live),
                    _ = shutdown.wait_for(|stop| *stop) => break,
                }
            }
            let _ = probe.await;
            let _ = health.await;
            if let Some(a) = serving {
                a.abort();
            }
        });
    }
}
