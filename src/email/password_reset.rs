//! The password reset email: the link, when it expires, and what to do if you did not ask.

use chrono::{DateTime, Utc};

use super::{escape, Email};

pub struct PasswordResetEmail<'a> {
    pub reset_id: soho_aggregates::InvitationId,
    pub to: &'a str,
    pub name: Option<&'a str>,
    pub link: &'a str,
    pub expires_at: DateTime<Utc>,
}

const PORTAL: &str = "Soho Partner Portal";

impl PasswordResetEmail<'_> {
    pub fn render(&self) -> Email {
        let greeting = self.name.map_or("Hello,".to_string(), |n| format!("Hello {n},"));
        let expires = self.expires_at.format("%Y-%m-%d %H:%M UTC");
        let unasked =
            "If you did not ask for this, ignore this email: your password stays as it is.";
        let text = format!(
            "{greeting}\n\nSomeone (we hope you) asked to reset your password on the {PORTAL}.\n\n\
             Choose a new password here:\n{link}\n\nThis link works once and expires on {expires}. \
             {unasked}\n\n— {PORTAL}\n",
            link = self.link
        );
        let html = format!(
            "<!doctype html><html><body style=\"font-family:sans-serif;line-height:1.5\">\
             <p>{greeting}</p><p>Someone (we hope you) asked to reset your password on the {PORTAL}.</p>\
             <p><a href=\"{link}\" style=\"display:inline-block;padding:10px 16px;background:#1f5fbf;\
             color:#fff;text-decoration:none;border-radius:4px\">Choose a new password</a></p>\
             <p>Or open this link: <a href=\"{link}\">{link}</a></p>\
             <p>This link works once and expires on {expires}. {unasked}</p><p>— {PORTAL}</p></body></html>",
            greeting = escape(&greeting),
            link = escape(self.link),
        );
        Email {
            message_id: format!("<password-reset-{}@soho-partner-portal>", self.reset_id),
            to: self.to.to_string(),
            subject: format!("{PORTAL}: reset your password"),
            text,
            html,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostile_name_is_escaped_in_the_html() {
        let email = PasswordResetEmail {
            reset_id: soho_aggregates::InvitationId::default(),
            to: "a@example.com",
            name: Some("<script>alert(1)</script>"),
            link: "https://portal.example/reset-password?token=abc",
            expires_at: Utc::now(),
        }
        .render();
        assert!(!email.html.contains("<script>"), "{}", email.html);
        assert!(email.html.contains("&lt;script&gt;"));
        assert!(email.text.contains("https://portal.example/reset-password?token=abc"));
    }
}
