//! The table plan: how one SQLite table becomes one PostgreSQL table — columns and types, the key used to
//! identify rows, and the DDL for the table, its constraints, indexes and foreign keys.

use crate::config::Policies;
use crate::ident::{qualified, quote};
use crate::sqlite::introspect::{ForeignKey, Index, Table};
use crate::types::{choose_pg_type, encode_binary, ColumnStats, PgType, SqlValue};

/// Name of the column added to PostgreSQL tables that have no usable primary key: it holds the SQLite rowid.
pub const ROWID_COLUMN: &str = "__lite2pg_rowid";
/// The column leading every key of a table shared by several sources (`layout = "shared_tables"`).
pub const SOURCE_COLUMN: &str = "source_id";
/// The session setting that fills `SOURCE_COLUMN` by default: lite2pg sets it for the source whose rows it writes,
/// so COPY stays as it is for one source. Statements name the source as a parameter instead (`this_source`).
pub const SOURCE_SETTING: &str = "lite2pg.source_id";

/// `columns` led by the source column when the table is shared.
pub fn scoped(columns: &[String], shared: bool) -> Vec<String> {
    let source = shared.then(|| SOURCE_COLUMN.to_string());
    source.into_iter().chain(columns.iter().cloned()).collect()
}

/// `WHERE`-clause condition keeping `alias`'s rows of the source given as parameter `$param`, or nothing when tables
/// are not shared. A parameter, not the session setting: on Citus, whose workers never see the setting, the
/// statement then runs on the one shard holding the source's rows.
pub fn this_source(alias: &str, shared: bool, param: usize) -> String {
    match shared {
        true => format!(" AND {alias}{} = ${param}", quote(SOURCE_COLUMN)),
        false => String::new(),
    }
}

/// The parameters `this_source` needs: the source id when tables are shared, else none.
pub fn source_param(source_id: &String, shared: bool) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
    match shared {
        true => vec![source_id],
        false => Vec::new(),
    }
}

/// One PostgreSQL column.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnPlan {
    /// The SQLite name, for reading SQLite.
    pub name: String,
    /// The name in PostgreSQL (`pg_column_name`), for every PostgreSQL statement.
    pub pg_name: String,
    pub declared_type: String,
    pub pg_type: PgType,
    pub not_null: bool,
    /// The default as PostgreSQL SQL, when it translates.
    pub default_sql: Option<String>,
}

/// How rows of a table are identified, in the change log and in PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPlan {
    /// The declared primary key: indexes into `columns`, in key order.
    Columns(Vec<usize>),
    /// The SQLite rowid, kept in PostgreSQL as the last column, `ROWID_COLUMN`.
    Rowid,
}

/// Everything needed to create, copy and apply one table.
#[derive(Debug, Clone, PartialEq)]
pub struct TablePlan {
    pub name: String,
    pub columns: Vec<ColumnPlan>,
    pub key: KeyPlan,
    /// How the rowid is reached in SQLite (`None` for WITHOUT ROWID).
    pub rowid_name: Option<&'static str>,
}

impl TablePlan {
    /// Chooses every column's type from the stored-value scan (for a new PostgreSQL table), unless the
    /// settings name one.
    pub fn from_stats(table: &Table, stats: &[ColumnStats], key_columns: &[String], policies: &Policies) -> TablePlan {
        let types: Vec<PgType> = table
            .columns
            .iter()
            .zip(stats)
            .map(|(c, s)| policies.type_override(&table.name, &c.name).unwrap_or_else(|| choose_pg_type(&c.declared_type, s)))
            .collect();
        TablePlan::new(table, &types, key_columns)
    }

    /// Builds the plan for `table` with the given PostgreSQL column types and the key the change log uses
    /// (`key_columns` empty means the rowid).
    pub fn new(table: &Table, pg_types: &[PgType], key_columns: &[String]) -> TablePlan {
        let mut columns: Vec<ColumnPlan> = table
            .columns
            .iter()
            .zip(pg_types)
            .map(|(column, &pg_type)| ColumnPlan {
                name: column.name.clone(),
                pg_name: pg_column_name(&column.name),
                declared_type: column.declared_type.clone(),
                pg_type,
                not_null: column.not_null || (table.without_rowid && table.primary_key.contains(&column.name)),
                default_sql: column.default_sql.as_deref().and_then(|sql| translate_default(sql, pg_type)),
            })
            .collect();
        let key = if key_columns.is_empty() {
            columns.push(ColumnPlan {
                name: ROWID_COLUMN.to_string(),
                pg_name: ROWID_COLUMN.to_string(),
                declared_type: "rowid".to_string(),
                pg_type: PgType::BigInt,
                not_null: true,
                default_sql: None,
            });
            KeyPlan::Rowid
        } else {
            KeyPlan::Columns(
                key_columns
                    .iter()
                    .map(|k| columns.iter().position(|c| &c.name == k).expect("key columns come from the table"))
                    .collect(),
            )
        };
        TablePlan { name: table.name.clone(), columns, key, rowid_name: table.rowid_name() }
    }

    /// Indexes of the key columns in `columns`, in key order.
    pub fn key_indexes(&self) -> Vec<usize> {
        match &self.key {
            KeyPlan::Columns(indexes) => indexes.clone(),
            KeyPlan::Rowid => vec![self.columns.len() - 1],
        }
    }

    /// The key columns, in key order.
    pub fn key_columns(&self) -> impl ExactSizeIterator<Item = &ColumnPlan> + '_ {
        self.key_indexes().into_iter().map(move |i| &self.columns[i])
    }

    /// The key values of a full row, in key order.
    pub fn key_of(&self, row: &[SqlValue]) -> Vec<SqlValue> {
        self.key_indexes().into_iter().map(|i| row[i].clone()).collect()
    }

    /// The SQLite expressions that read a full row, in PostgreSQL column order, for a table aliased `alias`.
    pub fn select_list(&self, alias: &str) -> String {
        self.columns
            .iter()
            .map(|c| match (&self.key, c.name.as_str()) {
                (KeyPlan::Rowid, ROWID_COLUMN) => format!("{alias}.{}", self.rowid_name.expect("rowid tables have a rowid")),
                _ => format!("{alias}.{}", quote(&c.name)),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The SQLite expressions for the key, in key order, for a table aliased `alias`.
    pub fn key_select_list(&self, alias: &str) -> Vec<String> {
        match &self.key {
            KeyPlan::Rowid => vec![format!("{alias}.{}", self.rowid_name.expect("rowid tables have a rowid"))],
            KeyPlan::Columns(indexes) => indexes.iter().map(|i| format!("{alias}.{}", quote(&self.columns[*i].name))).collect(),
        }
    }

    /// The quoted PostgreSQL column list, for COPY and INSERT.
    pub fn pg_column_list(&self) -> String {
        self.columns.iter().map(|c| quote(&c.pg_name)).collect::<Vec<_>>().join(", ")
    }

    /// The PostgreSQL columns of the PostgreSQL primary key: the key, led by the source column when the table is shared.
    pub fn pg_key(&self, shared: bool) -> Vec<String> {
        let key: Vec<String> = self.key_columns().map(|c| c.pg_name.clone()).collect();
        scoped(&key, shared)
    }

    /// `CREATE TABLE` with columns, NOT NULL, defaults and the primary key (led by the source column when shared).
    pub fn create_table_sql(&self, schema: &str, shared: bool) -> String {
        let mut lines: Vec<String> = self
            .columns
            .iter()
            .map(|c| {
                let mut line = format!("{} {}", quote(&c.pg_name), c.pg_type.sql());
                if c.not_null {
                    line.push_str(" NOT NULL");
                }
                if let Some(default) = &c.default_sql {
                    line.push_str(" DEFAULT ");
                    line.push_str(default);
                }
                line
            })
            .collect();
        if shared {
            let source = format!("{} text NOT NULL DEFAULT current_setting('{SOURCE_SETTING}')", quote(SOURCE_COLUMN));
            lines.insert(0, source);
        }
        lines.push(format!("PRIMARY KEY ({})", column_list(&self.pg_key(shared))));
        format!("CREATE TABLE {} (\n  {}\n)", qualified(schema, &self.name), lines.join(",\n  "))
    }
}

/// A statement to run after the data is copied, and what to say if PostgreSQL refuses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostDataStatement {
    pub sql: String,
    pub what: String,
}

/// Unique constraints, indexes and foreign keys for `table`, to build after its rows are copied.
/// `referenced_unique` lists column sets other tables' foreign keys point at (those cannot be deferrable).
pub fn post_data_statements(
    schema: &str,
    table: &Table,
    plan: &TablePlan,
    referenced: &[Vec<String>],
    shared: bool,
) -> Vec<PostDataStatement> {
    let target = qualified(schema, &table.name);
    let referenced: Vec<Vec<String>> = referenced.iter().map(|r| scoped(&pg_column_names(r), shared)).collect();
    let referenced = referenced.as_slice();
    let declared_key_kept = matches!(plan.key, KeyPlan::Columns(_));
    let mut statements = Vec::new();
    if !declared_key_kept && !table.primary_key.is_empty() {
        statements.push(unique_constraint(
            &target,
            &table.name,
            &scoped(&pg_column_names(&table.primary_key), shared),
            referenced,
            None,
        ));
    }
    for index in &table.indexes {
        if index.origin == "pk" {
            continue;
        }
        match (&index.columns, index.unique && !index.partial) {
            // A CREATE UNIQUE INDEX keeps its name, so that dropping the index in SQLite can drop it here.
            (Some(columns), true) => {
                let name = (index.origin == "c").then_some(index.name.as_str());
                statements.push(unique_constraint(
                    &target,
                    &table.name,
                    &scoped(&pg_column_names(columns), shared),
                    referenced,
                    name,
                ))
            }
            (Some(columns), false) if !index.partial => statements.push(PostDataStatement {
                sql: format!(
                    "CREATE {}INDEX {} ON {target} ({})",
                    if index.unique { "UNIQUE " } else { "" },
                    quote(&index.name),
                    column_list(&scoped(&pg_column_names(columns), shared))
                ),
                what: format!("index {}", index.name),
            }),
            _ => statements.extend(expression_index(&target, index)),
        }
    }
    statements
}

fn unique_constraint(
    target: &str,
    table: &str,
    columns: &[String],
    referenced: &[Vec<String>],
    name: Option<&str>,
) -> PostDataStatement {
    let deferral = if referenced.iter().any(|r| r == columns) { "" } else { " DEFERRABLE INITIALLY DEFERRED" };
    let constraint = name.map(|name| format!("CONSTRAINT {} ", quote(name))).unwrap_or_default();
    PostDataStatement {
        sql: format!(
            "ALTER TABLE {target} ADD {constraint}UNIQUE ({}){deferral}",
            columns.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ")
        ),
        what: format!("unique ({}) on {table}", columns.join(", ")),
    }
}

/// Expression and partial indexes: SQLite's own text after `ON table`, tried as is; PostgreSQL may refuse it.
/// Made without UNIQUE while streaming: PostgreSQL checks a unique index at every row (only constraints can be
/// deferred), so a batch that swaps two values would fail in any order; `deferred_unique_indexes` adds it.
fn expression_index(target: &str, index: &Index) -> Option<PostDataStatement> {
    Some(PostDataStatement {
        sql: format!("CREATE INDEX {} ON {target} {}", quote(&index.name), index_body(index)?),
        what: format!("index {}", index.name),
    })
}

/// The index's SQLite text from its column list on: `(terms) [WHERE predicate]`.
fn index_body(index: &Index) -> Option<&str> {
    let sql = index.sql.as_deref()?;
    Some(&sql[sql.find('(')?..])
}

/// Whether PostgreSQL gets `index` without its UNIQUE until cutover.
fn unique_at_cutover(index: &Index) -> bool {
    index.unique && (index.partial || index.columns.is_none())
}

/// For cutover, when PostgreSQL stops following SQLite: the unique expression and partial indexes of `table`,
/// made unique in place of the plain ones streaming used.
pub fn deferred_unique_indexes(schema: &str, table: &Table) -> Vec<PostDataStatement> {
    let target = qualified(schema, &table.name);
    table
        .indexes
        .iter()
        .filter(|index| unique_at_cutover(index))
        .filter_map(|index| {
            Some(PostDataStatement {
                sql: format!(
                    "DROP INDEX IF EXISTS {}; CREATE UNIQUE INDEX {} ON {target} {}",
                    qualified(schema, &index.name),
                    quote(&index.name),
                    index_body(index)?
                ),
                what: format!("unique index {} on {}", index.name, table.name),
            })
        })
        .collect()
}

/// The `n`th foreign key of `table`, deferrable and without actions (SQLite's cascades arrive as their own
/// changes), `NOT VALID` so that rows SQLite let break it do not stop it being made.
pub fn foreign_key_statement(
    schema: &str,
    table: &str,
    n: usize,
    key: &ForeignKey,
    parent_columns: &[String],
    shared: bool,
) -> PostDataStatement {
    let list = |cols: &[String]| column_list(&scoped(&pg_column_names(cols), shared));
    PostDataStatement {
        sql: format!(
            "ALTER TABLE {} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({}) DEFERRABLE INITIALLY DEFERRED NOT VALID",
            qualified(schema, table),
            quote(&constraint_name(table, n)),
            list(&key.columns),
            qualified(schema, &key.parent_table),
            list(parent_columns)
        ),
        what: format!("foreign key {table}({}) -> {}", key.columns.join(", "), key.parent_table),
    }
}

/// `(parent table, parent columns)` for every foreign key, with the parent's primary key filled in.
pub fn referenced_columns(tables: &[&Table]) -> Vec<(String, Vec<String>)> {
    tables
        .iter()
        .flat_map(|t| &t.foreign_keys)
        .filter_map(|fk| {
            let parent = tables.iter().find(|t| t.name == fk.parent_table)?;
            let columns = if fk.parent_columns.is_empty() { parent.primary_key.clone() } else { fk.parent_columns.clone() };
            Some((parent.name.clone(), columns))
        })
        .collect()
}

/// Columns that foreign keys join, directly or through other keys, as groups of `(table, column)` indexes into
/// `tables`, each with at least two members. A key without parent columns points at the parent's primary key;
/// keys to tables not in `tables`, or naming columns they lack, join nothing.
pub fn foreign_key_groups(tables: &[&Table]) -> Vec<Vec<(usize, usize)>> {
    let members: Vec<(usize, usize)> =
        tables.iter().enumerate().flat_map(|(t, table)| (0..table.columns.len()).map(move |c| (t, c))).collect();
    let offsets: Vec<usize> = tables.iter().scan(0, |next, t| Some(std::mem::replace(next, *next + t.columns.len()))).collect();
    let id = |t: usize, c: usize| offsets[t] + c;
    let position = |table: &Table, name: &str| table.columns.iter().position(|c| c.name.eq_ignore_ascii_case(name));
    let mut leader: Vec<usize> = (0..members.len()).collect();
    fn root(leader: &mut [usize], mut i: usize) -> usize {
        while leader[i] != i {
            leader[i] = leader[leader[i]];
            i = leader[i];
        }
        i
    }
    for (t, table) in tables.iter().enumerate() {
        for key in &table.foreign_keys {
            let Some(p) = tables.iter().position(|parent| parent.name.eq_ignore_ascii_case(&key.parent_table)) else { continue };
            let parent_columns = if key.parent_columns.is_empty() { &tables[p].primary_key } else { &key.parent_columns };
            if parent_columns.len() != key.columns.len() {
                continue;
            }
            for (child, parent) in key.columns.iter().zip(parent_columns) {
                if let (Some(c), Some(pc)) = (position(table, child), position(tables[p], parent)) {
                    let (a, b) = (root(&mut leader, id(t, c)), root(&mut leader, id(p, pc)));
                    leader[a] = b;
                }
            }
        }
    }
    let mut groups: Vec<Vec<(usize, usize)>> = Vec::new();
    let mut group_of_root: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
    for (i, member) in members.iter().enumerate() {
        let r = root(&mut leader, i);
        let g = *group_of_root.entry(r).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(*member);
    }
    groups.retain(|g| g.len() > 1);
    groups
}

/// The group of columns `column` of `tables[table]` is joined with by foreign keys (itself alone when none).
pub fn foreign_key_group(tables: &[&Table], table: usize, column: usize) -> Vec<(usize, usize)> {
    foreign_key_groups(tables).into_iter().find(|g| g.contains(&(table, column))).unwrap_or_else(|| vec![(table, column)])
}

/// The PostgreSQL name of a SQLite column (never lite2pg's own rowid column name, which a user column gives up).
pub fn pg_column_name(name: &str) -> String {
    crate::ident::pg_column_name(name, ROWID_COLUMN)
}

/// `pg_column_name` of each of `columns`.
pub fn pg_column_names(columns: &[String]) -> Vec<String> {
    columns.iter().map(|c| pg_column_name(c)).collect()
}

/// `columns` quoted, comma-separated.
pub fn column_list(columns: &[String]) -> String {
    columns.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ")
}

/// A foreign key's constraint name within PostgreSQL's 63 bytes.
pub fn constraint_name(table: &str, n: usize) -> String {
    let suffix = format!("_fk{n}");
    let mut base = table.to_string();
    while base.len() + suffix.len() > crate::ident::PG_MAX_IDENTIFIER_BYTES {
        base.pop();
    }
    base + &suffix
}

/// Translates a SQLite column default into PostgreSQL SQL, or `None` when it does not translate faithfully.
/// Literals are re-written, never passed through.
pub fn translate_default(sqlite_sql: &str, pg_type: PgType) -> Option<String> {
    let mut trimmed = sqlite_sql.trim();
    // SQLite keeps expression defaults in parentheses: DEFAULT (datetime('now')).
    while let Some(inner) = trimmed.strip_prefix('(').and_then(|s| s.strip_suffix(')')) {
        trimmed = inner.trim();
    }
    let upper: String = trimmed.to_ascii_uppercase().split_whitespace().collect();
    match upper.as_str() {
        "CURRENT_TIMESTAMP" | "DATETIME('NOW')" => return timestamp_default(pg_type, "YYYY-MM-DD HH24:MI:SS"),
        "CURRENT_DATE" | "DATE('NOW')" => return timestamp_default(pg_type, "YYYY-MM-DD"),
        "CURRENT_TIME" | "TIME('NOW')" => return time_default(pg_type),
        "STRFTIME('%S','NOW')" | "UNIXEPOCH()" | "UNIXEPOCH('NOW')" if pg_type == PgType::BigInt => {
            return Some("extract(epoch from now())::bigint".into())
        }
        "TRUE" => return literal_default(&SqlValue::Integer(1), pg_type),
        "FALSE" => return literal_default(&SqlValue::Integer(0), pg_type),
        _ => {}
    }
    if let Some(inner) = trimmed.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        return literal_default(&SqlValue::Text(inner.replace("''", "'").into_bytes()), pg_type);
    }
    if let Ok(i) = trimmed.parse::<i64>() {
        return literal_default(&SqlValue::Integer(i), pg_type);
    }
    match trimmed.parse::<f64>() {
        Ok(f) if f.is_finite() => literal_default(&SqlValue::Real(f), pg_type),
        _ => None,
    }
}

fn timestamp_default(pg_type: PgType, text_format: &str) -> Option<String> {
    let with_time = text_format.len() > 10;
    match pg_type {
        PgType::Text => Some(format!("to_char(timezone('UTC', now()), '{text_format}')")),
        PgType::TimestampTz if with_time => Some("now()".into()),
        PgType::Timestamp | PgType::TimestampSeconds | PgType::TimestampMillis if with_time => {
            Some("timezone('UTC', now())".into())
        }
        PgType::Date => Some("(timezone('UTC', now()))::date".into()),
        _ => None,
    }
}

/// SQLite's `CURRENT_TIME`: UTC, whole seconds.
fn time_default(pg_type: PgType) -> Option<String> {
    let now = "date_trunc('second', timezone('UTC', now()))";
    match pg_type {
        PgType::Text => Some(format!("to_char({now}, 'HH24:MI:SS')")),
        PgType::Time => Some(format!("{now}::time")),
        _ => None,
    }
}

/// A literal default, only when the value fits the column type; written by lite2pg, not copied from the file.
/// Dates and times are written in their canonical form (an instant with its UTC offset), so PostgreSQL reads
/// the same value whatever the session's time zone.
fn literal_default(value: &SqlValue, pg_type: PgType) -> Option<String> {
    let mut bytes = Vec::new();
    encode_binary(value, pg_type, &mut bytes).ok()?;
    let quoted = |text: &[u8]| format!("'{}'", String::from_utf8_lossy(text).replace('\'', "''"));
    Some(match (value, pg_type) {
        (SqlValue::Integer(i), PgType::Boolean) => (if *i == 1 { "true" } else { "false" }).to_string(),
        (SqlValue::Integer(i), PgType::SmallInt | PgType::Integer | PgType::BigInt | PgType::Numeric) => i.to_string(),
        (SqlValue::Real(f), PgType::Double | PgType::Numeric) => crate::types::real_to_plain_decimal(*f),
        (_, PgType::NumericScaled { precision, scale }) => crate::types::scaled_decimal(value, precision, scale).ok()?,
        (SqlValue::Integer(_) | SqlValue::Real(_), PgType::Text | PgType::Varchar(_)) => quoted(&value.raw_bytes()),
        (SqlValue::Text(t), PgType::Text | PgType::Varchar(_) | PgType::Json) => quoted(t),
        (SqlValue::Text(_), PgType::TimestampTz) => quoted(&[canonical(&bytes, pg_type)?, b"+00".to_vec()].concat()),
        (
            SqlValue::Text(_),
            PgType::Timestamp | PgType::TimestampSeconds | PgType::TimestampMillis | PgType::Date | PgType::Time,
        ) => quoted(&canonical(&bytes, pg_type)?),
        _ => return None,
    })
}

/// The canonical text of a value PostgreSQL holds in binary form.
fn canonical(bytes: &[u8], pg_type: PgType) -> Option<Vec<u8>> {
    match crate::types::decode_binary(bytes, pg_type)? {
        SqlValue::Text(text) => Some(text),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_keys_group_the_columns_they_join() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE p(a TEXT, b INT, c INT UNIQUE, PRIMARY KEY (a, b));
             CREATE TABLE q(x, y, z REFERENCES p(c), FOREIGN KEY (x, y) REFERENCES P);
             CREATE TABLE r(w REFERENCES q(z), v REFERENCES missing(k), u REFERENCES p(nope));",
        )
        .unwrap();
        let schema = crate::sqlite::introspect::read_schema(&conn).unwrap();
        let tables: Vec<&Table> = schema.tables.iter().collect();
        let name = |(t, c): (usize, usize)| format!("{}.{}", tables[t].name, tables[t].columns[c].name);
        let mut groups: Vec<Vec<String>> =
            foreign_key_groups(&tables).into_iter().map(|g| g.into_iter().map(name).collect()).collect();
        groups.sort();
        assert_eq!(groups, [vec!["p.a", "q.x"], vec!["p.b", "q.y"], vec!["p.c", "q.z", "r.w"]]);
        let alone = foreign_key_group(&tables, 2, 1);
        assert_eq!(alone.into_iter().map(name).collect::<Vec<_>>(), ["r.v"]);
    }

    #[test]
    fn defaults_translate_only_when_faithful() {
        assert_eq!(translate_default("'it''s'", PgType::Text).as_deref(), Some("'it''s'"));
        assert_eq!(translate_default("1", PgType::Boolean).as_deref(), Some("true"));
        assert_eq!(translate_default("-5", PgType::BigInt).as_deref(), Some("-5"));
        assert_eq!(translate_default("2.5", PgType::Double).as_deref(), Some("2.5"));
        assert_eq!(translate_default("'x'", PgType::BigInt), None);
        assert_eq!(translate_default("7", PgType::Bytea), None, "bytea holds blobs only, not 7 as its bytes");
        assert_eq!(translate_default("(datetime('now'))", PgType::Text), translate_default("CURRENT_TIMESTAMP", PgType::Text));
        assert_eq!(translate_default("(date( 'now' ))", PgType::Date).as_deref(), Some("(timezone('UTC', now()))::date"));
        assert_eq!(
            translate_default("(strftime('%s','now'))", PgType::BigInt).as_deref(),
            Some("extract(epoch from now())::bigint")
        );
        assert_eq!(translate_default("(random())", PgType::BigInt), None);
        assert!(translate_default("CURRENT_TIMESTAMP", PgType::Text).unwrap().starts_with("to_char"));
        assert_eq!(translate_default("CURRENT_TIMESTAMP", PgType::TimestampTz).as_deref(), Some("now()"));
        assert_eq!(translate_default("CURRENT_TIMESTAMP", PgType::Timestamp).as_deref(), Some("timezone('UTC', now())"));
        assert_eq!(translate_default("CURRENT_DATE", PgType::TimestampTz), None, "a date is not an instant");
        let instant = translate_default("'2024-01-02T05:04:05+02:00'", PgType::TimestampTz);
        assert_eq!(instant.as_deref(), Some("'2024-01-02 03:04:05+00'"), "the instant, whatever the session's zone");
        assert_eq!(translate_default("'07:08'", PgType::Time).as_deref(), Some("'07:08:00'"));
        assert_eq!(translate_default("'abc'", PgType::Varchar(Some(2))), None);
        assert_eq!(translate_default("'ab'", PgType::Varchar(Some(2))).as_deref(), Some("'ab'"));
        assert_eq!(translate_default("7", PgType::SmallInt).as_deref(), Some("7"));
        let money = PgType::NumericScaled { precision: 12, scale: 2 };
        assert_eq!(translate_default("0", money).as_deref(), Some("0.00"));
        assert_eq!(translate_default("'1.5'", money).as_deref(), Some("1.50"));
        assert_eq!(translate_default("1.005", money), None);
        assert_eq!(
            translate_default("CURRENT_TIME", PgType::Time).as_deref(),
            Some("date_trunc('second', timezone('UTC', now()))::time")
        );
    }
}
