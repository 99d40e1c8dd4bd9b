//! Wakes an idle stream as soon as the application writes, instead of at the next poll.
//!
//! A commit writes the SQLite file, its `-wal` or its `-journal`: inotify on the file's directory reports it, and
//! the stream looks at the file right away. One inotify instance and one thread per process serve every stream
//! (a fleet of a hundred sources must not use up the per-user limit of inotify instances, 128 by default), and
//! the thread hands each write to the streams of that file only. The stream's timer stays as the fallback and
//! the safety net: where inotify cannot be used (another OS, a limit reached, a file system that does not report
//! changes, such as NFS) or misses a write, the next poll still finds it, as before.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use tokio::sync::Notify;

use super::StopWhen;

/// The longest idle sleep of a watched file: a write wakes the stream at once, so the timer is only the safety
/// net for a write inotify did not report (a hundred idle sources then cost next to nothing).
const WATCHED_IDLE_POLL: Duration = Duration::from_millis(250);
/// Room for a few dozen events per read; more pending ones are read on the next.
const EVENT_BUFFER: usize = 4096;
/// The files beside a SQLite file that its commits write.
const COMPANION_SUFFIXES: [&str; 3] = ["-wal", "-journal", "-shm"];

/// A watched directory's descriptor and the SQLite file's name in it (as the OS's bytes).
type FileKey = (WatchDescriptor, Vec<u8>);

/// The process's one inotify instance: its watches and who waits on which file.
struct Watcher {
    watches: Mutex<Watches>,
    waiting: Arc<Mutex<HashMap<FileKey, Vec<Arc<Notify>>>>>,
}

/// What ended a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woken {
    Stop,
    Timer,
    /// The file, its WAL or journal was written. The commit may not be visible yet: SQLite updates the WAL index
    /// (shared memory, which inotify does not see) after the WAL's write and its fsync; look again soon.
    Write,
}

/// After a write that did not show a commit yet, the first look again: soon after the fsync that precedes it.
pub const AFTER_WRITE_POLL: Duration = Duration::from_millis(1);

/// Watches one SQLite file for writes; dropping it stops watching.
pub struct FileWake {
    /// `None` when inotify could not be set up: the timer alone wakes the stream.
    registered: Option<(FileKey, Arc<Notify>)>,
}

impl FileWake {
    /// Starts watching `sqlite`; on failure, says why at debug level and falls back to the timer.
    pub fn watch(sqlite: &Path) -> FileWake {
        let registered = watcher().map_err(|err| err.to_string()).and_then(|watcher| watcher.register(sqlite));
        match registered {
            Ok(registered) => FileWake { registered: Some(registered) },
            Err(err) => {
                tracing::debug!("not woken by writes to {} (polling instead): {err}", sqlite.display());
                FileWake { registered: None }
            }
        }
    }

    /// The longest the stream sleeps when idle: `unwatched` when only the timer wakes it.
    pub fn idle_poll(&self, unwatched: Duration) -> Duration {
        match self.registered {
            Some(_) => WATCHED_IDLE_POLL.max(unwatched),
            None => unwatched,
        }
    }

    /// Waits until the file was written since the last wait, `period` passed, or `stop` asks to stop.
    pub async fn wait(&self, stop: &StopWhen, period: Duration) -> Woken {
        let stopped = |stopped: bool| if stopped { Woken::Stop } else { Woken::Timer };
        let Some((_, written)) = &self.registered else { return stopped(stop.wait(period).await) };
        tokio::select! {
            stop_or_timer = stop.wait(period) => stopped(stop_or_timer),
            () = written.notified() => Woken::Write,
        }
    }
}

impl Drop for FileWake {
    fn drop(&mut self) {
        if let (Some((key, notify)), Ok(watcher)) = (self.registered.take(), watcher()) {
            watcher.unregister(key, &notify);
        }
    }
}

/// The process's watcher, started on first use; the error says why inotify cannot be used.
fn watcher() -> Result<&'static Watcher, &'static std::io::Error> {
    static WATCHER: OnceLock<std::io::Result<Watcher>> = OnceLock::new();
    WATCHER.get_or_init(Watcher::start).as_ref()
}

impl Watcher {
    fn start() -> std::io::Result<Watcher> {
        let inotify = Inotify::init()?;
        let watcher = Watcher { watches: Mutex::new(inotify.watches()), waiting: Arc::default() };
        let waiting = watcher.waiting.clone();
        std::thread::Builder::new().name("lite2pg-wake".into()).spawn(move || dispatch(inotify, &waiting))?;
        Ok(watcher)
    }

    fn register(&self, sqlite: &Path) -> Result<(FileKey, Arc<Notify>), String> {
        let directory = match sqlite.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let file_name = sqlite.file_name().ok_or_else(|| format!("{} names no file", sqlite.display()))?;
        // DELETE: a commit in journal_mode=DELETE ends by removing the journal, after its last write.
        let mask = WatchMask::MODIFY | WatchMask::CLOSE_WRITE | WatchMask::CREATE | WatchMask::MOVED_TO | WatchMask::DELETE;
        let mut waiting = self.waiting.lock().expect("the wake registry is never poisoned");
        // Adding a watch already there gives its descriptor again.
        let wd = self.watches.lock().expect("the watches are never poisoned").add(directory, mask).map_err(|e| e.to_string())?;
        let key = (wd, file_name.as_encoded_bytes().to_vec());
        let notify = Arc::new(Notify::new());
        waiting.entry(key.clone()).or_default().push(notify.clone());
        Ok((key, notify))
    }

    fn unregister(&self, key: FileKey, notify: &Arc<Notify>) {
        let mut waiting = self.waiting.lock().expect("the wake registry is never poisoned");
        if let Some(notifies) = waiting.get_mut(&key) {
            notifies.retain(|n| !Arc::ptr_eq(n, notify));
            if notifies.is_empty() {
                waiting.remove(&key);
            }
        }
        if !waiting.keys().any(|(wd, _)| *wd == key.0) {
            // Already gone when the directory was removed.
            let _ = self.watches.lock().expect("the watches are never poisoned").remove(key.0);
        }
    }
}

/// The watcher's thread: hands each write to the streams of the file written, until inotify fails.
fn dispatch(mut inotify: Inotify, waiting: &Mutex<HashMap<FileKey, Vec<Arc<Notify>>>>) {
    let mut buffer = vec![0u8; EVENT_BUFFER];
    loop {
        let events = match inotify.read_events_blocking(&mut buffer) {
            Ok(events) => events,
            Err(err) => {
                tracing::warn!("stopped watching SQLite files for writes ({err}); streams fall back to polling");
                return;
            }
        };
        let waiting = waiting.lock().expect("the wake registry is never poisoned");
        for event in events {
            if event.mask.contains(EventMask::Q_OVERFLOW) {
                // Events were lost: every stream looks.
                waiting.values().flatten().for_each(|n| n.notify_one());
            } else if let Some(name) = event.name {
                let key = (event.wd, sqlite_file_of(name.as_encoded_bytes()).to_vec());
                waiting.get(&key).into_iter().flatten().for_each(|n| n.notify_one());
            }
        }
    }
}

/// The SQLite file a written file belongs to: `app.db` for `app.db-wal`, `app.db-journal` and `app.db` itself.
fn sqlite_file_of(name: &[u8]) -> &[u8] {
    COMPANION_SUFFIXES.iter().find_map(|suffix| name.strip_suffix(suffix.as_bytes())).unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn companion_files_belong_to_their_sqlite_file() {
        for name in ["app.db", "app.db-wal", "app.db-journal", "app.db-shm"] {
            assert_eq!(sqlite_file_of(name.as_bytes()), b"app.db");
        }
        assert_eq!(sqlite_file_of(b"app.db2"), b"app.db2");
    }

    #[tokio::test]
    async fn a_write_to_the_wal_wakes_only_its_own_file() {
        let dir = tempfile::tempdir().unwrap();
        let (app, other) = (dir.path().join("app.db"), dir.path().join("other.db"));
        let (woken, idle) = (FileWake::watch(&app), FileWake::watch(&other));
        let stop = StopWhen::Signal(Arc::new(Notify::new()));
        let never = Duration::from_secs(600);
        std::fs::write(dir.path().join("app.db-wal"), b"a commit").unwrap();
        let waited = tokio::time::timeout(Duration::from_secs(60), woken.wait(&stop, never)).await;
        assert_eq!(waited, Ok(Woken::Write));
        let slept = tokio::time::timeout(Duration::from_millis(200), idle.wait(&stop, never)).await;
        assert!(slept.is_err(), "a write to app.db does not wake other.db's stream");
    }
}
