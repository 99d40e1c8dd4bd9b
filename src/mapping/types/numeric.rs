//! Numbers as PostgreSQL's `numeric` holds them: plain decimal text for reals, `numeric(p,s)`'s exact scale,
//! and the binary base-10000 form both ways.

use super::{real_to_text, Misfit, PgType, SqlValue};

pub(super) fn encode_real_as_numeric(f: f64, out: &mut Vec<u8>) -> Result<(), Misfit> {
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

/// A binary numeric as the SQLite value it came from: an integer when it has no display scale, else a real.
pub(super) fn decode_numeric(bytes: &[u8]) -> Option<SqlValue> {
    let (text, scale) = numeric_decimal(bytes)?;
    if scale == 0 {
        let whole = text.split_once('.').map_or(text.as_str(), |(w, _)| w);
        return whole.parse().ok().map(SqlValue::Integer);
    }
    text.parse().ok().map(SqlValue::Real)
}

/// A binary `numeric(p,s)` as a value that writes it again: an integer when its fraction is zero, a real when
/// the real's shortest decimal is it, else its decimal text.
pub(super) fn decode_scaled_numeric(bytes: &[u8]) -> Option<SqlValue> {
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
}
