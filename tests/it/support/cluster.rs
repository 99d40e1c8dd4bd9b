//! A private PostgreSQL cluster made with initdb on a free port, for machines that only have the server
//! binaries, and for tests that stop, start or configure the server. Dropping it stops it and removes its files;
//! a watchdog process does the same when the test process ends, however it ends.

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
        let cluster = PrivateCluster::init_new()?;
        cluster.start();
        Some(cluster)
    }

    /// Makes a new cluster without starting it, so that it can be configured first.
    pub fn init_new() -> Option<PrivateCluster> {
        let bindir = lite2pg::pg::local::find_bindir().ok()?;
        let dir = std::env::temp_dir().join(format!("lite2pg-pg-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let user = lite2pg::pg::local::is_root().then_some("nobody");
        if let Some(user) = user {
            run(Command::new("chown").args(["-R", user]).arg(&dir));
        }
        let port = free_port();
        let cluster = PrivateCluster { bindir, dir, port, user };
        cluster.spawn_watchdog();
        cluster.run_as("initdb", &["-D", &cluster.data(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]);
        Some(cluster)
    }

    /// Appends `settings` (postgresql.conf lines) to the server's configuration; they count from the next start.
    pub fn configure(&self, settings: &str) {
        use std::io::Write;
        let path = self.dir.join("data/postgresql.conf");
        let mut file = std::fs::OpenOptions::new().append(true).open(&path).expect("postgresql.conf");
        writeln!(file, "{settings}").expect("write postgresql.conf");
    }

    /// Turns TLS on with a new self-signed X.509 **v1** certificate (no extensions, as `openssl x509 -req` makes
    /// one and as Citus's is): the form webpki refuses, which libpq accepts under `prefer` and `require`.
    /// Returns the certificate's PEM file, to pass as `sslrootcert`.
    pub fn enable_tls_with_v1_certificate(&self) -> PathBuf {
        let (key, csr, crt) = (self.dir.join("data/server.key"), self.dir.join("server.csr"), self.dir.join("data/server.crt"));
        let key_arg = key.display().to_string();
        run(Command::new("openssl").args(["req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost"]).args([
            "-keyout",
            &key_arg,
            "-out",
            &csr.display().to_string(),
        ]));
        run(Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-in", &csr.display().to_string(), "-signkey", &key_arg, "-out"])
            .arg(&crt));
        run(Command::new("chmod").arg("600").arg(&key));
        if let Some(user) = self.user {
            run(Command::new("chown").arg(user).arg(&key).arg(&crt));
        }
        self.configure("ssl = on");
        crt
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
        run(&mut self.command(program, args));
    }

    /// `program` of the server's binaries, run as the cluster's owner.
    fn command(&self, program: &str, args: &[&str]) -> Command {
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
        command
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

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = self.command("pg_ctl", &["-D", &self.data(), "-m", "immediate", "-w", "stop"]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
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
