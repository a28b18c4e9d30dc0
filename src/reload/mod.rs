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
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch};

pub use fingerprint::Fingerprint;

use crate::metrics::Metrics;
use crate::snapshot::SharedSnapshot;

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
    /// Refused; the previous snapshot keeps serving.
    Refused,
    /// A file is missing (mid-replacement): not tried yet.
    Incomplete,
}

/// The last good and last failed reload, for operators.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// When, and the generation it installed.
    pub last_good: Option<(SystemTime, u64)>,
    /// When, and every problem (one per line, with file:line).
    pub last_failed: Option<(SystemTime, String)>,
}

#[derive(Default)]
struct Seen {
    serving: Option<Fingerprint>,
    refused: Option<Fingerprint>,
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
        metrics.reload.generation.set(snap.generation as f64);
        let now = Fingerprint::of(dir, &snap.config);
        let serving = now.settled_before(snap.read_from).then_some(now);
        Reloader {
            shared,
            dir: dir.to_path_buf(),
            metrics,
            last: Mutex::new(Seen {
                serving,
                refused: None,
            }),
            watching: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether [`watch`] has installed its watch (changes from then on
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
    /// Blocking: parsing a million-line table takes a while; call from a
    /// blocking thread.
    pub fn reload(&self, force: bool) -> Outcome {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.shared.load_full();
        let now = Fingerprint::of(&self.dir, &current.config);
        let seen = Some(&now);
        if !force && (last.serving.as_ref() == seen || last.refused.as_ref() == seen) {
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
        match crate::server::reload(&self.shared, &self.dir) {
            Ok(generation) => {
                // The files as they were before loading: a write landing
                // during the load differs from them, and reloads again (a
                // fingerprint taken after the swap could already include
                // it, and hide it). A new config naming other files also
                // differs at the next event: one reload too many, never
                // one too few.
                last.serving = Some(now);
                last.refused = None;
                self.metrics.reload.ok.increment(1);
                self.metrics.reload.generation.set(generation as f64);
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
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let handler = move |event: notify::Result<notify::Event>| {
        // Reads change nothing (a reload's own reads must not trigger
        // another); a writer closing the file, and everything else, may.
        use notify::event::{AccessKind, AccessMode, EventKind};
        if let Ok(e) = &event {
            if matches!(e.kind, EventKind::Access(a) if a != AccessKind::Close(AccessMode::Write)) {
                return;
            }
        }
        let _ = tx.send(());
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
        tokio::select! {
            got = rx.recv() => if got.is_none() { return Ok(()) },
            _ = shutdown.changed() => return Ok(()),
        }
        let first = tokio::time::Instant::now();
        loop {
            let deadline = (tokio::time::Instant::now() + QUIET).min(first + MAX_DELAY);
            tokio::select! {
                got = rx.recv() => if got.is_none() { return Ok(()) },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        let r = reloader.clone();
        let outcome = tokio::task::spawn_blocking(move || r.reload(false)).await;
        if matches!(outcome, Ok(Outcome::Reloaded(_))) {
            // A new config may name files in other folders.
            rewatch(&mut watcher, &mut watched, &reloader);
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
            file.set_modified(SystemTime::now() - Duration::from_secs(60))
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
        assert_eq!(r.reload(false), Outcome::Reloaded(2));
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
        std::fs::remove_file(dir.path().join("tenants.tsv")).unwrap();
        assert_eq!(r.reload(false), Outcome::Incomplete);
        std::fs::write(dir.path().join("tenants.tsv"), "a.example\tt1\tweb\tf2\n").unwrap();
        assert_eq!(r.reload(false), Outcome::Reloaded(2));
    }
}
