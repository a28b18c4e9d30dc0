//! Reloading the config folder while serving.
//!
//! Owns what triggers a reload (a `notify` watch of the folder, debounced;
//! `SIGHUP` through [`Reloader::reload`] with `force`), building the next
//! snapshot off the request path (the caller runs [`Reloader::reload`] on a
//! blocking thread), and the record of the last good and last failed
//! reloads (for the admin status and the `reload` metrics).
//!
//! The folder is watched, not single files, so that every way of replacing
//! a file is seen: an in-place write, a write to a temporary file renamed
//! over the old one, an editor's swap files, a Kubernetes ConfigMap's
//! `..data` symlink swap, files deleted and created again. Events come in
//! bursts; a reload starts once the folder has been quiet for [`QUIET`]
//! (or [`MAX_DELAY`] after the first event of a burst, whichever is first).
//! Before loading, the files' identities (content for small files; size,
//! modification time and inode for big ones; following symlinks) are
//! compared with those serving and those last refused: a burst that
//! changed nothing (a swap file come and gone, a file written back as it
//! was) reloads nothing.
//!
//! A reload refused (a syntax error, a file caught half-written) leaves the
//! running snapshot serving; the next event, or the next good write, tries
//! again without operator action.

mod fingerprint;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

pub use fingerprint::Fingerprint;

use crate::config::ConfigError;
use crate::metrics::Metrics;
use crate::snapshot::impact::Impact;
use crate::snapshot::{SharedSnapshot, Snapshot, held};
use crate::tls::store::{self, CertChanges};

/// Quiet time after the last event of a burst before reloading.
pub const QUIET: Duration = Duration::from_millis(50);
/// The longest a burst of events delays a reload. Long: a writer still
/// writing a big table in place keeps the folder busy, and loading before
/// it is done would read half a table (rename a finished file into place
/// to be safe with any writer).
pub const MAX_DELAY: Duration = Duration::from_secs(5);

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new snapshot of this generation serves.
    Reloaded(u64),
    /// The files are as last loaded: nothing to do.
    Unchanged,
    /// The files are back to the version serving after a refused change:
    /// nothing to load, and the failure is cleared.
    Reverted,
    /// Refused; the previous snapshot keeps serving.
    Refused,
    /// Valid, but it would move more than the serving config's `[reload]`
    /// guard allows: held for confirmation, the previous snapshot serving.
    Held,
    /// A file is missing (mid-replacement): not tried yet.
    Incomplete,
}

pub use crate::snapshot::ReloadStatus as Status;

#[derive(Default)]
struct Seen {
    serving: Option<Fingerprint>,
    refused: Option<Fingerprint>,
    /// The files of the reload held for confirmation.
    held: Option<Fingerprint>,
    /// Certificate files reported changed and not yet in a snapshot that
    /// serves (kept across a refused reload).
    certs: CertChanges,
}

/// Reloads one config folder into a [`SharedSnapshot`].
pub struct Reloader {
    shared: Arc<SharedSnapshot>,
    dir: PathBuf,
    metrics: Arc<Metrics>,
    /// One reload at a time; holds the fingerprints of the files serving
    /// and of the last refused ones.
    last: Mutex<Seen>,
    /// Set once the folder watch is installed.
    watching: std::sync::atomic::AtomicBool,
}

impl Reloader {
    /// A reloader of `dir`, whose current content `shared` already serves.
    ///
    /// The files serving are known only if they were all written well
    /// before the snapshot was read (one written since could hide behind a
    /// fingerprint taken now); otherwise the first event reloads whatever
    /// it finds.
    pub fn new(shared: Arc<SharedSnapshot>, dir: &Path, metrics: Arc<Metrics>) -> Reloader {
        let snap = shared.load_full();
        let now = Fingerprint::of(dir, &snap.config);
        let serving = now.settled_before(snap.read_from).then_some(now);
        Reloader {
            shared,
            dir: dir.to_path_buf(),
            metrics,
            last: Mutex::new(Seen {
                serving,
                ..Seen::default()
            }),
            watching: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether [`watch`](fn@watch) has installed its watch (changes from then on
    /// are seen).
    pub fn watching(&self) -> bool {
        self.watching.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The last good and last failed reload (kept by the snapshot holder,
    /// for the admin status).
    pub fn status(&self) -> Status {
        self.shared.reload_status()
    }

    /// Loads the folder again and installs it, unless its files are as
    /// last loaded or one is missing (being replaced) and `force` is false.
    /// `force` (`SIGHUP`) also looks at every certificate file again.
    /// Blocking: parsing a million-line table takes a while; call from a
    /// blocking thread.
    pub fn reload(&self, force: bool) -> Outcome {
        if force {
            self.run(true, CertChanges::All)
        } else {
            self.run(false, CertChanges::None)
        }
    }

    /// Like `reload(false)`, with the certificate files the folder watch
    /// saw change: only those are looked at again (the config files are
    /// always compared; they are few).
    pub fn reload_changed(&self, certs: CertChanges) -> Outcome {
        self.run(false, certs)
    }

    /// Installs the held reload an operator confirmed
    /// ([`crate::snapshot::held::Guard::confirm`]), if its files are still
    /// those held; files changed since are judged afresh.
    pub fn confirm(&self) -> Outcome {
        let token = self.shared.guard.held().map(|h| h.token);
        let confirmed = token.is_some_and(|t| self.shared.guard.take_confirmed(&t));
        if !confirmed {
            return Outcome::Unchanged;
        }
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.shared.load_full();
        let now = Fingerprint::of(&self.dir, &current.config);
        let still = last.held.as_ref() == Some(&now);
        drop(last);
        if !still {
            tracing::warn!("the held reload's files changed since; judging them afresh");
            return self.run(true, CertChanges::None);
        }
        tracing::warn!("held reload confirmed by an operator; installing it");
        last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        self.install(&mut last, now, std::time::Instant::now(), true)
    }

    fn run(&self, force: bool, certs: CertChanges) -> Outcome {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.certs.merge(certs);
        let current = self.shared.load_full();
        let now = Fingerprint::of(&self.dir, &current.config);
        let seen = Some(&now);
        let config_same = last.serving.as_ref() == seen
            || last.refused.as_ref() == seen
            || last.held.as_ref() == seen;
        let certs_same = match &last.certs {
            CertChanges::None => true,
            CertChanges::Files(files) => current.certs.holds(files),
            CertChanges::All => false,
        };
        if !force && config_same && certs_same {
            // Certificate files touched but as serving: nothing to look at.
            last.certs = CertChanges::None;
            if last.serving.as_ref() == seen && last.held.take().is_some() {
                self.shared.guard.clear();
                tracing::info!(
                    "config folder back to the version serving; the held change is dropped"
                );
            }
            if last.serving.as_ref() == seen && last.refused.take().is_some() {
                // A refused change written back to the version serving:
                // disk and memory agree again, so the failure is over.
                self.shared.clear_failure();
                self.metrics.reload.reverted.increment(1);
                tracing::info!(
                    "config folder back to the version serving; the refused change is cleared"
                );
                return Outcome::Reverted;
            }
            self.metrics.reload.unchanged.increment(1);
            tracing::debug!("config files unchanged; nothing to reload");
            return Outcome::Unchanged;
        }
        if !force && now.incomplete() {
            // Deleted and not yet created again: the creation is another
            // event, and the reload happens then.
            self.metrics.reload.waiting.increment(1);
            tracing::debug!("a config file is missing; waiting for it");
            return Outcome::Incomplete;
        }
        let started = std::time::Instant::now();
        self.install(&mut last, now, started, false)
    }

    /// Loads the folder (files `now`) and installs it, or holds it when
    /// it moves too much and is not `confirmed`.
    fn install(
        &self,
        last: &mut Seen,
        now: Fingerprint,
        started: std::time::Instant,
        confirmed: bool,
    ) -> Outcome {
        match apply(&self.shared, &self.dir, &last.certs, confirmed) {
            Ok(Applied::Held) => {
                last.held = Some(now);
                last.refused = None;
                self.metrics.reload.held.increment(1);
                Outcome::Held
            }
            Ok(Applied::Installed(generation)) => {
                // The files as they were before loading: a write landing
                // during the load differs from them, and reloads again (a
                // fingerprint taken after the swap could already include
                // it, and hide it). A new config naming other files also
                // differs at the next event: one reload too many, never
                // one too few.
                last.serving = Some(now);
                last.refused = None;
                last.held = None;
                last.certs = CertChanges::None;
                self.metrics.reload.ok.increment(1);
                self.metrics
                    .reload
                    .duration
                    .record(started.elapsed().as_secs_f64());
                Outcome::Reloaded(generation)
            }
            Err(_) => {
                // Remember what was refused: the same files are not tried
                // again until they change.
                last.refused = Some(now);
                self.metrics.reload.error.increment(1);
                Outcome::Refused
            }
        }
    }
}

/// What [`apply`] did with a valid folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Installed as this generation.
    Installed(u64),
    /// Held for confirmation (`confirmed` was false and the change moves
    /// more than the serving config's `[reload]` guard allows).
    Held,
}

/// Builds a snapshot from `dir` and swaps it in; the old one keeps serving
/// when anything is wrong, or when the change would move more than the
/// serving config's `[reload]` guard allows and is not `confirmed` (held:
/// [`crate::snapshot::held`]). The tenant table is parsed again only when
/// its file changed ([`Snapshot::load_after`]), a certificate file only
/// when named by `certs`.
pub fn apply(
    shared: &SharedSnapshot,
    dir: &Path,
    certs: &CertChanges,
    confirmed: bool,
) -> Result<Applied, ConfigError> {
    let started = std::time::Instant::now();
    let current = shared.load_full();
    let next = Snapshot::load_after(dir, &current, certs);
    let held = match &next {
        Ok(next) if !confirmed => {
            let impact = Impact::of(&current, next);
            held::holds(&current.config.reload, &impact).then(|| shared.guard.hold(&impact))
        }
        _ => None,
    };
    // The previous snapshot is freed as soon as no request holds it.
    drop(current);
    if let Some(h) = held {
        tracing::warn!(
            change = %h.summary,
            token = %h.token,
            "reload held: it moves more than [reload] allows; the previous config keeps serving. \
             Confirm with `predictor reload --confirm --config DIR` (or POST /reload/confirm?token=TOKEN \
             on the admin listener), or write the files back"
        );
        return Ok(Applied::Held);
    }
    match next {
        Ok(next) => {
            for w in &next.warnings {
                tracing::warn!("{w}");
            }
            let generation = shared.store(next);
            shared.guard.clear();
            shared.record_reload(Ok(generation));
            tracing::info!(
                generation,
                took_ms = started.elapsed().as_millis() as u64,
                "config reloaded"
            );
            Ok(Applied::Installed(generation))
        }
        Err(e) => {
            tracing::error!(
                problems = e.count(),
                "reload refused, the previous config keeps serving"
            );
            shared.record_reload(Err(e.to_string()));
            // One line per problem, each with its file:line, so a log
            // search for the file finds them.
            for problem in e.to_string().lines() {
                tracing::error!("reload problem: {problem}");
            }
            Err(e)
        }
    }
}

/// Why the folder cannot be watched.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot watch {path}: {source}")]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
}

/// Watches the folder (and the folders of files it names elsewhere) and
/// reloads after each burst of changes, until `shutdown`. A reload runs on
/// a blocking thread; events keep being collected meanwhile, and whatever
/// came in during a reload starts another once it is done.
pub async fn watch(
    reloader: Arc<Reloader>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), WatchError> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
    let handler = move |event: notify::Result<notify::Event>| {
        // Reads change nothing (a reload's own reads must not trigger
        // another); a writer closing the file, and everything else, may.
        use notify::event::{AccessKind, AccessMode, EventKind};
        let seen = match event {
            Ok(e) if matches!(e.kind, EventKind::Access(a) if a != AccessKind::Close(AccessMode::Write)) =>
            {
                return;
            }
            Ok(e) if !e.need_rescan() && !e.paths.is_empty() => Event::Paths(e.paths),
            // Events were lost (queue overflow) or name nothing: look at
            // everything.
            _ => Event::Lost,
        };
        let _ = tx.send(seen);
    };
    let mut watcher = notify::recommended_watcher(handler).map_err(|source| WatchError::Watch {
        path: reloader.dir.clone(),
        source,
    })?;
    let mut watched: Vec<PathBuf> = Vec::new();
    rewatch(&mut watcher, &mut watched, &reloader);
    if watched.is_empty() {
        return Err(WatchError::Watch {
            path: reloader.dir.clone(),
            source: notify::Error::generic("no folder could be watched"),
        });
    }
    reloader
        .watching
        .store(true, std::sync::atomic::Ordering::SeqCst);
    tracing::info!(folders = watched.len(), "watching the config folder");
    loop {
        // Wait for the first event of a burst.
        let mut certs = CertChanges::None;
        let cert_dir = reloader
            .shared
            .load()
            .config
            .tls
            .as_ref()
            .map(|t| t.certificates.clone());
        let mut note = |seen: Event| note_certs(seen, cert_dir.as_deref(), &mut certs);
        tokio::select! {
            got = rx.recv() => match got { Some(seen) => note(seen), None => return Ok(()) },
            _ = shutdown.changed() => return Ok(()),
        }
        let first = tokio::time::Instant::now();
        loop {
            let deadline = (tokio::time::Instant::now() + QUIET).min(first + MAX_DELAY);
            tokio::select! {
                got = rx.recv() => match got { Some(seen) => note(seen), None => return Ok(()) },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        let r = reloader.clone();
        let outcome = tokio::task::spawn_blocking(move || r.reload_changed(certs)).await;
        if matches!(outcome, Ok(Outcome::Reloaded(_))) {
            // A new config may name files in other folders.
            rewatch(&mut watcher, &mut watched, &reloader);
        }
    }
}

/// What the folder watch reported.
enum Event {
    Paths(Vec<PathBuf>),
    /// Events were lost.
    Lost,
}

/// Adds the certificate files among `seen` to `certs`: a `*.pem` file of
/// the certificate folder is one file to look at again; the folder itself,
/// or a Kubernetes `..data` swap in it, or lost events, mean all of them.
/// Other paths are the config's files, compared at every reload anyway.
fn note_certs(seen: Event, cert_dir: Option<&Path>, certs: &mut CertChanges) {
    let Some(cert_dir) = cert_dir else {
        return;
    };
    let Event::Paths(paths) = seen else {
        *certs = CertChanges::All;
        return;
    };
    for path in paths {
        if path == cert_dir {
            *certs = CertChanges::All;
        } else if path.parent() == Some(cert_dir) {
            let swap = path
                .file_name()
                .is_some_and(|n| n.as_encoded_bytes().starts_with(b".."));
            if swap {
                *certs = CertChanges::All;
            } else if store::is_certificate(&path) {
                certs.file(path);
            }
        }
    }
}

/// Adds the folders the current config reads from to the watch.
fn rewatch(watcher: &mut notify::RecommendedWatcher, watched: &mut Vec<PathBuf>, r: &Reloader) {
    use notify::Watcher;
    let snap = r.shared.load_full();
    for dir in fingerprint::folders(&r.dir, &snap.config) {
        if watched.contains(&dir) {
            continue;
        }
        match watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
            Ok(()) => watched.push(dir),
            Err(e) => tracing::warn!(folder = %dir.display(), error = %e, "cannot watch"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Snapshot;

    fn folder() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let w = |n: &str, t: &str| std::fs::write(dir.path().join(n), t).unwrap();
        w(
            "predictor.toml",
            "tenants = \"tenants.tsv\"\nmigration = \"migration.toml\"\n[[listen]]\naddress = \"127.0.0.1:0\"\n\
             [tiers.web]\npool = \"p\"\n[pools.p]\nservers = [{ id = \"a\", address = \"127.0.0.1:9\" }]\n",
        );
        w("tenants.tsv", "a.example\tt1\tweb\tf1\n");
        w("migration.toml", "default = \"migrated\"\n");
        dir
    }

    fn age(dir: &Path) {
        for f in ["predictor.toml", "tenants.tsv", "migration.toml"] {
            let file = std::fs::File::options()
                .write(true)
                .open(dir.join(f))
                .unwrap();
            file.set_modified(std::time::SystemTime::now() - Duration::from_secs(60))
                .unwrap();
        }
    }

    fn reloader(dir: &Path) -> Reloader {
        let shared = Arc::new(SharedSnapshot::new(Snapshot::load(dir).unwrap()));
        Reloader::new(shared, dir, Arc::new(Metrics::new()))
    }

    #[test]
    fn files_written_well_before_the_load_are_known_to_serve() {
        let dir = folder();
        age(dir.path());
        let r = reloader(dir.path());
        assert_eq!(r.reload(false), Outcome::Unchanged);
        assert_eq!(
            r.reload(true),
            Outcome::Reloaded(2),
            "SIGHUP always reloads"
        );
    }

    #[test]
    fn files_written_just_before_the_load_are_read_again() {
        let dir = folder();
        let r = reloader(dir.path());
        let before = r.shared.load_full();
        assert_eq!(r.reload(false), Outcome::Reloaded(2));
        // The table's content is the one read: compared, not parsed again.
        assert!(Arc::ptr_eq(&before.tenants, &r.shared.load().tenants));
        // Now known: the same files again change nothing.
        assert_eq!(r.reload(false), Outcome::Unchanged);
    }

    #[test]
    fn a_refused_version_is_not_tried_again_and_a_missing_file_is_waited_for() {
        let dir = folder();
        age(dir.path());
        let r = reloader(dir.path());
        std::fs::write(dir.path().join("tenants.tsv"), "a.example\tt1\tnope\tf1\n").unwrap();
        assert_eq!(r.reload(false), Outcome::Refused);
        assert_eq!(r.reload(false), Outcome::Unchanged);
        assert!(r.status().last_failed.is_some());
        // Taken: the failure is over.
        std::fs::write(dir.path().join("tenants.tsv"), "a.example\tt1\tweb\tf3\n").unwrap();
        assert_eq!(r.reload(false), Outcome::Reloaded(2));
        assert!(r.status().last_failed.is_none());
        std::fs::write(dir.path().join("tenants.tsv"), "a.example\tt1\tnope\tf1\n").unwrap();
        assert_eq!(r.reload(false), Outcome::Refused);
        std::fs::remove_file(dir.path().join("tenants.tsv")).unwrap();
        assert_eq!(r.reload(false), Outcome::Incomplete);
        std::fs::write(dir.path().join("tenants.tsv"), "a.example\tt1\tweb\tf2\n").unwrap();
        assert_eq!(r.reload(false), Outcome::Reloaded(3));
    }

    #[test]
    fn writing_back_the_version_serving_clears_a_refused_change() {
        let dir = folder();
        age(dir.path());
        let r = reloader(dir.path());
        let state = dir.path().join("migration.toml");
        let serving = std::fs::read_to_string(&state).unwrap();
        std::fs::write(&state, "default = \"migratd\"\n").unwrap();
        assert_eq!(r.reload(false), Outcome::Refused);
        assert!(r.status().last_failed.is_some());
        let count = |result: &str| {
            r.metrics
                .render()
                .contains(&format!("predictor_reloads_total{{result=\"{result}\"}} 1"))
        };
        assert!(count("error"));
        std::fs::write(&state, serving).unwrap();
        assert_eq!(r.reload(false), Outcome::Reverted);
        assert!(r.status().last_failed.is_none(), "the failure is over");
        assert!(count("reverted"));
        assert_eq!(r.shared.load().generation, 1, "nothing was loaded");
        // Once cleared, the same files are just unchanged.
        assert_eq!(r.reload(false), Outcome::Unchanged);
        assert!(count("reverted"), "counted once");
    }

    #[test]
    fn certificate_files_are_looked_at_when_reported_and_shared_otherwise() {
        use crate::tls::tests::{age as age_file, write_cert};
        let dir = folder();
        let d = dir.path();
        let mut toml = std::fs::read_to_string(d.join("predictor.toml")).unwrap();
        toml.push_str("[tls]\ncertificates = \"certs\"\n");
        std::fs::write(d.join("predictor.toml"), toml).unwrap();
        std::fs::create_dir(d.join("certs")).unwrap();
        write_cert(&d.join("certs"), "a.pem", &["a.example"], 2030);
        write_cert(&d.join("certs"), "b.pem", &["b.example"], 2030);
        age(d);
        age_file(&d.join("certs/a.pem"));
        age_file(&d.join("certs/b.pem"));
        let r = reloader(d);
        let a = d.join("certs/a.pem");
        let only_a = || CertChanges::Files([a.clone()].into());
        assert_eq!(
            r.reload_changed(only_a()),
            Outcome::Unchanged,
            "touched, same"
        );

        // A state-file change shares the certificate index as it is.
        let before = r.shared.load_full();
        std::fs::write(d.join("migration.toml"), "default = \"maintenance\"\n").unwrap();
        assert_eq!(r.reload_changed(CertChanges::None), Outcome::Reloaded(2));
        assert!(Arc::ptr_eq(&before.certs, &r.shared.load_full().certs));

        // A renewed file reported by the watch is read again, and only it.
        write_cert(&d.join("certs"), "a.pem", &["a.example"], 2031);
        assert_eq!(r.reload_changed(only_a()), Outcome::Reloaded(3));
        let after = r.shared.load_full();
        assert_ne!(
            before.certs.lookup("a.example").unwrap().id,
            after.certs.lookup("a.example").unwrap().id
        );
        assert!(Arc::ptr_eq(
            before.certs.lookup("b.example").unwrap(),
            after.certs.lookup("b.example").unwrap()
        ));
        // Unreported changes wait for a report, or for SIGHUP.
        std::fs::remove_file(d.join("certs/b.pem")).unwrap();
        assert_eq!(r.reload(false), Outcome::Unchanged);
        assert!(r.shared.load().certs.lookup("b.example").is_some());
        assert_eq!(r.reload(true), Outcome::Reloaded(4));
        assert!(r.shared.load().certs.lookup("b.example").is_none());
    }

    #[test]
    fn watch_events_name_certificate_files_or_the_whole_folder() {
        let certs = Path::new("/c/certs");
        let seen = |paths: &[&str]| {
            let mut c = CertChanges::None;
            note_certs(
                Event::Paths(paths.iter().map(PathBuf::from).collect()),
                Some(certs),
                &mut c,
            );
            c
        };
        assert_eq!(
            seen(&["/c/predictor.toml", "/c/certs/x.pem.tmp"]),
            CertChanges::None
        );
        assert_eq!(
            seen(&["/c/certs/a.pem", "/c/certs/b.pem", "/c/certs/a.pem"]),
            CertChanges::Files(["/c/certs/a.pem".into(), "/c/certs/b.pem".into()].into())
        );
        assert_eq!(
            seen(&["/c/certs/a.pem", "/c/certs/..data"]),
            CertChanges::All
        );
        assert_eq!(seen(&["/c/certs"]), CertChanges::All);
        let mut c = CertChanges::None;
        note_certs(Event::Lost, Some(certs), &mut c);
        assert_eq!(c, CertChanges::All);
        let mut c = CertChanges::None;
        note_certs(Event::Lost, None, &mut c);
        assert_eq!(c, CertChanges::None, "no [tls]: no certificates");
    }
}
