//! The type mapping: which PostgreSQL type holds a SQLite column's values exactly (`choose`, `widen`), and how each
//! SQLite value is written in PostgreSQL's binary format for that type and read back (`encode`, `decode`,
//! `numeric`, `datetime`, `json`). This file holds the vocabulary: `SqlValue`, `PgType`, `Affinity`, `Misfit`.

use std::fmt;

mod choose;
mod datetime;
mod decode;
mod encode;
mod json;
mod numeric;
#[cfg(test)]
mod test_values;
mod widen;

pub use choose::{choose_pg_type, declares_time, is_untyped, untyped_target, ColumnStats, ValueChecks};
pub use decode::{decode_binary, is_native};
pub use encode::encode_binary;
pub use numeric::{encode_numeric, real_to_plain_decimal, scaled_decimal};
pub use widen::{joined_type, joined_types, same_kind, widen_cast, widened_type};

/// A SQLite value as stored, in one of SQLite's five storage classes. Text is kept as raw bytes because SQLite
/// does not check that text is valid UTF-8.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Integer(i64),
    Real(f64),
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

impl SqlValue {
    /// Copies a borrowed rusqlite value.
    pub fn from_ref(value: rusqlite::types::ValueRef<'_>) -> Self {
        use rusqlite::types::ValueRef;
        match value {
            ValueRef::Null => SqlValue::Null,
            ValueRef::Integer(i) => SqlValue::Integer(i),
            ValueRef::Real(f) => SqlValue::Real(f),
            ValueRef::Text(t) => SqlValue::Text(t.to_vec()),
            ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
        }
    }

    /// SQLite's name for the storage class, as `typeof()` returns it.
    pub fn storage_class(&self) -> &'static str {
        match self {
            SqlValue::Null => "null",
            SqlValue::Integer(_) => "integer",
            SqlValue::Real(_) => "real",
            SqlValue::Text(_) => "text",
            SqlValue::Blob(_) => "blob",
        }
    }

    /// The value as JSON, for reject records and key lists: numbers stay numbers, blobs become `\x…` hex, and a
    /// text holding NUL or bytes that are not UTF-8 becomes `{"text_hex": …}`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            SqlValue::Null => serde_json::Value::Null,
            SqlValue::Integer(i) => (*i).into(),
            SqlValue::Real(f) => {
                serde_json::Number::from_f64(*f).map(serde_json::Value::Number).unwrap_or_else(|| real_to_text(*f).into())
            }
            // jsonb holds no NUL, and a lossy decoding would make two texts one: those texts go as their bytes.
            SqlValue::Text(t) => match std::str::from_utf8(t) {
                Ok(text) if !text.contains('\0') => text.into(),
                _ => serde_json::json!({ "text_hex": hex(t) }),
            },
            SqlValue::Blob(b) => format!("\\x{}", hex(b)).into(),
        }
    }

    /// The raw bytes of the value, as kept in `lite2pg.rejects.raw`.
    pub fn raw_bytes(&self) -> Vec<u8> {
        match self {
            SqlValue::Null => Vec::new(),
            SqlValue::Integer(i) => i.to_string().into_bytes(),
            SqlValue::Real(f) => real_to_text(*f).into_bytes(),
            SqlValue::Text(b) | SqlValue::Blob(b) => b.clone(),
        }
    }
}

impl rusqlite::ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            SqlValue::Null => ValueRef::Null,
            SqlValue::Integer(i) => ValueRef::Integer(*i),
            SqlValue::Real(f) => ValueRef::Real(*f),
            SqlValue::Text(t) => ValueRef::Text(t),
            SqlValue::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// SQLite's column affinity, from the declared type by the rules of "Datatypes In SQLite" section 3.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Affinity {
    Integer,
    Text,
    Blob,
    Real,
    Numeric,
}

impl Affinity {
    /// Applies SQLite's five rules, in their order.
    pub fn of_declared(declared: &str) -> Affinity {
        let upper = declared.to_ascii_uppercase();
        if upper.contains("INT") {
            Affinity::Integer
        } else if upper.contains("CHAR") || upper.contains("CLOB") || upper.contains("TEXT") {
            Affinity::Text
        } else if upper.contains("BLOB") || upper.trim().is_empty() {
            Affinity::Blob
        } else if upper.contains("REAL") || upper.contains("FLOA") || upper.contains("DOUB") {
            Affinity::Real
        } else {
            Affinity::Numeric
        }
    }
}

/// The PostgreSQL types lite2pg writes: those it creates for its own schema, and those an application's own
/// schema may have (`--into-existing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PgType {
    /// 0 and 1.
    Boolean,
    SmallInt,
    Integer,
    BigInt,
    /// `real` (float4): reals whose double has an exact float4 form.
    Real,
    Double,
    /// Integers and non-integral reals together; reals keep at least one fraction digit so they read back as reals.
    Numeric,
    /// `numeric(p,s)`: numbers (and decimal texts) exact at scale `s` within `p` digits.
    NumericScaled {
        precision: u16,
        scale: u16,
    },
    Text,
    /// `character varying(n)`: text (and numbers as text) of at most `n` characters.
    Varchar(Option<u32>),
    Bytea,
    /// `timestamp with time zone`: the instant a date and time text names (UTC when it names no offset).
    TimestampTz,
    /// `timestamp(6) without time zone`: the UTC wall time of that instant.
    Timestamp,
    /// `timestamp(0)`, made by earlier versions: every value was `YYYY-MM-DD HH:MM:SS`.
    TimestampSeconds,
    /// `timestamp(3)`, made by earlier versions: every value was `YYYY-MM-DD HH:MM:SS.SSS`.
    TimestampMillis,
    /// `date`: every value is `YYYY-MM-DD`.
    Date,
    /// `time without time zone`: `HH:MM[:SS[.f]]`.
    Time,
    /// From 32 hex digits, 36 characters with dashes (any case) or a 16-byte blob.
    Uuid,
    /// From JSON text, or a number as its JSON number.
    Jsonb,
    /// JSON text kept as written, or a number as its JSON number.
    Json,
}

/// Names a config file may give a column type (besides `format_type()`'s spellings), with the type.
const SETTINGS: [(&str, PgType); 21] = [
    ("boolean", PgType::Boolean),
    ("smallint", PgType::SmallInt),
    ("integer", PgType::Integer),
    ("bigint", PgType::BigInt),
    ("real", PgType::Real),
    ("double", PgType::Double),
    ("double precision", PgType::Double),
    ("numeric", PgType::Numeric),
    ("text", PgType::Text),
    ("varchar", PgType::Varchar(None)),
    ("bytea", PgType::Bytea),
    ("timestamptz", PgType::TimestampTz),
    ("timestamp", PgType::Timestamp),
    ("timestamp(0)", PgType::TimestampSeconds),
    ("timestamp(3)", PgType::TimestampMillis),
    ("date", PgType::Date),
    ("time", PgType::Time),
    ("uuid", PgType::Uuid),
    ("jsonb", PgType::Jsonb),
    ("json", PgType::Json),
    ("decimal", PgType::Numeric),
];

impl PgType {
    /// The type as written in DDL (and as `format_type()` spells it).
    pub fn sql(self) -> String {
        match self {
            PgType::Boolean => "boolean",
            PgType::SmallInt => "smallint",
            PgType::Integer => "integer",
            PgType::BigInt => "bigint",
            PgType::Real => "real",
            PgType::Double => "double precision",
            PgType::Numeric => "numeric",
            PgType::NumericScaled { precision, scale } => return format!("numeric({precision},{scale})"),
            PgType::Text => "text",
            PgType::Varchar(None) => "character varying",
            PgType::Varchar(Some(length)) => return format!("character varying({length})"),
            PgType::Bytea => "bytea",
            PgType::TimestampTz => "timestamp with time zone",
            PgType::Timestamp => "timestamp(6) without time zone",
            PgType::TimestampSeconds => "timestamp(0) without time zone",
            PgType::TimestampMillis => "timestamp(3) without time zone",
            PgType::Date => "date",
            PgType::Time => "time without time zone",
            PgType::Uuid => "uuid",
            PgType::Jsonb => "jsonb",
            PgType::Json => "json",
        }
        .to_string()
    }

    /// The function that turns a value of this type into its binary form inside PostgreSQL (what COPY sends).
    pub fn send_function(self) -> &'static str {
        match self {
            PgType::Boolean => "boolsend",
            PgType::SmallInt => "int2send",
            PgType::Integer => "int4send",
            PgType::BigInt => "int8send",
            PgType::Real => "float4send",
            PgType::Double => "float8send",
            PgType::Numeric | PgType::NumericScaled { .. } => "numeric_send",
            PgType::Text => "textsend",
            PgType::Varchar(_) => "varcharsend",
            PgType::Bytea => "byteasend",
            PgType::TimestampTz => "timestamptz_send",
            PgType::Timestamp | PgType::TimestampSeconds | PgType::TimestampMillis => "timestamp_send",
            PgType::Date => "date_send",
            PgType::Time => "time_send",
            PgType::Uuid => "uuid_send",
            PgType::Jsonb => "jsonb_send",
            PgType::Json => "json_send",
        }
    }

    /// The names a config file may give a column type, for messages.
    pub const SETTING_NAMES: [&'static str; 19] = [
        "boolean",
        "smallint",
        "integer",
        "bigint",
        "real",
        "double",
        "numeric",
        "numeric(p,s)",
        "text",
        "varchar(n)",
        "bytea",
        "timestamptz",
        "timestamp",
        "timestamp(3)",
        "date",
        "time",
        "uuid",
        "jsonb",
        "json",
    ];

    /// A type named in a config file: a short name (`timestamptz`, `varchar(20)`, `numeric(12,2)`…) or
    /// PostgreSQL's own spelling.
    pub fn from_setting(name: &str) -> Option<PgType> {
        let name = name.trim().to_ascii_lowercase();
        let short = SETTINGS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t);
        short
            .or_else(|| varchar_of(&name, "varchar"))
            .or_else(|| numeric_of(&name, "decimal"))
            .or_else(|| PgType::from_format_type(&name))
    }

    /// Reads back a type from PostgreSQL's `format_type()`: for tables lite2pg created (also by earlier
    /// versions) and for an application's own tables.
    pub fn from_format_type(name: &str) -> Option<PgType> {
        Some(match name {
            "boolean" => PgType::Boolean,
            "smallint" => PgType::SmallInt,
            "integer" => PgType::Integer,
            "bigint" => PgType::BigInt,
            "real" => PgType::Real,
            "double precision" => PgType::Double,
            "numeric" => PgType::Numeric,
            "text" => PgType::Text,
            "bytea" => PgType::Bytea,
            "character varying" => PgType::Varchar(None),
            "timestamp with time zone" | "timestamp(6) with time zone" => PgType::TimestampTz,
            "timestamp without time zone" | "timestamp(6) without time zone" => PgType::Timestamp,
            "timestamp(0) without time zone" => PgType::TimestampSeconds,
            "timestamp(3) without time zone" => PgType::TimestampMillis,
            "date" => PgType::Date,
            "time without time zone" | "time(6) without time zone" => PgType::Time,
            "uuid" => PgType::Uuid,
            "jsonb" => PgType::Jsonb,
            "json" => PgType::Json,
            _ => return varchar_of(name, "character varying").or_else(|| numeric_of(name, "numeric")),
        })
    }

    /// Whether a number column: the types an integer or a real can widen within.
    fn is_number(self) -> bool {
        matches!(
            self,
            PgType::Boolean
                | PgType::SmallInt
                | PgType::Integer
                | PgType::BigInt
                | PgType::Real
                | PgType::Double
                | PgType::Numeric
                | PgType::NumericScaled { .. }
        )
    }

    /// Whether a date or time column.
    fn is_time(self) -> bool {
        matches!(
            self,
            PgType::TimestampTz
                | PgType::Timestamp
                | PgType::TimestampSeconds
                | PgType::TimestampMillis
                | PgType::Date
                | PgType::Time
        )
    }
}

/// The numbers in `prefix(a)` or `prefix(a,b)` (spaces allowed around them).
fn parameters(name: &str, prefix: &str) -> Option<Vec<u32>> {
    let inner = name.strip_prefix(prefix)?.trim_start().strip_prefix('(')?.strip_suffix(')')?;
    inner.split(',').map(|n| n.trim().parse().ok()).collect()
}

/// `character varying(n)` (or `prefix(n)`), with a length PostgreSQL takes; `character varying` alone is handled
/// by the caller.
fn varchar_of(name: &str, prefix: &str) -> Option<PgType> {
    match parameters(name, prefix)?.as_slice() {
        [length] if (1..=10_485_760).contains(length) => Some(PgType::Varchar(Some(*length))),
        _ => None,
    }
}

/// `numeric(p,s)` or `numeric(p)` (or with another `prefix`), with a precision and scale PostgreSQL takes.
fn numeric_of(name: &str, prefix: &str) -> Option<PgType> {
    let (precision, scale) = match parameters(name, prefix)?.as_slice() {
        [precision] => (*precision, 0),
        [precision, scale] => (*precision, *scale),
        _ => return None,
    };
    ((1..=1000).contains(&precision) && scale <= precision)
        .then_some(PgType::NumericScaled { precision: precision as u16, scale: scale as u16 })
}

impl fmt::Display for PgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.sql())
    }
}

/// Why a value cannot be held by its PostgreSQL column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misfit {
    pub reason: String,
}

impl Misfit {
    fn new(reason: impl Into<String>) -> Self {
        Misfit { reason: reason.into() }
    }

    /// A value of a kind the column takes, but not this one: names the kind, the type and why.
    fn because(value: &SqlValue, pg_type: PgType, why: impl fmt::Display) -> Self {
        Misfit::new(format!("a {} value does not fit a {} column: {why}", value.storage_class(), pg_type.sql()))
    }
}

/// A real in its shortest round-trip decimal form, as used where numbers are stored as text.
pub fn real_to_text(f: f64) -> String {
    if f.is_infinite() {
        return if f > 0.0 { "Inf".into() } else { "-Inf".into() };
    }
    format!("{f:?}")
}

#[cfg(test)]
mod tests {
    use super::test_values::ALL_TYPES;
    use super::*;

    #[test]
    fn affinity_follows_sqlite_rules_in_order() {
        assert_eq!(Affinity::of_declared("INTEGER_OR_TEXT"), Affinity::Integer);
        assert_eq!(Affinity::of_declared("VARCHAR(20)"), Affinity::Text);
        assert_eq!(Affinity::of_declared("CHARINT"), Affinity::Integer);
        assert_eq!(Affinity::of_declared(""), Affinity::Blob);
        assert_eq!(Affinity::of_declared("DOUBLE PRECISION"), Affinity::Real);
        assert_eq!(Affinity::of_declared("FLOATING POINT"), Affinity::Integer);
        assert_eq!(Affinity::of_declared("MONEY"), Affinity::Numeric);
        assert_eq!(Affinity::of_declared("STRING"), Affinity::Numeric);
    }

    #[test]
    fn format_type_spellings_read_back() {
        for pg_type in ALL_TYPES {
            assert_eq!(PgType::from_format_type(&pg_type.sql()), Some(pg_type), "{pg_type}");
        }
        for (spelling, pg_type) in [
            ("timestamp without time zone", PgType::Timestamp),
            ("timestamp(6) with time zone", PgType::TimestampTz),
            ("time(6) without time zone", PgType::Time),
            ("character varying(20)", PgType::Varchar(Some(20))),
            ("numeric(12,2)", PgType::NumericScaled { precision: 12, scale: 2 }),
            ("numeric(10,0)", PgType::NumericScaled { precision: 10, scale: 0 }),
        ] {
            assert_eq!(PgType::from_format_type(spelling), Some(pg_type), "{spelling}");
        }
        for unknown in ["timestamp(3) with time zone", "character(3)", "numeric(0,0)", "numeric(5,6)", "integer[]", "money"] {
            assert_eq!(PgType::from_format_type(unknown), None, "{unknown}");
        }
        for (setting, pg_type) in [
            ("timestamptz", PgType::TimestampTz),
            ("timestamp", PgType::Timestamp),
            ("timestamp(0)", PgType::TimestampSeconds),
            ("Double Precision", PgType::Double),
            ("varchar(20)", PgType::Varchar(Some(20))),
            ("numeric(12, 2)", PgType::NumericScaled { precision: 12, scale: 2 }),
            ("decimal(8,3)", PgType::NumericScaled { precision: 8, scale: 3 }),
            ("timestamp with time zone", PgType::TimestampTz),
        ] {
            assert_eq!(PgType::from_setting(setting), Some(pg_type), "{setting}");
        }
        for name in PgType::SETTING_NAMES.iter().filter(|n| !n.ends_with("(n)") && !n.ends_with("(p,s)")) {
            assert!(PgType::from_setting(name).is_some(), "{name}");
        }
    }
}
