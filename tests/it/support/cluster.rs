//! A private PostgreSQL cluster made with initdb on a free port, for machines that only have the server
//! binaries, and for tests that stop and start the server. A watchdog process stops it when the test process
//! ends, however it ends.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct PrivateCluster {
    bindir: PathBuf,
    dir: PathBuf,
    pub port: u16,
    user: Option<&'static str>,
}

impl PrivateCluster {
    /// Makes and starts a new cluster; `None` when no server binaries are found.
    pub fn start_new() -> Option<PrivateCluster> {
        let bindir = lite2pg::pg::local::find_bindir().ok()?;
        let dir = std::env::temp_dir().join(format!("lite2pg-pg-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let user = lite2pg::pg::local::is_root().then_some("nobody");
        if let Some(user) = user {
            run(Command::new("chown").args(["-R", user]).arg(&dir));
        }
        let port = free_port();
        let cluster = PrivateCluster { bindir, dir, port, user };
        cluster.run_as("initdb", &["-D", &cluster.data(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]);
        cluster.start();
        cluster.spawn_watchdog();
        Some(cluster)
    }

    pub fn url(&self, dbname: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{dbname}", self.port)
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    pub fn start(&self) {
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", self.port, self.dir.display());
        let log = self.dir.join("log").display().to_string();
        self.run_as("pg_ctl", &["-D", &self.data(), "-o", &options, "-l", &log, "-w", "start"]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "private PostgreSQL did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server at once (like a crash: no checkpoint).
    pub fn stop(&self) {
        self.run_as("pg_ctl", &["-D", &self.data(), "-m", "immediate", "-w", "stop"]);
    }

    fn run_as(&self, program: &str, args: &[&str]) {
        let binary = self.bindir.join(program);
        let mut command = match self.user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&binary);
                c
            }
            None => Command::new(&binary),
        };
        command.args(args).current_dir(&self.dir);
        run(&mut command);
    }

    /// Deliberately not waited on: the watchdog must outlive this process.
    #[allow(clippy::zombie_processes)]
    fn spawn_watchdog(&self) {
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; kill -QUIT $(head -1 {data}/postmaster.pid) 2>/dev/null; sleep 2; rm -rf {dir}",
            pid = std::process::id(),
            data = self.data(),
            dir = self.dir.display()
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("watchdog");
    }
}

fn run(command: &mut Command) {
    let output = command.output().unwrap_or_else(|err| panic!("cannot run {command:?}: {err}"));
    assert!(output.status.success(), "{command:?} failed: {}", String::from_utf8_lossy(&output.stderr));
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("bound").port()
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
