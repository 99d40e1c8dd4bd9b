//! The type mapping: which PostgreSQL type holds a SQLite column's values exactly, and how each SQLite value is
//! written in PostgreSQL's binary format for that type (or why it cannot be).

use std::fmt;

mod datetime;
mod json;

use datetime::{format_date, format_datetime, format_time, parse_date, parse_datetime, parse_time, parse_timestamp};

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

    /// The value as JSON, for reject records and key lists: numbers stay numbers, blobs become `\x…` hex.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            SqlValue::Null => serde_json::Value::Null,
            SqlValue::Integer(i) => (*i).into(),
            SqlValue::Real(f) => {
                serde_json::Number::from_f64(*f).map(serde_json::Value::Number).unwrap_or_else(|| real_to_text(*f).into())
            }
            SqlValue::Text(t) => String::from_utf8_lossy(t).into_owned().into(),
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

/// What one scan of a column found stored in it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ColumnStats {
    pub integers: u64,
    pub reals: u64,
    pub texts: u64,
    pub blobs: u64,
    /// Integers other than 0 and 1.
    pub non_boolean_integers: u64,
    /// Reals that numeric cannot hold: infinities and -0.0.
    pub special_reals: u64,
    /// Texts naming a date, or a date and time, in a form `datetime::parse_datetime` reads.
    pub datetime_texts: u64,
    /// Texts in `YYYY-MM-DD` form that are valid dates.
    pub date_texts: u64,
    /// Texts in `HH:MM[:SS[.f]]` form.
    pub time_texts: u64,
    /// Values the type the declaration names takes (`numeric(p,s)`, `uuid`, `json`, `jsonb`).
    pub fitting_values: u64,
}

/// The shape checks a column's declared type asks of its values: only a column declared as a date or time can
/// become one, only one declared `DECIMAL(p,s)`, `UUID`, `JSON` or `JSONB` that type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ValueChecks {
    time: bool,
    fitted: Option<PgType>,
}

impl ValueChecks {
    pub fn for_declared(declared: &str) -> ValueChecks {
        let scaled = declared_decimal(declared).filter(|t| matches!(t, PgType::NumericScaled { .. }));
        ValueChecks { time: declares_time(declared), fitted: scaled.or_else(|| declared_value_type(declared)) }
    }
}

impl ColumnStats {
    /// Counts one stored value, with the shape checks its column's declared type asks for.
    pub fn observe(&mut self, value: rusqlite::types::ValueRef<'_>, checks: &ValueChecks) {
        use rusqlite::types::ValueRef;
        match value {
            ValueRef::Null => return,
            ValueRef::Integer(i) => {
                self.integers += 1;
                self.non_boolean_integers += u64::from(i != 0 && i != 1);
            }
            ValueRef::Real(f) => {
                self.reals += 1;
                self.special_reals += u64::from(f.is_infinite() || (f == 0.0 && f.is_sign_negative()));
            }
            ValueRef::Text(t) => {
                self.texts += 1;
                if checks.time {
                    self.datetime_texts += u64::from(parse_datetime(t).is_some());
                    self.date_texts += u64::from(parse_date(t).is_some());
                    self.time_texts += u64::from(parse_time(t).is_some());
                }
            }
            ValueRef::Blob(_) => self.blobs += 1,
        }
        if let Some(fitted) = checks.fitted {
            let fits = encode_binary(&SqlValue::from_ref(value), fitted, &mut Vec::new()).is_ok();
            self.fitting_values += u64::from(fits);
        }
    }

    /// Adds the counts of another part of the same column.
    pub fn merge(&mut self, other: &ColumnStats) {
        self.integers += other.integers;
        self.reals += other.reals;
        self.texts += other.texts;
        self.blobs += other.blobs;
        self.non_boolean_integers += other.non_boolean_integers;
        self.special_reals += other.special_reals;
        self.datetime_texts += other.datetime_texts;
        self.date_texts += other.date_texts;
        self.time_texts += other.time_texts;
        self.fitting_values += other.fitting_values;
    }
}

/// Words in a declared type that announce dates or times.
pub fn declares_time(declared: &str) -> bool {
    let upper = declared.to_ascii_uppercase();
    upper.contains("DATE") || upper.contains("TIME")
}

/// What a column declared with a date or time word holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeKind {
    /// `DATE`.
    Date,
    /// `TIME`, `TIME(6)`, `time without time zone`.
    TimeOfDay,
    /// `DATETIME`, `TIMESTAMP`, `datetime(6)`, `timestamp with time zone`, `TIMESTAMPTZ`…
    Instant,
}

impl TimeKind {
    /// The kind a declared type with a date or time word names; `None` for a time of day with a time zone
    /// (`TIMETZ`), which lite2pg keeps as text.
    fn of_declared(declared: &str) -> Option<TimeKind> {
        let upper = declared.trim().to_ascii_uppercase();
        let first_word = upper.split(|c: char| c == '(' || c.is_whitespace()).next().unwrap_or_default();
        match first_word {
            "TIMETZ" => None,
            "TIME" if upper.contains("WITH TIME ZONE") => None,
            "TIME" => Some(TimeKind::TimeOfDay),
            _ if upper.contains("DATE") && !upper.contains("TIME") => Some(TimeKind::Date),
            _ => Some(TimeKind::Instant),
        }
    }

    fn pg_type(self) -> PgType {
        match self {
            TimeKind::Date => PgType::Date,
            TimeKind::TimeOfDay => PgType::Time,
            TimeKind::Instant => PgType::TimestampTz,
        }
    }
}

fn declares_boolean(declared: &str) -> bool {
    let upper = declared.trim().to_ascii_uppercase();
    upper == "BOOL" || upper == "BOOLEAN"
}

/// The numeric type a `DECIMAL`/`NUMERIC` declaration names: `numeric(p,s)` when it gives a precision PostgreSQL
/// takes (Alembic, Rails, hand-written schemas), else plain `numeric` (Django declares `decimal` alone).
fn declared_decimal(declared: &str) -> Option<PgType> {
    let lower: String = declared.trim().to_ascii_lowercase();
    let prefix = ["decimal", "numeric"].into_iter().find(|p| lower.starts_with(p))?;
    let rest = lower[prefix.len()..].trim_start();
    if rest.is_empty() {
        return Some(PgType::Numeric);
    }
    rest.starts_with('(').then(|| numeric_of(&lower, prefix).unwrap_or(PgType::Numeric))
}

/// The type a `UUID`, `JSON` or `JSONB` declaration names (SQLAlchemy's `JSON` on SQLite, hand-written schemas).
fn declared_value_type(declared: &str) -> Option<PgType> {
    match declared.trim().to_ascii_uppercase().as_str() {
        "UUID" => Some(PgType::Uuid),
        "JSON" => Some(PgType::Json),
        "JSONB" => Some(PgType::Jsonb),
        _ => None,
    }
}

/// Whether a declared type names no kind of value: none at all, or `ANY`. Such a column's type follows the values.
pub fn is_untyped(declared: &str) -> bool {
    let trimmed = declared.trim();
    trimmed.is_empty() || trimmed.eq_ignore_ascii_case("ANY")
}

/// Chooses the PostgreSQL type for a column from its declared type and what is actually stored in it, so that
/// every stored value fits exactly. Blobs share a column with no other kind (bytea holds bytes, text holds text
/// and numbers): when both are stored, the type holding more of them wins and the others are rejected.
pub fn choose_pg_type(declared: &str, stats: &ColumnStats) -> PgType {
    let stored = stats.integers + stats.reals + stats.texts + stats.blobs;
    if let Some(fitted) = ValueChecks::for_declared(declared).fitted.filter(|_| stats.fitting_values == stored) {
        return fitted;
    }
    if stats.blobs > 0 && stats.blobs >= stats.integers + stats.reals + stats.texts {
        PgType::Bytea
    } else {
        choose_without_blobs(declared, stats)
    }
}

/// The type a column without a declared kind, now `current`, takes to hold `value` as itself, from what SQLite
/// stores in it now (`stored`, `value` among it): a number or text widens it to the type holding every number
/// and text stored (blobs among them are rejected where they arrive), a blob makes it bytea only when nothing
/// else is stored. `None` when no type holds the value with the column's values as themselves.
pub fn untyped_target(current: PgType, value: &SqlValue, stored: &ColumnStats) -> Option<PgType> {
    match value {
        SqlValue::Blob(_) => (stored.integers + stored.reals + stored.texts == 0).then_some(PgType::Bytea),
        _ if current == PgType::Bytea && stored.blobs > 0 => None,
        _ => Some(choose_without_blobs("", stored)),
    }
}

fn choose_without_blobs(declared: &str, stats: &ColumnStats) -> PgType {
    let numbers = stats.integers + stats.reals;
    if stats.texts > 0 {
        return if numbers > 0 { PgType::Text } else { choose_text_type(declared, stats) };
    }
    if numbers > 0 && stats.special_reals == 0 && declared_decimal(declared).is_some() {
        return PgType::Numeric;
    }
    if stats.integers > 0 && stats.reals > 0 {
        return if stats.special_reals > 0 { PgType::Text } else { PgType::Numeric };
    }
    if stats.reals > 0 {
        return PgType::Double;
    }
    if stats.integers > 0 {
        return if declares_boolean(declared) && stats.non_boolean_integers == 0 { PgType::Boolean } else { PgType::BigInt };
    }
    choose_empty_type(declared)
}

/// Texts only: a date or time type when the declaration names one and every text is one, else text. A column
/// declared `DATE` whose texts all carry times too becomes `timestamptz`.
fn choose_text_type(declared: &str, stats: &ColumnStats) -> PgType {
    if !declares_time(declared) {
        return PgType::Text;
    }
    match TimeKind::of_declared(declared) {
        Some(TimeKind::TimeOfDay) if stats.time_texts == stats.texts => PgType::Time,
        Some(TimeKind::TimeOfDay) | None => PgType::Text,
        Some(TimeKind::Date) if stats.date_texts == stats.texts => PgType::Date,
        Some(_) if stats.datetime_texts == stats.texts => PgType::TimestampTz,
        Some(_) => PgType::Text,
    }
}

/// A column holding only NULLs: the declared type is all we know. A column without a declared kind starts as
/// bytea, which only blobs fit: the first number or text widens it to its own type.
fn choose_empty_type(declared: &str) -> PgType {
    if is_untyped(declared) {
        return PgType::Bytea;
    }
    if declares_boolean(declared) {
        return PgType::Boolean;
    }
    if declares_time(declared) {
        return TimeKind::of_declared(declared).map_or(PgType::Text, TimeKind::pg_type);
    }
    if let Some(decimal) = declared_decimal(declared) {
        return decimal;
    }
    match Affinity::of_declared(declared) {
        Affinity::Integer => PgType::BigInt,
        Affinity::Text => PgType::Text,
        Affinity::Blob => PgType::Bytea,
        Affinity::Real => PgType::Double,
        Affinity::Numeric => PgType::Numeric,
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

/// Whether `value` is of the column's own kind (a number in a number column, text in a date, time, `varchar(n)`,
/// `uuid` or JSON column), so that widening the column keeps its meaning.
pub fn same_kind(value: &SqlValue, column_type: PgType) -> bool {
    match value {
        SqlValue::Integer(_) | SqlValue::Real(_) => column_type.is_number(),
        SqlValue::Text(t) => {
            let text_type = matches!(column_type, PgType::Varchar(_) | PgType::Uuid | PgType::Json | PgType::Jsonb);
            (column_type.is_time() || text_type) && check_pg_text(t).is_ok()
        }
        SqlValue::Null | SqlValue::Blob(_) => false,
    }
}

/// The narrowest type that holds every value of `current` and `value` too, each as itself: boolean → bigint →
/// numeric → text, smallint → integer → bigint, real → double → numeric, numeric(p,s) → numeric, date and
/// earlier versions' timestamp(0)/(3) → timestamptz for a date and time text, dates, times, UUIDs, JSON and
/// varchar(n) → text. `None` when no type does: a blob with anything but blobs, a number or text
/// in a bytea column, text PostgreSQL's text cannot hold.
pub fn widened_type(current: PgType, value: &SqlValue) -> Option<PgType> {
    let numeric_can_hold = |f: f64| f.is_finite() && !(f == 0.0 && f.is_sign_negative());
    if current == PgType::Bytea {
        return None;
    }
    Some(match value {
        SqlValue::Blob(_) => return None,
        SqlValue::Text(t) if check_pg_text(t).is_err() => return None,
        SqlValue::Text(t) if current.holds_instants() && parse_datetime(t).is_some() => PgType::TimestampTz,
        SqlValue::Null | SqlValue::Text(_) => PgType::Text,
        SqlValue::Integer(i) => match current {
            PgType::Boolean => PgType::BigInt,
            PgType::SmallInt if i32::try_from(*i).is_ok() => PgType::Integer,
            PgType::SmallInt | PgType::Integer => PgType::BigInt,
            PgType::Real | PgType::Double | PgType::NumericScaled { .. } => PgType::Numeric,
            _ => PgType::Text,
        },
        SqlValue::Real(f) => match current {
            PgType::Real => PgType::Double,
            PgType::Boolean | PgType::SmallInt | PgType::Integer | PgType::BigInt | PgType::NumericScaled { .. }
                if numeric_can_hold(*f) =>
            {
                PgType::Numeric
            }
            _ => PgType::Text,
        },
    })
}

/// The rank of an integer type in boolean → smallint → integer → bigint.
fn integer_rank(pg_type: PgType) -> Option<u8> {
    [PgType::Boolean, PgType::SmallInt, PgType::Integer, PgType::BigInt].iter().position(|t| *t == pg_type).map(|r| r as u8)
}

/// The narrowest type that holds every value of both `a` and `b`, in `widened_type`'s order: boolean → smallint
/// → integer → bigint → numeric → text, real → double → numeric, dates and instants → timestamptz, other dates,
/// times and text types → text, and anything with bytea → bytea.
pub fn joined_type(a: PgType, b: PgType) -> PgType {
    match (a, b) {
        _ if a == b => a,
        (PgType::Bytea, _) | (_, PgType::Bytea) => PgType::Bytea,
        _ if integer_rank(a).is_some() && integer_rank(b).is_some() => a.max_by_rank(b),
        (PgType::Real, PgType::Double) | (PgType::Double, PgType::Real) => PgType::Double,
        (PgType::Varchar(Some(x)), PgType::Varchar(Some(y))) => PgType::Varchar(Some(x.max(y))),
        _ if a.holds_instants() && b.holds_instants() => PgType::TimestampTz,
        _ if a.is_number() && b.is_number() => PgType::Numeric,
        _ => PgType::Text,
    }
}

impl PgType {
    /// Whether every value is an instant `timestamptz` holds exactly as verify compares them: dates (midnight UTC),
    /// the UTC wall times of earlier versions' `timestamp(0)`/`(3)`, and instants. Not `timestamp`, which a user
    /// chose by name.
    fn holds_instants(self) -> bool {
        matches!(self, PgType::Date | PgType::TimestampSeconds | PgType::TimestampMillis | PgType::TimestampTz)
    }

    fn max_by_rank(self, other: PgType) -> PgType {
        if integer_rank(self) >= integer_rank(other) {
            self
        } else {
            other
        }
    }
}

/// The one type for columns joined by foreign keys (PostgreSQL compares keys only within one type): the join of
/// theirs, or text where that is numeric and one of them holds reals numeric cannot (infinities, -0.0).
pub fn joined_types(types: impl IntoIterator<Item = PgType>, holds_special_reals: bool) -> Option<PgType> {
    let joined = types.into_iter().reduce(joined_type)?;
    Some(if joined == PgType::Numeric && holds_special_reals { PgType::Text } else { joined })
}

/// The `USING` expression that converts column `column` (quoted) from `from` to `to`, and whether it gives
/// exactly what lite2pg would write for the SQLite values (when not, the table is copied again). Texts read as
/// instants, times, UUIDs or JSON lost their written form, so their casts to text are never exact.
pub fn widen_cast(column: &str, from: PgType, to: PgType) -> (String, bool) {
    let to_sql = to.sql();
    let exact_cast = |from: PgType| matches!(from, PgType::SmallInt | PgType::Integer | PgType::BigInt);
    match (from, to) {
        (PgType::Boolean, PgType::BigInt | PgType::Numeric | PgType::Text) => (format!("{column}::int::{to_sql}"), true),
        (from, PgType::Integer | PgType::BigInt | PgType::Numeric | PgType::Text) if exact_cast(from) => {
            (format!("{column}::{to_sql}"), true)
        }
        (PgType::Real, PgType::Double) | (PgType::Varchar(_) | PgType::Json, PgType::Text | PgType::Varchar(_)) => {
            (format!("{column}::{to_sql}"), true)
        }
        (PgType::TimestampSeconds, PgType::Text) => (format!("to_char({column}, 'YYYY-MM-DD HH24:MI:SS')"), true),
        (PgType::TimestampMillis, PgType::Text) => (format!("to_char({column}, 'YYYY-MM-DD HH24:MI:SS.MS')"), true),
        (PgType::Date, PgType::Text) => (format!("to_char({column}, 'YYYY-MM-DD')"), true),
        (PgType::Date, PgType::TimestampTz) => (format!("{column}::timestamp AT TIME ZONE 'UTC'"), true),
        (PgType::TimestampSeconds | PgType::TimestampMillis, PgType::TimestampTz) => {
            (format!("{column} AT TIME ZONE 'UTC'"), true)
        }
        // Bytes and other kinds never convert into each other (older versions wrote numbers and text into bytea as
        // their text): the table is copied whole.
        (PgType::Bytea, _) | (_, PgType::Bytea) => (format!("NULL::{to_sql}"), false),
        _ => (format!("{column}::text::{to_sql}"), false),
    }
}

/// A real in its shortest round-trip decimal form, as used where numbers are stored as text.
pub fn real_to_text(f: f64) -> String {
    if f.is_infinite() {
        return if f > 0.0 { "Inf".into() } else { "-Inf".into() };
    }
    format!("{f:?}")
}

/// Appends `value` to `out` in PostgreSQL's binary format for `pg_type`, without the length prefix.
/// `SqlValue::Null` is handled by the caller (it has no body). On a misfit, `out` may hold part of the value.
pub fn encode_binary(value: &SqlValue, pg_type: PgType, out: &mut Vec<u8>) -> Result<(), Misfit> {
    match (pg_type, value) {
        (_, SqlValue::Null) => unreachable!("NULL is written as a length of -1 by the caller"),
        (PgType::BigInt, SqlValue::Integer(i)) => out.extend_from_slice(&i.to_be_bytes()),
        (PgType::Integer, SqlValue::Integer(i)) => out.extend_from_slice(&narrow::<i32>(value, *i, pg_type)?.to_be_bytes()),
        (PgType::SmallInt, SqlValue::Integer(i)) => out.extend_from_slice(&narrow::<i16>(value, *i, pg_type)?.to_be_bytes()),
        (PgType::Boolean, SqlValue::Integer(i @ (0 | 1))) => out.push(*i as u8),
        (PgType::Boolean, SqlValue::Integer(i)) => return Err(Misfit::because(value, pg_type, format!("{i} is not 0 or 1"))),
        (PgType::Double, SqlValue::Real(f)) => out.extend_from_slice(&f.to_bits().to_be_bytes()),
        (PgType::Real, SqlValue::Real(f)) => out.extend_from_slice(&float4(value, *f)?.to_bits().to_be_bytes()),
        (PgType::Numeric, SqlValue::Integer(i)) => encode_numeric(&i.to_string(), out),
        (PgType::Numeric, SqlValue::Real(f)) => encode_real_as_numeric(*f, out)?,
        (PgType::NumericScaled { precision, scale }, SqlValue::Integer(_) | SqlValue::Real(_) | SqlValue::Text(_)) => {
            encode_numeric(&scaled_decimal(value, precision, scale)?, out)
        }
        (PgType::Text, SqlValue::Text(t)) => out.extend_from_slice(check_pg_text(t)?),
        (PgType::Text | PgType::Varchar(_), SqlValue::Integer(_) | SqlValue::Real(_)) => {
            encode_text(value, number_text(value), pg_type, out)?
        }
        (PgType::Varchar(_), SqlValue::Text(t)) => encode_text(value, check_pg_text(t)?, pg_type, out)?,
        // Only blobs: text or a number written as its bytes could not be told from the blob of those bytes.
        (PgType::Bytea, SqlValue::Blob(b)) => out.extend_from_slice(b),
        (PgType::TimestampSeconds | PgType::TimestampMillis, SqlValue::Text(t)) => {
            let micros = parse_timestamp(t, pg_type == PgType::TimestampMillis)
                .ok_or_else(|| Misfit::because(value, pg_type, "not in the one form this older column takes"))?;
            out.extend_from_slice(&micros.to_be_bytes());
        }
        (PgType::TimestampTz | PgType::Timestamp, SqlValue::Text(t)) => {
            let micros = parse_datetime(t).ok_or_else(|| {
                Misfit::because(value, pg_type, "not a date and time (YYYY-MM-DD[ HH:MM[:SS[.ffffff]]][Z|±HH:MM])")
            })?;
            out.extend_from_slice(&micros.to_be_bytes());
        }
        (PgType::Date, SqlValue::Text(t)) => {
            let days = parse_date(t).ok_or_else(|| Misfit::because(value, pg_type, "not a date (YYYY-MM-DD)"))?;
            out.extend_from_slice(&(days as i32).to_be_bytes());
        }
        (PgType::Time, SqlValue::Text(t)) => {
            let micros = parse_time(t).ok_or_else(|| Misfit::because(value, pg_type, "not a time (HH:MM[:SS[.ffffff]])"))?;
            out.extend_from_slice(&micros.to_be_bytes());
        }
        (PgType::Uuid, SqlValue::Text(_) | SqlValue::Blob(_)) => out.extend_from_slice(&uuid_bytes(value)?),
        (PgType::Jsonb, SqlValue::Integer(_) | SqlValue::Real(_) | SqlValue::Text(_)) => {
            let canonical = json::jsonb_text(&json_source(value)?).map_err(|why| Misfit::because(value, pg_type, why))?;
            out.push(JSONB_VERSION);
            out.extend_from_slice(canonical.as_bytes());
        }
        (PgType::Json, SqlValue::Integer(_) | SqlValue::Real(_) | SqlValue::Text(_)) => {
            let text = json_source(value)?;
            json::check_json(&text).map_err(|why| Misfit::because(value, pg_type, why))?;
            out.extend_from_slice(text.as_bytes());
        }
        (_, value) => {
            return Err(Misfit::new(format!("a {} value does not fit a {} column", value.storage_class(), pg_type.sql())))
        }
    }
    Ok(())
}

/// The version byte leading `jsonb`'s binary form.
const JSONB_VERSION: u8 = 1;

/// An integer in a narrower integer type, or why not.
fn narrow<T: TryFrom<i64>>(value: &SqlValue, i: i64, pg_type: PgType) -> Result<T, Misfit> {
    T::try_from(i).map_err(|_| Misfit::because(value, pg_type, format!("{i} is out of its range")))
}

/// A real as float4, when that holds it exactly.
fn float4(value: &SqlValue, f: f64) -> Result<f32, Misfit> {
    let narrow = f as f32;
    match f64::from(narrow) == f || f.is_nan() {
        true => Ok(narrow),
        false => Err(Misfit::because(value, PgType::Real, format!("{} has no exact float4 form", real_to_text(f)))),
    }
}

/// A number as text: integers in decimal, reals in shortest round-trip form.
fn number_text(value: &SqlValue) -> String {
    match value {
        SqlValue::Integer(i) => i.to_string(),
        SqlValue::Real(f) => real_to_text(*f),
        _ => unreachable!("only numbers"),
    }
}

/// Text (or a number's text) in a text or `varchar(n)` column, checking the length in characters.
fn encode_text(value: &SqlValue, text: impl AsRef<[u8]>, pg_type: PgType, out: &mut Vec<u8>) -> Result<(), Misfit> {
    let text = text.as_ref();
    if let PgType::Varchar(Some(limit)) = pg_type {
        let length = std::str::from_utf8(text).map_or(0, |s| s.chars().count());
        if length > limit as usize {
            return Err(Misfit::because(value, pg_type, format!("it is {length} characters long")));
        }
    }
    out.extend_from_slice(text);
    Ok(())
}

/// The JSON text a value stands for: text as itself, a number as its JSON number.
fn json_source(value: &SqlValue) -> Result<std::borrow::Cow<'_, str>, Misfit> {
    Ok(match value {
        SqlValue::Text(t) => std::borrow::Cow::Borrowed(std::str::from_utf8(check_pg_text(t)?).expect("checked as UTF-8")),
        number => std::borrow::Cow::Owned(number_text(number)),
    })
}

/// The 16 bytes of a UUID written as 32 hex digits, as 36 characters with dashes (any case), or as a 16-byte blob.
fn uuid_bytes(value: &SqlValue) -> Result<[u8; 16], Misfit> {
    let refused = |why: &str| Misfit::because(value, PgType::Uuid, why);
    let hex_digits: Vec<u8> = match value {
        SqlValue::Blob(b) => return b.as_slice().try_into().map_err(|_| refused(&format!("{} bytes, not 16", b.len()))),
        SqlValue::Text(t) if t.len() == 32 => t.clone(),
        SqlValue::Text(t) if t.len() == 36 && [8, 13, 18, 23].iter().all(|&i| t[i] == b'-') => {
            t.iter().enumerate().filter(|(i, _)| ![8, 13, 18, 23].contains(i)).map(|(_, b)| *b).collect()
        }
        _ => return Err(refused("not a UUID (32 hex digits, or 36 characters with dashes)")),
    };
    let mut bytes = [0u8; 16];
    for (byte, pair) in bytes.iter_mut().zip(hex_digits.chunks(2)) {
        let pair = std::str::from_utf8(pair).ok().filter(|p| p.bytes().all(|b| b.is_ascii_hexdigit()));
        *byte = pair
            .and_then(|p| u8::from_str_radix(p, 16).ok())
            .ok_or_else(|| refused("not a UUID (32 hex digits, or 36 characters with dashes)"))?;
    }
    Ok(bytes)
}

/// PostgreSQL text must be valid UTF-8 without NUL characters.
fn check_pg_text(bytes: &[u8]) -> Result<&[u8], Misfit> {
    if std::str::from_utf8(bytes).is_err() {
        return Err(Misfit::new("text is not valid UTF-8, which PostgreSQL text cannot hold"));
    }
    if bytes.contains(&0) {
        return Err(Misfit::new("text contains a NUL character, which PostgreSQL text cannot hold"));
    }
    Ok(bytes)
}

fn encode_real_as_numeric(f: f64, out: &mut Vec<u8>) -> Result<(), Misfit> {
    if !f.is_finite() || (f == 0.0 && f.is_sign_negative()) {
        return Err(Misfit::new(format!("real {} cannot be held by numeric", real_to_text(f))));
    }
    encode_numeric(&real_to_plain_decimal(f), out);
    Ok(())
}

/// A number (or a decimal text) as the decimal `numeric(precision, scale)` holds, with exactly `scale` fraction
/// digits; refused when that would round it (`1.005` at scale 2) or it has more than `precision - scale`
/// integer digits. A real is taken as its shortest round-trip decimal (`12.5` is `12.50`).
pub fn scaled_decimal(value: &SqlValue, precision: u16, scale: u16) -> Result<String, Misfit> {
    let pg_type = PgType::NumericScaled { precision, scale };
    let decimal = match value {
        SqlValue::Integer(i) => i.to_string(),
        SqlValue::Real(f) if f.is_finite() && !(*f == 0.0 && f.is_sign_negative()) => real_to_plain_decimal(*f),
        SqlValue::Real(f) => return Err(Misfit::because(value, pg_type, format!("{} has no decimal form", real_to_text(*f)))),
        SqlValue::Text(t) => plain_decimal_text(t).ok_or_else(|| Misfit::because(value, pg_type, "not a decimal number"))?,
        _ => return Err(Misfit::because(value, pg_type, "not a number")),
    };
    let (sign, unsigned) = decimal.strip_prefix('-').map_or(("", decimal.as_str()), |rest| ("-", rest));
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let (whole, fraction) = (whole.trim_start_matches('0'), fraction.trim_end_matches('0'));
    if fraction.len() > usize::from(scale) {
        return Err(Misfit::because(value, pg_type, format!("{decimal} has more than {scale} fraction digits")));
    }
    if whole.len() > usize::from(precision - scale) {
        return Err(Misfit::because(value, pg_type, format!("{decimal} has more than {} integer digits", precision - scale)));
    }
    let whole = if whole.is_empty() { "0" } else { whole };
    Ok(format!("{sign}{whole}.{fraction:0<width$}", width = usize::from(scale)).trim_end_matches('.').to_string())
}

/// A text of the form `-?digits[.digits]`.
fn plain_decimal_text(text: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(text).ok()?;
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, "0"));
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (all_digits(whole) && all_digits(fraction)).then(|| text.to_string())
}

/// Writes a finite real as a plain decimal (no exponent) with at least one fraction digit, so that PostgreSQL
/// keeps a display scale of at least 1 and the value reads back as a real rather than an integer.
pub fn real_to_plain_decimal(f: f64) -> String {
    let sci = format!("{:e}", f.abs());
    let (mantissa, exponent) = sci.split_once('e').expect("LowerExp always writes an exponent");
    let exponent: i64 = exponent.parse().expect("LowerExp writes a decimal exponent");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let point = exponent + 1;
    let (int_part, frac_part) = if point <= 0 {
        ("0".to_string(), format!("{}{}", "0".repeat((-point) as usize), digits))
    } else if point as usize >= digits.len() {
        (format!("{}{}", digits, "0".repeat(point as usize - digits.len())), String::new())
    } else {
        (digits[..point as usize].to_string(), digits[point as usize..].to_string())
    };
    let frac_part = if frac_part.is_empty() { "0".to_string() } else { frac_part };
    let sign = if f < 0.0 { "-" } else { "" };
    format!("{sign}{int_part}.{frac_part}")
}

/// Writes a decimal string (`-?digits(.digits)?`) in PostgreSQL's binary numeric format: base-10000 digits with
/// a weight, a sign and the display scale.
pub fn encode_numeric(decimal: &str, out: &mut Vec<u8>) {
    let (negative, unsigned) = match decimal.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, decimal),
    };
    let (int_digits, frac_digits) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let int_digits = int_digits.trim_start_matches('0');
    let scale = frac_digits.len();
    let int_pad = (4 - int_digits.len() % 4) % 4;
    let frac_pad = (4 - frac_digits.len() % 4) % 4;
    let all: Vec<u8> = std::iter::repeat_n(b'0', int_pad)
        .chain(int_digits.bytes())
        .chain(frac_digits.bytes())
        .chain(std::iter::repeat_n(b'0', frac_pad))
        .collect();
    let mut groups: Vec<i16> =
        all.chunks(4).map(|chunk| chunk.iter().fold(0i16, |acc, d| acc * 10 + i16::from(d - b'0'))).collect();
    let mut weight = ((int_pad + int_digits.len()) / 4) as i16 - 1;
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    let sign: u16 = if negative && !groups.is_empty() { 0x4000 } else { 0 };
    out.extend_from_slice(&(groups.len() as i16).to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&(scale as u16).to_be_bytes());
    for group in groups {
        out.extend_from_slice(&group.to_be_bytes());
    }
}

/// Reads a value of `pg_type` in PostgreSQL's binary format back into the SQLite value it was written from
/// (the inverse of `encode_binary` for every value of the type's own kind). Used for keys found only in
/// PostgreSQL. Types that keep a value rather than its writing give a canonical text: instants as UTC
/// `YYYY-MM-DD HH:MM:SS[.ffffff]`, times as `HH:MM:SS[.ffffff]`, UUIDs lowercase with dashes, `jsonb` as it
/// prints; `numeric(p,s)` gives an integer when its fraction is zero.
pub fn decode_binary(bytes: &[u8], pg_type: PgType) -> Option<SqlValue> {
    let int = |n: usize| -> Option<i64> {
        let array: [u8; 8] = [vec![0u8; 8 - n], bytes.get(..n)?.to_vec()].concat().try_into().ok()?;
        let value = i64::from_be_bytes(array);
        // Sign-extend narrower integers.
        Some(if n < 8 { (value << (64 - 8 * n)) >> (64 - 8 * n) } else { value })
    };
    let text = |text: String| SqlValue::Text(text.into_bytes());
    Some(match pg_type {
        PgType::Boolean => SqlValue::Integer(i64::from(*bytes.first()?)),
        PgType::SmallInt => SqlValue::Integer(int(2)?),
        PgType::Integer => SqlValue::Integer(int(4)?),
        PgType::BigInt => SqlValue::Integer(int(8)?),
        PgType::Real => SqlValue::Real(f64::from(f32::from_bits(int(4)? as u32))),
        PgType::Double => SqlValue::Real(f64::from_bits(int(8)? as u64)),
        PgType::Text | PgType::Varchar(_) | PgType::Json => SqlValue::Text(bytes.to_vec()),
        PgType::Jsonb => SqlValue::Text(bytes.strip_prefix(&[JSONB_VERSION])?.to_vec()),
        PgType::Bytea => SqlValue::Blob(bytes.to_vec()),
        PgType::Numeric => decode_numeric(bytes)?,
        PgType::NumericScaled { .. } => decode_scaled_numeric(bytes)?,
        PgType::Date => text(format_date(int(4)?)),
        PgType::TimestampTz | PgType::Timestamp => text(format_datetime(int(8)?)),
        PgType::Time => text(format_time(int(8)?)),
        PgType::Uuid => {
            let hex = hex(bytes.get(..16)?);
            text(format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..]))
        }
        PgType::TimestampSeconds | PgType::TimestampMillis => {
            let micros = int(8)?;
            let mut written = format_datetime(micros - micros.rem_euclid(1_000_000));
            if pg_type == PgType::TimestampMillis {
                written.push_str(&format!(".{:03}", micros.rem_euclid(1_000_000) / 1000));
            }
            text(written)
        }
    })
}

/// Whether `value` is of the kind `pg_type` was chosen for, so that `decode_binary` gives it back unchanged
/// (a number in a text column, say, arrives as text). SQLite never stores NaN. For the types that keep a value
/// rather than its writing (instants, times, UUIDs, `jsonb`, `numeric(p,s)`), only the canonical writing is.
pub fn is_native(value: &SqlValue, pg_type: PgType) -> bool {
    let canonical = || {
        let mut bytes = Vec::new();
        encode_binary(value, pg_type, &mut bytes).is_ok() && decode_binary(&bytes, pg_type).as_ref() == Some(value)
    };
    match (pg_type, value) {
        (PgType::BigInt | PgType::Numeric | PgType::SmallInt | PgType::Integer, SqlValue::Integer(_)) => true,
        (PgType::Boolean, SqlValue::Integer(0 | 1)) => true,
        (PgType::Double | PgType::Numeric | PgType::Real, SqlValue::Real(f)) => !f.is_nan(),
        (
            PgType::Text | PgType::Varchar(_) | PgType::Json | PgType::TimestampSeconds | PgType::TimestampMillis | PgType::Date,
            SqlValue::Text(_),
        ) => true,
        (PgType::Bytea, SqlValue::Blob(_)) => true,
        (PgType::TimestampTz | PgType::Timestamp | PgType::Time | PgType::Uuid | PgType::Jsonb, SqlValue::Text(_)) => canonical(),
        (PgType::NumericScaled { .. }, SqlValue::Integer(_) | SqlValue::Real(_)) => canonical(),
        _ => false,
    }
}

/// A binary numeric as the SQLite value it came from: an integer when it has no display scale, else a real.
fn decode_numeric(bytes: &[u8]) -> Option<SqlValue> {
    let (text, scale) = numeric_decimal(bytes)?;
    if scale == 0 {
        let whole = text.split_once('.').map_or(text.as_str(), |(w, _)| w);
        return whole.parse().ok().map(SqlValue::Integer);
    }
    text.parse().ok().map(SqlValue::Real)
}

/// A binary `numeric(p,s)` as a value that writes it again: an integer when its fraction is zero, a real when
/// the real's shortest decimal is it, else its decimal text.
fn decode_scaled_numeric(bytes: &[u8]) -> Option<SqlValue> {
    let (text, _) = numeric_decimal(bytes)?;
    let trimmed = text.trim_end_matches('0').trim_end_matches('.');
    if let Ok(i) = trimmed.parse::<i64>() {
        return Some(SqlValue::Integer(i));
    }
    match trimmed.parse::<f64>() {
        Ok(f) if real_to_plain_decimal(f).trim_end_matches('0') == trimmed => Some(SqlValue::Real(f)),
        _ => Some(SqlValue::Text(trimmed.to_string().into_bytes())),
    }
}

/// A binary numeric as a decimal text `-?int.frac` (at least one digit each side) and its display scale.
fn numeric_decimal(bytes: &[u8]) -> Option<(String, i16)> {
    let word = |i: usize| -> Option<i16> { Some(i16::from_be_bytes(bytes.get(2 * i..2 * i + 2)?.try_into().ok()?)) };
    let (count, weight, sign, scale) = (word(0)?, word(1)?, word(2)? as u16, word(3)?);
    let groups: Vec<i16> = (0..count as usize).map(|i| word(4 + i)).collect::<Option<_>>()?;
    let mut int_part = String::new();
    let mut frac_part = String::new();
    for position in 0..=weight.max(0) {
        let group = groups.get(position as usize).copied().unwrap_or(0);
        int_part.push_str(&format!("{group:04}"));
    }
    for position in (weight + 1).max(0)..count {
        frac_part.push_str(&format!("{:04}", groups[position as usize]));
    }
    if weight < -1 {
        frac_part.insert_str(0, &"0000".repeat((-weight - 1) as usize));
    }
    if weight < 0 {
        int_part = "0".into();
    }
    let int_part = int_part.trim_start_matches('0');
    let sign = if sign == 0x4000 { "-" } else { "" };
    let text = format!(
        "{sign}{}.{}",
        if int_part.is_empty() { "0" } else { int_part },
        if frac_part.is_empty() { "0" } else { &frac_part }
    );
    Some((text, scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats() -> ColumnStats {
        ColumnStats::default()
    }

    /// Every type lite2pg writes, with parameters.
    const ALL_TYPES: [PgType; 21] = [
        PgType::Boolean,
        PgType::SmallInt,
        PgType::Integer,
        PgType::BigInt,
        PgType::Real,
        PgType::Double,
        PgType::Numeric,
        PgType::NumericScaled { precision: 12, scale: 2 },
        PgType::Text,
        PgType::Varchar(Some(5)),
        PgType::Varchar(None),
        PgType::Bytea,
        PgType::TimestampTz,
        PgType::Timestamp,
        PgType::TimestampSeconds,
        PgType::TimestampMillis,
        PgType::Date,
        PgType::Time,
        PgType::Uuid,
        PgType::Jsonb,
        PgType::Json,
    ];

    fn any_value() -> impl proptest::strategy::Strategy<Value = SqlValue> {
        use proptest::prelude::*;
        let text = |pattern: &'static str| pattern.prop_map(|t| SqlValue::Text(t.into_bytes()));
        prop_oneof![
            any::<i64>().prop_map(SqlValue::Integer),
            (-40000i64..40000).prop_map(SqlValue::Integer),
            any::<f64>().prop_map(SqlValue::Real),
            any::<f32>().prop_map(|f| SqlValue::Real(f64::from(f))),
            (-100000i64..100000).prop_map(|cents| SqlValue::Real(cents as f64 / 100.0)),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(SqlValue::Text),
            text("[0-9]{4}-[0-9]{2}-[0-9]{2}( [0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{3})?)?"),
            text("(19|20)[0-9]{2}-0[1-9]-[0-2][0-9]([ T][0-2][0-9]:[0-5][0-9](:[0-5][0-9](\\.[0-9]{1,7})?)?(Z|[+-][01][0-9](:?[0-5][0-9])?)?)?"),
            text("[0-2][0-9]:[0-5][0-9](:[0-5][0-9](\\.[0-9]{1,6})?)?"),
            text("[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"),
            text("-?[0-9]{1,12}(\\.[0-9]{1,3})?"),
            text("[ ]?(\\{\"[a-c]{0,2}\": ?(-?[0-9]{1,3}(\\.[0-9]{1,2})?([eE][+-]?[0-9])?|\"[^\"\\\\]{0,3}\"|true|null|\\[\\]),? ?){0,3}\\}?"),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(SqlValue::Blob),
            proptest::collection::vec(any::<u8>(), 16).prop_map(SqlValue::Blob),
        ]
    }

    fn value_ref(value: &SqlValue) -> rusqlite::types::ValueRef<'_> {
        use rusqlite::types::ValueRef;
        match value {
            SqlValue::Null => ValueRef::Null,
            SqlValue::Integer(i) => ValueRef::Integer(*i),
            SqlValue::Real(f) => ValueRef::Real(*f),
            SqlValue::Text(t) => ValueRef::Text(t),
            SqlValue::Blob(b) => ValueRef::Blob(b),
        }
    }

    /// The kinds each type documents taking: its own, numbers as text in text columns and as JSON numbers in JSON
    /// columns, decimal texts in `numeric(p,s)`, any writing of an instant, time, UUID or JSON value.
    fn documented_kind(value: &SqlValue, pg_type: PgType) -> bool {
        let number = matches!(value, SqlValue::Integer(_) | SqlValue::Real(_));
        let text = matches!(value, SqlValue::Text(_));
        is_native(value, pg_type)
            || (number && matches!(pg_type, PgType::Text | PgType::Varchar(_) | PgType::Json | PgType::Jsonb))
            || (number && matches!(pg_type, PgType::NumericScaled { .. }))
            || (text && matches!(pg_type, PgType::NumericScaled { .. }))
            || (text && matches!(pg_type, PgType::TimestampTz | PgType::Timestamp | PgType::Time | PgType::Uuid | PgType::Jsonb))
            || (matches!(value, SqlValue::Blob(b) if b.len() == 16) && pg_type == PgType::Uuid)
    }

    proptest::proptest! {
        #[test]
        fn every_value_encodes_or_says_why_and_native_ones_come_back(value in any_value(), type_index in 0usize..21) {
            let pg_type = ALL_TYPES[type_index];
            let mut bytes = Vec::new();
            let encoded = encode_binary(&value, pg_type, &mut bytes);
            if encoded.is_ok() && is_native(&value, pg_type) {
                proptest::prop_assert_eq!(decode_binary(&bytes, pg_type), Some(value.clone()));
            }
            if encoded.is_ok() {
                // What repair and deletes of keys found only in PostgreSQL rely on: the decoded value names the same
                // PostgreSQL value.
                let decoded = decode_binary(&bytes, pg_type).expect("what was encoded decodes");
                let mut again = Vec::new();
                proptest::prop_assert!(encode_binary(&decoded, pg_type, &mut again).is_ok(), "{:?} in {}", decoded, pg_type);
                proptest::prop_assert_eq!(again, bytes);
            }
            // What verify relies on to compare kinds: the encoder takes a value only as a kind its type documents.
            let nan = matches!(value, SqlValue::Real(f) if f.is_nan()); // SQLite never stores NaN
            if encoded.is_ok() && !nan {
                proptest::prop_assert!(documented_kind(&value, pg_type), "{:?} in {}", value, pg_type);
            }
            if let Err(misfit) = encoded {
                proptest::prop_assert!(misfit.reason.contains(&pg_type.sql()) || misfit.reason.contains("text"), "{}", misfit.reason);
            }
        }

        #[test]
        fn stats_choose_a_type_every_stored_value_fits(
            values in proptest::collection::vec(any_value(), 1..6),
            declared in proptest::sample::select(
                vec!["DATETIME", "DATE", "TIME", "DECIMAL(12,2)", "decimal", "BOOLEAN", "TEXT", "", "UUID", "JSON", "JSONB"],
            ),
        ) {
            let checks = ValueChecks::for_declared(declared);
            let mut stats = ColumnStats::default();
            for value in &values {
                stats.observe(value_ref(value), &checks);
            }
            let chosen = choose_pg_type(declared, &stats);
            let fits = |v: &SqlValue| encode_binary(v, chosen, &mut Vec::new()).is_ok();
            if stats.blobs == 0 && !values.iter().any(|v| matches!(v, SqlValue::Text(t) if check_pg_text(t).is_err())) {
                proptest::prop_assert!(values.iter().all(fits), "{:?} as {} for {}", values, chosen, declared);
            }
        }
    }

    #[test]
    fn binary_values_decode_back_to_what_was_encoded() {
        let cases = [
            (SqlValue::Integer(-5), PgType::BigInt),
            (SqlValue::Integer(1), PgType::Boolean),
            (SqlValue::Real(-0.0), PgType::Double),
            (SqlValue::Integer(-123456789012), PgType::Numeric),
            (SqlValue::Integer(0), PgType::Numeric),
            (SqlValue::Real(1.5), PgType::Numeric),
            (SqlValue::Real(-0.000125), PgType::Numeric),
            (SqlValue::Real(12345.0), PgType::Numeric),
            (SqlValue::Text("é".into()), PgType::Text),
            (SqlValue::Blob(vec![0, 255]), PgType::Bytea),
            (SqlValue::Text("1999-12-31".into()), PgType::Date),
            (SqlValue::Text("2024-02-29 23:59:58".into()), PgType::TimestampSeconds),
            (SqlValue::Text("1970-01-01 00:00:00.001".into()), PgType::TimestampMillis),
        ];
        for (value, pg_type) in cases {
            let mut bytes = Vec::new();
            encode_binary(&value, pg_type, &mut bytes).unwrap();
            assert_eq!(decode_binary(&bytes, pg_type), Some(value.clone()), "{value:?} as {pg_type}");
        }
    }

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
    fn mapping_follows_stored_values() {
        let ints = ColumnStats { integers: 3, ..stats() };
        assert_eq!(choose_pg_type("INTEGER", &ints), PgType::BigInt);
        assert_eq!(choose_pg_type("BOOLEAN", &ints), PgType::Boolean);
        let not_bool = ColumnStats { non_boolean_integers: 1, ..ints };
        assert_eq!(choose_pg_type("BOOLEAN", &not_bool), PgType::BigInt);
        assert_eq!(choose_pg_type("REAL", &ColumnStats { reals: 1, ..stats() }), PgType::Double);
        assert_eq!(choose_pg_type("INT", &ColumnStats { integers: 1, reals: 1, ..stats() }), PgType::Numeric);
        let specials = ColumnStats { integers: 1, reals: 1, special_reals: 1, ..stats() };
        assert_eq!(choose_pg_type("INT", &specials), PgType::Text);
        assert_eq!(choose_pg_type("INTEGER_OR_TEXT", &ColumnStats { integers: 1, texts: 1, ..stats() }), PgType::Text);
        assert_eq!(choose_pg_type("TEXT", &ColumnStats { texts: 1, blobs: 1, ..stats() }), PgType::Bytea);
        let times = ColumnStats { texts: 2, datetime_texts: 2, ..stats() };
        assert_eq!(choose_pg_type("DATETIME", &times), PgType::TimestampTz);
        assert_eq!(choose_pg_type("TEXT", &times), PgType::Text);
        let some_times = ColumnStats { texts: 2, datetime_texts: 1, ..stats() };
        assert_eq!(choose_pg_type("DATETIME", &some_times), PgType::Text);
        assert_eq!(choose_pg_type("MONEY", &stats()), PgType::Numeric);
        assert_eq!(choose_pg_type("REAL", &stats()), PgType::Double);
        assert_eq!(choose_pg_type("", &stats()), PgType::Bytea);
    }

    #[test]
    fn columns_without_a_declared_kind_follow_their_values() {
        for declared in ["", " ", "ANY", "any"] {
            assert!(is_untyped(declared), "{declared:?}");
            assert_eq!(choose_pg_type(declared, &stats()), PgType::Bytea, "empty: only a blob fits, the rest widens it");
        }
        assert!(!is_untyped("ANYTHING") && !is_untyped("TEXT"));
        let ints = ColumnStats { integers: 2, ..stats() };
        assert_eq!(choose_pg_type("ANY", &ints), PgType::BigInt);
        assert_eq!(choose_pg_type("", &ColumnStats { blobs: 3, ..ints }), PgType::Bytea, "at the snapshot the most win");
        assert_eq!(choose_pg_type("", &ColumnStats { blobs: 1, texts: 1, ..ints }), PgType::Text);

        let (int, text, blob) = (SqlValue::Integer(1), SqlValue::Text(b"x".to_vec()), SqlValue::Blob(b"x".to_vec()));
        assert_eq!(untyped_target(PgType::Bytea, &int, &ints), Some(PgType::BigInt), "the first value of an empty column");
        assert_eq!(untyped_target(PgType::BigInt, &int, &ColumnStats { reals: 1, ..ints }), Some(PgType::Numeric));
        let special = ColumnStats { reals: 1, special_reals: 1, ..ints };
        assert_eq!(untyped_target(PgType::BigInt, &int, &special), Some(PgType::Text));
        let mixed = ColumnStats { texts: 1, blobs: 1, ..ints };
        assert_eq!(untyped_target(PgType::Numeric, &text, &mixed), Some(PgType::Text), "a blob stored elsewhere");
        assert_eq!(untyped_target(PgType::Text, &blob, &mixed), None, "no type holds a blob and text as themselves");
        assert_eq!(untyped_target(PgType::Bytea, &text, &mixed), None, "a column holding blobs keeps them");
        assert_eq!(untyped_target(PgType::Text, &blob, &ColumnStats { blobs: 1, ..stats() }), Some(PgType::Bytea));
    }

    #[test]
    fn widening_keeps_every_value_its_own_kind() {
        let (text, blob) = (SqlValue::Text(b"x".to_vec()), SqlValue::Blob(b"x".to_vec()));
        assert_eq!(widened_type(PgType::Boolean, &SqlValue::Integer(2)), Some(PgType::BigInt));
        assert_eq!(widened_type(PgType::BigInt, &SqlValue::Real(0.5)), Some(PgType::Numeric));
        assert_eq!(widened_type(PgType::BigInt, &SqlValue::Real(f64::INFINITY)), Some(PgType::Text));
        assert_eq!(widened_type(PgType::Numeric, &text), Some(PgType::Text));
        assert_eq!(widened_type(PgType::Text, &blob), None, "a blob is never turned into text");
        assert_eq!(widened_type(PgType::Bytea, &SqlValue::Integer(1)), None, "nor a number into bytes");
        assert_eq!(widened_type(PgType::Bytea, &text), None, "nor text");
        assert_eq!(widened_type(PgType::Text, &SqlValue::Text(b"a\0b".to_vec())), None);
        assert_eq!(widen_cast("c", PgType::Bytea, PgType::BigInt), ("NULL::bigint".to_string(), false));
    }

    #[test]
    fn bytea_holds_only_blobs_so_kinds_stay_apart() {
        let encoded = |value: SqlValue, pg_type| {
            let mut out = Vec::new();
            encode_binary(&value, pg_type, &mut out).ok().map(|()| out)
        };
        assert_eq!(encoded(SqlValue::Blob(b"1".to_vec()), PgType::Bytea), Some(b"1".to_vec()));
        assert_eq!(encoded(SqlValue::Integer(1), PgType::Bytea), None);
        assert_eq!(encoded(SqlValue::Text(b"1".to_vec()), PgType::Bytea), None);
        assert_eq!(encoded(SqlValue::Real(1.0), PgType::Bytea), None);
        assert_eq!(encoded(SqlValue::Blob(b"1".to_vec()), PgType::Text), None);
        assert_eq!(encoded(SqlValue::Integer(1), PgType::Text), Some(b"1".to_vec()), "numbers in text: the documented form");
    }

    #[test]
    fn reals_become_plain_decimals_with_a_fraction() {
        assert_eq!(real_to_plain_decimal(0.1), "0.1");
        assert_eq!(real_to_plain_decimal(3.0), "3.0");
        assert_eq!(real_to_plain_decimal(-1.5e-7), "-0.00000015");
        assert_eq!(real_to_plain_decimal(1e20), "100000000000000000000.0");
        assert_eq!(real_to_plain_decimal(123.456), "123.456");
        assert_eq!(real_to_plain_decimal(5e-324), format!("0.{}5", "0".repeat(323)));
    }

    #[test]
    fn numeric_binary_layout() {
        let mut out = Vec::new();
        encode_numeric("12345.678", &mut out);
        // ndigits 3, weight 1, sign 0, dscale 3, digits 1 2345 6780
        assert_eq!(out, [0, 3, 0, 1, 0, 0, 0, 3, 0, 1, 0x09, 0x29, 0x1a, 0x7c]);
        out.clear();
        encode_numeric("-0.0001", &mut out);
        assert_eq!(out, [0, 1, 0xff, 0xff, 0x40, 0, 0, 4, 0, 1]);
        out.clear();
        encode_numeric("0", &mut out);
        assert_eq!(out, [0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn timestamps_parse_only_real_dates() {
        assert_eq!(parse_timestamp(b"2000-01-01 00:00:01", false), Some(1_000_000));
        assert_eq!(parse_timestamp(b"2000-01-01 00:00:00.250", true), Some(250_000));
        assert_eq!(parse_timestamp(b"2023-02-29 00:00:00", false), None);
        assert!(parse_timestamp(b"2024-02-29 00:00:00", false).is_some());
        assert_eq!(parse_timestamp(b"0000-01-01 00:00:00", false), None);
        assert_eq!(parse_date(b"1999-12-31"), Some(-1));
    }

    #[test]
    fn values_that_do_not_fit_say_why() {
        let mut out = Vec::new();
        let nul = encode_binary(&SqlValue::Text(b"a\0b".to_vec()), PgType::Text, &mut out).unwrap_err();
        assert!(nul.reason.contains("NUL"));
        let bad = encode_binary(&SqlValue::Text(vec![0xff]), PgType::Text, &mut out).unwrap_err();
        assert!(bad.reason.contains("UTF-8"));
        let text_in_int = encode_binary(&SqlValue::Text(b"x".to_vec()), PgType::BigInt, &mut out).unwrap_err();
        assert_eq!(text_in_int.reason, "a text value does not fit a bigint column");
    }

    #[test]
    fn joined_types_hold_both_sides() {
        use PgType::*;
        let join = |a, b| (joined_type(a, b), joined_type(b, a));
        assert_eq!(join(Boolean, BigInt), (BigInt, BigInt));
        assert_eq!(join(BigInt, Double), (Numeric, Numeric));
        assert_eq!(join(Boolean, Double), (Numeric, Numeric));
        assert_eq!(join(BigInt, Text), (Text, Text));
        assert_eq!(join(Date, TimestampSeconds), (TimestampTz, TimestampTz));
        assert_eq!(join(Numeric, Bytea), (Bytea, Bytea));
        assert_eq!(join(Date, Date), (Date, Date));
        assert_eq!(joined_types([BigInt, Double, BigInt], false), Some(Numeric));
        assert_eq!(joined_types([BigInt, Double], true), Some(Text), "numeric cannot hold infinities");
        assert_eq!(joined_types([], false), None);
    }

    fn encoded(value: SqlValue, pg_type: PgType) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        encode_binary(&value, pg_type, &mut out).map(|()| out).map_err(|m| m.reason)
    }

    fn text(t: &str) -> SqlValue {
        SqlValue::Text(t.as_bytes().to_vec())
    }

    fn numeric(decimal: &str) -> Vec<u8> {
        let mut out = Vec::new();
        encode_numeric(decimal, &mut out);
        out
    }

    /// Asserts each value's encoding, or that its misfit names the value's kind, the column's type and `why`.
    fn assert_conversions(pg_type: PgType, cases: &[(SqlValue, Result<Vec<u8>, &str>)]) {
        for (value, expected) in cases {
            match (encoded(value.clone(), pg_type), expected) {
                (Ok(bytes), Ok(want)) => assert_eq!(&bytes, want, "{value:?} in {pg_type}"),
                (Err(reason), Err(why)) => {
                    let prefix = format!("a {} value does not fit a {} column", value.storage_class(), pg_type.sql());
                    assert!(reason.starts_with(&prefix) && reason.contains(why), "{value:?} in {pg_type}: {reason}");
                }
                (got, want) => panic!("{value:?} in {pg_type}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn integers_and_booleans_fit_by_range() {
        assert_conversions(
            PgType::Boolean,
            &[
                (SqlValue::Integer(0), Ok(vec![0])),
                (SqlValue::Integer(1), Ok(vec![1])),
                (SqlValue::Integer(2), Err("2 is not 0 or 1")),
            ],
        );
        assert_conversions(
            PgType::SmallInt,
            &[
                (SqlValue::Integer(32767), Ok(vec![0x7f, 0xff])),
                (SqlValue::Integer(-32768), Ok(vec![0x80, 0])),
                (SqlValue::Integer(32768), Err("32768 is out of its range")),
                (SqlValue::Real(1.0), Err("")),
                (text("1"), Err("")),
            ],
        );
        assert_conversions(
            PgType::Integer,
            &[
                (SqlValue::Integer(-2147483648), Ok(vec![0x80, 0, 0, 0])),
                (SqlValue::Integer(2147483648), Err("2147483648 is out of its range")),
            ],
        );
    }

    #[test]
    fn float4_takes_only_reals_it_holds_exactly() {
        assert_conversions(
            PgType::Real,
            &[
                (SqlValue::Real(0.5), Ok(0.5f32.to_bits().to_be_bytes().to_vec())),
                (SqlValue::Real(-0.0), Ok((-0.0f32).to_bits().to_be_bytes().to_vec())),
                (SqlValue::Real(f64::INFINITY), Ok(f32::INFINITY.to_bits().to_be_bytes().to_vec())),
                (SqlValue::Real(f64::from(0.1f32)), Ok(0.1f32.to_bits().to_be_bytes().to_vec())),
                (SqlValue::Real(0.1), Err("0.1 has no exact float4 form")),
                (SqlValue::Real(1e300), Err("has no exact float4 form")),
                (SqlValue::Integer(1), Err("")),
            ],
        );
    }

    #[test]
    fn scaled_numerics_take_values_exact_at_their_scale() {
        let money = PgType::NumericScaled { precision: 12, scale: 2 };
        assert_conversions(
            money,
            &[
                (SqlValue::Real(12.5), Ok(numeric("12.50"))),
                (SqlValue::Integer(12), Ok(numeric("12.00"))),
                (SqlValue::Integer(-9999999999), Ok(numeric("-9999999999.00"))),
                (SqlValue::Real(0.1), Ok(numeric("0.10"))),
                (text("123.45"), Ok(numeric("123.45"))),
                (text("-0.5"), Ok(numeric("-0.50"))),
                (text("7"), Ok(numeric("7.00"))),
                (SqlValue::Real(1.005), Err("1.005 has more than 2 fraction digits")),
                (SqlValue::Integer(10_000_000_000), Err("has more than 10 integer digits")),
                (SqlValue::Real(-0.0), Err("-0.0 has no decimal form")),
                (SqlValue::Real(f64::INFINITY), Err("Inf has no decimal form")),
                (text("1e3"), Err("not a decimal number")),
                (text("12.345"), Err("more than 2 fraction digits")),
                (SqlValue::Blob(vec![1]), Err("")),
            ],
        );
        let whole = PgType::NumericScaled { precision: 5, scale: 0 };
        assert_conversions(whole, &[(SqlValue::Integer(12345), Ok(numeric("12345"))), (SqlValue::Real(1.5), Err("fraction"))]);
        let decoded = |value: SqlValue, pg_type| decode_binary(&encoded(value, pg_type).unwrap(), pg_type).unwrap();
        assert_eq!(decoded(SqlValue::Real(12.5), money), SqlValue::Real(12.5));
        assert_eq!(decoded(SqlValue::Real(12.0), money), SqlValue::Integer(12));
        let wide = PgType::NumericScaled { precision: 30, scale: 2 };
        assert_eq!(decoded(text("12345678901234567890.12"), wide), text("12345678901234567890.12"));
    }

    #[test]
    fn varchar_counts_characters() {
        assert_conversions(
            PgType::Varchar(Some(3)),
            &[
                (text("abc"), Ok(b"abc".to_vec())),
                (text("éé"), Ok("éé".as_bytes().to_vec())),
                (SqlValue::Integer(123), Ok(b"123".to_vec())),
                (text("abcd"), Err("it is 4 characters long")),
                (SqlValue::Integer(-123), Err("it is 4 characters long")),
                (SqlValue::Blob(b"a".to_vec()), Err("")),
            ],
        );
        assert_eq!(encoded(text(&"x".repeat(10_000)), PgType::Varchar(None)).map(|b| b.len()), Ok(10_000));
        assert!(encoded(SqlValue::Text(vec![0xff]), PgType::Varchar(None)).unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn dates_and_times_take_every_written_form_as_its_instant() {
        let micros = |t: &str| Ok(parse_datetime(t.as_bytes()).unwrap().to_be_bytes().to_vec());
        let utc = micros("2024-01-02 03:04:05");
        for pg_type in [PgType::TimestampTz, PgType::Timestamp] {
            assert_conversions(
                pg_type,
                &[
                    (text("2024-01-02 03:04:05"), utc.clone()),
                    (text("2024-01-02T03:04:05"), utc.clone()),
                    (text("2024-01-02T03:04:05Z"), utc.clone()),
                    (text("2024-01-02T05:04:05+02:00"), utc.clone()),
                    (text("2024-01-01T22:04:05-0500"), utc.clone()),
                    (text("2024-01-02 03:04:05.000000"), utc.clone()),
                    (text("2024-01-02 03:04:05.123456"), micros("2024-01-02 03:04:05.123456")),
                    (text("2024-01-02"), micros("2024-01-02 00:00:00")),
                    (text("2024-01-02 03:04"), micros("2024-01-02 03:04:00")),
                    (text("yesterday"), Err("not a date and time")),
                    (text("2024-02-30 00:00:00"), Err("not a date and time")),
                    (text("2024-01-02 03:04:05.1234567"), Err("not a date and time")),
                    (SqlValue::Integer(1_700_000_000), Err("")),
                ],
            );
        }
        assert_conversions(
            PgType::Date,
            &[
                (text("2024-02-29"), Ok((parse_date(b"2024-02-29").unwrap() as i32).to_be_bytes().to_vec())),
                (text("2024-02-30"), Err("not a date (YYYY-MM-DD)")),
                (text("2024-02-01 00:00:00"), Err("not a date (YYYY-MM-DD)")),
            ],
        );
        assert_conversions(
            PgType::Time,
            &[
                (text("13:45"), Ok(((13 * 60 + 45) * 60_000_000i64).to_be_bytes().to_vec())),
                (text("13:45:00.000001"), Ok(((13 * 60 + 45) * 60_000_000i64 + 1).to_be_bytes().to_vec())),
                (text("25:00"), Err("not a time (HH:MM[:SS[.ffffff]])")),
                (text("13:45:00+01:00"), Err("not a time")),
            ],
        );
        let decoded = |t: &str, pg_type| decode_binary(&encoded(text(t), pg_type).unwrap(), pg_type).unwrap();
        assert_eq!(decoded("2024-01-02T05:04:05.5+02:00", PgType::TimestampTz), text("2024-01-02 03:04:05.500000"));
        assert_eq!(decoded("2024-01-02T05:04:05+02:00", PgType::Timestamp), text("2024-01-02 03:04:05"));
        assert_eq!(decoded("07:08", PgType::Time), text("07:08:00"));
    }

    #[test]
    fn uuids_come_from_hex_texts_and_16_byte_blobs() {
        let bytes: Vec<u8> = (0..16).map(|i| i * 17).collect();
        let hex_text = "00112233445566778899aabbccddeeff";
        assert_conversions(
            PgType::Uuid,
            &[
                (text(hex_text), Ok(bytes.clone())),
                (text(&hex_text.to_uppercase()), Ok(bytes.clone())),
                (text("00112233-4455-6677-8899-AABBCCDDEEFF"), Ok(bytes.clone())),
                (SqlValue::Blob(bytes.clone()), Ok(bytes.clone())),
                (SqlValue::Blob(bytes[..15].to_vec()), Err("15 bytes, not 16")),
                (text("00112233-4455-6677-8899-aabbccddeefg"), Err("not a UUID")),
                (text("{00112233-4455-6677-8899-aabbccddeeff}"), Err("not a UUID")),
                (text("0011223344556677-8899-aabbccddeeff"), Err("not a UUID")),
                (SqlValue::Integer(1), Err("")),
            ],
        );
        assert_eq!(decode_binary(&bytes, PgType::Uuid), Some(text("00112233-4455-6677-8899-aabbccddeeff")));
    }

    #[test]
    fn json_columns_take_json_text_and_numbers() {
        let jsonb = |t: &str| Ok([&[JSONB_VERSION], t.as_bytes()].concat());
        assert_conversions(
            PgType::Jsonb,
            &[
                (text(r#"{"b":1,"a":[true,null]}"#), jsonb(r#"{"a": [true, null], "b": 1}"#)),
                (text(r#""x""#), jsonb(r#""x""#)),
                (SqlValue::Integer(5), jsonb("5")),
                (SqlValue::Real(1.5), jsonb("1.5")),
                (SqlValue::Real(1e20), jsonb("100000000000000000000")),
                (SqlValue::Real(f64::INFINITY), Err("not valid JSON")),
                (text("{"), Err("not valid JSON")),
                (text(r#""\u0000""#), Err("jsonb cannot hold")),
                (SqlValue::Blob(b"{}".to_vec()), Err("")),
            ],
        );
        assert_conversions(
            PgType::Json,
            &[
                (text(r#" {"b":1, "b":2} "#), Ok(br#" {"b":1, "b":2} "#.to_vec())),
                (SqlValue::Integer(-7), Ok(b"-7".to_vec())),
                (text("nope"), Err("not valid JSON")),
            ],
        );
        assert_eq!(decode_binary(&jsonb("[1, 2]").unwrap(), PgType::Jsonb), Some(text("[1, 2]")));
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

    #[test]
    fn declared_dates_times_booleans_and_decimals_type_empty_columns() {
        for (declared, pg_type) in [
            ("DATETIME", PgType::TimestampTz),
            ("datetime(6)", PgType::TimestampTz),
            ("TIMESTAMP", PgType::TimestampTz),
            ("timestamp with time zone", PgType::TimestampTz),
            ("TIMESTAMPTZ", PgType::TimestampTz),
            ("timestamp without time zone", PgType::TimestampTz),
            ("DATE", PgType::Date),
            ("TIME", PgType::Time),
            ("time(6)", PgType::Time),
            ("time without time zone", PgType::Time),
            ("TIMETZ", PgType::Text),
            ("time with time zone", PgType::Text),
            ("BOOLEAN", PgType::Boolean),
            ("bool", PgType::Boolean),
            ("DECIMAL(12,2)", PgType::NumericScaled { precision: 12, scale: 2 }),
            ("numeric(10, 3)", PgType::NumericScaled { precision: 10, scale: 3 }),
            ("NUMERIC(10)", PgType::NumericScaled { precision: 10, scale: 0 }),
            ("decimal", PgType::Numeric),
            ("DECIMAL(0,0)", PgType::Numeric),
            ("DECIMALS", PgType::Numeric),
            ("UUID", PgType::Uuid),
            ("json", PgType::Json),
            ("JSONB", PgType::Jsonb),
            ("JSON_TEXT", PgType::Text),
        ] {
            assert_eq!(choose_pg_type(declared, &stats()), pg_type, "{declared}");
        }
    }

    #[test]
    fn stored_values_keep_the_declared_type_only_when_all_fit() {
        let observed = |declared: &str, values: &[SqlValue]| {
            let checks = ValueChecks::for_declared(declared);
            let mut stats = stats();
            values.iter().for_each(|v| stats.observe(value_ref(v), &checks));
            choose_pg_type(declared, &stats)
        };
        let django = [text("2024-01-02 03:04:05.123456"), text("2024-01-02 03:04:05")];
        assert_eq!(observed("datetime", &django), PgType::TimestampTz);
        assert_eq!(observed("DATETIME", &[text("2024-01-02T03:04:05Z"), text("2024-01-02")]), PgType::TimestampTz);
        assert_eq!(observed("DATETIME", &[text("2024-01-02"), text("soon")]), PgType::Text);
        assert_eq!(observed("DATE", &[text("2024-01-02")]), PgType::Date);
        assert_eq!(observed("DATE", &[text("2024-01-02"), text("2024-01-02 10:00")]), PgType::TimestampTz);
        assert_eq!(observed("TIME", &[text("10:00"), text("10:00:00.5")]), PgType::Time);
        assert_eq!(observed("TIME", &[text("10:00"), text("2024-01-02 10:00")]), PgType::Text);
        assert_eq!(observed("TEXT", &django), PgType::Text);
        let money = PgType::NumericScaled { precision: 12, scale: 2 };
        assert_eq!(observed("DECIMAL(12,2)", &[SqlValue::Integer(12), SqlValue::Real(12.5)]), money);
        assert_eq!(observed("DECIMAL(12,2)", &[SqlValue::Real(1.005)]), PgType::Numeric);
        assert_eq!(observed("DECIMAL(12,2)", &[SqlValue::Real(f64::INFINITY)]), PgType::Double);
        assert_eq!(observed("decimal", &[SqlValue::Integer(12), SqlValue::Real(0.1)]), PgType::Numeric);
        assert_eq!(observed("decimal", &[SqlValue::Integer(12)]), PgType::Numeric);
        assert_eq!(observed("decimal", &[text("12.3")]), PgType::Text);
        assert_eq!(observed("DECIMAL(12,2)", &[text("1234567890.25"), SqlValue::Integer(1)]), money, "Django's long decimals");
        assert_eq!(observed("DECIMAL(12,2)", &[text("1.005"), SqlValue::Integer(1)]), PgType::Text);
        let uuid = [text("0123456789abcdef0123456789abcdef"), SqlValue::Blob(vec![7; 16])];
        assert_eq!(observed("UUID", &uuid), PgType::Uuid);
        assert_eq!(observed("UUID", &[text("0123456789abcdef0123456789abcdef"), text("n/a")]), PgType::Text);
        assert_eq!(observed("UUID", &[SqlValue::Blob(vec![7; 15])]), PgType::Bytea);
        let json = [text(r#"{"a": [1, 2]}"#), SqlValue::Integer(5), SqlValue::Real(0.5), text("null")];
        assert_eq!(observed("JSON", &json), PgType::Json);
        assert_eq!(observed("jsonb", &json), PgType::Jsonb);
        assert_eq!(observed("JSON", &[text("{"), SqlValue::Integer(5)]), PgType::Text);
        assert_eq!(observed("JSON", &[SqlValue::Real(f64::INFINITY)]), PgType::Double);
    }

    #[test]
    fn new_types_widen_to_one_holding_both() {
        use PgType::*;
        let money = NumericScaled { precision: 12, scale: 2 };
        assert_eq!(widened_type(SmallInt, &SqlValue::Integer(70_000)), Some(Integer));
        assert_eq!(widened_type(SmallInt, &SqlValue::Integer(1 << 40)), Some(BigInt));
        assert_eq!(widened_type(Integer, &SqlValue::Integer(1 << 40)), Some(BigInt));
        assert_eq!(widened_type(Real, &SqlValue::Real(0.1)), Some(Double));
        assert_eq!(widened_type(money, &SqlValue::Real(1.005)), Some(Numeric));
        assert_eq!(widened_type(TimestampTz, &text("soon")), Some(Text));
        assert_eq!(widened_type(Varchar(Some(3)), &text("long")), Some(Text));
        assert_eq!(joined_type(SmallInt, BigInt), BigInt);
        assert_eq!(joined_type(Boolean, Integer), Integer);
        assert_eq!(joined_type(Real, Double), Double);
        assert_eq!(joined_type(money, BigInt), Numeric);
        assert_eq!(joined_type(TimestampTz, Date), TimestampTz, "a date is midnight UTC");
        assert_eq!(joined_type(TimestampSeconds, TimestampMillis), TimestampTz);
        assert_eq!(joined_type(Timestamp, TimestampTz), Text, "timestamp is chosen by name only");
        assert_eq!(joined_type(Time, Date), Text);
        assert_eq!(widened_type(Date, &text("2024-01-02 10:00")), Some(TimestampTz));
        assert_eq!(widened_type(TimestampSeconds, &text("2024-01-02 10:00:00.123456")), Some(TimestampTz));
        assert_eq!(widened_type(Timestamp, &text("2024-01-02 10:00:00.123456")), Some(Text));
        assert_eq!(widened_type(Date, &text("10:00")), Some(Text));
        assert_eq!(widen_cast("c", Date, TimestampTz), ("c::timestamp AT TIME ZONE 'UTC'".to_string(), true));
        assert_eq!(widen_cast("c", TimestampMillis, TimestampTz), ("c AT TIME ZONE 'UTC'".to_string(), true));
        assert_eq!(joined_type(Varchar(Some(3)), Varchar(Some(5))), Varchar(Some(5)));
        assert_eq!(joined_type(Varchar(Some(3)), Text), Text);
        assert_eq!(widen_cast("c", SmallInt, BigInt), ("c::bigint".to_string(), true));
        assert_eq!(widen_cast("c", Real, Double), ("c::double precision".to_string(), true));
        assert!(!widen_cast("c", TimestampTz, Text).1, "the written forms are gone: copy the table again");
        assert!(!widen_cast("c", money, Numeric).1, "12.50 is not what numeric holds for 12.5");
        assert!(same_kind(&text("x"), Varchar(Some(1))) && same_kind(&text("x"), Time) && same_kind(&text("x"), Uuid));
        assert!(!same_kind(&SqlValue::Blob(vec![1]), Uuid) && !same_kind(&SqlValue::Integer(1), Json));
        assert_eq!(widen_cast("c", Json, Text), ("c::text".to_string(), true), "json keeps the text as written");
        assert!(!widen_cast("c", Jsonb, Text).1 && !widen_cast("c", Uuid, Text).1);
    }
}
