//! The stream's SQLite side between batches: the reader and pruner connections to one file, noticing another file
//! renamed over its path, the backlog and data version it watches, and pruning the log once PostgreSQL committed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::error::Result;
use crate::metrics::SourceMetrics;
use crate::sqlite::capture::{self, CaptureState};
use crate::sqlite::{open, Access};

/// Prune the log once this many entries are applied, or `PRUNE_EVERY` passed.
const PRUNE_ENTRIES: i64 = 10_000;
const PRUNE_EVERY: Duration = Duration::from_secs(1);
/// How often the backlog (pending entries, lag) is measured for metrics.
const BACKLOG_EVERY: Duration = Duration::from_secs(1);

/// After a write, how long and how often the stream looks for the commit to show (`SqliteFile::await_commit`).
const COMMIT_SETTLE: Duration = Duration::from_millis(20);
const COMMIT_SETTLE_POLL: Duration = Duration::from_micros(100);

/// A file's device and inode: another file renamed over a path has others.
pub(super) type FileIdentity = (u64, u64);

/// The SQLite file a stream reads and prunes.
pub(super) struct SqliteFile {
    pub(super) path: PathBuf,
    /// Device and inode of the file the connections opened: another file renamed over the path is noticed.
    opened: Option<FileIdentity>,
    /// The path holds another file than the one opened: reopen and check it before the next batch.
    pub(super) replaced: bool,
    /// Taken by the reading thread during a batch, home between batches.
    pub(super) reader: Option<Connection>,
    /// Writes to the file (prune, capture changes) off the async thread: a prune may wait for a checkpoint's
    /// fsync, and other sources' streams share that thread.
    pruner: Arc<Mutex<Connection>>,
    pruned_seq: i64,
    last_prune: Instant,
    last_backlog: Option<Instant>,
}

impl SqliteFile {
    /// Opens the reader and pruner, with the identity of the file at the path taken first (a file renamed over it
    /// meanwhile is then noticed as a change).
    pub(super) fn open(path: &Path) -> Result<SqliteFile> {
        let opened = file_identity(path);
        let reader = open(path, Access::ReadOnly)?;
        let pruner = open(path, Access::ReadWrite)?;
        pruner.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(SqliteFile {
            path: path.to_path_buf(),
            opened,
            replaced: false,
            reader: Some(reader),
            pruner: Arc::new(Mutex::new(pruner)),
            pruned_seq: 0,
            last_prune: Instant::now(),
            last_backlog: None,
        })
    }

    /// Another file was renamed over the path (a `VACUUM INTO` copy, a restored backup) while the connections
    /// still read the old one: opens the path again and returns the new file's capture state, to be checked as at
    /// a start (same database, the applied entry still there) before the next batch.
    pub(super) fn reopen(&mut self) -> Result<CaptureState> {
        tracing::info!("{} is another file now; reading that one", self.path.display());
        let reopened = SqliteFile::open(&self.path)?;
        let installed = capture::require_state(reopened.reader(), &self.path)?;
        (self.opened, self.replaced) = (reopened.opened, false);
        (self.reader, self.pruner) = (reopened.reader, reopened.pruner);
        Ok(installed)
    }

    /// The reader connection, home between batches.
    pub(super) fn reader(&self) -> &Connection {
        self.reader.as_ref().expect("reader is home between batches")
    }

    /// The write connection, for capture changes.
    pub(super) fn pruner(&self) -> MutexGuard<'_, Connection> {
        self.pruner.lock().expect("the pruner lock is never poisoned")
    }

    /// Whether the path names another file than the one the connections opened.
    pub(super) fn renamed_over(&self) -> bool {
        let now = file_identity(&self.path);
        now.is_some() && now != self.opened
    }

    /// Between batches: the file's data version (after measuring the backlog), or `None` once another file was
    /// renamed over the path; the next batch opens that one. Until then, reading the old file can trip over the new
    /// one's rollback journal, which has the same name: such an error is the replacement, not a failure.
    pub(super) fn look(&mut self, applied_seq: i64, metrics: &SourceMetrics) -> Result<Option<i64>> {
        if !self.replaced && !self.renamed_over() {
            match self.measure_backlog(applied_seq, metrics).and_then(|()| self.data_version()) {
                Ok(version) => return Ok(Some(version)),
                Err(err) if !self.renamed_over() => return Err(err),
                Err(_) => {}
            }
        }
        self.replaced = true;
        Ok(None)
    }

    /// Measures pending entries and lag for metrics, at most once per `BACKLOG_EVERY`.
    fn measure_backlog(&mut self, applied_seq: i64, metrics: &SourceMetrics) -> Result<()> {
        if self.last_backlog.is_some_and(|at| at.elapsed() < BACKLOG_EVERY) {
            return Ok(());
        }
        let pending = capture::pending(self.reader(), applied_seq)?;
        metrics.backlog(pending.entries, pending.lag_seconds());
        self.last_backlog = Some(Instant::now());
        Ok(())
    }

    fn data_version(&self) -> Result<i64> {
        data_version(self.reader())
    }

    /// After a write to the file: SQLite shows a commit only once it updated the WAL index (shared memory, which
    /// inotify does not see), after the WAL's fsync, a millisecond or more after the write that woke the stream;
    /// the async timer is too coarse to look again that soon. Looks at the data version on a blocking thread every
    /// `COMMIT_SETTLE_POLL` until it moves from `seen` or `COMMIT_SETTLE` passed. A failing look ends the wait:
    /// the next `look` reports it.
    pub(super) async fn await_commit(&mut self, seen: i64) {
        let reader = self.reader.take().expect("reader is home between batches");
        let waited = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            while data_version(&reader).is_ok_and(|now| now == seen) && started.elapsed() < COMMIT_SETTLE {
                std::thread::sleep(COMMIT_SETTLE_POLL);
            }
            reader
        });
        self.reader = Some(waited.await.expect("looking at the data version does not panic"));
    }

    /// The newest entry in the log.
    pub(super) fn newest_seq(&self) -> Result<i64> {
        capture::newest_seq(self.reader())
    }

    /// Measures the backlog at the next look, not at most a `BACKLOG_EVERY` later.
    pub(super) fn backlog_moved(&mut self) {
        self.last_backlog = None;
    }

    /// Prunes up to `applied_seq` when enough was applied or enough time passed.
    pub(super) async fn maybe_prune(&mut self, applied_seq: i64) -> Result<()> {
        if applied_seq - self.pruned_seq >= PRUNE_ENTRIES
            || (applied_seq > self.pruned_seq && self.last_prune.elapsed() >= PRUNE_EVERY)
        {
            self.prune(applied_seq).await?;
        }
        Ok(())
    }

    /// Deletes the log's entries below `applied_seq` (PostgreSQL committed them).
    pub(super) async fn prune(&mut self, applied_seq: i64) -> Result<()> {
        // Never write through the old file's connection once another was renamed over the path: the two share
        // the journal's name, and the application may be writing the new one. The new file is pruned once opened.
        if self.renamed_over() {
            return Ok(());
        }
        let pruner = self.pruner.clone();
        let deleted = tokio::task::spawn_blocking(move || {
            capture::prune(&pruner.lock().expect("the pruner lock is never poisoned"), applied_seq)
        })
        .await
        .expect("pruning does not panic");
        let deleted = match deleted {
            Ok(deleted) => deleted,
            // Renamed over meanwhile, and the old file's connection tripped over the new one's journal (see `look`).
            Err(_) if self.renamed_over() => return Ok(()),
            // Another process holds the file's lock a while (a VACUUM, a migration): pruning can wait for a later turn.
            Err(err) if err.is_retryable() => {
                tracing::debug!("pruning postponed: {err}");
                self.last_prune = Instant::now();
                return Ok(());
            }
            Err(err) => return Err(err),
        };
        tracing::debug!(deleted, up_to = applied_seq, "pruned change log");
        self.pruned_seq = applied_seq;
        self.last_prune = Instant::now();
        Ok(())
    }
}

/// The identity of the file at `path`, if it can be read.
#[cfg(unix)]
pub(super) fn file_identity(path: &Path) -> Option<FileIdentity> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
pub(super) fn file_identity(_: &Path) -> Option<FileIdentity> {
    None
}

/// The file's data version as `reader` sees it: it moves when another connection commits.
fn data_version(reader: &Connection) -> Result<i64> {
    Ok(reader.prepare_cached("PRAGMA data_version")?.query_row([], |r| r.get(0))?)
}
