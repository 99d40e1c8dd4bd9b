//! Using lite2pg as a library: copy a SQLite file to PostgreSQL, apply what changed since, and prove equality.
//!
//!     cargo run --example library -- app.db postgres://postgres@127.0.0.1/mydb

use lite2pg::metrics::Metrics;
use lite2pg::options::{SnapshotOptions, SourceOptions};
use lite2pg::pg::PgTarget;
use lite2pg::snapshot::snapshot;
use lite2pg::source::Selection;
use lite2pg::stream::{run, StopWhen};
use lite2pg::verify::verify;

#[tokio::main]
async fn main() -> lite2pg::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, sqlite, url] = args.as_slice() else {
        eprintln!("usage: library SQLITE_FILE POSTGRES_URL");
        std::process::exit(2);
    };
    let source = SourceOptions {
        sqlite: sqlite.into(),
        target: PgTarget::parse(url)?,
        schema: "public".into(),
        selection: Selection::default(),
        source_id: None,
        policies: Default::default(),
    };
    // Snapshot options add how to copy: replace tables already there, with two connections.
    let options = SnapshotOptions { source, replace: true, jobs: 2, progress: false };
    let copied = snapshot(&options).await?;
    println!("copied {} tables", copied.tables.len());
    // Apply everything committed since the copy; `StopWhen::Signal` streams until notified instead.
    let applied = run(&options, StopWhen::CaughtUp, Metrics::new(Default::default()), |_| {}).await?;
    println!("applied up to seq {}", applied.applied_seq);
    let report = verify(&options.source).await?;
    println!("equal: {} ({} tables compared)", report.is_equal(), report.tables.len());
    Ok(())
}
