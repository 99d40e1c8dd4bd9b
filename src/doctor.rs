//! Doctor: checks everything a sync depends on, one finding per check, each failure with the fix.

use serde::Serialize;
use tokio_postgres::Client;

use crate::constraints::missing_for_source;
use crate::error::Result;
use crate::mapping::layout::Layout;
use crate::options::SourceOptions;
use crate::pg::apply::existing_plan;
use crate::pg::state::{self, MIN_PG_VERSION};
use crate::sqlite::capture::{self, CaptureState, FORMAT_VERSION};
use crate::sqlite::introspect::{read_schema, SourceSchema};
use crate::sqlite::{journal_mode, open, Access};

/// A change log longer than this while PostgreSQL is reachable means the sync is falling behind.
const LONG_LOG: i64 = 1_000_000;

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    /// Works, but not as well as it could.
    Warn,
    Fail,
}

/// One check's finding.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub outcome: Outcome,
    pub detail: String,
    /// What to do about a warning or failure.
    pub fix: Option<String>,
}

impl Finding {
    fn pass(check: &'static str, detail: impl Into<String>) -> Finding {
        Finding { check, outcome: Outcome::Pass, detail: detail.into(), fix: None }
    }

    fn warn(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding { check, outcome: Outcome::Warn, detail: detail.into(), fix: Some(fix.into()) }
    }

    fn fail(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding { check, outcome: Outcome::Fail, detail: detail.into(), fix: Some(fix.into()) }
    }

    fn from_error(check: &'static str, err: &crate::Error) -> Finding {
        let fix = err.hint().map(str::to_string).unwrap_or_else(|| "see the message".to_string());
        Finding { check, outcome: Outcome::Fail, detail: err.message().to_string(), fix: Some(fix) }
    }
}

/// Runs every check; later checks that need an earlier one's result are skipped when it failed.
pub async fn doctor(options: &SourceOptions) -> Vec<Finding> {
    let mut findings = Vec::new();
    let captured = sqlite_checks(options, &mut findings);
    match options.target.connect().await {
        Ok(client) => {
            findings.push(Finding::pass("postgres reachable", format!("connected to {}", options.target.shown())));
            if let Err(err) = postgres_checks(&client, options, captured.as_ref(), &mut findings).await {
                findings.push(Finding::from_error("postgres checks", &err));
            }
        }
        Err(err) => findings.push(Finding::from_error("postgres reachable", &err)),
    }
    findings
}

/// What the PostgreSQL checks compare with: the file's capture state and schema, read once.
struct Captured {
    state: CaptureState,
    schema: SourceSchema,
}

/// The SQLite file's checks; returns its capture state and schema when it has capture.
fn sqlite_checks(options: &SourceOptions, findings: &mut Vec<Finding>) -> Option<Captured> {
    const FILE: &str = "sqlite file";
    // Read-only: the checks write nothing, and a file this user cannot write is a finding, not a failure to run.
    let conn = match open(&options.sqlite, Access::ReadOnly) {
        Ok(conn) => conn,
        Err(err) => {
            findings.push(Finding::from_error(FILE, &err));
            return None;
        }
    };
    let shown = options.sqlite.display();
    match writable(&options.sqlite) {
        Ok(()) => findings.push(Finding::pass(FILE, format!("{shown} is readable and writable"))),
        Err(reason) => findings.push(Finding::fail(
            FILE,
            format!("{shown}: {reason}"),
            "lite2pg writes its change log and triggers into the file (and SQLite its -wal/-shm files next to it): \
             run it as a user who may write the file and its directory",
        )),
    }
    match journal_mode(&conn) {
        Ok(mode) if mode.eq_ignore_ascii_case("wal") => findings.push(Finding::pass("journal mode", "WAL")),
        Ok(mode) => findings.push(Finding::warn(
            "journal mode",
            format!("{mode}: while lite2pg reads a batch, the application's writers wait"),
            format!(
                "switch to WAL, where readers and the writer do not block each other: sqlite3 {shown} 'PRAGMA journal_mode=WAL'"
            ),
        )),
        Err(err) => findings.push(Finding::from_error("journal mode", &err)),
    }
    let schema = read_schema(&conn).ok();
    let capture = capture_check(&conn, schema.as_ref(), options, findings);
    if capture.is_some() {
        match capture::pending(&conn, 0) {
            Ok(log) if log.entries > LONG_LOG => findings.push(Finding::warn(
                "change log",
                format!("{} entries in the change log", log.entries),
                "the log is pruned once PostgreSQL has the changes: start `lite2pg run` (or see why it stopped with `lite2pg status`)",
            )),
            Ok(log) => findings.push(Finding::pass("change log", format!("{} entries", log.entries))),
            Err(err) => findings.push(Finding::from_error("change log", &err)),
        }
    }
    Some(Captured { state: capture?, schema: schema? })
}

fn writable(path: &std::path::Path) -> std::result::Result<(), String> {
    let metadata = std::fs::metadata(path).map_err(|err| err.to_string())?;
    if metadata.permissions().readonly() {
        return Err("the file is read-only".to_string());
    }
    let directory = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let probe = directory.join(format!(".lite2pg-doctor-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|err| format!("cannot create files in {} ({err})", directory.display()))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

fn capture_check(
    conn: &rusqlite::Connection,
    schema: Option<&SourceSchema>,
    options: &SourceOptions,
    findings: &mut Vec<Finding>,
) -> Option<CaptureState> {
    const CHECK: &str = "capture";
    let state = match capture::read_state(conn) {
        Ok(Some(state)) => state,
        Ok(None) => {
            findings.push(Finding::fail(CHECK, "no lite2pg capture in the file", "run `lite2pg run` (or `lite2pg init`)"));
            return None;
        }
        Err(err) => {
            findings.push(Finding::from_error(CHECK, &err));
            return None;
        }
    };
    let installed = capture::installed_version(conn).ok().flatten().unwrap_or(0);
    let missing = capture::tables_without_triggers(conn, &state).unwrap_or_default();
    let uncaptured: Vec<String> = schema
        .and_then(|schema| options.selection.apply(schema).ok())
        .map(|chosen| chosen.iter().filter(|t| state.table(&t.name).is_none()).map(|t| t.name.clone()).collect())
        .unwrap_or_default();
    if installed != FORMAT_VERSION {
        findings.push(Finding::fail(
            CHECK,
            format!("capture format {installed}, this lite2pg writes {FORMAT_VERSION}"),
            "restart `lite2pg run` (or run `lite2pg init`) to upgrade it in place",
        ));
    } else if !missing.is_empty() {
        findings.push(Finding::fail(
            CHECK,
            format!("triggers missing on {}", missing.join(", ")),
            "rebuilt by a migration, or dropped by hand: `lite2pg run` installs capture again and copies those tables whole",
        ));
    } else if !uncaptured.is_empty() {
        findings.push(Finding::warn(
            CHECK,
            format!("tables not captured: {}", uncaptured.join(", ")),
            "a running `lite2pg run` captures and copies new tables as they appear; leave them out with --exclude",
        ));
    } else {
        findings.push(Finding::pass(
            CHECK,
            format!("format {installed}, {} table(s), source id {}", state.tables.len(), state.source_id),
        ));
    }
    Some(state)
}

async fn postgres_checks(
    client: &Client,
    options: &SourceOptions,
    captured: Option<&Captured>,
    findings: &mut Vec<Finding>,
) -> Result<()> {
    let (major, version) = state::server_version(client).await?;
    findings.push(match major >= MIN_PG_VERSION {
        true => Finding::pass("postgres version", format!("PostgreSQL {version}")),
        false => Finding::fail(
            "postgres version",
            format!("PostgreSQL {version} is too old"),
            format!("lite2pg needs PostgreSQL {MIN_PG_VERSION} or newer"),
        ),
    });
    let schema = &options.schema;
    let privileges = client
        .query_one(
            "SELECT to_regnamespace($1) IS NOT NULL, has_database_privilege(current_database(), 'CREATE'),
                    to_regnamespace($1) IS NOT NULL AND has_schema_privilege($1, 'CREATE'),
                    to_regnamespace('lite2pg') IS NULL OR has_schema_privilege('lite2pg', 'USAGE')",
            &[schema],
        )
        .await?;
    let (schema_exists, create_db, create_schema, use_state): (bool, bool, bool, bool) =
        (privileges.get(0), privileges.get(1), privileges.get(2), privileges.get(3));
    let user = client.query_one("SELECT current_user::text", &[]).await?.get::<_, String>(0);
    // A missing target schema is created by lite2pg, which needs CREATE on the database instead. Into the
    // application's own tables lite2pg creates none: row privileges on them are checked with the tables.
    let existing = into_existing(client, options, captured).await?;
    let may_create_tables = create_schema || (create_db && !schema_exists) || existing;
    let lacking: Vec<&str> = [(!may_create_tables, "CREATE on the target schema"), (!use_state, "USAGE on schema lite2pg")]
        .into_iter()
        .filter_map(|(lacks, what)| lacks.then_some(what))
        .collect();
    findings.push(match lacking.is_empty() {
        true if existing => Finding::pass("privileges", format!("user {user} may use schema lite2pg")),
        true => Finding::pass("privileges", format!("user {user} may create tables in {schema}")),
        false => Finding::fail(
            "privileges",
            format!("user {user} lacks {}", lacking.join(" and ")),
            format!("GRANT CREATE, USAGE ON SCHEMA {schema} TO {user}; GRANT USAGE ON SCHEMA lite2pg TO {user} (see docs/operating.md)"),
        ),
    });
    if !state::state_schema_exists(client).await? {
        findings.push(Finding::fail(
            "lite2pg schema",
            "schema lite2pg does not exist",
            "run `lite2pg snapshot` or `lite2pg run`",
        ));
        return Ok(());
    }
    findings.push(Finding::pass("lite2pg schema", "present"));
    let Some(captured) = captured else { return Ok(()) };
    match state::source(client, &captured.state.source_id).await? {
        Some(row) if row.into_existing => app_tables_check(client, captured, &row.target_schema, findings).await?,
        _ => {
            tables_check(client, captured, findings).await?;
            constraints_check(client, captured, options.policies.layout, findings).await?;
        }
    }
    findings.push(match state::lock_holder(client, &captured.state.source_id).await? {
        Some(holder) => Finding::pass("daemon", format!("`lite2pg run` is syncing this source ({holder})")),
        None => Finding::pass("daemon", "no `lite2pg run` holds this source; start one to keep syncing"),
    });
    Ok(())
}

/// Whether the source syncs into the application's own tables: asked for, or recorded.
async fn into_existing(client: &Client, options: &SourceOptions, captured: Option<&Captured>) -> Result<bool> {
    if options.policies.into_existing {
        return Ok(true);
    }
    let Some(captured) = captured else { return Ok(false) };
    if !state::state_schema_exists(client).await? {
        return Ok(false);
    }
    Ok(state::source(client, &captured.state.source_id).await?.is_some_and(|row| row.into_existing))
}

/// `--into-existing`: each captured table matches the application's (same key, types lite2pg writes); tables
/// and columns only one side has are listed.
async fn app_tables_check(client: &Client, captured: &Captured, schema: &str, findings: &mut Vec<Finding>) -> Result<()> {
    let (capture, sqlite) = (&captured.state, &captured.schema);
    let pairs: Vec<_> = capture.tables.iter().filter_map(|c| sqlite.table(&c.name).map(|t| (t, c))).collect();
    let mut problems = Vec::new();
    for (table, captured) in &pairs {
        if let Err(err) = crate::existing::app_plan(client, schema, table, &captured.key_columns).await {
            problems.push(err.message().to_string());
        }
    }
    let tables: Vec<_> = pairs.iter().map(|(table, _)| *table).collect();
    let relations: Vec<String> = tables.iter().map(|t| crate::ident::qualified(schema, &t.name)).collect();
    let lacking: Vec<String> = client
        .query(
            "SELECT r FROM unnest($1::text[]) AS r
             WHERE to_regclass(r) IS NOT NULL AND NOT (has_table_privilege(r, 'SELECT') AND has_table_privilege(r, 'INSERT')
                   AND has_table_privilege(r, 'UPDATE') AND has_table_privilege(r, 'DELETE'))",
            &[&relations],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    if !lacking.is_empty() {
        problems.push(format!("lite2pg's user may not SELECT, INSERT, UPDATE and DELETE in {}", lacking.join(", ")));
    }
    findings.push(match problems.is_empty() {
        true => Finding::pass("tables", format!("the application's tables in {schema} match SQLite's keys and lite2pg writes their types")),
        false => Finding::fail(
            "tables",
            problems.join("; "),
            "give both sides the same primary key and a type lite2pg writes (see docs/getting-started.md), or leave the table out with \
             --exclude; GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA … to lite2pg's user",
        ),
    });
    let gaps = crate::existing::gaps(client, schema, &tables).await?;
    findings.push(match gaps.is_empty() {
        true => Finding::pass("columns", "SQLite and PostgreSQL have the same tables and columns"),
        false => Finding::warn(
            "columns",
            gaps.sentences().join("; "),
            "migrate the other side too: lite2pg starts writing a table or column, copying its table whole, as soon as both sides have it",
        ),
    });
    Ok(())
}

/// Every NOT NULL, UNIQUE and foreign key SQLite declares is in PostgreSQL.
async fn constraints_check(client: &Client, captured: &Captured, layout: Layout, findings: &mut Vec<Finding>) -> Result<()> {
    let Some(row) = state::source(client, &captured.state.source_id).await? else { return Ok(()) };
    let missing = missing_for_source(client, &row.target_schema, &captured.schema, &captured.state.tables, layout).await?;
    findings.push(match missing.is_empty() {
        true => Finding::pass("constraints", "PostgreSQL has every NOT NULL, UNIQUE and foreign key SQLite declares"),
        false => Finding::warn(
            "constraints",
            format!("PostgreSQL lacks {}", missing.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")),
            "`lite2pg run` makes them after each schema change once PostgreSQL accepts them: a foreign key waits for its \
             parent table; for one PostgreSQL refuses, the daemon's log says why",
        ),
    });
    Ok(())
}

/// Each captured table exists in PostgreSQL with the columns and types lite2pg writes.
async fn tables_check(client: &Client, captured: &Captured, findings: &mut Vec<Finding>) -> Result<()> {
    let (capture, schema) = (&captured.state, &captured.schema);
    let Some(row) = state::source(client, &capture.source_id).await? else {
        findings.push(Finding::fail(
            "tables",
            format!("source {} was never copied to this PostgreSQL", capture.source_id),
            "run `lite2pg snapshot` or `lite2pg run`",
        ));
        return Ok(());
    };
    let mut problems = Vec::new();
    for captured in &capture.tables {
        let Some(table) = schema.table(&captured.name) else {
            problems.push(format!("{:?} is captured but gone from SQLite", captured.name));
            continue;
        };
        if let Err(err) = existing_plan(client, &row.target_schema, table, &captured.key_columns).await {
            problems.push(err.message().to_string());
        }
    }
    findings.push(match problems.is_empty() {
        true => Finding::pass("tables", format!("{} table(s) in {} match SQLite", capture.tables.len(), row.target_schema)),
        false => Finding::fail(
            "tables",
            problems.join("; "),
            "`lite2pg run` follows SQLite's schema changes; a table changed by hand in PostgreSQL is re-created with `lite2pg snapshot --replace`",
        ),
    });
    Ok(())
}
