//! `run --exit-with-parent`, for lite2pg started by an application (the Python package): killing the application
//! stops lite2pg cleanly, its source lock released, even with the pipe its logs went to closed.

use std::process::{Command, Stdio};

use crate::support::wait::{check, wait_until_blocking, CATCH_UP};
use crate::support::{lite2pg_output, SqliteFile, TestDb};

/// Whether `pid` is a live process (not gone, not a zombie waiting for its new parent to reap it).
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

/// Kills the orphaned lite2pg if the test fails before it exited by itself.
struct KillOnDrop(String);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if alive(&self.0) {
            let _ = Command::new("kill").args(["-KILL", &self.0]).status();
        }
    }
}

fn status(db: &TestDb, file: &SqliteFile) -> serde_json::Value {
    let out = lite2pg_output(&["status", "--brief", "--json", "--sqlite", file.path.to_str().unwrap(), "--postgres", &db.url()]);
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

fn daemon_holder(db: &TestDb, file: &SqliteFile) -> Option<String> {
    status(db, file)["daemon"].as_str().map(str::to_string)
}

#[tokio::test]
async fn a_killed_parent_stops_the_daemon_and_releases_the_source() {
    let file = SqliteFile::new("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t (v) VALUES ('a');");
    let db = TestDb::new().await;
    // The parent: a shell that starts lite2pg, its logs going into a pipe this test holds, and waits.
    let script = format!(
        "{} run --exit-with-parent --sqlite \"$1\" --postgres \"$2\" --log-format json >/dev/null & echo $!; wait",
        env!("CARGO_BIN_EXE_lite2pg")
    );
    let mut parent = Command::new("sh")
        .args(["-c", &script])
        .args(["sh", file.path.to_str().unwrap(), &db.url()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pid = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(parent.stdout.take().unwrap()), &mut pid).unwrap();
    let pid = pid.trim().to_string();
    let _orphan = KillOnDrop(pid.clone());
    wait_until_blocking("the daemon to hold the source", CATCH_UP, || {
        daemon_holder(&db, &file).ok_or_else(|| status(&db, &file).to_string())
    });
    // Once it has applied a write it is idle: its next log line is the one about its parent, into the closed pipe.
    file.exec("INSERT INTO t (v) VALUES ('b')");
    wait_until_blocking("the write to be applied", CATCH_UP, || {
        let status = status(&db, &file);
        check(status["pending_changes"] == 0, || status.to_string())
    });
    parent.kill().unwrap(); // SIGKILL: the parent cannot pass anything on
    parent.wait().unwrap();
    drop(parent.stderr.take()); // the pipe lite2pg logs into has no reader any more
    wait_until_blocking("lite2pg to exit after its parent", CATCH_UP, || check(!alive(&pid), || format!("{pid} alive")));
    assert_eq!(daemon_holder(&db, &file), None, "the source lock is released: the stop was clean");
}
