//! The managed local PostgreSQL: when no URL is given anywhere, lite2pg runs a private cluster of its own, made
//! with the server binaries found on the machine, kept in the user's data directory and reused across runs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};

/// The database lite2pg's commands use on the local server.
pub const LOCAL_DATABASE: &str = "lite2pg";
/// PostgreSQL refuses to run as root; as root the cluster belongs to this user.
const ROOT_RUNS_AS: &str = "nobody";

/// lite2pg's data directory: `LITE2PG_DATA_DIR`, else `$XDG_DATA_HOME/lite2pg`, else `~/.local/share/lite2pg`
/// (`/var/lib/lite2pg` for root, whose home the server's user cannot enter).
pub fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LITE2PG_DATA_DIR") {
        return PathBuf::from(dir);
    }
    if is_root() {
        return PathBuf::from("/var/lib/lite2pg");
    }
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(dir).join("lite2pg");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    home.join(".local/share/lite2pg")
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

/// The directory holding `initdb` and `pg_ctl`: from PATH, `pg_config --bindir`, or the newest
/// `/usr/lib/postgresql/*/bin`.
pub fn find_bindir() -> Result<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file());
    let from_pg_config = || {
        let output = Command::new("pg_config").arg("--bindir").output().ok()?;
        Some(PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())).filter(|dir| dir.join("initdb").is_file())
    };
    let packaged = || {
        let mut versions: Vec<PathBuf> =
            std::fs::read_dir("/usr/lib/postgresql").ok()?.filter_map(|e| e.ok().map(|e| e.path())).collect();
        versions.sort_by_key(|p| p.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse::<u32>().ok()).unwrap_or(0));
        versions.into_iter().rev().map(|v| v.join("bin")).find(|bin| bin.join("initdb").is_file())
    };
    // PATH often holds symlinks (e.g. /usr/local/bin/initdb); the other tools live next to their target.
    let resolve = |dir: PathBuf| {
        std::fs::canonicalize(dir.join("initdb")).ok().and_then(|p| p.parent().map(Path::to_path_buf)).or(Some(dir))
    };
    on_path.and_then(resolve).or_else(from_pg_config).or_else(packaged).ok_or_else(|| {
        Error::new(ErrorKind::Usage, "no PostgreSQL URL given and no PostgreSQL server binaries (initdb, pg_ctl) found")
            .with_hint(install_hint())
    })
}

fn install_hint() -> String {
    let how = if Path::new("/etc/debian_version").exists() {
        "sudo apt-get install postgresql"
    } else if Path::new("/etc/redhat-release").exists() {
        "sudo dnf install postgresql-server"
    } else if cfg!(target_os = "macos") {
        "brew install postgresql"
    } else {
        "install the PostgreSQL server package of your platform"
    };
    format!("{how}, or pass --postgres URL (LITE2PG_POSTGRES) to use a server you have")
}

/// lite2pg's own PostgreSQL cluster.
#[derive(Debug, Clone)]
pub struct LocalServer {
    bindir: PathBuf,
    /// Holds `data/`, the socket, `port` and `log`.
    dir: PathBuf,
    pub port: u16,
    run_as: Option<&'static str>,
}

impl LocalServer {
    /// The cluster as configured on disk (made on first use), without starting it.
    pub fn open() -> Result<LocalServer> {
        let dir = data_dir().join("postgres");
        let port = std::fs::read_to_string(dir.join("port")).ok().and_then(|p| p.trim().parse().ok()).unwrap_or(0);
        Ok(LocalServer { bindir: find_bindir()?, dir, port, run_as: is_root().then_some(ROOT_RUNS_AS) })
    }

    /// Starts the cluster (making it first if needed) unless it is already running, and makes sure the
    /// `lite2pg` database exists. Returns its URL.
    pub fn ensure_running() -> Result<String> {
        let mut server = LocalServer::open()?;
        if !server.dir.join("data/PG_VERSION").exists() {
            server.init()?;
        }
        if !server.is_running() {
            server.start()?;
        }
        server.create_database(LOCAL_DATABASE)?;
        let url = server.url(LOCAL_DATABASE);
        tracing::info!("using lite2pg's local PostgreSQL at {url} (stop it with `lite2pg local stop`)");
        Ok(url)
    }

    /// The URL of `dbname` on this server.
    pub fn url(&self, dbname: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{dbname}", self.port)
    }

    /// Whether the server answers on its port.
    pub fn is_running(&self) -> bool {
        self.port != 0
            && self.dir.join("data/postmaster.pid").exists()
            && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
    }

    fn init(&self) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|err| self.io_error("create", err))?;
        if let Some(user) = self.run_as {
            self.run(Command::new("chown").args(["-R", user]).arg(&self.dir))?;
        }
        let data = self.data();
        self.run_tool("initdb", &["-D", &data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
    }

    fn start(&mut self) -> Result<()> {
        // Keep the port of the last run while it is free, so the URL stays the same across restarts.
        let previous =
            (self.port != 0).then_some(self.port).filter(|port| std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok());
        self.port = match previous {
            Some(port) => port,
            None => std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).map_err(|err| {
                Error::new(ErrorKind::PgConnect, format!("cannot find a free port for the local PostgreSQL: {err}"))
            })?,
        };
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1", self.port, self.dir.display());
        let log = self.dir.join("log").display().to_string();
        self.run_tool("pg_ctl", &["-D", &self.data(), "-o", &options, "-l", &log, "-w", "start"])?;
        std::fs::write(self.dir.join("port"), self.port.to_string()).map_err(|err| self.io_error("write the port into", err))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                return Err(Error::new(ErrorKind::PgConnect, "the local PostgreSQL did not start within 30 s")
                    .with_hint(format!("see its log: {log}")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Stops the server; returns false when it was not running.
    pub fn stop(&self) -> Result<bool> {
        if !self.is_running() {
            return Ok(false);
        }
        self.run_tool("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"])?;
        Ok(true)
    }

    /// Creates `dbname` unless it exists.
    pub fn create_database(&self, dbname: &str) -> Result<()> {
        let port = self.port.to_string();
        let output = self.command("createdb", &["-h", "127.0.0.1", "-p", &port, "-U", "postgres", dbname]).output();
        match output {
            Ok(out) if out.status.success() || String::from_utf8_lossy(&out.stderr).contains("already exists") => Ok(()),
            Ok(out) => Err(Error::new(
                ErrorKind::PgQuery,
                format!("createdb {dbname} failed: {}", String::from_utf8_lossy(&out.stderr).trim()),
            )),
            Err(err) => Err(self.io_error("run createdb for", err)),
        }
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn command(&self, tool: &str, args: &[&str]) -> Command {
        let binary = self.bindir.join(tool);
        let mut command = match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        command.args(args).current_dir(&self.dir);
        command
    }

    fn run_tool(&self, tool: &str, args: &[&str]) -> Result<()> {
        self.run(&mut self.command(tool, args))
    }

    fn run(&self, command: &mut Command) -> Result<()> {
        let output = command.output().map_err(|err| self.io_error("run a PostgreSQL tool for", err))?;
        if output.status.success() {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::PgConnect,
            format!(
                "{:?} failed for the local PostgreSQL: {}",
                command.get_program(),
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        )
        .with_hint(format!("see {}/log; remove {} to start over", self.dir.display(), self.dir.display())))
    }

    fn io_error(&self, what: &str, err: std::io::Error) -> Error {
        Error::new(ErrorKind::Usage, format!("cannot {what} {}: {err}", self.dir.display()))
            .with_hint("set LITE2PG_DATA_DIR to a directory lite2pg may write")
    }
}
