//! Values written into the text of the batch's opening query ([`super::opening`]), which is
//! one simple query (several statements, one round trip) and so cannot carry bound parameters.
//!
//! Only these shapes are written, each in a form PostgreSQL reads back as exactly that value:
//! strings as standard literals (a quote doubled; backslashes are plain characters, as the
//! writer's connection sets `standard_conforming_strings`), uuids and numbers as their own
//! digits, arrays of them with a cast. Client text never reaches the query any other way. NUL
//! bytes, which no text value can hold, are refused where requests are parsed; one that got
//! this far is an error here rather than a truncated value.

use std::fmt::Write;

use uuid::Uuid;

/// A value the opening query cannot carry.
#[derive(Debug, thiserror::Error)]
#[error("a NUL byte cannot be written into a query")]
pub(super) struct NulByte;

/// `'text'`, quotes doubled.
pub(super) fn text(value: &str) -> Result<String, NulByte> {
    if value.contains('\0') {
        return Err(NulByte);
    }
    Ok(format!("'{}'", value.replace('\'', "''")))
}

/// `ARRAY[…]::text[]`, `None` as NULL.
pub(super) fn texts<'a>(
    values: impl IntoIterator<Item = Option<&'a str>>,
) -> Result<String, NulByte> {
    let items = values
        .into_iter()
        .map(|v| v.map_or(Ok("NULL".to_string()), text))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(format!("ARRAY[{}]::text[]", items.join(",")))
}

/// `ARRAY[…]::uuid[]`.
pub(super) fn uuids(values: impl IntoIterator<Item = Uuid>) -> String {
    let mut out = String::from("ARRAY[");
    for (n, value) in values.into_iter().enumerate() {
        let comma = if n > 0 { "," } else { "" };
        let _ = write!(out, "{comma}'{}'", value.hyphenated());
    }
    out.push_str("]::uuid[]");
    out
}

/// `ARRAY[…]::bigint[]`.
pub(super) fn ints(values: impl IntoIterator<Item = i64>) -> String {
    let items: Vec<String> = values.into_iter().map(|v| v.to_string()).collect();
    format!("ARRAY[{}]::bigint[]", items.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_doubled_and_nothing_else_is_special() {
        assert_eq!(text("o'brien@example.com").unwrap(), "'o''brien@example.com'");
        assert_eq!(text(r"a\'; DROP TABLE leads; --").unwrap(), r"'a\''; DROP TABLE leads; --'");
        assert!(text("a\0b").is_err());
        assert_eq!(texts([Some("x"), None]).unwrap(), "ARRAY['x',NULL]::text[]");
        assert_eq!(texts([]).unwrap(), "ARRAY[]::text[]");
        assert_eq!(ints([1, -2]), "ARRAY[1,-2]::bigint[]");
        assert_eq!(uuids([Uuid::nil()]), "ARRAY['00000000-0000-0000-0000-000000000000']::uuid[]");
    }
}
