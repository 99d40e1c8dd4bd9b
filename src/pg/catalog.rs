//! Questions to PostgreSQL's catalog (`pg_class`, `pg_attribute`, `pg_constraint`, `pg_index`, …): which tables,
//! columns, keys and constraints exist and how they are typed. lite2pg's catalog queries live here.

use tokio_postgres::GenericClient;

use crate::error::Result;
use crate::ident::qualified;

/// Whether `schema.table` exists in PostgreSQL.
pub async fn table_exists(client: &impl GenericClient, schema: &str, table: &str) -> Result<bool> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2)",
            &[&schema, &crate::ident::pg_name(table)],
        )
        .await?;
    Ok(row.get(0))
}

/// A column of a PostgreSQL table, as the catalog has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// `format_type`'s spelling, e.g. `character varying(20)`.
    pub type_name: String,
    /// `GENERATED ALWAYS AS (…) STORED`: PostgreSQL computes it, nothing may write it.
    pub generated: bool,
    pub not_null: bool,
}

/// A table's columns in their order, or `None` when the table does not exist.
pub async fn columns(client: &impl GenericClient, schema: &str, table: &str) -> Result<Option<Vec<Column>>> {
    let rows = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attgenerated <> '', a.attnotnull FROM pg_attribute a
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[&qualified(schema, table)],
        )
        .await?;
    Ok((!rows.is_empty()).then(|| {
        rows.iter().map(|r| Column { name: r.get(0), type_name: r.get(1), generated: r.get(2), not_null: r.get(3) }).collect()
    }))
}

/// A table's columns and types as they are now, or `None` when the table does not exist.
pub async fn table_columns(client: &impl GenericClient, schema: &str, table: &str) -> Result<Option<Vec<(String, String)>>> {
    Ok(columns(client, schema, table).await?.map(|found| found.into_iter().map(|c| (c.name, c.type_name)).collect()))
}

/// A column of one of several tables: `(table, column, type, generated)`, ordered by table and position.
pub type TableColumn = (String, String, String, bool);

/// Every column of the tables of `schema` named `tables` (PostgreSQL names), by table and position.
pub async fn columns_of_tables(client: &impl GenericClient, schema: &str, tables: &[String]) -> Result<Vec<TableColumn>> {
    let rows = client
        .query(
            "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod), a.attgenerated <> ''
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             WHERE n.nspname = $1 AND c.relname = ANY ($2) AND c.relkind IN ('r', 'p')
             ORDER BY c.relname, a.attnum",
            &[&schema, &tables],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect())
}

/// The ordinary and partitioned tables of `schema` (not partitions), by name.
pub async fn tables_in_schema(client: &impl GenericClient, schema: &str) -> Result<Vec<String>> {
    let rows = client
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY c.relname",
            &[&schema],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The foreign keys between the tables of `schema` named `tables` (PostgreSQL names), as `(child, parent)`
/// pairs; a table referencing itself is left out.
pub async fn foreign_key_pairs(client: &impl GenericClient, schema: &str, tables: &[String]) -> Result<Vec<(String, String)>> {
    let rows = client
        .query(
            "SELECT child.relname::text, parent.relname::text FROM pg_constraint c
             JOIN pg_class child ON child.oid = c.conrelid JOIN pg_class parent ON parent.oid = c.confrelid
             JOIN pg_namespace n ON n.oid = child.relnamespace
             WHERE c.contype = 'f' AND n.nspname = $1 AND parent.relnamespace = child.relnamespace
               AND child.relname = ANY ($2) AND parent.relname = ANY ($2) AND child.oid <> parent.oid",
            &[&schema, &tables],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The columns of `relation` (quoted and qualified) that own a sequence, with the sequence's name (quoted).
pub async fn serial_sequences(client: &impl GenericClient, relation: &str) -> Result<Vec<(String, String)>> {
    let rows = client
        .query(
            "SELECT a.attname::text, pg_get_serial_sequence($1, a.attname) FROM pg_attribute a
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
               AND pg_get_serial_sequence($1, a.attname) IS NOT NULL",
            &[&relation],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// A table's primary key: its constraint's name and columns in key order.
pub async fn primary_key(client: &impl GenericClient, schema: &str, table: &str) -> Result<Option<(String, Vec<String>)>> {
    let row = client
        .query_opt(
            "SELECT c.conname::text, array_agg(a.attname::text ORDER BY k.ord) FROM pg_constraint c
             CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
             WHERE c.conrelid = to_regclass($1) AND c.contype = 'p' GROUP BY c.conname",
            &[&qualified(schema, table)],
        )
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// A plain unique index (no expression, no predicate, not the primary key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniqueIndex {
    pub name: String,
    /// The unique constraint it backs, if any.
    pub constraint: Option<String>,
    pub columns: Vec<String>,
}

/// A table's plain unique indexes (those of its unique constraints too), other than the primary key.
pub async fn unique_indexes(client: &impl GenericClient, schema: &str, table: &str) -> Result<Vec<UniqueIndex>> {
    let rows = client
        .query(
            "SELECT ic.relname::text, (SELECT conname::text FROM pg_constraint WHERE conindid = i.indexrelid AND contype = 'u'),
                    array_agg(a.attname::text ORDER BY k.ord)
             FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
             CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             WHERE i.indrelid = to_regclass($1) AND i.indisunique AND NOT i.indisprimary
               AND i.indexprs IS NULL AND i.indpred IS NULL
             GROUP BY i.indexrelid, ic.relname",
            &[&qualified(schema, table)],
        )
        .await?;
    Ok(rows.iter().map(|r| UniqueIndex { name: r.get(0), constraint: r.get(1), columns: r.get(2) }).collect())
}

/// Column sets of a table's unique constraints and plain unique indexes, other than the primary key.
pub async fn unique_sets(client: &impl GenericClient, schema: &str, table: &str) -> Result<Vec<Vec<String>>> {
    Ok(unique_indexes(client, schema, table).await?.into_iter().map(|index| index.columns).collect())
}

/// A table's unique expression and partial indexes that back no constraint, with their definitions.
pub async fn unique_indexes_beyond_constraints(
    client: &impl GenericClient,
    schema: &str,
    table: &str,
) -> Result<Vec<(String, String)>> {
    let rows = client
        .query(
            "SELECT c.relname::text, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             WHERE i.indrelid = to_regclass($1) AND i.indisunique AND NOT i.indisprimary
               AND (i.indexprs IS NOT NULL OR i.indpred IS NOT NULL)
               AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)",
            &[&qualified(schema, table)],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// What a foreign key references: its columns, the parent table and the parent's columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub columns: Vec<String>,
    pub parent: String,
    pub parent_columns: Vec<String>,
}

/// A table's foreign keys, by constraint name.
pub async fn foreign_keys(client: &impl GenericClient, schema: &str, table: &str) -> Result<Vec<(String, Reference)>> {
    let columns_of = |keys: &str, relation: &str| {
        format!(
            "(SELECT array_agg(a.attname::text ORDER BY k.ord) FROM unnest(c.{keys}) WITH ORDINALITY AS k(attnum, ord)
              JOIN pg_attribute a ON a.attrelid = c.{relation} AND a.attnum = k.attnum)"
        )
    };
    let rows = client
        .query(
            &format!(
                "SELECT c.conname::text, {}, p.relname::text, {} FROM pg_constraint c JOIN pg_class p ON p.oid = c.confrelid
                 WHERE c.conrelid = to_regclass($1) AND c.contype = 'f'",
                columns_of("conkey", "conrelid"),
                columns_of("confkey", "confrelid")
            ),
            &[&qualified(schema, table)],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), Reference { columns: r.get(1), parent: r.get(2), parent_columns: r.get(3) })).collect())
}

/// The statements that make again what dropping `column` of `relation` (quoted and qualified) drops: constraints
/// (other tables' foreign keys to it last) and indexes on it. `Err` describes a dependent of another kind (a
/// view, …).
pub async fn column_dependents(
    client: &impl GenericClient,
    relation: &str,
    column: &str,
) -> Result<std::result::Result<Vec<String>, String>> {
    let rows = client
        .query(
            "SELECT DISTINCT CASE WHEN c.oid IS NOT NULL
                         THEN format('ALTER TABLE %s ADD CONSTRAINT %I %s', c.conrelid::regclass, c.conname, pg_get_constraintdef(c.oid))
                         WHEN i.indexrelid IS NOT NULL THEN pg_get_indexdef(i.indexrelid) END,
                    pg_describe_object(d.classid, d.objid, d.objsubid),
                    CASE WHEN c.contype = 'f' THEN 2 WHEN c.oid IS NOT NULL THEN 0 ELSE 1 END AS step
             FROM pg_attribute a
             JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = a.attrelid AND d.refobjsubid = a.attnum
             LEFT JOIN pg_constraint c ON d.classid = 'pg_constraint'::regclass AND c.oid = d.objid
             LEFT JOIN pg_index i ON d.classid = 'pg_class'::regclass AND i.indexrelid = d.objid
             WHERE a.attrelid = to_regclass($1) AND a.attname = $2
               -- The index behind a constraint comes back with the constraint.
               AND NOT EXISTS (SELECT FROM pg_constraint k WHERE d.classid = 'pg_class'::regclass AND k.conindid = d.objid
                                                           AND k.conrelid = a.attrelid AND k.contype IN ('p', 'u', 'x'))
             ORDER BY step",
            &[&relation, &column],
        )
        .await?;
    rows.iter()
        .map(|row| row.get::<_, Option<String>>(0).ok_or_else(|| row.get::<_, String>(1)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_or_else(|other| Ok(Err(other)), |remake| Ok(Ok(remake)))
}

/// A foreign key found by one of its columns: the table holding it (as `regclass` prints it), its name, its
/// definition and whether it is validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKeyDef {
    pub table: String,
    pub name: String,
    pub definition: String,
    pub valid: bool,
}

/// The foreign keys on, or referencing, any of the columns `names[i]` of `relations[i]` (quoted and qualified).
pub async fn foreign_keys_on_columns(
    client: &impl GenericClient,
    relations: &[String],
    names: &[String],
) -> Result<Vec<ForeignKeyDef>> {
    let rows = client
        .query(
            "SELECT DISTINCT c.conrelid::regclass::text, c.conname::text, pg_get_constraintdef(c.oid), c.convalidated
             FROM pg_constraint c, unnest($1::text[], $2::text[]) AS w(relation, attname)
             JOIN pg_attribute a ON a.attrelid = to_regclass(w.relation) AND a.attname = w.attname
             WHERE c.contype = 'f' AND ((c.conrelid = a.attrelid AND a.attnum = ANY (c.conkey))
                OR (c.confrelid = a.attrelid AND a.attnum = ANY (c.confkey)))",
            &[&relations, &names],
        )
        .await?;
    Ok(rows.iter().map(|r| ForeignKeyDef { table: r.get(0), name: r.get(1), definition: r.get(2), valid: r.get(3) }).collect())
}

/// The foreign keys other tables hold on `relation` (quoted and qualified): `(table as regclass prints it, name)`.
pub async fn foreign_keys_from_other_tables(client: &impl GenericClient, relation: &str) -> Result<Vec<(String, String)>> {
    let rows = client
        .query(
            "SELECT conrelid::regclass::text, conname::text FROM pg_constraint
             WHERE confrelid = to_regclass($1) AND contype = 'f' AND conrelid <> confrelid",
            &[&relation],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The foreign keys of `schema` left NOT VALID: `(table as regclass prints it, name)`.
pub async fn unvalidated_foreign_keys(client: &impl GenericClient, schema: &str) -> Result<Vec<(String, String)>> {
    let rows = client
        .query(
            "SELECT c.conrelid::regclass::text, c.conname::text FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
             WHERE n.nspname = $1 AND c.contype = 'f' AND NOT c.convalidated",
            &[&schema],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The names of the indexes on `relation` (quoted and qualified).
pub async fn index_names(client: &impl GenericClient, relation: &str) -> Result<Vec<String>> {
    let rows = client
        .query(
            "SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = to_regclass($1)",
            &[&relation],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Whether `column` of `relation` (quoted and qualified) is an identity column.
pub async fn is_identity(client: &impl GenericClient, relation: &str, column: &str) -> Result<bool> {
    let row = client
        .query_one(
            "SELECT attidentity <> '' FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = $2",
            &[&relation, &column],
        )
        .await?;
    Ok(row.get(0))
}
