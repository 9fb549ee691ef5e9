//! The email a partner's admin gets when the portal disables one of its webhook endpoints: which
//! endpoint, since when it failed, and where to enable it again.

use super::{escape, Email};

pub struct EndpointDisabledEmail<'a> {
    pub endpoint_id: uuid::Uuid,
    /// Distinguishes one disabling from a later one of the same endpoint (enabled again between).
    pub failing_since: chrono::DateTime<chrono::Utc>,
    pub to: &'a str,
    pub partner_name: &'a str,
    pub url: &'a str,
    pub reason: &'a str,
    /// The page where the admin sees the endpoint's deliveries and enables it again.
    pub link: &'a str,
}

const PORTAL: &str = "Soho Partner Portal";

impl EndpointDisabledEmail<'_> {
    pub fn render(&self) -> Email {
        let what = format!(
            "The {PORTAL} could not deliver webhooks to an endpoint of {partner} for three days, \
             and has disabled it. Events that happen while it is disabled are not sent to it.",
            partner = self.partner_name
        );
        let text = format!(
            "Hello,\n\n{what}\n\nEndpoint: {url}\nReason: {reason}\n\nSee its deliveries and \
             enable it again once it answers: {link}\n\n— {PORTAL}\n",
            url = self.url,
            reason = self.reason,
            link = self.link,
        );
        let html = format!(
            "<!doctype html><html><body style=\"font-family:sans-serif;line-height:1.5\">\
             <p>Hello,</p><p>{what}</p>\
             <p>Endpoint: <code>{url}</code><br>Reason: {reason}</p>\
             <p><a href=\"{link}\">See its deliveries and enable it again</a> once it answers.</p>\
             <p>— {PORTAL}</p></body></html>",
            what = escape(&what),
            url = escape(self.url),
            reason = escape(self.reason),
            link = escape(self.link),
        );
        Email {
            message_id: format!(
                "<endpoint-disabled-{}-{}@soho-partner-portal>",
                self.endpoint_id,
                self.failing_since.timestamp()
            ),
            to: self.to.to_string(),
            subject: format!("{PORTAL}: a webhook endpoint was disabled"),
            text,
            html,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_values_are_escaped_in_the_html() {
        let email = EndpointDisabledEmail {
            endpoint_id: uuid::Uuid::nil(),
            failing_since: chrono::Utc::now(),
            to: "admin@example.com",
            partner_name: "Evil\" onload=\"alert(1)",
            url: "https://x.example/<script>",
            reason: "a <b>reason</b>",
            link: "https://portal.example/profile",
        }
        .render();
        assert!(!email.html.contains("<script>"), "{}", email.html);
        assert!(!email.html.contains("\" onload"), "{}", email.html);
        assert!(email.html.contains("&lt;b&gt;reason"), "{}", email.html);
        assert!(email.text.contains("https://x.example/<script>"), "text is plain: {}", email.text);
    }
}
