//! The type mapping: which PostgreSQL type holds a SQLite column's values exactly, and how each SQLite value is
//! written in PostgreSQL's binary format for that type (or why it cannot be).

use std::fmt;

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

/// The PostgreSQL types lite2pg creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PgType {
    Boolean,
    BigInt,
    Double,
    /// Integers and non-integral reals together; reals keep at least one fraction digit so they read back as reals.
    Numeric,
    Text,
    Bytea,
    /// `timestamp(0)`: every value was `YYYY-MM-DD HH:MM:SS`.
    TimestampSeconds,
    /// `timestamp(3)`: every value was `YYYY-MM-DD HH:MM:SS.SSS`.
    TimestampMillis,
    /// `date`: every value was `YYYY-MM-DD`.
    Date,
}

impl PgType {
    /// The type as written in DDL.
    pub fn sql(self) -> &'static str {
        match self {
            PgType::Boolean => "boolean",
            PgType::BigInt => "bigint",
            PgType::Double => "double precision",
            PgType::Numeric => "numeric",
            PgType::Text => "text",
            PgType::Bytea => "bytea",
            PgType::TimestampSeconds => "timestamp(0) without time zone",
            PgType::TimestampMillis => "timestamp(3) without time zone",
            PgType::Date => "date",
        }
    }

    /// The function that turns a value of this type into its binary form inside PostgreSQL (what COPY sends).
    pub fn send_function(self) -> &'static str {
        match self {
            PgType::Boolean => "boolsend",
            PgType::BigInt => "int8send",
            PgType::Double => "float8send",
            PgType::Numeric => "numeric_send",
            PgType::Text => "textsend",
            PgType::Bytea => "byteasend",
            PgType::TimestampSeconds | PgType::TimestampMillis => "timestamp_send",
            PgType::Date => "date_send",
        }
    }

    /// The names a config file may give a column type, in `from_setting`'s order.
    pub const SETTING_NAMES: [&'static str; 9] =
        ["boolean", "bigint", "double", "numeric", "text", "bytea", "timestamp", "timestamp(3)", "date"];

    /// A type named in a config file.
    pub fn from_setting(name: &str) -> Option<PgType> {
        let all = [
            PgType::Boolean,
            PgType::BigInt,
            PgType::Double,
            PgType::Numeric,
            PgType::Text,
            PgType::Bytea,
            PgType::TimestampSeconds,
            PgType::TimestampMillis,
            PgType::Date,
        ];
        let name = name.trim().to_ascii_lowercase();
        let position = Self::SETTING_NAMES.iter().position(|n| *n == name).or(match name.as_str() {
            "double precision" => Some(2),
            "timestamp(0)" => Some(6),
            _ => None,
        })?;
        Some(all[position])
    }

    /// Whether a number column: the types an integer or a real can widen within.
    fn is_number(self) -> bool {
        matches!(self, PgType::Boolean | PgType::BigInt | PgType::Double | PgType::Numeric)
    }

    /// Whether a date or time column.
    fn is_time(self) -> bool {
        matches!(self, PgType::TimestampSeconds | PgType::TimestampMillis | PgType::Date)
    }

    /// Reads back a type from PostgreSQL's `format_type()`, for tables lite2pg created earlier.
    pub fn from_format_type(name: &str) -> Option<PgType> {
        Some(match name {
            "boolean" => PgType::Boolean,
            "bigint" => PgType::BigInt,
            "double precision" => PgType::Double,
            "numeric" => PgType::Numeric,
            "text" => PgType::Text,
            "bytea" => PgType::Bytea,
            "timestamp(0) without time zone" => PgType::TimestampSeconds,
            "timestamp(3) without time zone" => PgType::TimestampMillis,
            "date" => PgType::Date,
            _ => return None,
        })
    }
}

impl fmt::Display for PgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sql())
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
    /// Texts in SQLite's `YYYY-MM-DD HH:MM:SS` form that are valid dates.
    pub timestamp_seconds_texts: u64,
    /// Texts in SQLite's `YYYY-MM-DD HH:MM:SS.SSS` form that are valid dates.
    pub timestamp_millis_texts: u64,
    /// Texts in `YYYY-MM-DD` form that are valid dates.
    pub date_texts: u64,
}

impl ColumnStats {
    /// Counts one stored value; `check_time` asks for the date/time shape checks (only for columns that declare
    /// a date or time type, as only those can become one).
    pub fn observe(&mut self, value: rusqlite::types::ValueRef<'_>, check_time: bool) {
        use rusqlite::types::ValueRef;
        match value {
            ValueRef::Null => {}
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
                if check_time {
                    self.timestamp_seconds_texts += u64::from(parse_timestamp(t, false).is_some());
                    self.timestamp_millis_texts += u64::from(parse_timestamp(t, true).is_some());
                    self.date_texts += u64::from(parse_date(t).is_some());
                }
            }
            ValueRef::Blob(_) => self.blobs += 1,
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
        self.timestamp_seconds_texts += other.timestamp_seconds_texts;
        self.timestamp_millis_texts += other.timestamp_millis_texts;
        self.date_texts += other.date_texts;
    }
}

/// Words in a declared type that announce dates or times.
pub fn declares_time(declared: &str) -> bool {
    let upper = declared.to_ascii_uppercase();
    upper.contains("DATE") || upper.contains("TIME")
}

fn declares_boolean(declared: &str) -> bool {
    let upper = declared.trim().to_ascii_uppercase();
    upper == "BOOL" || upper == "BOOLEAN"
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

fn choose_text_type(declared: &str, stats: &ColumnStats) -> PgType {
    if !declares_time(declared) {
        return PgType::Text;
    }
    if stats.timestamp_seconds_texts == stats.texts {
        PgType::TimestampSeconds
    } else if stats.timestamp_millis_texts == stats.texts {
        PgType::TimestampMillis
    } else if stats.date_texts == stats.texts {
        PgType::Date
    } else {
        PgType::Text
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
        return PgType::Text;
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
}

/// Whether `value` is of the column's own kind (a number in a number column, text in a date or time column),
/// so that widening the column keeps its meaning.
pub fn same_kind(value: &SqlValue, column_type: PgType) -> bool {
    match value {
        SqlValue::Integer(_) | SqlValue::Real(_) => column_type.is_number(),
        SqlValue::Text(t) => column_type.is_time() && check_pg_text(t).is_ok(),
        SqlValue::Null | SqlValue::Blob(_) => false,
    }
}

/// The narrowest type that holds every value of `current` and `value` too, each as itself: boolean → bigint →
/// numeric → text, double → numeric, date and time → text. `None` when no type does: a blob with anything but
/// blobs, a number or text in a bytea column, text PostgreSQL's text cannot hold.
pub fn widened_type(current: PgType, value: &SqlValue) -> Option<PgType> {
    let numeric_can_hold = |f: f64| f.is_finite() && !(f == 0.0 && f.is_sign_negative());
    if current == PgType::Bytea {
        return None;
    }
    Some(match value {
        SqlValue::Blob(_) => return None,
        SqlValue::Text(t) if check_pg_text(t).is_err() => return None,
        SqlValue::Null | SqlValue::Text(_) => PgType::Text,
        SqlValue::Integer(_) => match current {
            PgType::Boolean => PgType::BigInt,
            PgType::Double => PgType::Numeric,
            _ => PgType::Text,
        },
        SqlValue::Real(f) => match current {
            PgType::Boolean | PgType::BigInt if numeric_can_hold(*f) => PgType::Numeric,
            _ => PgType::Text,
        },
    })
}

/// The narrowest type that holds every value of both `a` and `b`, in `widened_type`'s order: boolean → bigint →
/// numeric → text, double → numeric, dates and times → text, and anything with bytea → bytea.
pub fn joined_type(a: PgType, b: PgType) -> PgType {
    match (a, b) {
        _ if a == b => a,
        (PgType::Bytea, _) | (_, PgType::Bytea) => PgType::Bytea,
        (PgType::Boolean, PgType::BigInt) | (PgType::BigInt, PgType::Boolean) => PgType::BigInt,
        _ if a.is_number() && b.is_number() => PgType::Numeric,
        _ => PgType::Text,
    }
}

/// The one type for columns joined by foreign keys (PostgreSQL compares keys only within one type): the join of
/// theirs, or text where that is numeric and one of them holds reals numeric cannot (infinities, -0.0).
pub fn joined_types(types: impl IntoIterator<Item = PgType>, holds_special_reals: bool) -> Option<PgType> {
    let joined = types.into_iter().reduce(joined_type)?;
    Some(if joined == PgType::Numeric && holds_special_reals { PgType::Text } else { joined })
}

/// The `USING` expression that converts column `column` (quoted) from `from` to `to`, and whether it gives
/// exactly what lite2pg would write for the SQLite values (when not, the table is copied again).
pub fn widen_cast(column: &str, from: PgType, to: PgType) -> (String, bool) {
    match (from, to) {
        (PgType::Boolean, PgType::BigInt | PgType::Numeric | PgType::Text) => (format!("{column}::int::{}", to.sql()), true),
        (PgType::BigInt, PgType::Numeric | PgType::Text) => (format!("{column}::{}", to.sql()), true),
        (PgType::TimestampSeconds, PgType::Text) => (format!("to_char({column}, 'YYYY-MM-DD HH24:MI:SS')"), true),
        (PgType::TimestampMillis, PgType::Text) => (format!("to_char({column}, 'YYYY-MM-DD HH24:MI:SS.MS')"), true),
        (PgType::Date, PgType::Text) => (format!("to_char({column}, 'YYYY-MM-DD')"), true),
        // Bytes and other kinds never convert into each other (older versions wrote numbers and text into bytea as
        // their text): the table is copied whole.
        (PgType::Bytea, to) | (_, to @ PgType::Bytea) => (format!("NULL::{}", to.sql()), false),
        (_, to) => (format!("{column}::text::{}", to.sql()), false),
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
/// `SqlValue::Null` is handled by the caller (it has no body).
pub fn encode_binary(value: &SqlValue, pg_type: PgType, out: &mut Vec<u8>) -> Result<(), Misfit> {
    match (pg_type, value) {
        (_, SqlValue::Null) => unreachable!("NULL is written as a length of -1 by the caller"),
        (PgType::BigInt, SqlValue::Integer(i)) => out.extend_from_slice(&i.to_be_bytes()),
        (PgType::Boolean, SqlValue::Integer(i @ (0 | 1))) => out.push(*i as u8),
        (PgType::Double, SqlValue::Real(f)) => out.extend_from_slice(&f.to_bits().to_be_bytes()),
        (PgType::Numeric, SqlValue::Integer(i)) => encode_numeric(&i.to_string(), out),
        (PgType::Numeric, SqlValue::Real(f)) => encode_real_as_numeric(*f, out)?,
        (PgType::Text, SqlValue::Text(t)) => out.extend_from_slice(check_pg_text(t)?),
        (PgType::Text, SqlValue::Integer(i)) => out.extend_from_slice(i.to_string().as_bytes()),
        (PgType::Text, SqlValue::Real(f)) => out.extend_from_slice(real_to_text(*f).as_bytes()),
        // Only blobs: text or a number written as its bytes could not be told from the blob of those bytes.
        (PgType::Bytea, SqlValue::Blob(b)) => out.extend_from_slice(b),
        (PgType::TimestampSeconds | PgType::TimestampMillis, SqlValue::Text(t)) => {
            let micros = parse_timestamp(t, pg_type == PgType::TimestampMillis)
                .ok_or_else(|| Misfit::new(format!("text is not a {} value", pg_type.sql())))?;
            out.extend_from_slice(&micros.to_be_bytes());
        }
        (PgType::Date, SqlValue::Text(t)) => {
            let days = parse_date(t).ok_or_else(|| Misfit::new("text is not a date value (YYYY-MM-DD)"))?;
            out.extend_from_slice(&(days as i32).to_be_bytes());
        }
        (_, value) => {
            return Err(Misfit::new(format!("a {} value does not fit a {} column", value.storage_class(), pg_type.sql())))
        }
    }
    Ok(())
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
/// (the inverse of `encode_binary` for every value that fits). Used for keys found only in PostgreSQL.
pub fn decode_binary(bytes: &[u8], pg_type: PgType) -> Option<SqlValue> {
    let int = |n: usize| -> Option<i64> {
        let array: [u8; 8] = [vec![0u8; 8 - n], bytes.get(..n)?.to_vec()].concat().try_into().ok()?;
        let value = i64::from_be_bytes(array);
        // Sign-extend narrower integers.
        Some(if n < 8 { (value << (64 - 8 * n)) >> (64 - 8 * n) } else { value })
    };
    Some(match pg_type {
        PgType::Boolean => SqlValue::Integer(i64::from(*bytes.first()?)),
        PgType::BigInt => SqlValue::Integer(int(8)?),
        PgType::Double => SqlValue::Real(f64::from_bits(int(8)? as u64)),
        PgType::Text => SqlValue::Text(bytes.to_vec()),
        PgType::Bytea => SqlValue::Blob(bytes.to_vec()),
        PgType::Numeric => decode_numeric(bytes)?,
        PgType::Date => SqlValue::Text(format_date(int(4)?).into_bytes()),
        PgType::TimestampSeconds | PgType::TimestampMillis => {
            let micros = int(8)?;
            let (days, of_day) = (micros.div_euclid(86_400_000_000), micros.rem_euclid(86_400_000_000) / 1000);
            let (hms, millis) = (of_day / 1000, of_day % 1000);
            let mut text = format!("{} {:02}:{:02}:{:02}", format_date(days), hms / 3600, hms / 60 % 60, hms % 60);
            if pg_type == PgType::TimestampMillis {
                text.push_str(&format!(".{millis:03}"));
            }
            SqlValue::Text(text.into_bytes())
        }
    })
}

/// Whether `value` is of the kind `pg_type` was chosen for, so that `decode_binary` gives it back unchanged
/// (a number in a text column, say, arrives as text). SQLite never stores NaN.
pub fn is_native(value: &SqlValue, pg_type: PgType) -> bool {
    matches!(
        (pg_type, value),
        (PgType::BigInt | PgType::Numeric, SqlValue::Integer(_))
            | (PgType::Boolean, SqlValue::Integer(0 | 1))
            | (PgType::Text | PgType::TimestampSeconds | PgType::TimestampMillis | PgType::Date, SqlValue::Text(_))
            | (PgType::Bytea, SqlValue::Blob(_))
    ) || matches!((pg_type, value), (PgType::Double | PgType::Numeric, SqlValue::Real(f)) if !f.is_nan())
}

/// A binary numeric as the SQLite value it came from: an integer when it has no display scale, else a real.
fn decode_numeric(bytes: &[u8]) -> Option<SqlValue> {
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
    if scale == 0 {
        let whole = text.split_once('.').map_or(text.as_str(), |(w, _)| w);
        return whole.parse().ok().map(SqlValue::Integer);
    }
    text.parse().ok().map(SqlValue::Real)
}

/// `YYYY-MM-DD` of a day counted from 2000-01-01.
fn format_date(days_since_2000: i64) -> String {
    let (year, month, day) = civil_from_days(days_since_2000 + PG_EPOCH_DAYS);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (inverse of `days_from_civil`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// Days between 1970-01-01 and PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_DAYS: i64 = 10957;

fn digits(bytes: &[u8]) -> Option<i64> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(bytes.iter().fold(0, |acc, d| acc * 10 + i64::from(d - b'0')))
}

/// Parses `YYYY-MM-DD` into days since 2000-01-01; refuses dates that do not exist and year 0.
pub fn parse_date(text: &[u8]) -> Option<i64> {
    if text.len() != 10 || text[4] != b'-' || text[7] != b'-' {
        return None;
    }
    let (year, month, day) = (digits(&text[0..4])?, digits(&text[5..7])?, digits(&text[8..10])?);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if year == 0 || !(1..=12).contains(&month) || day < 1 || day > month_days[(month - 1) as usize] {
        return None;
    }
    Some(days_from_civil(year, month, day) - PG_EPOCH_DAYS)
}

/// Parses SQLite's `YYYY-MM-DD HH:MM:SS` (or with `.SSS` when `millis`) into microseconds since 2000-01-01.
pub fn parse_timestamp(text: &[u8], millis: bool) -> Option<i64> {
    let expected_len = if millis { 23 } else { 19 };
    if text.len() != expected_len || text[10] != b' ' || text[13] != b':' || text[16] != b':' {
        return None;
    }
    let days = parse_date(&text[..10])?;
    let (hour, minute, second) = (digits(&text[11..13])?, digits(&text[14..16])?, digits(&text[17..19])?);
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let fraction_ms = if millis {
        if text[19] != b'.' {
            return None;
        }
        digits(&text[20..23])?
    } else {
        0
    };
    Some(((days * 86_400 + hour * 3600 + minute * 60 + second) * 1000 + fraction_ms) * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats() -> ColumnStats {
        ColumnStats::default()
    }

    fn any_value() -> impl proptest::strategy::Strategy<Value = SqlValue> {
        use proptest::prelude::*;
        prop_oneof![
            any::<i64>().prop_map(SqlValue::Integer),
            any::<f64>().prop_map(SqlValue::Real),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(SqlValue::Text),
            "[0-9]{4}-[0-9]{2}-[0-9]{2}( [0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{3})?)?".prop_map(|t| SqlValue::Text(t.into_bytes())),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(SqlValue::Blob),
        ]
    }

    proptest::proptest! {
        #[test]
        fn every_value_encodes_or_says_why_and_native_ones_come_back(value in any_value(), type_index in 0usize..9) {
            let pg_type = [PgType::Boolean, PgType::BigInt, PgType::Double, PgType::Numeric, PgType::Text, PgType::Bytea,
                PgType::TimestampSeconds, PgType::TimestampMillis, PgType::Date][type_index];
            let mut bytes = Vec::new();
            if encode_binary(&value, pg_type, &mut bytes).is_ok() && is_native(&value, pg_type) {
                proptest::prop_assert_eq!(decode_binary(&bytes, pg_type), Some(value.clone()));
            }
            // What verify relies on to compare kinds: the encoder takes a value only as itself, or a number as text.
            let number_as_text = pg_type == PgType::Text && matches!(value, SqlValue::Integer(_) | SqlValue::Real(_));
            let nan = matches!(value, SqlValue::Real(f) if f.is_nan()); // SQLite never stores NaN
            if encode_binary(&value, pg_type, &mut Vec::new()).is_ok() && !nan {
                proptest::prop_assert!(is_native(&value, pg_type) || number_as_text, "{:?} in {}", value, pg_type);
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
        let times = ColumnStats { texts: 2, timestamp_seconds_texts: 2, ..stats() };
        assert_eq!(choose_pg_type("DATETIME", &times), PgType::TimestampSeconds);
        assert_eq!(choose_pg_type("TEXT", &times), PgType::Text);
        let mixed_times = ColumnStats { texts: 2, timestamp_seconds_texts: 1, timestamp_millis_texts: 1, ..stats() };
        assert_eq!(choose_pg_type("DATETIME", &mixed_times), PgType::Text);
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
        assert_eq!(join(Date, TimestampSeconds), (Text, Text));
        assert_eq!(join(Numeric, Bytea), (Bytea, Bytea));
        assert_eq!(join(Date, Date), (Date, Date));
        assert_eq!(joined_types([BigInt, Double, BigInt], false), Some(Numeric));
        assert_eq!(joined_types([BigInt, Double], true), Some(Text), "numeric cannot hold infinities");
        assert_eq!(joined_types([], false), None);
    }
}
