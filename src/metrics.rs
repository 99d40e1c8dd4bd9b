//! Metrics and health of a running sync: Prometheus counters each source's stream updates (every series labelled
//! with its source), and a small HTTP endpoint serving `/metrics` (Prometheus text) and `/healthz` (200, or 503
//! with the reason and the source).

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
struct SourceLabel {
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableOp {
    source: String,
    table: String,
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabel {
    source: String,
    kind: String,
    /// PostgreSQL's SQLSTATE when it refused a statement, else empty.
    sqlstate: String,
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

fn batch_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// The metric families; every series carries its source's label.
#[derive(Debug, Clone)]
struct Families {
    changes_applied: Family<TableOp, Counter>,
    pending_changes: Family<SourceLabel, Gauge>,
    lag_seconds: Family<SourceLabel, Gauge<f64, AtomicU64>>,
    batch_duration: Family<SourceLabel, Histogram, fn() -> Histogram>,
    rejects: Family<SourceLabel, Counter>,
    errors: Family<ErrorLabel, Counter>,
    up: Family<SourceLabel, Gauge>,
}

/// The metrics of every source a process syncs: what `/metrics` serves and `/healthz` judges.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    families: Families,
    limits: HealthLimits,
    sources: Mutex<Vec<Arc<SourceMetrics>>>,
}

/// One source's metrics, recorded by its stream.
#[derive(Debug)]
pub struct SourceMetrics {
    label: SourceLabel,
    families: Families,
    limits: HealthLimits,
    /// Since when batches have been failing, if they are.
    failing_since: Mutex<Option<Instant>>,
    /// The last failure, for `/healthz`.
    last_error: Mutex<Option<String>>,
    /// All changes applied, for live counters.
    applied_total: AtomicU64,
}

impl Metrics {
    /// Registers every metric family; `limits` decide `/healthz`.
    pub fn new(limits: HealthLimits) -> Arc<Metrics> {
        let families = Families {
            changes_applied: Family::default(),
            pending_changes: Family::default(),
            lag_seconds: Family::default(),
            batch_duration: Family::new_with_constructor(batch_histogram),
            rejects: Family::default(),
            errors: Family::default(),
            up: Family::default(),
        };
        let mut registry = Registry::with_prefix("lite2pg");
        registry.register(
            "changes_applied",
            "Changed rows applied to PostgreSQL, by source, table and operation",
            families.changes_applied.clone(),
        );
        registry.register("pending_changes", "Change log entries PostgreSQL does not have yet", families.pending_changes.clone());
        registry.register(
            "lag_seconds",
            "Age of the oldest change not yet in PostgreSQL (0 when caught up)",
            families.lag_seconds.clone(),
        );
        registry.register("batch_duration_seconds", "Time to read and apply one batch", families.batch_duration.clone());
        registry.register(
            "rejects",
            "Rows with values PostgreSQL cannot hold, stored in lite2pg.rejects",
            families.rejects.clone(),
        );
        registry.register(
            "errors",
            "Failed batches and connection attempts, by source, error kind and SQLSTATE",
            families.errors.clone(),
        );
        registry.register("up", "1 while PostgreSQL accepts the source's batches, 0 while they fail", families.up.clone());
        Arc::new(Metrics { registry, families, limits, sources: Mutex::new(Vec::new()) })
    }

    /// The metrics of source `id`, made on first use.
    pub fn source(&self, id: &str) -> Arc<SourceMetrics> {
        let mut sources = self.sources.lock().expect("metrics lock is never poisoned");
        if let Some(found) = sources.iter().find(|s| s.label.source == id) {
            return found.clone();
        }
        let label = SourceLabel { source: id.to_string() };
        self.families.up.get_or_create(&label).set(0);
        let source = Arc::new(SourceMetrics {
            label,
            families: self.families.clone(),
            limits: self.limits,
            failing_since: Mutex::new(None),
            last_error: Mutex::new(None),
            applied_total: AtomicU64::new(0),
        });
        sources.push(source.clone());
        source
    }

    fn sources(&self) -> Vec<Arc<SourceMetrics>> {
        self.sources.lock().expect("metrics lock is never poisoned").clone()
    }

    /// Changes applied, pending entries and the largest lag in seconds, over every source: for live counters.
    pub fn progress(&self) -> (u64, i64, f64) {
        self.sources().iter().map(|s| s.progress()).fold((0, 0, 0.0), |(a, p, l), (a2, p2, l2)| (a + a2, p + p2, l.max(l2)))
    }

    /// `Ok(state)` when every source is healthy, `Err(reasons)` naming the sources that are not.
    pub fn health(&self) -> std::result::Result<&'static str, String> {
        let sources = self.sources();
        let mut reasons = Vec::new();
        let mut caught_up = true;
        for source in &sources {
            match source.health() {
                Ok(state) => caught_up &= state == "caught up",
                Err(reason) if sources.len() == 1 => reasons.push(reason),
                Err(reason) => reasons.push(format!("source {}: {reason}", source.label.source)),
            }
        }
        match (reasons.is_empty(), caught_up) {
            (false, _) => Err(reasons.join("; ")),
            (true, true) => Ok("caught up"),
            (true, false) => Ok("applying"),
        }
    }

    /// Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String does not fail");
        out
    }
}

impl SourceMetrics {
    /// Records a committed batch.
    pub fn batch_applied(&self, tables: &[(String, u64, u64)], rejects: u64, duration: Duration) {
        let source = &self.label.source;
        for (table, upserts, deletes) in tables {
            for (op, count) in [("upsert", upserts), ("delete", deletes)] {
                let series = TableOp { source: source.clone(), table: table.clone(), op };
                self.families.changes_applied.get_or_create(&series).inc_by(*count);
            }
            self.applied_total.fetch_add(upserts + deletes, Ordering::Relaxed);
        }
        self.families.rejects.get_or_create(&self.label).inc_by(rejects);
        self.families.batch_duration.get_or_create(&self.label).observe(duration.as_secs_f64());
        self.succeeded();
    }

    /// Records that PostgreSQL accepted work (a batch, or a check that nothing is new).
    pub fn succeeded(&self) {
        self.families.up.get_or_create(&self.label).set(1);
        *self.failing_since.lock().expect("health lock is never poisoned") = None;
    }

    /// Records a failure.
    pub fn failed(&self, err: &Error) {
        let sqlstate = err.postgres().map(|pg| pg.code.clone()).unwrap_or_default();
        let series = ErrorLabel { source: self.label.source.clone(), kind: format!("{:?}", err.kind()), sqlstate };
        *self.last_error.lock().expect("health lock is never poisoned") = Some(err.to_string());
        self.families.errors.get_or_create(&series).inc();
        self.families.up.get_or_create(&self.label).set(0);
        self.failing_since.lock().expect("health lock is never poisoned").get_or_insert_with(Instant::now);
    }

    /// Records the backlog.
    pub fn backlog(&self, pending: i64, lag_seconds: Option<f64>) {
        self.families.pending_changes.get_or_create(&self.label).set(pending);
        self.families.lag_seconds.get_or_create(&self.label).set(lag_seconds.unwrap_or(0.0));
    }

    fn pending(&self) -> i64 {
        self.families.pending_changes.get_or_create(&self.label).get()
    }

    fn lag(&self) -> f64 {
        self.families.lag_seconds.get_or_create(&self.label).get()
    }

    /// Changes applied so far, pending entries and lag in seconds.
    pub fn progress(&self) -> (u64, i64, f64) {
        (self.applied_total.load(Ordering::Relaxed), self.pending(), self.lag())
    }

    /// `Ok(state)` when healthy, `Err(reason)` when not.
    pub fn health(&self) -> std::result::Result<&'static str, String> {
        let failing_since = *self.failing_since.lock().expect("health lock is never poisoned");
        if let Some(since) = failing_since.filter(|since| since.elapsed() > self.limits.max_outage) {
            let last_error = self.last_error.lock().expect("health lock is never poisoned").clone().unwrap_or_default();
            return Err(format!(
                "batches have failed for {:.0}s (limit {}s), last: {last_error}",
                since.elapsed().as_secs_f64(),
                self.limits.max_outage.as_secs()
            ));
        }
        let lag = self.lag();
        if lag > self.limits.max_lag.as_secs_f64() {
            return Err(format!("lag is {lag:.0}s (limit {}s)", self.limits.max_lag.as_secs()));
        }
        Ok(if self.pending() == 0 { "caught up" } else { "applying" })
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
