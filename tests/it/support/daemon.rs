//! Processes the tests start: `lite2pg run` daemons (their stderr kept in a file and shown when the test fails)
//! and the example writer.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use super::wait::{check, wait_until_blocking, CATCH_UP};
use super::{lite2pg, SqliteFile, TestDb};

/// Lines of a daemon's log shown when a test fails.
const LOG_TAIL_LINES: usize = 200;

/// A running `lite2pg run` process, killed if the test ends early. What it writes to stderr goes to a file,
/// printed when the test fails, so that a stalled daemon says why.
pub struct Daemon {
    pub child: Child,
    log: tempfile::NamedTempFile,
}

impl Daemon {
    /// Spawns `command` with its stderr going to the daemon's log.
    pub fn spawn(command: &mut Command) -> Daemon {
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = command.stderr(Stdio::from(log.reopen().unwrap())).spawn().unwrap();
        Daemon { child, log }
    }

    /// Everything the daemon wrote to stderr so far.
    pub fn log(&self) -> String {
        let mut said = String::new();
        self.log.reopen().unwrap().read_to_string(&mut said).unwrap();
        said
    }

    /// Waits for the daemon to stop by itself, for at most `timeout`.
    pub fn exited_within(&mut self, timeout: Duration) -> ExitStatus {
        let child = &mut self.child;
        wait_until_blocking("the daemon to exit", timeout, || child.try_wait().unwrap().ok_or("still running".to_string()))
    }

    /// How many failed attempts the daemon has logged it will retry (its `retrying in` warnings).
    pub fn retries(&self) -> usize {
        self.log().matches("; retrying in ").count()
    }

    /// Waits until the daemon has logged more retries than `before`: it met the failure a test caused.
    pub fn wait_retry_after(&self, before: usize) {
        wait_until_blocking("the daemon to log a retry", CATCH_UP, || {
            let retries = self.retries();
            check(retries > before, || format!("{retries} retries logged"))
        });
    }

    pub fn assert_running(&mut self) {
        assert_eq!(self.child.try_wait().unwrap(), None, "the daemon stopped:\n{}", self.log());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            eprintln!("--- the daemon's stderr (last {} lines) ---\n{}\n--- end ---", tail.len(), tail.join("\n"));
        }
    }
}

pub fn start_daemon(db: &TestDb, file: &SqliteFile) -> Daemon {
    start_daemon_with(db, file, &[])
}

/// `lite2pg run` with extra arguments; its log level is `LITE2PG_TEST_DAEMON_LOG` (default `info`: the log is
/// only shown when the test fails).
pub fn start_daemon_with(db: &TestDb, file: &SqliteFile, extra: &[&str]) -> Daemon {
    Daemon::spawn(daemon_command().args(["run", "--sqlite", file.path.to_str().unwrap(), "--postgres", &db.url()]).args(extra))
}

/// The binary with the daemon's log level set.
pub fn daemon_command() -> Command {
    let mut command = lite2pg();
    command.env("RUST_LOG", std::env::var("LITE2PG_TEST_DAEMON_LOG").unwrap_or_else(|_| "info".to_string()));
    command
}

/// Sends SIGTERM and waits for the daemon to stop.
pub fn terminate(daemon: &mut Daemon) -> ExitStatus {
    Command::new("kill").args(["-TERM", &daemon.child.id().to_string()]).status().unwrap();
    daemon.exited_within(Duration::from_secs(10))
}

/// The example writer process, committing `transactions` random transactions to `path`.
pub fn writer(path: &std::path::Path, seed: u64, transactions: u64) -> Child {
    let exe = std::env::current_exe().unwrap();
    let examples = exe.parent().unwrap().parent().unwrap().join("examples").join("writer");
    Command::new(examples).args([path.to_str().unwrap(), &seed.to_string(), &transactions.to_string()]).spawn().unwrap()
}

/// Waits for every child (writers) and asserts each succeeded.
pub fn wait_for(children: Vec<Child>) {
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
}
