//! Widening: the type a column changes to when a value arrives that its type cannot hold, the one type for
//! columns joined by foreign keys, and the cast that converts a column in place.

use super::datetime::parse_datetime;
use super::encode::check_pg_text;
use super::{PgType, SqlValue};

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

#[cfg(test)]
mod tests {
    use super::super::test_values::text;
    use super::*;

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
