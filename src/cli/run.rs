//! `lite2pg run`: snapshot if needed, then apply changes until stopped, for one source or every source of the
//! config file.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio::sync::Notify;

use crate::error::Result;
use crate::metrics::{HealthLimits, Metrics};
use crate::stream::StopWhen;

use super::options::{default_jobs, parse_duration};
use super::print::{print_run_summary, print_snapshot};
use super::CommonArgs;

/// Options of `run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Apply everything committed before it started, then exit.
    #[arg(long)]
    pub once: bool,
    /// With --once: how long to ride out failures waiting could fix (PostgreSQL unreachable, SQLite busy) before
    /// exiting 1 with the last error (e.g. 60s, 2m).
    #[arg(long, env = "LITE2PG_WAIT", default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    pub wait: Duration,
    /// Parallel copy connections for the initial snapshot.
    #[arg(long, default_value_t = default_jobs())]
    pub jobs: usize,
    /// PostgreSQL connections the sources of a config file share for applying batches.
    #[arg(long, env = "LITE2PG_POOL_SIZE", default_value_t = 4, value_name = "N")]
    pub pool_size: usize,
    /// Serve Prometheus metrics on /metrics and health on /healthz at this address.
    #[arg(long, env = "LITE2PG_METRICS_ADDR", value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
    /// /healthz answers 503 when the oldest unapplied change is older than this many seconds.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub health_max_lag: u64,
    /// /healthz answers 503 when batches have failed (e.g. PostgreSQL unreachable) for this many seconds.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub health_max_outage: u64,
    /// Stop (after the current batch) as soon as the process that started this one exits, also when it was killed:
    /// for running lite2pg as a child of an application, as the Python package does.
    #[arg(long)]
    pub exit_with_parent: bool,
}

fn stop_when(args: &RunArgs) -> StopWhen {
    if args.once {
        return StopWhen::CaughtUpWithin(args.wait);
    }
    let notify = Arc::new(Notify::new());
    tokio::spawn(forward_signals(notify.clone()));
    if args.exit_with_parent {
        tokio::spawn(stop_with_parent(notify.clone()));
    }
    StopWhen::Signal(notify)
}

/// How often `--exit-with-parent` looks whether the parent is still there.
const PARENT_CHECK: Duration = Duration::from_millis(200);

/// Turns the exit of the process that started this one into a stop request. Watching the parent id (the process
/// is re-parented when its parent dies) works on Linux and macOS alike and, unlike Linux's PR_SET_PDEATHSIG, does
/// not fire when only the parent's thread that started us ends (a Python app may start the sync from a thread).
async fn stop_with_parent(notify: Arc<Notify>) {
    #[cfg(unix)]
    {
        let parent = std::os::unix::process::parent_id();
        while std::os::unix::process::parent_id() == parent {
            tokio::time::sleep(PARENT_CHECK).await;
        }
        tracing::info!("stopping: the parent process {parent} exited");
        notify.notify_one();
    }
    #[cfg(not(unix))]
    {
        let _ = notify;
        tracing::warn!("--exit-with-parent is not supported on this platform; stop lite2pg with its parent yourself");
    }
}

/// The metrics of a `run`, served on `--metrics-addr` when given.
async fn served_metrics(args: &RunArgs) -> Result<Arc<Metrics>> {
    let limits = HealthLimits {
        max_lag: Duration::from_secs(args.health_max_lag),
        max_outage: Duration::from_secs(args.health_max_outage),
    };
    let metrics = Metrics::new(limits);
    if let Some(addr) = &args.metrics_addr {
        crate::metrics::serve(addr, metrics.clone()).await?;
    }
    Ok(metrics)
}

pub(super) async fn run(common: &CommonArgs, args: &RunArgs) -> Result<ExitCode> {
    let options = common.snapshot_options(false, args.jobs)?;
    let stop = stop_when(args);
    let json = common.json;
    let metrics = served_metrics(args).await?;
    let summary = crate::stream::run(&options, stop, metrics, |report| {
        if !json {
            print_snapshot(report, false);
        }
    })
    .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&summary).expect("summaries serialize"));
    } else {
        print_run_summary(&summary);
    }
    Ok(ExitCode::SUCCESS)
}

/// `run` for every source of the config file, in one process.
pub(super) async fn run_fleet(common: &CommonArgs, args: &RunArgs) -> Result<ExitCode> {
    let shared = common.fleet_options(args.jobs)?;
    let stop = stop_when(args);
    let metrics = served_metrics(args).await?;
    let summary = crate::fleet::run(&common.fleet, &shared, args.pool_size, stop, metrics).await?;
    if common.json {
        println!("{}", serde_json::to_string_pretty(&summary).expect("summaries serialize"));
    } else {
        for run in &summary.sources {
            print_run_summary(run);
        }
        for (id, err) in &summary.failed {
            println!("source {id} stopped: {err}");
        }
    }
    Ok(if summary.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Turns SIGINT and SIGTERM into a stop request.
async fn forward_signals(notify: Arc<Notify>) {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM can be watched");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("stopping: finishing the current batch");
    notify.notify_one();
}
