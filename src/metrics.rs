//! Metrics and health of a running sync: Prometheus counters the stream updates, and a small HTTP endpoint
//! serving `/metrics` (Prometheus text) and `/healthz` (200, or 503 with the reason).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::error::{Error, ErrorKind, Result};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableOp {
    table: String,
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabel {
    kind: String,
}

/// When `/healthz` turns unhealthy.
#[derive(Debug, Clone, Copy)]
pub struct HealthLimits {
    /// PostgreSQL unreachable (or refusing batches) for longer than this.
    pub max_outage: Duration,
    /// The oldest unapplied change older than this.
    pub max_lag: Duration,
}

impl Default for HealthLimits {
    fn default() -> Self {
        HealthLimits { max_outage: Duration::from_secs(60), max_lag: Duration::from_secs(300) }
    }
}

/// The sync's metrics; shared by the stream (writer) and the HTTP endpoint (reader).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    changes_applied: Family<TableOp, Counter>,
    pending_changes: Gauge,
    lag_seconds: Gauge<f64, AtomicU64>,
    batch_duration: Histogram,
    rejects: Counter,
    errors: Family<ErrorLabel, Counter>,
    up: Gauge,
    limits: HealthLimits,
    /// Since when batches have been failing, if they are.
    failing_since: Mutex<Option<Instant>>,
    /// All changes applied, for live counters.
    applied_total: AtomicU64,
}

impl Metrics {
    /// Registers every metric; `limits` decide `/healthz`.
    pub fn new(limits: HealthLimits) -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("lite2pg");
        let metrics = Metrics {
            changes_applied: Family::default(),
            pending_changes: Gauge::default(),
            lag_seconds: Gauge::default(),
            batch_duration: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            rejects: Counter::default(),
            errors: Family::default(),
            up: Gauge::default(),
            limits,
            failing_since: Mutex::new(None),
            applied_total: AtomicU64::new(0),
            registry: Registry::default(),
        };
        registry.register(
            "changes_applied",
            "Changed rows applied to PostgreSQL, by table and operation",
            metrics.changes_applied.clone(),
        );
        registry.register("pending_changes", "Change log entries PostgreSQL does not have yet", metrics.pending_changes.clone());
        registry.register(
            "lag_seconds",
            "Age of the oldest change not yet in PostgreSQL (0 when caught up)",
            metrics.lag_seconds.clone(),
        );
        registry.register("batch_duration_seconds", "Time to read and apply one batch", metrics.batch_duration.clone());
        registry.register(
            "rejects",
            "Rows with values PostgreSQL cannot hold, stored in lite2pg.rejects",
            metrics.rejects.clone(),
        );
        registry.register("errors", "Failed batches and connection attempts, by error kind", metrics.errors.clone());
        registry.register("up", "1 while PostgreSQL accepts batches, 0 while they fail", metrics.up.clone());
        Arc::new(Metrics { registry, ..metrics })
    }

    /// Records a committed batch.
    pub fn batch_applied(&self, tables: &[(String, u64, u64)], rejects: u64, duration: Duration) {
        for (table, upserts, deletes) in tables {
            self.changes_applied.get_or_create(&TableOp { table: table.clone(), op: "upsert" }).inc_by(*upserts);
            self.changes_applied.get_or_create(&TableOp { table: table.clone(), op: "delete" }).inc_by(*deletes);
            self.applied_total.fetch_add(upserts + deletes, Ordering::Relaxed);
        }
        self.rejects.inc_by(rejects);
        self.batch_duration.observe(duration.as_secs_f64());
        self.succeeded();
    }

    /// Records that PostgreSQL accepted work (a batch, or a check that nothing is new).
    pub fn succeeded(&self) {
        self.up.set(1);
        *self.failing_since.lock().expect("health lock is never poisoned") = None;
    }

    /// Records a failure of `kind`.
    pub fn failed(&self, kind: ErrorKind) {
        self.errors.get_or_create(&ErrorLabel { kind: format!("{kind:?}") }).inc();
        self.up.set(0);
        self.failing_since.lock().expect("health lock is never poisoned").get_or_insert_with(Instant::now);
    }

    /// Records the backlog.
    pub fn backlog(&self, pending: i64, lag_seconds: Option<f64>) {
        self.pending_changes.set(pending);
        self.lag_seconds.set(lag_seconds.unwrap_or(0.0));
    }

    /// Changes applied so far, pending entries and lag in seconds: for live counters.
    pub fn progress(&self) -> (u64, i64, f64) {
        (self.applied_total.load(Ordering::Relaxed), self.pending_changes.get(), self.lag_seconds.get())
    }

    /// `Ok(state)` when healthy, `Err(reason)` when not.
    pub fn health(&self) -> std::result::Result<&'static str, String> {
        let failing_since = *self.failing_since.lock().expect("health lock is never poisoned");
        if let Some(since) = failing_since.filter(|since| since.elapsed() > self.limits.max_outage) {
            return Err(format!(
                "batches have failed for {:.0}s (limit {}s); see lite2pg_errors_total and the log",
                since.elapsed().as_secs_f64(),
                self.limits.max_outage.as_secs()
            ));
        }
        let lag = self.lag_seconds.get();
        if lag > self.limits.max_lag.as_secs_f64() {
            return Err(format!("lag is {lag:.0}s (limit {}s)", self.limits.max_lag.as_secs()));
        }
        Ok(if self.pending_changes.get() == 0 { "caught up" } else { "applying" })
    }

    /// Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String does not fail");
        out
    }
}

/// Binds `addr` and serves `/metrics` and `/healthz` until the process ends.
pub async fn serve(addr: &str, metrics: Arc<Metrics>) -> Result<()> {
    let listener = TcpListener::bind(addr).await.map_err(|err| {
        Error::new(ErrorKind::Usage, format!("cannot listen on {addr} for metrics: {err}"))
            .with_hint("pick a free address with --metrics-addr, e.g. 127.0.0.1:9187")
    })?;
    tracing::info!(
        "serving /metrics and /healthz on http://{}",
        listener.local_addr().map_or(addr.to_string(), |a| a.to_string())
    );
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else { continue };
            tokio::spawn(answer(socket, metrics.clone()));
        }
    });
    Ok(())
}

/// Answers one HTTP/1.x request; anything but `GET /metrics` or `GET /healthz` gets 404.
async fn answer(mut socket: tokio::net::TcpStream, metrics: Arc<Metrics>) {
    let mut request = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
        match tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => request.extend_from_slice(&buf[..n]),
            _ => return,
        }
    }
    let line = String::from_utf8_lossy(&request);
    let path = line.split_whitespace().nth(1).unwrap_or("");
    let (status, content_type, body) = match path {
        "/metrics" => ("200 OK", "application/openmetrics-text; version=1.0.0; charset=utf-8", metrics.encode()),
        "/healthz" => match metrics.health() {
            Ok(state) => ("200 OK", "text/plain", format!("ok: {state}\n")),
            Err(reason) => ("503 Service Unavailable", "text/plain", format!("unhealthy: {reason}\n")),
        },
        _ => ("404 Not Found", "text/plain", "try /metrics or /healthz\n".to_string()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = socket.write_all(head.as_bytes()).await;
    let _ = socket.write_all(body.as_bytes()).await;
    let _ = socket.shutdown().await;
}
