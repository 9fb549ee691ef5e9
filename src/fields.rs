//! Field rules for what people type, wherever it comes in (a request body, the command line):
//! trimmed, bounded text and email addresses. Each returns the clean value or a `FieldError`
//! naming the field, so every bad field of an input is reported at once. Parsing belongs to the
//! domain, not to the HTTP layer, which only maps `Invalid` to a 422.

/// One field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// An input with one or more bad fields, each named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("validation failed")]
pub struct Invalid(pub Vec<FieldError>);

/// Trimmed text of at most `max` characters; empty counts as absent.
pub fn optional_text(
    field: &str,
    value: Option<String>,
    max: usize,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    let value = value.map(|v| v.trim().to_string()).filter(|v| !v.is_empty())?;
    if value.chars().count() > max {
        errors.push(FieldError::new(field, format!("must be at most {max} characters")));
        return None;
    }
    if value.chars().any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r') {
        errors.push(FieldError::new(field, "must not contain control characters"));
        return None;
    }
    Some(value)
}

/// A person's name as people see it in emails and pages the portal sends: one line (a line
/// break in a name forges log lines and email headers' look), at most 100 characters, and no web
/// address (an admin's invitation must not carry a link of theirs under the portal's sender).
pub fn person_name(
    field: &str,
    value: Option<String>,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    let value = single_line(field, value, 100, errors)?;
    if looks_like_a_web_address(&value) {
        errors.push(FieldError::new(field, "must be a name, not a web address"));
        return None;
    }
    Some(value)
}

/// Like `optional_text`, with no line breaks or tabs either.
pub fn single_line(
    field: &str,
    value: Option<String>,
    max: usize,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    let value = optional_text(field, value, max, errors)?;
    if value.chars().any(char::is_control) {
        errors.push(FieldError::new(field, "must be a single line"));
        return None;
    }
    Some(value)
}

/// `https://…`, `www.…`, `name@host` or a bare `host.tld`.
fn looks_like_a_web_address(text: &str) -> bool {
    let lower = text.to_lowercase();
    lower.contains("://")
        || lower.split_whitespace().any(|word| {
            let word = word.trim_matches(|c: char| !c.is_alphanumeric());
            word.starts_with("www.")
                || word.contains('/')
                || word.contains('@')
                || word.rsplit_once('.').is_some_and(|(host, tld)| {
                    !host.is_empty() && tld.len() >= 2 && tld.chars().all(|c| c.is_alphabetic())
                })
        })
}

/// Like `optional_text`, but required.
pub fn text(
    field: &str,
    value: Option<String>,
    max: usize,
    errors: &mut Vec<FieldError>,
) -> String {
    required(field, errors, |errors| optional_text(field, value, max, errors))
}

/// The value `parse` finds, or "is required" when it finds none and reports nothing else.
pub fn required(
    field: &str,
    errors: &mut Vec<FieldError>,
    parse: impl FnOnce(&mut Vec<FieldError>) -> Option<String>,
) -> String {
    let before = errors.len();
    match parse(errors) {
        Some(value) => value,
        None => {
            if errors.len() == before {
                errors.push(FieldError::new(field, "is required"));
            }
            String::new()
        }
    }
}

/// An email address as people write it (`name@domain`), trimmed, at most 254 characters.
pub fn optional_email(
    field: &str,
    value: Option<String>,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    let value = optional_text(field, value, 254, errors)?;
    if value.parse::<lettre::Address>().is_err() || !value.contains('.') {
        errors.push(FieldError::new(field, "must be an email address such as name@example.com"));
        return None;
    }
    Some(value)
}

pub fn email(field: &str, value: Option<String>, errors: &mut Vec<FieldError>) -> String {
    required(field, errors, |errors| optional_email(field, value, errors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_trimmed_and_bounded() {
        let mut errors = vec![];
        assert_eq!(text("name", Some("  Ada ".into()), 5, &mut errors), "Ada");
        assert!(errors.is_empty());
        text("name", Some("toolong".into()), 5, &mut errors);
        text("name", Some("   ".into()), 5, &mut errors);
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[1].message, "is required");
    }

    #[test]
    fn person_names_are_one_line_and_no_web_address() {
        let mut errors = vec![];
        for ok in ["Ada Lovelace", "J. R. R. Tolkien", "Ada Lovelace Jr.", "O'Brien-Smith"] {
            assert_eq!(person_name("name", Some(ok.into()), &mut errors).as_deref(), Some(ok));
        }
        assert!(errors.is_empty(), "{errors:?}");
        for bad in [
            "Ada\nadmin logged in",
            "Ada\tLovelace",
            "verify at https://evil.example",
            "see evil.example now",
            "www.evil",
            "mail ops@evil.example",
            "evil.example/locked",
        ] {
            assert_eq!(person_name("name", Some(bad.into()), &mut errors), None, "{bad}");
        }
        assert_eq!(errors.len(), 7);
    }

    #[test]
    fn emails_are_checked() {
        let mut errors = vec![];
        assert_eq!(email("email", Some("ada@example.com".into()), &mut errors), "ada@example.com");
        email("email", Some("not an email".into()), &mut errors);
        email("email", Some("a@localhost".into()), &mut errors);
        assert_eq!(errors.len(), 2);
    }
}
