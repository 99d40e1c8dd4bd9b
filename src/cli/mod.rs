//! The command line: the options (flags, environment, then the config file laid under them), one module per
//! subcommand, and the printing of reports apart in [`print`].

mod bench;
mod cutover;
mod demo;
mod doctor;
mod init;
mod layering;
mod local;
mod options;
mod print;
mod rejects;
mod run;
mod snapshot;
mod status;
mod uninstall;
mod verify;

use std::process::ExitCode;

use clap::{ArgMatches, Parser, Subcommand};

use crate::error::{ErrorKind, Result};

pub use bench::BenchArgs;
pub use cutover::CutoverArgs;
pub use demo::DemoArgs;
pub use local::LocalAction;
pub use options::CommonArgs;
pub use print::{print_snapshot, print_table};
pub use rejects::RejectsArgs;
pub use run::RunArgs;
pub use snapshot::SnapshotArgs;
pub use status::StatusArgs;
pub use verify::VerifyArgs;

/// Keep a PostgreSQL database equal to a live SQLite file, and prove it.
#[derive(Debug, Parser)]
#[command(name = "lite2pg", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the PostgreSQL tables and copy every row (installs change capture first).
    Snapshot(SnapshotArgs),
    /// Install change capture in the SQLite file (no PostgreSQL needed).
    Init,
    /// Snapshot if needed, then apply every committed change until SIGINT/SIGTERM.
    Run(RunArgs),
    /// Remove change capture from the SQLite file; the application's tables are untouched.
    Uninstall,
    /// Compare every replicated table value by value (exit 0 equal, 1 differences).
    Verify(VerifyArgs),
    /// Show where the sync stands: position, pending changes, lag, rejects, row counts.
    Status(StatusArgs),
    /// Check the SQLite file, capture, PostgreSQL and privileges; explain each problem and its fix.
    Doctor,
    /// See it work: a sample database written by threads, streamed to PostgreSQL, then verified.
    Demo(DemoArgs),
    /// Measure lite2pg on this machine and PostgreSQL, each measure beside its raw limit.
    Bench(BenchArgs),
    /// Make PostgreSQL the application's database: last changes, proof, key generators, promotion.
    Cutover(CutoverArgs),
    /// List the values PostgreSQL could not hold (lite2pg.rejects) for this source.
    Rejects(RejectsArgs),
    /// The local PostgreSQL lite2pg runs when no URL is given.
    Local {
        #[command(subcommand)]
        action: LocalAction,
    },
}

/// Runs the parsed command line and returns the process exit code: 0 success, 1 failure, 2 usage error.
pub fn main_with(mut cli: Cli, matches: &ArgMatches) -> ExitCode {
    if let Err(err) = cli.apply_config(matches) {
        eprintln!("error: {err}");
        return ExitCode::from(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("the tokio runtime starts");
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(if err.kind() == ErrorKind::Usage { 2 } else { 1 })
        }
    }
}

async fn dispatch(cli: Cli) -> Result<ExitCode> {
    let common = &cli.common;
    if !common.fleet.is_configured() {
        return dispatch_one(common, &cli.command).await;
    }
    if common.source.is_some() {
        return dispatch_one(&common.one_source()?, &cli.command).await;
    }
    match &cli.command {
        Command::Run(args) => run::run_fleet(common, args).await,
        Command::Status(args) => for_each_source(common, |one| async move { status::status(&one, args).await }).await,
        Command::Verify(args) => for_each_source(common, |one| async move { verify::verify(&one, args).await }).await,
        Command::Doctor => for_each_source(common, |one| async move { doctor::doctor(&one).await }).await,
        _ => dispatch_one(&common.one_source()?, &cli.command).await,
    }
}

/// Runs a command for one source.
async fn dispatch_one(common: &CommonArgs, command: &Command) -> Result<ExitCode> {
    match command {
        Command::Snapshot(args) => snapshot::snapshot(common, args).await,
        Command::Init => init::init(common),
        Command::Uninstall => uninstall::uninstall(common),
        Command::Run(args) => run::run(common, args).await,
        Command::Verify(args) => Ok(print_json(common, verify::verify(common, args).await?)),
        Command::Status(args) => Ok(print_json(common, status::status(common, args).await?)),
        Command::Doctor => Ok(print_json(common, doctor::doctor(common).await?)),
        Command::Demo(args) => demo::demo(common, args).await,
        Command::Bench(args) => bench::bench(common, args).await,
        Command::Cutover(args) => cutover::cutover(common, args).await,
        Command::Rejects(args) => rejects::rejects(common, args).await,
        Command::Local { action } => local::local(action),
    }
}

/// What a report-printing command gives back: its JSON form (printed only with `--json`; it printed itself
/// otherwise) and whether it found everything in order.
type Verdict = (serde_json::Value, bool);

/// Prints a command's JSON output when asked, and turns its verdict into the exit code.
fn print_json(common: &CommonArgs, (value, ok): Verdict) -> ExitCode {
    if common.json {
        println!("{}", serde_json::to_string_pretty(&value).expect("reports serialize"));
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Runs `command` for every source the config file lists; with `--json` their outputs form one array.
async fn for_each_source<F, Fut>(common: &CommonArgs, command: F) -> Result<ExitCode>
where
    F: Fn(CommonArgs) -> Fut,
    Fut: std::future::Future<Output = Result<Verdict>>,
{
    let (mut values, mut all_ok) = (Vec::new(), true);
    for one in common.each_source()? {
        if !common.json {
            println!("== source {} ==", one.source_id.as_deref().unwrap_or_default());
        }
        let (value, ok) = command(one).await?;
        values.push(value);
        all_ok &= ok;
    }
    Ok(print_json(common, (serde_json::Value::Array(values), all_ok)))
}
