//! Rows a REPLACE deletes without firing DELETE triggers: the BEFORE triggers that log them, per unique index,
//! and which unique indexes the installed triggers do not probe yet.

use rusqlite::{Connection, OptionalExtension};

use super::triggers::key_expressions;
use super::{CapturedTable, CHANGES_TABLE, WRITTEN_AT};
use crate::error::Result;
use crate::ident::quote;
use crate::sqlite::index_sql::{on_row, parse_index};
use crate::sqlite::introspect::{Index, Table, OWN_PREFIX};

/// Starts the comment naming the indexes a displacement trigger probes.
const PROBES_MARK: &str = "lite2pg probes";

/// `INSERT OR REPLACE`, `REPLACE INTO`, `UPDATE OR REPLACE` (and constraints declared `ON CONFLICT REPLACE`)
/// silently delete rows that collide on a unique index, without firing their DELETE triggers. These BEFORE
/// triggers log the keys of rows an insert or update is about to displace: one statement per unique index that
/// can displace another row, comparing under the index's collations and, for a partial index, its WHERE clause,
/// so each lookup can use that index. The key's own index counts when it compares other than byte for byte: a
/// NOCASE key 'ABC' displaces 'abc'. A statement that then fails takes its log rows with it; one that ignores
/// the conflict (or updates the row, as an UPSERT does) leaves a harmless extra entry for a row that still exists.
pub fn displacement_trigger_sql(id: i64, table: &Table, key_columns: &[String]) -> Vec<String> {
    let indexes: Vec<&Index> = displacing_indexes(table, key_columns).collect();
    let probes: Vec<Probe> = indexes.iter().map(|index| probe(table, index)).collect();
    if probes.is_empty() {
        return Vec::new();
    }
    let key: Vec<String> = key_expressions(table, key_columns);
    let slots: String = (0..key.len()).map(|i| format!(", k{i}")).collect();
    let other_key = key.iter().map(|k| format!("{k} IS NEW.{k} COLLATE BINARY")).collect::<Vec<_>>().join(" AND ");
    let target = quote(&table.name);
    let logs: String = probes
        .iter()
        .map(|probe| {
            format!(
                "INSERT INTO {CHANGES_TABLE} (tbl, {WRITTEN_AT}{slots}) SELECT {id}, julianday('now'), {} FROM {target} WHERE {} AND NOT ({other_key}); ",
                key.join(", "),
                probe.collides
            )
        })
        .collect();
    // An UPDATE that leaves every indexed column alone collides with nothing but its own row.
    let watched: Option<Vec<String>> = probes.iter().try_fold(Vec::<String>::new(), |mut all, probe| {
        for column in probe.reads.as_ref()? {
            if !all.contains(column) {
                all.push(column.clone());
            }
        }
        Some(all)
    });
    let update_of = match watched {
        Some(columns) if !columns.is_empty() => {
            format!("UPDATE OF {}", columns.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", "))
        }
        _ => "UPDATE".to_string(),
    };
    [("insert", "INSERT".to_string()), ("update", update_of)]
        .into_iter()
        .map(|(name, event)| {
            format!(
                "CREATE TRIGGER \"{OWN_PREFIX}{id}_displace_{name}\" BEFORE {event} ON {target} BEGIN {} {logs}END",
                probes_mark(&indexes)
            )
        })
        .collect()
}

/// Names the indexes a displacement trigger probes, in a comment SQLite keeps in the trigger's text (hex, so no
/// name can end the comment), for `unprobed_indexes` to read back.
fn probes_mark(indexes: &[&Index]) -> String {
    let names: String = indexes.iter().map(|index| format!(" {}", crate::mapping::types::hex(index.name.as_bytes()))).collect();
    format!("/* {PROBES_MARK}{names} */")
}

/// The index names in a displacement trigger's `probes_mark`, or `None` for a trigger made before it had one.
fn probed_names(trigger_sql: &str) -> Option<Vec<String>> {
    let start = trigger_sql.find(PROBES_MARK)? + PROBES_MARK.len();
    let end = start + trigger_sql[start..].find("*/")?;
    trigger_sql[start..end].split_whitespace().map(unhex).collect()
}

fn unhex(text: &str) -> Option<String> {
    let bytes =
        (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// Unique indexes of `table` its installed capture triggers do not probe: a REPLACE through one of them since
/// they were installed (the index is newer, or lite2pg was) may have displaced rows without logging them.
pub fn unprobed_indexes(conn: &Connection, table: &Table, captured: &CapturedTable) -> Result<Vec<String>> {
    let trigger_sql = |suffix: &str| -> Result<Option<String>> {
        let name = format!("{OWN_PREFIX}{}_{suffix}", captured.id);
        Ok(conn
            .query_row("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?1", [name], |r| r.get(0))
            .optional()?)
    };
    if trigger_sql("insert")?.is_none() {
        // Not captured now: the table is copied whole when capture is installed.
        return Ok(Vec::new());
    }
    let probed = match trigger_sql("displace_insert")? {
        None => Vec::new(),
        Some(sql) => probed_names(&sql).unwrap_or_else(|| format_2_probes(table, &captured.key_columns)),
    };
    Ok(displacing_indexes(table, &captured.key_columns)
        .map(|index| index.name.clone())
        .filter(|name| !probed.contains(name))
        .collect())
}

/// What displacement triggers of capture format 2 before the mark probed: unique column indexes, not partial,
/// other than the key's.
fn format_2_probes(table: &Table, key_columns: &[String]) -> Vec<String> {
    table
        .indexes
        .iter()
        .filter(|index| index.unique && !index.partial && index.columns.as_ref().is_some_and(|columns| columns != key_columns))
        .map(|index| index.name.clone())
        .collect()
}

/// The unique indexes through which a REPLACE can displace a row with another key.
pub fn displacing_indexes<'a>(table: &'a Table, key_columns: &'a [String]) -> impl Iterator<Item = &'a Index> + 'a {
    table.indexes.iter().filter(|index| index.unique && !is_binary_key_index(index, key_columns))
}

/// The key's own index when it compares byte for byte: a row colliding there has the same key, so it is
/// logged by the capture triggers already.
fn is_binary_key_index(index: &Index, key_columns: &[String]) -> bool {
    let same_columns = index.columns.as_ref().is_some_and(|columns| {
        !key_columns.is_empty() && columns.len() == key_columns.len() && columns.iter().all(|c| key_columns.contains(c))
    });
    same_columns && index.collations.iter().all(|c| c.eq_ignore_ascii_case("BINARY"))
}

/// How to find the existing rows a new row collides with in one unique index.
struct Probe {
    /// SQL condition on an existing row (its columns unqualified) and `NEW`.
    collides: String,
    /// The columns the index reads, or `None` when it could not be read.
    reads: Option<Vec<String>>,
}

/// The probe for `index`; for an index whose SQL cannot be read, every row of the table (safe, but slow on a
/// large table), said in a warning.
fn probe(table: &Table, index: &Index) -> Probe {
    let columns: Vec<String> = table.columns.iter().map(|c| c.name.clone()).collect();
    exact_probe(index, &columns).unwrap_or_else(|| {
        tracing::warn!(
            "cannot read unique index {:?} of table {:?}: every INSERT and UPDATE of the table logs all its rows, so \
             that rows a REPLACE displaces through this index still reach PostgreSQL; writes to a large table slow down",
            index.name,
            table.name
        );
        Probe { collides: "1".to_string(), reads: None }
    })
}

/// Each indexed term equal under the index's collation for the existing row and for `NEW`, and the WHERE clause
/// of a partial index holding for both.
fn exact_probe(index: &Index, columns: &[String]) -> Option<Probe> {
    let (terms, predicate) = match (&index.columns, index.partial) {
        (Some(indexed), false) => (indexed.iter().map(|c| quote(c)).collect(), None),
        _ => {
            let parsed = parse_index(index.sql.as_deref()?)?;
            (parsed.terms, parsed.predicate)
        }
    };
    if terms.len() != index.collations.len() {
        return None;
    }
    let mut reads: Vec<String> = Vec::new();
    let mut on_new = |expr: &str| -> Option<String> {
        let (text, used) = on_row(expr, columns, "NEW")?;
        reads.extend(used.into_iter().filter(|c| !reads.contains(c)).collect::<Vec<_>>());
        Some(text)
    };
    let mut conditions = Vec::new();
    for (term, collation) in terms.iter().zip(&index.collations) {
        conditions.push(format!("({term}) COLLATE {} = ({})", quote(collation), on_new(term)?));
    }
    if let Some(predicate) = predicate {
        conditions.push(format!("({predicate}) AND ({})", on_new(&predicate)?));
    }
    Some(Probe { collides: conditions.join(" AND "), reads: Some(reads) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::capture::install;
    use crate::sqlite::capture::test_support::{log, setup};
    use crate::sqlite::introspect::read_schema;

    #[test]
    fn logs_rows_that_insert_or_replace_displaces() -> Result<()> {
        let (conn, state) = setup("CREATE TABLE u(id INTEGER PRIMARY KEY, email TEXT UNIQUE); INSERT INTO u VALUES (1, 'a');")?;
        let u = state.table("u").unwrap().id;
        conn.execute_batch("INSERT OR REPLACE INTO u VALUES (2, 'a'); INSERT OR IGNORE INTO u VALUES (3, NULL);")?;
        assert_eq!(log(&conn)?, [(u, "1".into()), (u, "2".into()), (u, "3".into())]);
        assert!(conn.execute("INSERT INTO u VALUES (4, 'a')", []).is_err());
        assert_eq!(log(&conn)?.len(), 3, "a failed statement leaves no log rows");
        Ok(())
    }

    /// The keys logged after the first `skip` entries, as `log` shows them.
    fn logged_after(conn: &Connection, skip: usize) -> Result<Vec<String>> {
        Ok(log(conn)?.into_iter().skip(skip).map(|(_, key)| key).collect())
    }

    #[test]
    fn logs_rows_displaced_through_expression_and_partial_indexes() -> Result<()> {
        let (conn, _) = setup(
            "CREATE TABLE p(id INTEGER PRIMARY KEY, name TEXT, active INT);
             CREATE UNIQUE INDEX p_lower ON p(lower(name));
             CREATE TABLE q(id INTEGER PRIMARY KEY, email TEXT, active INT);
             CREATE UNIQUE INDEX q_active ON q(email) WHERE active = 1;",
        )?;
        conn.execute_batch("INSERT INTO p VALUES (1, 'Ann', 1), (2, 'Bob', 1); INSERT INTO q VALUES (1, 'a', 1), (2, 'a', 0);")?;
        let before = log(&conn)?.len();
        conn.execute_batch("INSERT OR REPLACE INTO p VALUES (3, 'ANN', 0);")?;
        assert_eq!(logged_after(&conn, before)?, ["1", "3"]);
        conn.execute_batch("REPLACE INTO q VALUES (3, 'a', 1); REPLACE INTO q VALUES (4, 'a', 0);")?;
        assert_eq!(logged_after(&conn, before + 2)?, ["1", "3", "4"], "only the active row collided");
        conn.execute_batch("UPDATE OR REPLACE p SET name = 'bob' WHERE id = 3;")?;
        assert_eq!(logged_after(&conn, before + 5)?, ["2", "3"]);
        conn.execute_batch("UPDATE p SET active = 0;")?;
        assert_eq!(logged_after(&conn, before + 7)?, ["3"], "an update of other columns probes nothing");
        Ok(())
    }

    #[test]
    fn logs_rows_displaced_under_a_collation() -> Result<()> {
        let (conn, _) = setup(
            "CREATE TABLE n(k TEXT PRIMARY KEY COLLATE NOCASE, v);
             CREATE TABLE r(id INTEGER PRIMARY KEY, name TEXT);
             CREATE UNIQUE INDEX r_name ON r(name COLLATE RTRIM);
             CREATE TABLE plain(k TEXT PRIMARY KEY, v);",
        )?;
        conn.execute_batch("INSERT INTO n VALUES ('abc', 1); INSERT INTO r VALUES (1, 'a');")?;
        conn.execute_batch("INSERT OR REPLACE INTO n VALUES ('ABC', 2); INSERT OR REPLACE INTO r VALUES (2, 'a  ');")?;
        assert_eq!(logged_after(&conn, 2)?, ["'abc'", "'ABC'", "1", "2"]);
        conn.execute_batch("INSERT INTO n VALUES ('x', 1) ON CONFLICT (k) DO UPDATE SET v = 3;")?;
        let triggers: i64 = conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'plain' AND name LIKE '%displace%'",
            [],
            |r| r.get(0),
        )?;
        assert_eq!(triggers, 0, "a key compared byte for byte needs no displacement triggers");
        Ok(())
    }

    #[test]
    fn an_index_it_cannot_read_logs_every_row() -> Result<()> {
        let (conn, _) = setup(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, a, b); CREATE UNIQUE INDEX t_a ON t(a) WHERE t.b > 1;
             INSERT INTO t VALUES (1, 1, 2), (2, 2, 2);",
        )?;
        conn.execute_batch("INSERT OR REPLACE INTO t VALUES (3, 1, 5);")?;
        assert_eq!(logged_after(&conn, 0)?, ["1", "2", "3"]);
        Ok(())
    }

    #[test]
    fn finds_unique_indexes_made_after_its_triggers() -> Result<()> {
        let (mut conn, state) = setup("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT UNIQUE, b TEXT);")?;
        let unprobed = |conn: &Connection| -> Result<Vec<String>> {
            let schema = read_schema(conn)?;
            unprobed_indexes(conn, schema.table("t").unwrap(), state.table("t").unwrap())
        };
        assert_eq!(unprobed(&conn)?, Vec::<String>::new());
        conn.execute_batch("CREATE UNIQUE INDEX \"t*/b\" ON t(lower(b));")?;
        assert_eq!(unprobed(&conn)?, ["t*/b"]);
        let schema = read_schema(&conn)?;
        install(&mut conn, &schema.tables.iter().collect::<Vec<_>>(), None)?;
        assert_eq!(unprobed(&conn)?, Vec::<String>::new(), "probed once the triggers are installed again");
        // A trigger of format 2 without the mark probed the plain unique column only.
        let id = state.table("t").unwrap().id;
        conn.execute_batch(&format!(
            "DROP TRIGGER _lite2pg_{id}_displace_insert; CREATE TRIGGER _lite2pg_{id}_displace_insert BEFORE INSERT ON t BEGIN SELECT 1; END;"
        ))?;
        assert_eq!(unprobed(&conn)?, ["t*/b"]);
        Ok(())
    }
}
