//! The type decision: the PostgreSQL type for a column from its declared type and a scan of the values stored in
//! it, so that every stored value fits exactly.

use super::datetime::{parse_date, parse_datetime, parse_time};
use super::{encode_binary, numeric_of, Affinity, PgType, SqlValue};

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

#[cfg(test)]
mod tests {
    use super::super::encode::check_pg_text;
    use super::super::test_values::{any_value, text, value_ref};
    use super::*;

    fn stats() -> ColumnStats {
        ColumnStats::default()
    }

    proptest::proptest! {
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
}
