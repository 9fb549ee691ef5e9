//! A statement's values in either of the forms PostgreSQL takes them: bound to its parameters
//! (the extended protocol, one statement a round trip), or written into the text of a simple
//! query as the arguments of `EXECUTE` of a statement prepared with the same text (several
//! statements in one round trip, the plan still made once).
//!
//! The lead writer sends a batch in two simple queries: its opening (BEGIN, its locks, its
//! reads), then the writers' order lock, its write and the COMMIT, so that the order lock is
//! held for the write and the commit only, never across a round trip to the server (DESIGN.md
//! "Write path"). The same bind functions fill either form: [`Binder`]. Client text reaches
//! those queries no other way.
//!
//! Every value goes as an array (the writes are `unnest` over arrays), written as one string
//! literal in PostgreSQL's array syntax: each element double-quoted with `"` and `\` escaped,
//! NULL bare, and the whole with `'` doubled (the connection sets `standard_conforming_strings`,
//! so a backslash is a plain character to the SQL parser and only the array parser reads it).
//! The prepared statement's parameter types (its casts) say what the text is read as. NUL
//! bytes, which no text value can hold and which would end a simple query's text, are refused
//! where requests are parsed; one that got this far is an error here, never a truncated value.

use std::fmt::Write;

use chrono::{DateTime, Datelike, Timelike, Utc};
use sqlx::Postgres;
use uuid::Uuid;

/// A statement being bound (the extended protocol).
pub type Query<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

/// A value no simple query can carry.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("a NUL byte cannot be written into a query")]
pub struct NulByte;

/// Something a statement's values are given to, in parameter order.
pub trait Binder<'q>: Sized {
    #[must_use]
    fn value<T: Param<'q>>(self, value: T) -> Self;
}

/// A value either form takes: an array of [`Element`]s.
pub trait Param<'q>: sqlx::Encode<'q, Postgres> + sqlx::Type<Postgres> + Send + 'q {
    /// Appends the value as a SQL string literal in array syntax.
    fn literal(&self, out: &mut String) -> Result<(), NulByte>;
}

/// One element of an array literal.
pub trait Element {
    /// Appends the element (quoted, or `NULL`) to an array literal's text.
    fn element(&self, out: &mut String) -> Result<(), NulByte>;
}

impl<'q, T> Param<'q> for Vec<T>
where
    T: Element,
    Vec<T>: sqlx::Encode<'q, Postgres> + sqlx::Type<Postgres> + Send + 'q,
{
    fn literal(&self, out: &mut String) -> Result<(), NulByte> {
        let mut array = String::from("{");
        for (n, item) in self.iter().enumerate() {
            if n > 0 {
                array.push(',');
            }
            item.element(&mut array)?;
        }
        array.push('}');
        out.push('\'');
        out.push_str(&array.replace('\'', "''"));
        out.push('\'');
        Ok(())
    }
}

/// `"text"`, with `"` and `\` escaped for the array parser.
fn quoted(text: &str, out: &mut String) -> Result<(), NulByte> {
    if text.contains('\0') {
        return Err(NulByte);
    }
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Ok(())
}

impl Element for String {
    fn element(&self, out: &mut String) -> Result<(), NulByte> {
        quoted(self, out)
    }
}

impl Element for &str {
    fn element(&self, out: &mut String) -> Result<(), NulByte> {
        quoted(self, out)
    }
}

impl Element for Uuid {
    fn element(&self, out: &mut String) -> Result<(), NulByte> {
        let _ = write!(out, "{}", self.hyphenated());
        Ok(())
    }
}

impl Element for bool {
    fn element(&self, out: &mut String) -> Result<(), NulByte> {
        out.push(if *self { 't' } else { 'f' });
        Ok(())
    }
}

impl Element for i64 {
    fn element(&self, out: &mut String) -> Result<(), NulByte> {
        let _ = write!(out, "{self}");
        Ok(())
    }
}

impl Element for serde_json::Value {
    /// Its JSON text (which escapes every control character, NUL included).
    fn element(&self, out: &mut String) -> Result<(), NulByte> {
        quoted(&self.to_string(), out)
    }
}

impl Element for DateTime<Utc> {
    /// ISO 8601 in UTC to the microsecond, truncated as the binary form is (PostgreSQL would
    /// round nanoseconds in text). Years past 9999 as plain digits, years before 1 as BC.
    fn element(&self, out: &mut String) -> Result<(), NulByte> {
        let (era, year) = match self.year() {
            y if y >= 1 => ("", y),
            y => (" BC", 1 - y),
        };
        let _ = write!(
            out,
            "\"{year:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}+00{era}\"",
            self.month(),
            self.day(),
            self.hour(),
            self.minute(),
            self.second(),
            self.nanosecond() % 1_000_000_000 / 1000,
        );
        Ok(())
    }
}

impl<T: Element> Element for Option<T> {
    fn element(&self, out: &mut String) -> Result<(), NulByte> {
        match self {
            Some(value) => value.element(out),
            None => {
                out.push_str("NULL");
                Ok(())
            }
        }
    }
}

impl<'q> Binder<'q> for Query<'q> {
    fn value<T: Param<'q>>(self, value: T) -> Self {
        self.bind(value)
    }
}

/// Values written as the arguments of an `EXECUTE`.
#[derive(Default)]
pub struct Literals {
    text: String,
    refused: Option<NulByte>,
}

impl Literals {
    /// `EXECUTE statement(…)` with the values given.
    pub fn execute(self, statement: &str) -> Result<String, NulByte> {
        match self.refused {
            Some(refused) => Err(refused),
            None => Ok(format!("EXECUTE {statement}({})", self.text)),
        }
    }
}

impl<'q> Binder<'q> for Literals {
    fn value<T: Param<'q>>(mut self, value: T) -> Self {
        if self.refused.is_none() {
            if !self.text.is_empty() {
                self.text.push(',');
            }
            if let Err(refused) = value.literal(&mut self.text) {
                self.refused = Some(refused);
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn literal<'q, T: Param<'q>>(value: T) -> String {
        let mut out = String::new();
        value.literal(&mut out).unwrap();
        out
    }

    #[test]
    fn quotes_backslashes_and_nulls_are_written_so_they_read_back_as_given() {
        assert_eq!(
            literal(vec!["o'brien", r#"a"b\c"#, "NULL", "{,}"]),
            r#"'{"o''brien","a\"b\\c","NULL","{,}"}'"#
        );
        assert_eq!(
            literal(vec![r"a\'; DROP TABLE leads; --"]),
            r#"'{"a\\''; DROP TABLE leads; --"}'"#
        );
        assert_eq!(literal(vec![Some("x".to_string()), None]), r#"'{"x",NULL}'"#);
        assert_eq!(literal(Vec::<i64>::new()), "'{}'");
        assert_eq!(literal(vec![true, false]), "'{t,f}'");
        assert_eq!(literal(vec![serde_json::json!({"a": "it's"})]), r#"'{"{\"a\":\"it''s\"}"}'"#);
        let mut out = String::new();
        assert!(vec!["a\0b"].literal(&mut out).is_err());
    }

    #[test]
    fn times_are_truncated_to_the_microsecond_and_keep_their_era() {
        let at = DateTime::parse_from_rfc3339("2026-12-07T07:08:09.123456789Z").unwrap().to_utc();
        assert_eq!(literal(vec![at]), r#"'{"2026-12-07 07:08:09.123456+00"}'"#);
        let bc = DateTime::parse_from_rfc3339("0000-01-01T00:00:00Z").unwrap().to_utc();
        assert_eq!(literal(vec![bc]), r#"'{"0001-01-01 00:00:00.000000+00 BC"}'"#);
    }

    #[test]
    fn a_nul_byte_refuses_the_whole_execute() {
        let refused = Literals::default().value(vec![1_i64]).value(vec!["\0"]).value(vec![2_i64]);
        assert!(refused.execute("w").is_err());
        let fine = Literals::default().value(vec![1_i64]).value(vec![Uuid::nil()]);
        assert_eq!(
            fine.execute("w").unwrap(),
            "EXECUTE w('{1}','{00000000-0000-0000-0000-000000000000}')"
        );
    }
}
