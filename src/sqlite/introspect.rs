//! Reads a SQLite database's schema: tables, columns, keys, indexes and foreign keys, plus the objects lite2pg
//! reports but does not copy (views, virtual tables, the database's own triggers).

use rusqlite::Connection;

use crate::error::Result;

/// Prefix of every object lite2pg creates inside the SQLite file.
pub const OWN_PREFIX: &str = "_lite2pg_";

/// One column of a SQLite table.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub declared_type: String,
    pub not_null: bool,
    /// The default as SQLite stores it (SQL text), if any.
    pub default_sql: Option<String>,
    /// Set when SQLite computes the column (`GENERATED ALWAYS AS (…)`); lite2pg copies its values like any other.
    pub generated: Option<Generated>,
}

/// How SQLite computes a generated column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// `STORED` (kept in the row) rather than `VIRTUAL` (computed when read).
    pub stored: bool,
    /// The expression inside `AS (…)`, as the table's SQL writes it (`None` if that text could not be read).
    pub expression: Option<String>,
}

/// One index, or the index behind a UNIQUE or PRIMARY KEY constraint.
#[derive(Debug, Clone, PartialEq)]
pub struct Index {
    pub name: String,
    pub unique: bool,
    /// The indexed columns, or `None` when an expression is indexed.
    pub columns: Option<Vec<String>>,
    /// The collation each indexed term is compared with (`BINARY`, `NOCASE`, `RTRIM`, …), in term order.
    pub collations: Vec<String>,
    pub partial: bool,
    /// `c` for CREATE INDEX, `u` for a UNIQUE constraint, `pk` for the primary key.
    pub origin: String,
    /// The CREATE INDEX statement, for indexes created explicitly.
    pub sql: Option<String>,
}

/// One foreign key from a table to a parent table.
#[derive(Debug, Clone, PartialEq)]
pub struct ForeignKey {
    pub columns: Vec<String>,
    pub parent_table: String,
    /// The parent's columns; empty means the parent's primary key.
    pub parent_columns: Vec<String>,
    /// What deleting or updating the parent row does to this row, as SQLite reports it (`NO ACTION`, `CASCADE`,
    /// `SET NULL`, `SET DEFAULT`, `RESTRICT`).
    pub on_delete: String,
    pub on_update: String,
}

/// One ordinary SQLite table.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub name: String,
    pub columns: Vec<Column>,
    pub without_rowid: bool,
    pub strict: bool,
    /// Declared primary-key columns, in key order (empty when none is declared).
    pub primary_key: Vec<String>,
    pub indexes: Vec<Index>,
    pub foreign_keys: Vec<ForeignKey>,
}

impl Table {
    /// The column that is an alias of the rowid (`INTEGER PRIMARY KEY` in a rowid table), if any.
    pub fn rowid_alias(&self) -> Option<&str> {
        if self.without_rowid || self.primary_key.len() != 1 {
            return None;
        }
        let column = self.columns.iter().find(|c| c.name == self.primary_key[0])?;
        column.declared_type.eq_ignore_ascii_case("INTEGER").then_some(column.name.as_str())
    }

    /// A name that reaches the rowid in this table (a column may shadow `rowid`), or `None` for WITHOUT ROWID.
    pub fn rowid_name(&self) -> Option<&'static str> {
        if self.without_rowid {
            return None;
        }
        ["rowid", "_rowid_", "oid"]
            .into_iter()
            .find(|candidate| !self.columns.iter().any(|c| c.name.eq_ignore_ascii_case(candidate)))
    }
}

/// Something in the SQLite file that lite2pg reports but does not copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub kind: &'static str,
    pub name: String,
}

/// Everything lite2pg reads from a SQLite schema.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceSchema {
    pub tables: Vec<Table>,
    pub skipped: Vec<Skipped>,
}

impl SourceSchema {
    /// The table named `name`, if it is an ordinary table.
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }
}

/// Reads the schema of the main database.
pub fn read_schema(conn: &Connection) -> Result<SourceSchema> {
    if !conn.is_autocommit() {
        return read_schema_in_transaction(conn);
    }
    // Each statement would otherwise see the schema as it is then: a table an application drops or renames between
    // the listing and the reading of its columns would break the read (seen with migrations while streaming).
    conn.execute_batch("BEGIN")?;
    let schema = read_schema_in_transaction(conn);
    let ended = conn.execute_batch("COMMIT");
    let schema = schema?;
    ended?;
    Ok(schema)
}

fn read_schema_in_transaction(conn: &Connection) -> Result<SourceSchema> {
    let mut schema = SourceSchema::default();
    let mut stmt = conn.prepare("SELECT name, type, wr, strict FROM pragma_table_list WHERE schema = 'main' ORDER BY name")?;
    let listed: Vec<(String, String, bool, bool)> =
        stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))?.collect::<Result<_, _>>()?;
    for (name, kind, without_rowid, strict) in listed {
        if name.starts_with("sqlite_") || name.starts_with(OWN_PREFIX) {
            continue;
        }
        match kind.as_str() {
            "table" => {
                let table = read_table(conn, name, without_rowid, strict)?;
                match table.primary_key.is_empty() && !without_rowid && table.rowid_name().is_none() {
                    // Columns named rowid, _rowid_ and oid hide the rowid, and no key names the rows instead.
                    true => schema
                        .skipped
                        .push(Skipped { kind: "table without a key whose columns hide the rowid", name: table.name }),
                    false => schema.tables.push(table),
                }
            }
            "view" => schema.skipped.push(Skipped { kind: "view", name }),
            "virtual" => schema.skipped.push(Skipped { kind: "virtual table", name }),
            "shadow" => schema.skipped.push(Skipped { kind: "virtual table storage", name }),
            _ => schema.skipped.push(Skipped { kind: "unknown object", name }),
        }
    }
    let mut triggers = conn.prepare(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name NOT LIKE '\\_lite2pg\\_%' ESCAPE '\\' ORDER BY name",
    )?;
    for name in triggers.query_map([], |row| row.get::<_, String>(0))? {
        schema.skipped.push(Skipped { kind: "trigger", name: name? });
    }
    Ok(schema)
}

fn read_table(conn: &Connection, name: String, without_rowid: bool, strict: bool) -> Result<Table> {
    let mut stmt =
        conn.prepare("SELECT name, type, \"notnull\", dflt_value, pk, hidden FROM pragma_table_xinfo(?1) ORDER BY cid")?;
    let mut columns = Vec::new();
    let mut key_positions = Vec::new();
    let expressions = generated_expressions(conn, &name)?;
    let rows = stmt.query_map([&name], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, Option<String>>(1)?.unwrap_or_default(),
            row.get::<_, bool>(2)?,
            row.get::<_, Option<String>>(3)?,
            row.get::<_, i64>(4)?,
            row.get::<_, i64>(5)?,
        ))
    })?;
    for row in rows {
        let (column, declared_type, not_null, default_sql, pk, hidden) = row?;
        if hidden == 1 {
            continue;
        }
        if pk > 0 {
            key_positions.push((pk, column.clone()));
        }
        // pragma table_xinfo: hidden 2 is a VIRTUAL generated column, 3 a STORED one.
        let generated = matches!(hidden, 2 | 3).then(|| Generated {
            stored: hidden == 3,
            expression: expressions.iter().find(|(c, _)| c.eq_ignore_ascii_case(&column)).map(|(_, e)| e.clone()),
        });
        columns.push(Column { name: column, declared_type, not_null, default_sql, generated });
    }
    key_positions.sort();
    let indexes = read_indexes(conn, &name)?;
    let foreign_keys = read_foreign_keys(conn, &name)?;
    Ok(Table {
        name,
        columns,
        without_rowid,
        strict,
        primary_key: key_positions.into_iter().map(|(_, c)| c).collect(),
        indexes,
        foreign_keys,
    })
}

/// The generated columns' expressions, read from the table's CREATE TABLE text (SQLite keeps them nowhere else).
fn generated_expressions(conn: &Connection, table: &str) -> Result<Vec<(String, String)>> {
    let sql: Option<String> =
        conn.query_row("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1", [table], |row| row.get(0))?;
    Ok(sql.as_deref().map(crate::sqlite::index_sql::generated_columns).unwrap_or_default())
}

fn read_indexes(conn: &Connection, table: &str) -> Result<Vec<Index>> {
    let mut stmt = conn.prepare(
        "SELECT il.name, il.\"unique\", il.origin, il.partial, m.sql
         FROM pragma_index_list(?1) AS il LEFT JOIN sqlite_master AS m ON m.type = 'index' AND m.name = il.name
         ORDER BY il.name",
    )?;
    let listed: Vec<(String, bool, String, bool, Option<String>)> = stmt
        .query_map([table], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?)))?
        .collect::<Result<_, _>>()?;
    let mut terms_stmt = conn.prepare("SELECT cid, name, coll FROM pragma_index_xinfo(?1) WHERE key ORDER BY seqno")?;
    listed
        .into_iter()
        .map(|(name, unique, origin, partial, sql)| {
            let terms: Vec<(i64, Option<String>, String)> =
                terms_stmt.query_map([&name], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?.collect::<Result<_, _>>()?;
            let collations = terms.iter().map(|(_, _, collation)| collation.clone()).collect();
            let columns = terms.into_iter().map(|(cid, column, _)| if cid >= 0 { column } else { None }).collect();
            Ok(Index { name, unique, columns, collations, partial, origin, sql })
        })
        .collect()
}

fn read_foreign_keys(conn: &Connection, table: &str) -> Result<Vec<ForeignKey>> {
    let mut stmt = conn.prepare(
        "SELECT id, \"table\", \"from\", \"to\", on_delete, on_update FROM pragma_foreign_key_list(?1) ORDER BY id, seq",
    )?;
    type Row = (i64, String, String, Option<String>, String, String);
    let rows: Vec<Row> = stmt
        .query_map([table], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?)))?
        .collect::<Result<_, _>>()?;
    let mut keys: Vec<(i64, ForeignKey)> = Vec::new();
    for (id, parent_table, from, to, on_delete, on_update) in rows {
        if keys.last().map(|(last, _)| *last) != Some(id) {
            let key = ForeignKey { columns: Vec::new(), parent_table, parent_columns: Vec::new(), on_delete, on_update };
            keys.push((id, key));
        }
        let key = &mut keys.last_mut().expect("pushed above").1;
        key.columns.push(from);
        key.parent_columns.extend(to);
    }
    Ok(keys.into_iter().map(|(_, key)| key).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_table_kind() -> Result<()> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(
            "CREATE TABLE parent(id INTEGER PRIMARY KEY, email TEXT UNIQUE NOT NULL DEFAULT 'x');
             CREATE TABLE child(a TEXT, b INT, parent_id INT REFERENCES parent, PRIMARY KEY (b, a)) WITHOUT ROWID;
             CREATE TABLE loose(rowid_ TEXT, rowid INT);
             CREATE INDEX loose_expr ON loose(lower(rowid_));
             CREATE VIEW v AS SELECT 1;
             CREATE TRIGGER t AFTER INSERT ON parent BEGIN SELECT 1; END;
             CREATE TABLE _lite2pg_meta(k);",
        )?;
        let schema = read_schema(&conn)?;
        let names: Vec<_> = schema.tables.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["child", "loose", "parent"]);
        let parent = schema.table("parent").unwrap();
        assert_eq!(parent.rowid_alias(), Some("id"));
        assert_eq!(parent.columns[1].default_sql.as_deref(), Some("'x'"));
        assert!(parent.indexes.iter().any(|i| i.unique && i.origin == "u"));
        let child = schema.table("child").unwrap();
        assert!(child.without_rowid);
        assert_eq!(child.primary_key, ["b", "a"]);
        assert_eq!(child.rowid_name(), None);
        assert_eq!(child.foreign_keys[0].parent_table, "parent");
        let loose = schema.table("loose").unwrap();
        assert_eq!(loose.rowid_name(), Some("_rowid_"));
        assert_eq!(loose.indexes[0].columns, None);
        assert_eq!(loose.indexes[0].collations, ["BINARY"]);
        assert_eq!(parent.columns[1].generated, None);
        assert_eq!(schema.skipped, [Skipped { kind: "view", name: "v".into() }, Skipped { kind: "trigger", name: "t".into() }]);
        Ok(())
    }

    #[test]
    fn a_table_without_a_key_whose_columns_hide_the_rowid_is_skipped() -> Result<()> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(
            "CREATE TABLE imported(rowid, _rowid_, oid, v); CREATE TABLE keyed(rowid, _rowid_, oid PRIMARY KEY, v);",
        )?;
        let schema = read_schema(&conn)?;
        assert_eq!(schema.tables.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["keyed"]);
        assert_eq!(
            schema.skipped,
            [Skipped { kind: "table without a key whose columns hide the rowid", name: "imported".into() }]
        );
        Ok(())
    }

    #[test]
    fn reads_generated_columns_and_their_expressions() -> Result<()> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(
            "CREATE TABLE t(a INT, b TEXT CHECK (CAST(b AS TEXT) <> 'as'),
                            [Total] INT GENERATED ALWAYS AS (a * (a + 1)) STORED,
                            v AS (lower(b) || ','),
                            \"w, x\" TEXT GENERATED ALWAYS AS (b) VIRTUAL NOT NULL);
             ALTER TABLE t ADD COLUMN later AS (a + 1);",
        )?;
        let schema = read_schema(&conn)?;
        let generated: Vec<_> =
            schema.tables[0].columns.iter().map(|c| (c.name.as_str(), c.declared_type.as_str(), c.generated.clone())).collect();
        let made = |stored: bool, expression: &str| Some(Generated { stored, expression: Some(expression.to_string()) });
        assert_eq!(
            generated,
            [
                ("a", "INT", None),
                ("b", "TEXT", None),
                ("Total", "INT", made(true, "a * (a + 1)")),
                ("v", "", made(false, "lower(b) || ','")),
                ("w, x", "TEXT", made(false, "b")),
                ("later", "", made(false, "a + 1")),
            ]
        );
        Ok(())
    }
}
