//! JSON as PostgreSQL takes it: the checks `json` makes on input, and the text `jsonb` gives back (keys sorted by
//! length then bytes with the last duplicate kept, numbers as `numeric` prints them, `", "` and `": "` between
//! items). verify compares a SQLite JSON text with a `jsonb` value through that text.

/// Nesting deeper than this is refused (PostgreSQL's own limit comes from its stack size).
const MAX_DEPTH: usize = 1000;
/// `numeric`'s limits: digits before and after the decimal point.
const MAX_INT_DIGITS: i64 = 131_072;
const MAX_SCALE: i64 = 16_383;

/// Why a text is not JSON PostgreSQL takes.
pub type Refusal = &'static str;

/// Checks `text` as PostgreSQL's `json` input does; it is then kept as written.
pub fn check_json(text: &str) -> Result<(), Refusal> {
    Parser::new(text, true).document().map(|_| ())
}

/// The text `jsonb` holds and prints for `text`.
pub fn jsonb_text(text: &str) -> Result<String, Refusal> {
    let value = Parser::new(text, false).document()?;
    let mut out = String::with_capacity(text.len());
    value.write(&mut out);
    Ok(out)
}

enum Value {
    Scalar(String),
    Str(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

impl Value {
    fn write(&self, out: &mut String) {
        match self {
            Value::Scalar(text) => out.push_str(text),
            Value::Str(text) => write_string(text, out),
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Value::Object(pairs) => {
                out.push('{');
                for (i, (key, value)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_string(key, out);
                    out.push_str(": ");
                    value.write(out);
                }
                out.push('}');
            }
        }
    }
}

/// A string as PostgreSQL's `escape_json` writes it.
fn write_string(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
    /// `json` keeps `\u0000` as written; `jsonb` cannot hold it.
    nul_escape_allowed: bool,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str, nul_escape_allowed: bool) -> Self {
        Parser { bytes: text.as_bytes(), at: 0, nul_escape_allowed, depth: 0 }
    }

    fn document(&mut self) -> Result<Value, Refusal> {
        let value = self.value()?;
        self.skip_space();
        match self.at_end() {
            true => Ok(value),
            false => Err("text follows the JSON value"),
        }
    }

    fn at_end(&self) -> bool {
        self.at == self.bytes.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), Refusal> {
        self.skip_space();
        match self.peek() == Some(byte) {
            true => {
                self.at += 1;
                Ok(())
            }
            false => Err("not valid JSON"),
        }
    }

    fn value(&mut self) -> Result<Value, Refusal> {
        self.skip_space();
        match self.peek() {
            Some(b'{') => self.nested(|p| p.object()),
            Some(b'[') => self.nested(|p| p.array()),
            Some(b'"') => self.string().map(Value::Str),
            Some(b'-' | b'0'..=b'9') => self.number().map(Value::Scalar),
            _ => ["true", "false", "null"]
                .into_iter()
                .find(|word| self.bytes[self.at..].starts_with(word.as_bytes()))
                .map(|word| {
                    self.at += word.len();
                    Value::Scalar(word.to_string())
                })
                .ok_or("not valid JSON"),
        }
    }

    fn nested(&mut self, parse: impl FnOnce(&mut Self) -> Result<Value, Refusal>) -> Result<Value, Refusal> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("JSON nested too deeply");
        }
        let value = parse(self);
        self.depth -= 1;
        value
    }

    fn array(&mut self) -> Result<Value, Refusal> {
        self.expect(b'[')?;
        let mut items = Vec::new();
        self.skip_space();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value()?);
            self.skip_space();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err("not valid JSON"),
            }
        }
    }

    /// An object's pairs as `jsonb` keeps them: sorted by key length, then bytes; of duplicates, the last.
    fn object(&mut self) -> Result<Value, Refusal> {
        self.expect(b'{')?;
        let mut pairs: Vec<(String, Value)> = Vec::new();
        self.skip_space();
        if self.peek() == Some(b'}') {
            self.at += 1;
        } else {
            loop {
                self.skip_space();
                if self.peek() != Some(b'"') {
                    return Err("not valid JSON");
                }
                let key = self.string()?;
                self.expect(b':')?;
                pairs.push((key, self.value()?));
                self.skip_space();
                match self.peek() {
                    Some(b',') => self.at += 1,
                    Some(b'}') => {
                        self.at += 1;
                        break;
                    }
                    _ => return Err("not valid JSON"),
                }
            }
        }
        // A stable sort keeps duplicates in input order: the last of each run wins.
        pairs.sort_by(|(a, _), (b, _)| a.len().cmp(&b.len()).then_with(|| a.as_bytes().cmp(b.as_bytes())));
        let mut unique: Vec<(String, Value)> = Vec::with_capacity(pairs.len());
        for pair in pairs {
            match unique.last_mut() {
                Some(last) if last.0 == pair.0 => *last = pair,
                _ => unique.push(pair),
            }
        }
        Ok(Value::Object(unique))
    }

    fn string(&mut self) -> Result<String, Refusal> {
        self.at += 1;
        let mut text = String::new();
        loop {
            let start = self.at;
            while matches!(self.peek(), Some(b) if b != b'"' && b != b'\\' && b >= 0x20) {
                self.at += 1;
            }
            text.push_str(std::str::from_utf8(&self.bytes[start..self.at]).map_err(|_| "not valid UTF-8")?);
            match self.peek() {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(text);
                }
                Some(b'\\') => {
                    self.at += 1;
                    self.escape(&mut text)?;
                }
                Some(_) => return Err("a control character in a JSON string is not escaped"),
                None => return Err("a JSON string is not closed"),
            }
        }
    }

    fn escape(&mut self, text: &mut String) -> Result<(), Refusal> {
        let byte = self.peek().ok_or("not valid JSON")?;
        self.at += 1;
        text.push(match byte {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => return self.unicode_escape(text),
            _ => return Err("an invalid escape in a JSON string"),
        });
        Ok(())
    }

    /// `\uXXXX`, a surrogate pair as two of them.
    fn unicode_escape(&mut self, text: &mut String) -> Result<(), Refusal> {
        let unit = self.hex4()?;
        let code = match unit {
            0xD800..=0xDBFF => {
                if !self.bytes[self.at..].starts_with(b"\\u") {
                    return Err("a lone surrogate escape in a JSON string");
                }
                self.at += 2;
                let low = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return Err("a lone surrogate escape in a JSON string");
                }
                0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err("a lone surrogate escape in a JSON string"),
            0 if !self.nul_escape_allowed => return Err("\\u0000 in a JSON string, which jsonb cannot hold"),
            unit => unit,
        };
        text.push(char::from_u32(code).ok_or("an invalid escape in a JSON string")?);
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, Refusal> {
        let digits = self.bytes.get(self.at..self.at + 4).ok_or("an invalid escape in a JSON string")?;
        let text = std::str::from_utf8(digits).map_err(|_| "an invalid escape in a JSON string")?;
        let unit = u32::from_str_radix(text, 16).map_err(|_| "an invalid escape in a JSON string")?;
        self.at += 4;
        Ok(unit)
    }

    fn digit_run(&mut self) -> &'a str {
        let start = self.at;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        std::str::from_utf8(&self.bytes[start..self.at]).expect("ASCII digits")
    }

    /// `-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`, returned as `numeric` prints it.
    fn number(&mut self) -> Result<String, Refusal> {
        let negative = self.peek() == Some(b'-');
        self.at += usize::from(negative);
        let int_digits = self.digit_run();
        if int_digits.is_empty() || (int_digits.len() > 1 && int_digits.starts_with('0')) {
            return Err("not valid JSON");
        }
        let mut frac_digits = "";
        if self.peek() == Some(b'.') {
            self.at += 1;
            frac_digits = self.digit_run();
            if frac_digits.is_empty() {
                return Err("not valid JSON");
            }
        }
        let mut exponent = 0i64;
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            let sign = match self.peek() {
                Some(b'-') => -1,
                Some(b'+') => 1,
                _ => 0,
            };
            self.at += usize::from(sign != 0);
            let digits = self.digit_run();
            let magnitude: i64 = digits.parse().map_err(|_| "not valid JSON")?;
            exponent = if sign < 0 { -magnitude } else { magnitude };
        }
        plain_numeric(negative, int_digits, frac_digits, exponent)
    }
}

/// `numeric`'s output of `±int.frac × 10^exponent`: its display scale is the fraction's length less the exponent.
fn plain_numeric(negative: bool, int_digits: &str, frac_digits: &str, exponent: i64) -> Result<String, Refusal> {
    let scale = (frac_digits.len() as i64 - exponent).max(0);
    let point = int_digits.len() as i64 + exponent;
    if scale > MAX_SCALE || point > MAX_INT_DIGITS + int_digits.len() as i64 {
        return Err("a JSON number beyond numeric's range");
    }
    let digits: String = [int_digits, frac_digits].concat();
    let whole: String = match point {
        p if p <= 0 => String::new(),
        p if p as usize >= digits.len() => format!("{digits}{}", "0".repeat(p as usize - digits.len())),
        p => digits[..p as usize].to_string(),
    };
    let fraction: String = match point {
        p if p < 0 => format!("{}{digits}", "0".repeat((-p) as usize)),
        p if (p as usize) < digits.len() => digits[p as usize..].to_string(),
        _ => String::new(),
    };
    let whole = whole.trim_start_matches('0');
    if whole.len() as i64 > MAX_INT_DIGITS {
        return Err("a JSON number beyond numeric's range");
    }
    let fraction = format!("{fraction:0<width$}", width = scale as usize);
    let zero = whole.is_empty() && fraction.bytes().all(|b| b == b'0');
    let sign = if negative && !zero { "-" } else { "" };
    let whole = if whole.is_empty() { "0" } else { whole };
    Ok(match scale {
        0 => format!("{sign}{whole}"),
        _ => format!("{sign}{whole}.{fraction}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonb_text_is_what_postgresql_prints() {
        for (input, expected) in [
            (r#"{"b":1,"a":2,"aa":[1,2,{}],"a":3}"#, r#"{"a": 3, "b": 1, "aa": [1, 2, {}]}"#),
            (" [ ] ", "[]"),
            (r#""x\u00e9\/\n\u0001""#, "\"x\u{e9}/\\n\\u0001\""),
            (r#""\ud83d\ude00""#, "\"\u{1f600}\""),
            ("true", "true"),
            ("null", "null"),
            ("1e2", "100"),
            ("1.50", "1.50"),
            ("-0", "0"),
            ("-0.0", "0.0"),
            ("1.5e-3", "0.0015"),
            ("1.25e1", "12.5"),
            ("100e-2", "1.00"),
            ("0.0e5", "0"),
            ("-12E+0", "-12"),
        ] {
            assert_eq!(jsonb_text(input).as_deref(), Ok(expected), "{input}");
        }
    }

    #[test]
    fn invalid_json_is_refused() {
        for input in ["", "{", "[1,]", "01", "1.", ".5", "+1", "'a'", "{\"a\" 1}", "\"\t\"", "\"\\x\"", "[1] 2", "nul", "1e"] {
            assert!(check_json(input).is_err(), "{input:?}");
            assert!(jsonb_text(input).is_err(), "{input:?}");
        }
        assert!(check_json(r#""\u0000""#).is_ok(), "json keeps it as written");
        assert!(jsonb_text(r#""\u0000""#).is_err(), "jsonb cannot hold it");
        assert!(check_json(r#""\ud800""#).is_err());
        assert!(check_json(&"[".repeat(MAX_DEPTH + 1)).is_err());
        assert!(jsonb_text("1e999999").is_err());
    }
}
