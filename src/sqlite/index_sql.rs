//! Reads SQLite's `CREATE INDEX` text far enough to evaluate an expression or partial index for a row about to be
//! written: the indexed terms and the WHERE predicate, with column references rewritten to read from a trigger's
//! `NEW` row. Also reads the expressions of generated columns out of `CREATE TABLE` text.
//!
//! A small tokenizer, not a parser: it knows string and blob literals, quoted identifiers ("x", `x`, [x]),
//! numbers, comments, `COLLATE name`, type names after `AS` and function names (a word followed by `(`). Anything
//! it does not understand makes it answer `None`, so callers fall back to something safe instead of guessing.

use crate::ident::quote;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A bare word: keyword, function name, column name, collation or type name.
    Word,
    /// `"x"`, `` `x` `` or `[x]`.
    QuotedName,
    /// String or blob literal, or a number.
    Literal,
    Open,
    Close,
    Comma,
    /// Operators and anything else that is copied as it is.
    Other,
    /// Characters that cannot appear in an index SQLite accepted, or that would change meaning if copied
    /// (a `.` qualifying a name, bind parameters).
    Unknown,
}

#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    kind: Kind,
    text: &'a str,
    /// Whitespace and comments before the token: written again as one space, as a `--` comment copied into
    /// one line of a trigger would swallow the rest of it.
    before: &'a str,
}

/// Words that structure an expression: never column references, and a column of such a name is ambiguous.
const KEYWORDS: &[&str] = &[
    "and", "or", "not", "is", "null", "in", "like", "glob", "regexp", "match", "between", "escape", "case", "when", "then",
    "else", "end", "cast", "as", "collate", "exists", "isnull", "notnull", "distinct", "true", "false", "asc", "desc",
];

/// Names that reach the rowid: an index may not use them, and a trigger could not rewrite them.
const ROWID_NAMES: &[&str] = &["rowid", "oid", "_rowid_"];

fn tokenize(sql: &str) -> Option<Vec<Token<'_>>> {
    let bytes = sql.as_bytes();
    let (mut tokens, mut i, mut gap_start) = (Vec::new(), 0, 0);
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let kind = match c {
            b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => {
                i += 1;
                continue;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = sql[i..].find('\n').map_or(bytes.len(), |n| i + n + 1);
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = sql[i + 2..].find("*/").map_or(bytes.len(), |n| i + 2 + n + 2);
                continue;
            }
            b'\'' => {
                i = end_of_quoted(bytes, i, b'\'')?;
                Kind::Literal
            }
            b'x' | b'X' if bytes.get(i + 1) == Some(&b'\'') => {
                i = end_of_quoted(bytes, i + 1, b'\'')?;
                Kind::Literal
            }
            b'"' | b'`' => {
                i = end_of_quoted(bytes, i, c)?;
                Kind::QuotedName
            }
            b'[' => {
                i += sql[i..].find(']')? + 1;
                Kind::QuotedName
            }
            b'0'..=b'9' => {
                i = end_of_number(bytes, i);
                Kind::Literal
            }
            b'.' if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                i = end_of_number(bytes, i);
                Kind::Literal
            }
            c if c == b'_' || c.is_ascii_alphabetic() || c >= 0x80 => {
                while i < bytes.len()
                    && (bytes[i] == b'_' || bytes[i] == b'$' || bytes[i].is_ascii_alphanumeric() || bytes[i] >= 0x80)
                {
                    i += 1;
                }
                Kind::Word
            }
            b'(' | b')' | b',' => {
                i += 1;
                match c {
                    b'(' => Kind::Open,
                    b')' => Kind::Close,
                    _ => Kind::Comma,
                }
            }
            b'.' | b'?' | b':' | b'@' | b'$' | b'#' | b';' => {
                i += 1;
                Kind::Unknown
            }
            _ => {
                i += 1;
                Kind::Other
            }
        };
        tokens.push(Token { kind, text: &sql[start..i], before: &sql[gap_start..start] });
        gap_start = i;
    }
    Some(tokens)
}

/// The index just past a quoted run starting at `start` (the quote doubled inside stands for itself).
fn end_of_quoted(bytes: &[u8], start: usize, quote: u8) -> Option<usize> {
    let mut i = start + 1;
    loop {
        match bytes.get(i)? {
            c if *c == quote && bytes.get(i + 1) == Some(&quote) => i += 2,
            c if *c == quote => return Some(i + 1),
            _ => i += 1,
        }
    }
}

fn end_of_number(bytes: &[u8], mut i: usize) -> usize {
    if bytes[i] == b'0' && matches!(bytes.get(i + 1), Some(b'x' | b'X')) {
        i += 2;
        while i < bytes.len() && bytes[i].is_ascii_hexdigit() {
            i += 1;
        }
        return i;
    }
    while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
        i += 1;
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(bytes.get(i + 1), Some(b'+' | b'-')));
        if bytes.get(i + 1 + sign).is_some_and(u8::is_ascii_digit) {
            i += 1 + sign;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
        }
    }
    i
}

fn is_word(token: &Token<'_>, word: &str) -> bool {
    token.kind == Kind::Word && token.text.eq_ignore_ascii_case(word)
}

fn join(tokens: &[Token<'_>]) -> String {
    let text: String = tokens.iter().map(|t| format!("{}{}", gap(t), t.text)).collect();
    text.trim().to_string()
}

fn gap(token: &Token<'_>) -> &'static str {
    if token.before.is_empty() {
        ""
    } else {
        " "
    }
}

/// A `CREATE INDEX` statement taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSql {
    /// Each indexed term's expression, without its `COLLATE` and `ASC`/`DESC`.
    pub terms: Vec<String>,
    /// The WHERE clause of a partial index.
    pub predicate: Option<String>,
}

/// Takes a `CREATE [UNIQUE] INDEX … ON table (terms) [WHERE predicate]` statement apart.
pub fn parse_index(sql: &str) -> Option<IndexSql> {
    let tokens = tokenize(sql)?;
    let on = tokens.iter().position(|t| is_word(t, "on"))?;
    let open = on + 2;
    if tokens.get(open)?.kind != Kind::Open {
        return None;
    }
    let (mut depth, mut term_start, mut terms, mut close) = (0usize, open + 1, Vec::new(), None);
    for (i, token) in tokens.iter().enumerate().skip(open) {
        match token.kind {
            Kind::Open => depth += 1,
            Kind::Close if depth == 1 => {
                terms.push(term(&tokens[term_start..i])?);
                close = Some(i);
                break;
            }
            Kind::Close => depth -= 1,
            Kind::Comma if depth == 1 => {
                terms.push(term(&tokens[term_start..i])?);
                term_start = i + 1;
            }
            _ => {}
        }
    }
    let mut rest = &tokens[close? + 1..];
    if rest.last().is_some_and(|t| t.text == ";") {
        rest = &rest[..rest.len() - 1];
    }
    let predicate = match rest.split_first() {
        None => None,
        Some((first, predicate)) if is_word(first, "where") && !predicate.is_empty() => Some(join(predicate)),
        Some(_) => return None,
    };
    Some(IndexSql { terms, predicate })
}

/// The generated columns of a `CREATE TABLE` statement: each column's name (unquoted) and the expression inside
/// its `[GENERATED ALWAYS] AS (…)`. Empty when the text does not tokenize.
pub fn generated_columns(sql: &str) -> Vec<(String, String)> {
    let Some(tokens) = tokenize(sql) else { return Vec::new() };
    let Some(open) = tokens.iter().position(|t| t.kind == Kind::Open) else { return Vec::new() };
    let (mut depth, mut start, mut found) = (0usize, open + 1, Vec::new());
    for (i, token) in tokens.iter().enumerate().skip(open) {
        match token.kind {
            Kind::Open => depth += 1,
            Kind::Close | Kind::Comma if depth == 1 => {
                found.extend(generated_definition(&tokens[start..i]));
                start = i + 1;
                if token.kind == Kind::Close {
                    break;
                }
            }
            Kind::Close => depth -= 1,
            _ => {}
        }
    }
    found
}

/// The name and expression of one column definition when it is `name … AS (expr) …`; `AS` inside parentheses
/// (a CHECK or DEFAULT's CAST) does not count.
fn generated_definition(tokens: &[Token<'_>]) -> Option<(String, String)> {
    let first = tokens.first()?;
    let name = match first.kind {
        Kind::QuotedName => unquote(first.text),
        Kind::Literal if first.text.starts_with('\'') => unquote(first.text),
        Kind::Word => first.text.to_string(),
        _ => return None,
    };
    let mut depth = 0usize;
    for (i, token) in tokens.iter().enumerate().skip(1) {
        match token.kind {
            Kind::Open => depth += 1,
            Kind::Close => depth = depth.checked_sub(1)?,
            Kind::Word if depth == 0 && is_word(token, "as") && tokens.get(i + 1)?.kind == Kind::Open => {
                let close = matching_close(tokens, i + 1)?;
                return Some((name, join(&tokens[i + 2..close])));
            }
            _ => {}
        }
    }
    None
}

/// The position of the `)` closing the `(` at `open`.
fn matching_close(tokens: &[Token<'_>], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, token) in tokens.iter().enumerate().skip(open) {
        match token.kind {
            Kind::Open => depth += 1,
            Kind::Close if depth == 1 => return Some(i),
            Kind::Close => depth -= 1,
            _ => {}
        }
    }
    None
}

/// One indexed term without its trailing `ASC`/`DESC` and `COLLATE name` (the index's collation is read apart).
fn term(mut tokens: &[Token<'_>]) -> Option<String> {
    if tokens.last().is_some_and(|t| is_word(t, "asc") || is_word(t, "desc")) {
        tokens = &tokens[..tokens.len() - 1];
    }
    let n = tokens.len();
    if n >= 2 && is_word(&tokens[n - 2], "collate") {
        tokens = &tokens[..n - 2];
    }
    (!tokens.is_empty()).then(|| join(tokens))
}

/// `expr` (a term or predicate of an index on a table with `columns`) reading its columns from `row` (`NEW`),
/// and the columns it reads. `None` when some name cannot be told apart for sure.
pub fn on_row(expr: &str, columns: &[String], row: &str) -> Option<(String, Vec<String>)> {
    let tokens = tokenize(expr)?;
    let column_named = |name: &str| columns.iter().find(|c| c.eq_ignore_ascii_case(name));
    let (mut text, mut used, mut type_name) = (String::new(), Vec::<String>::new(), false);
    for (i, token) in tokens.iter().enumerate() {
        let previous = i.checked_sub(1).map(|p| &tokens[p]);
        let calls = tokens.get(i + 1).is_some_and(|next| next.kind == Kind::Open);
        let after_collate = previous.is_some_and(|p| is_word(p, "collate"));
        // `CAST(x AS DOUBLE PRECISION)`: the words after AS name a type.
        type_name = token.kind == Kind::Word && (type_name || previous.is_some_and(|p| is_word(p, "as")));
        let name = match token.kind {
            Kind::Unknown => return None,
            Kind::Word if calls || after_collate || type_name => None,
            Kind::Word if KEYWORDS.iter().any(|k| token.text.eq_ignore_ascii_case(k)) => {
                if column_named(token.text).is_some() {
                    return None;
                }
                None
            }
            Kind::Word
                if column_named(token.text).is_none() && ROWID_NAMES.iter().any(|r| token.text.eq_ignore_ascii_case(r)) =>
            {
                return None
            }
            Kind::Word => column_named(token.text),
            Kind::QuotedName if !calls && !after_collate => column_named(&unquote(token.text)),
            _ => None,
        };
        text.push_str(gap(token));
        match name {
            Some(column) => {
                text.push_str(&format!("{row}.{}", quote(column)));
                if !used.contains(column) {
                    used.push(column.clone());
                }
            }
            None => text.push_str(token.text),
        }
    }
    Some((text.trim().to_string(), used))
}

/// Functions whose PostgreSQL namesake computes what SQLite's does (for text, numbers and NULL alike), and the
/// name to call in PostgreSQL. `round` is called on `numeric`, which rounds halves away from zero as SQLite does.
const SAME_FUNCTIONS: &[(&str, &str)] = &[
    ("lower", "lower"),
    ("upper", "upper"),
    ("length", "length"),
    ("abs", "abs"),
    ("coalesce", "coalesce"),
    ("ifnull", "coalesce"),
    ("nullif", "nullif"),
    ("trim", "trim"),
    ("ltrim", "ltrim"),
    ("rtrim", "rtrim"),
    ("replace", "replace"),
    ("instr", "strpos"),
    ("round", "round"),
];

/// Words that mean the same in both: operators spelled as words and CASE.
const SAME_WORDS: &[&str] = &["and", "or", "not", "null", "case", "when", "then", "else", "end", "between", "in", "cast", "as"];

/// SQLite's type names in a CAST and PostgreSQL's type with the same affinity.
const CAST_TYPES: &[(&str, &str)] =
    &[("integer", "bigint"), ("int", "bigint"), ("real", "double precision"), ("text", "text"), ("numeric", "numeric")];

/// `expr`, a generated column's SQLite expression over `columns` (SQLite name, PostgreSQL name), as a PostgreSQL
/// expression, or why it does not translate. Only what computes the same in both is taken: column references,
/// literals, arithmetic, comparison, `||`, CASE, `IS [NOT] NULL`, casts to the basic types and `SAME_FUNCTIONS`.
pub fn to_postgres(expr: &str, columns: &[(String, String)]) -> Result<String, String> {
    let tokens = tokenize(expr).ok_or("its text does not read as an expression")?;
    let column = |name: &str| columns.iter().find(|(c, _)| c.eq_ignore_ascii_case(name)).map(|(_, pg)| quote(pg));
    // Depths at which a `round(` argument started: its end gets ` AS numeric)`.
    let (mut text, mut depth, mut numeric_args) = (String::new(), 0usize, Vec::<usize>::new());
    for (i, token) in tokens.iter().enumerate() {
        let previous = i.checked_sub(1).map(|p| &tokens[p]);
        let next = tokens.get(i + 1);
        let calls = next.is_some_and(|n| n.kind == Kind::Open);
        let word = token.text.to_ascii_lowercase();
        let translated = match token.kind {
            Kind::Unknown => return Err(format!("`{}` has no PostgreSQL equivalent here", token.text)),
            Kind::Word if calls => match SAME_FUNCTIONS.iter().find(|(f, _)| *f == word) {
                Some((_, pg)) => pg.to_string(),
                None if word == "cast" => word,
                None => return Err(format!("function {}() is not known to compute the same in PostgreSQL", token.text)),
            },
            Kind::Word if previous.is_some_and(|p| is_word(p, "as")) => match CAST_TYPES.iter().find(|(t, _)| *t == word) {
                Some((_, pg)) => pg.to_string(),
                None => return Err(format!("cast to {} has no PostgreSQL equivalent", token.text)),
            },
            Kind::Word if word == "is" => match next {
                Some(n) if is_word(n, "null") || is_word(n, "not") => word,
                _ => return Err("IS between values compares differently in PostgreSQL".to_string()),
            },
            Kind::Word | Kind::QuotedName => match column(&unquote_name(token)) {
                Some(pg) => pg,
                None if token.kind == Kind::Word && SAME_WORDS.contains(&word.as_str()) => word,
                None if token.kind == Kind::Word && KEYWORDS.contains(&word.as_str()) => {
                    return Err(format!("{} is not known to work the same in PostgreSQL", word.to_uppercase()))
                }
                None => return Err(format!("{} is not a column PostgreSQL can compute from", token.text)),
            },
            Kind::Literal
                if token.text.starts_with(['x', 'X']) || token.text.starts_with("0x") || token.text.starts_with("0X") =>
            {
                return Err("blob and hexadecimal literals differ in PostgreSQL".to_string())
            }
            // `==` is SQLite's spelling of `=`.
            Kind::Other if token.text == "=" && previous.is_some_and(|p| p.text == "=" && token.before.is_empty()) => continue,
            Kind::Open => {
                depth += 1;
                let opens = token.text.to_string();
                match previous.is_some_and(|p| is_word(p, "round")) {
                    true => {
                        numeric_args.push(depth);
                        opens + "CAST("
                    }
                    false => opens,
                }
            }
            Kind::Close | Kind::Comma => {
                let mut closing = String::new();
                if numeric_args.last() == Some(&depth) {
                    numeric_args.pop();
                    closing.push_str(" AS numeric)");
                }
                if token.kind == Kind::Close {
                    depth = depth.saturating_sub(1);
                }
                closing + token.text
            }
            _ => token.text.to_string(),
        };
        text.push_str(gap(token));
        text.push_str(&translated);
    }
    Ok(text.trim().to_string())
}

fn unquote_name(token: &Token<'_>) -> String {
    match token.kind {
        Kind::QuotedName => unquote(token.text),
        _ => token.text.to_string(),
    }
}

/// The name inside `"x"`, `` `x` `` or `[x]`.
fn unquote(quoted: &str) -> String {
    let (first, inner) = (quoted.as_bytes()[0], &quoted[1..quoted.len() - 1]);
    match first {
        b'[' => inner.to_string(),
        q => {
            let q = q as char;
            inner.replace(&format!("{q}{q}"), &q.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn takes_index_statements_apart() {
        let parsed = parse_index(
            "CREATE UNIQUE INDEX IF NOT EXISTS \"i(\" ON \"t (x)\" (lower(name) COLLATE NOCASE DESC, [a b], substr(c, 1, 2))
             WHERE active = 1 AND note <> 'a, b)' -- why\n;",
        )
        .unwrap();
        assert_eq!(parsed.terms, ["lower(name)", "[a b]", "substr(c, 1, 2)"]);
        assert_eq!(parsed.predicate.as_deref(), Some("active = 1 AND note <> 'a, b)'"));
        assert_eq!(parse_index("CREATE INDEX i ON t(a)").unwrap(), IndexSql { terms: vec!["a".into()], predicate: None });
        assert_eq!(parse_index("CREATE INDEX i ON t(a) garbage"), None);
        assert_eq!(parse_index("CREATE INDEX i ON t(a"), None);
        assert_eq!(parse_index("CREATE INDEX i ON t('unterminated)"), None);
    }

    #[test]
    fn rewrites_column_references_and_nothing_else() {
        let cols = columns(&["name", "a b", "Active", "text", "precision"]);
        let rewrite = |expr: &str| on_row(expr, &cols, "NEW").map(|(text, _)| text);
        assert_eq!(rewrite("lower(name)").as_deref(), Some("lower(NEW.\"name\")"));
        assert_eq!(rewrite("[a b] || `name` || \"NAME\"").as_deref(), Some("NEW.\"a b\" || NEW.\"name\" || NEW.\"name\""));
        assert_eq!(
            rewrite("active = 1 AND name <> 'name' /* name */ AND x'6e' IS NOT NULL").as_deref(),
            Some("NEW.\"Active\" = 1 AND NEW.\"name\" <> 'name' AND x'6e' IS NOT NULL")
        );
        assert_eq!(
            rewrite("CAST(name AS DOUBLE PRECISION) + 1.5e3").as_deref(),
            Some("CAST(NEW.\"name\" AS DOUBLE PRECISION) + 1.5e3")
        );
        assert_eq!(rewrite("name COLLATE nocase = 'x'").as_deref(), Some("NEW.\"name\" COLLATE nocase = 'x'"));
        assert_eq!(rewrite("text(name)").as_deref(), Some("text(NEW.\"name\")"), "a function of a column's name");
        let (_, used) = on_row("coalesce(name, active, name)", &cols, "NEW").unwrap();
        assert_eq!(used, ["name", "Active"]);
    }

    #[test]
    fn finds_generated_columns_in_create_table() {
        let found = generated_columns(
            "CREATE TABLE \"t(\"(a INT DEFAULT (CAST(1 AS TEXT)), 'q' AS (a || ','), [b c] INT GENERATED ALWAYS AS (abs(a)) STORED,
             d TEXT CHECK (d <> 'AS (x)'), PRIMARY KEY (a))",
        );
        assert_eq!(found, [("q".to_string(), "a || ','".to_string()), ("b c".to_string(), "abs(a)".to_string())]);
        assert!(generated_columns("CREATE TABLE t(a AS (unterminated").is_empty());
    }

    #[test]
    fn translates_what_computes_the_same_in_postgres() {
        let cols = vec![("price".to_string(), "price".to_string()), ("Qty".to_string(), "qty".to_string())];
        let pg = |expr: &str| to_postgres(expr, &cols);
        assert_eq!(pg("price * qty").as_deref(), Ok("\"price\" * \"qty\""));
        assert_eq!(pg("[Price] || ' x ' || \"QTY\"").as_deref(), Ok("\"price\" || ' x ' || \"qty\""));
        assert_eq!(pg("round(price * 1.1, 2)").as_deref(), Ok("round(CAST(\"price\" * 1.1 AS numeric), 2)"));
        assert_eq!(pg("round(abs(price))").as_deref(), Ok("round(CAST(abs(\"price\") AS numeric))"));
        assert_eq!(pg("CAST(qty AS TEXT)").as_deref(), Ok("cast(\"qty\" as text)"));
        assert_eq!(pg("ifnull(qty, 0) == 1").as_deref(), Ok("coalesce(\"qty\", 0) = 1"));
        assert_eq!(
            pg("CASE WHEN qty IS NOT NULL THEN upper(price) END").as_deref(),
            Ok("case when \"qty\" is not null then upper(\"price\") end")
        );
        assert!(pg("json_extract(price, '$.a')").unwrap_err().contains("json_extract()"));
        assert!(pg("price + other").unwrap_err().contains("other is not a column"));
        assert!(pg("\"price\" || \"not a column\"").is_err(), "SQLite's double-quoted string fallback");
        assert!(pg("qty IS price").is_err());
        assert!(pg("CAST(qty AS BLOB)").is_err());
        assert!(pg("x'00' || price").is_err());
        assert!(pg("price LIKE 'a%'").is_err(), "LIKE ignores case in SQLite");
        assert!(pg("t.price").is_err());
    }

    #[test]
    fn refuses_what_it_cannot_tell_apart() {
        let cols = columns(&["name", "end"]);
        assert_eq!(on_row("t.name", &cols, "NEW"), None, "qualified names");
        assert_eq!(on_row("CASE WHEN name THEN 1 END", &cols, "NEW"), None, "a column named like a keyword");
        assert_eq!(on_row("rowid + 1", &cols, "NEW"), None, "the rowid");
        assert_eq!(on_row("name = ?", &cols, "NEW"), None, "parameters");
        assert_eq!(on_row("'open", &cols, "NEW"), None);
    }
}
