//! Field rules shared by request bodies: trimmed, bounded text and email addresses. Each returns
//! the clean value or a `FieldError` naming the field, so a handler can report every bad field
//! of a body at once.

use super::problem::FieldError;

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

/// Like `optional_text`, but required.
pub fn text(
    field: &str,
    value: Option<String>,
    max: usize,
    errors: &mut Vec<FieldError>,
) -> String {
    let before = errors.len();
    match optional_text(field, value, max, errors) {
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
    let before = errors.len();
    match optional_email(field, value, errors) {
        Some(value) => value,
        None => {
            if errors.len() == before {
                errors.push(FieldError::new(field, "is required"));
            }
            String::new()
        }
    }
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
    fn emails_are_checked() {
        let mut errors = vec![];
        assert_eq!(email("email", Some("ada@example.com".into()), &mut errors), "ada@example.com");
        email("email", Some("not an email".into()), &mut errors);
        email("email", Some("a@localhost".into()), &mut errors);
        assert_eq!(errors.len(), 2);
    }
}
