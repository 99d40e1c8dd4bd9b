//! How reports are printed for people: aligned tables and short sentences (JSON output is their serde form).

use crate::bench::BenchReport;
use crate::cutover::CutoverReport;
use crate::doctor::{Finding, Outcome};
use crate::pg::state::StoredReject;
use crate::pg::PgTarget;
use crate::snapshot::SnapshotReport;
use crate::status::Status;
use crate::stream::RunSummary;
use crate::verify::VerifyReport;

/// Three significant digits, without exponent.
fn figure(value: f64) -> String {
    match value.abs() {
        v if v >= 100.0 => format!("{value:.0}"),
        v if v >= 10.0 => format!("{value:.1}"),
        _ => format!("{value:.2}"),
    }
}

pub(super) fn print_verify(report: &VerifyReport) {
    println!("Compared source {} at position {} in {:.2}s:", report.source_id, report.applied_seq, report.seconds);
    let rows: Vec<Vec<String>> = report
        .tables
        .iter()
        .map(|t| {
            let mut result: Vec<String> = [(t.missing, "missing"), (t.extra, "extra"), (t.differing, "differing")]
                .into_iter()
                .filter(|(n, _)| *n > 0)
                .map(|(n, what)| format!("{n} {what}"))
                .collect();
            if result.is_empty() {
                result.push("equal".into());
            }
            let known: Vec<String> = [(t.known_rejects, "known reject(s)"), (t.pending, "pending")]
                .into_iter()
                .filter(|(n, _)| *n > 0)
                .map(|(n, what)| format!("{n} {what}"))
                .collect();
            if !known.is_empty() {
                result.push(format!("({})", known.join(", ")));
            }
            vec![
                table_label(&t.table, &t.postgres_table),
                t.sqlite_rows.to_string(),
                t.postgres_rows.to_string(),
                result.join(", "),
            ]
        })
        .collect();
    print_table(&["table", "sqlite rows", "postgres rows", "result"], &rows);
    for table in report.tables.iter().filter(|t| !t.examples.is_empty()) {
        let examples: Vec<String> = table.examples.iter().map(|e| format!("{:?} {}", e.kind, e.key).to_lowercase()).collect();
        println!("  {} examples: {}", table.table, examples.join("; "));
    }
    let rows: u64 = report.tables.iter().map(|t| t.sqlite_rows).sum();
    match report.is_equal() {
        true => println!("EQUAL: {} table(s), {rows} row(s) hold the same values in SQLite and PostgreSQL", report.tables.len()),
        false => {
            println!("DIFFERENT: {} row(s) differ; `lite2pg verify --repair` re-applies them from SQLite", report.differences())
        }
    }
    if let Some(error) = &report.sync_error {
        let pending: u64 = report.tables.iter().map(|t| t.pending).sum();
        println!(
            "WARNING: the sync stopped on an error and has applied nothing since; {pending} pending key(s) wait on it: {error}"
        );
    }
}

pub(super) fn print_status(status: &Status) {
    let or_unknown = |value: Option<String>| value.unwrap_or_else(|| "unknown".into());
    let lines = [
        ("source", status.source_id.clone()),
        ("sqlite", status.sqlite.clone()),
        (
            "postgres",
            match &status.postgres_error {
                Some(err) => format!("{} (unreachable: {err})", status.postgres),
                None => status.postgres.clone(),
            },
        ),
        ("daemon", status.daemon.clone().map_or("not running".into(), |holder| format!("running ({holder})"))),
        ("snapshot", if status.snapshot_done { "done".into() } else { "not done".into() }),
        (
            "target",
            match status.into_existing {
                true => "the application's own tables (--into-existing)".into(),
                false => "tables lite2pg created".into(),
            },
        ),
        (
            "applied seq",
            format!("{} (newest in SQLite {})", or_unknown(status.applied_seq.map(|s| s.to_string())), status.newest_seq),
        ),
        ("pending", or_unknown(status.pending_changes.map(|n| format!("{n} change(s)")))),
        ("lag", or_unknown(status.lag_seconds.map(|s| format!("{s:.1}s")))),
        (
            "to copy",
            or_unknown(status.tables_to_copy.as_ref().map(|tables| match tables.is_empty() {
                true => "none".into(),
                false => format!("{} table(s) the next batch copies whole: {}", tables.len(), tables.join(", ")),
            })),
        ),
        ("rejects", or_unknown(status.rejects.map(|n| n.to_string()))),
        ("last applied", status.last_applied_at.clone().unwrap_or_else(|| "never".into())),
        (
            "last error",
            match (&status.last_error, &status.last_error_at) {
                (Some(error), Some(at)) => format!("{error} (at {at})"),
                (Some(error), None) => error.clone(),
                (None, _) => "none".into(),
            },
        ),
    ];
    for (label, value) in lines {
        println!("{label:<13}{value}");
    }
    let rows: Vec<Vec<String>> = status
        .tables
        .iter()
        .map(|t| {
            let postgres_rows = or_unknown(t.postgres_rows.map(|n| n.to_string()));
            vec![table_label(&t.table, &t.postgres_table), t.sqlite_rows.to_string(), postgres_rows]
        })
        .collect();
    println!();
    print_table(&["table", "sqlite rows", "postgres rows"], &rows);
    if let Some(gaps) = status.gaps.as_ref().filter(|gaps| !gaps.is_empty()) {
        println!("\nonly on one side:");
        for gap in gaps.sentences() {
            println!("  - {gap}");
        }
    }
    if let Some(missing) = status.missing_constraints.as_ref().filter(|missing| !missing.is_empty()) {
        println!("\nconstraints SQLite declares that PostgreSQL lacks:");
        for constraint in missing {
            println!("  - {constraint}");
        }
    }
}

/// A table's name, with its PostgreSQL name when that is shortened.
fn table_label(sqlite: &str, postgres: &str) -> String {
    match sqlite == postgres {
        true => sqlite.to_string(),
        false => format!("{sqlite} (PostgreSQL: {postgres})"),
    }
}

pub(super) fn print_run_summary(summary: &RunSummary) {
    println!(
        "source {} at seq {}: {} batch(es), {} upserts, {} deletes, {} rejects",
        summary.source_id, summary.applied_seq, summary.batches, summary.upserts, summary.deletes, summary.rejects
    );
}

/// Prints a snapshot's mapping, notes and summary.
pub fn print_snapshot(report: &SnapshotReport, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(report).expect("reports serialize"));
        return;
    }
    let mapping: Vec<Vec<String>> = report
        .mapping
        .iter()
        .map(|m| vec![m.table.clone(), m.column.clone(), m.declared_type.clone(), m.stored.clone(), m.pg_type.clone()])
        .collect();
    println!("Type mapping:");
    print_table(&["table", "column", "declared", "stored", "postgres"], &mapping);
    if !report.notes.is_empty() {
        println!("\nNotes:");
        for note in &report.notes {
            println!("  - {note}");
        }
    }
    let mut rows: Vec<Vec<String>> = report
        .tables
        .iter()
        .map(|t| {
            vec![t.table.clone(), t.rows.to_string(), human_bytes(t.bytes), format!("{:.2}", t.seconds), t.rejects.to_string()]
        })
        .collect();
    let (rows_total, bytes_total) = report.tables.iter().fold((0, 0), |(r, b), t| (r + t.rows, b + t.bytes));
    rows.push(vec![
        "total".into(),
        rows_total.to_string(),
        human_bytes(bytes_total),
        format!("{:.2}", report.seconds),
        report.rejects().to_string(),
    ]);
    println!("\nCopied into schema {} (source {}, position {}):", report.schema, report.source_id, report.snapshot_seq);
    print_table(&["table", "rows", "bytes", "seconds", "rejects"], &rows);
}

/// Prints rows under headers, columns padded to their widest cell.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("  {}", padded.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// Prints a bench report, each measure beside its raw limit.
pub(super) fn print_bench(report: &BenchReport, target: &PgTarget) {
    println!(
        "lite2pg {} on {} cores, {:.0} GiB; PostgreSQL {} at {}",
        env!("CARGO_PKG_VERSION"),
        report.cores,
        report.memory_gib,
        report.postgres_version,
        target.shown()
    );
    let rows: Vec<Vec<String>> = report
        .measures
        .iter()
        .map(|m| {
            vec![
                m.measure.clone(),
                format!("{} {}", figure(m.lite2pg), m.unit),
                format!("{} {}", figure(m.raw_limit), m.unit),
                format!("{:.2}x", m.ratio),
                m.raw_limit_is.clone(),
            ]
        })
        .collect();
    print_table(&["measure", "lite2pg", "raw limit", "cost vs raw", "raw limit is"], &rows);
}

/// Prints what a cutover ran (or would run) and what is left to port by hand.
pub(super) fn print_cutover(report: &CutoverReport, dry_run: bool) {
    let verb = if dry_run { "Would run" } else { "Ran" };
    println!("{verb} in PostgreSQL:");
    for statement in &report.statements {
        println!("  {statement};");
    }
    if !report.generated.is_empty() {
        println!("\nGenerated columns PostgreSQL computes now (each is now the last column of its table):");
        println!("  {}", report.generated.join(", "));
    }
    if !report.not_carried.is_empty() {
        println!("\nNot carried over (port by hand):");
        for item in &report.not_carried {
            println!("  - {}:\n      {}", item.what, item.sql.replace('\n', "\n      "));
        }
    }
    match (dry_run, report.capture_removed) {
        (true, _) => println!(
            "\nDry run: all of the above was tried in PostgreSQL and rolled back; nothing was changed. SQLite and PostgreSQL are equal, so the cutover can go ahead."
        ),
        (false, removed) => println!(
            "\nSource {} is promoted: PostgreSQL is the application's database now{}. Point the application at PostgreSQL.",
            report.source_id,
            if removed { " and capture is removed from the SQLite file" } else { "" }
        ),
    }
}

/// Prints the values PostgreSQL could not hold.
pub(super) fn print_rejects(rejects: &[StoredReject], source_id: &str) {
    if rejects.is_empty() {
        println!("no rejects: PostgreSQL holds every value of source {}", source_id);
    } else {
        let rows: Vec<Vec<String>> = rejects
            .iter()
            .map(|r| {
                [&r.table, &r.key, &r.column, &r.reason, &r.storage_class, &r.raw, &r.rejected_at].map(String::clone).to_vec()
            })
            .collect();
        print_table(&["table", "key", "column", "reason", "stored as", "raw", "rejected at"], &rows);
        println!("{} row(s) are not in PostgreSQL; each is applied and cleared once its value fits", rejects.len());
    }
}

/// Prints doctor's findings, each with its fix.
pub(super) fn print_findings(findings: &[Finding]) {
    for finding in findings {
        let mark = match finding.outcome {
            Outcome::Pass => "ok  ",
            Outcome::Warn => "warn",
            Outcome::Fail => "FAIL",
        };
        println!("[{mark}] {}: {}", finding.check, finding.detail);
        if let Some(fix) = &finding.fix {
            println!("       fix: {fix}");
        }
    }
}
