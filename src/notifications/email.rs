//! The notification emails: what happened to which lead, a link to it, and a link to stop.

use crate::email::{escape, Email};

const PORTAL: &str = "Soho Partner Portal";

/// What a notification is about.
pub enum Notice<'a> {
    /// A lead the recipient submitted changed status.
    StatusChanged { old: &'a str, new: &'a str, by_crm: bool },
    /// A lead arrived through the partner's public form.
    PublicLead,
    /// A lead was flagged: another partner registered the same person recently.
    ChannelConflict,
}

impl Notice<'_> {
    /// The notice in one line, for the daily digest.
    pub fn line(&self, lead: &str) -> String {
        match self {
            Self::StatusChanged { old, new, by_crm } => {
                format!("{lead}: {old} → {new}{}", if *by_crm { " (in Soho CRM)" } else { "" })
            }
            Self::PublicLead => format!("{lead}: a new lead from your public form"),
            Self::ChannelConflict => format!("{lead}: registered by another partner too"),
        }
    }
}

/// One day's notices in one email: each line with its lead's link.
pub struct DigestEmail<'a> {
    pub message_id: String,
    pub to: &'a str,
    pub name: Option<&'a str>,
    /// `(line, lead link)`, oldest first.
    pub items: &'a [(String, String)],
    pub unsubscribe_link: &'a str,
}

impl DigestEmail<'_> {
    pub fn render(&self) -> Email {
        let greeting = self.name.map_or("Hello,".to_string(), |n| format!("Hello {n},"));
        let count = self.items.len();
        let what = if count == 1 {
            "1 thing happened".to_string()
        } else {
            format!("{count} things happened")
        };
        let text_lines: String =
            self.items.iter().map(|(line, link)| format!("- {line}\n  {link}\n")).collect();
        let html_lines: String = self
            .items
            .iter()
            .map(|(line, link)| {
                format!("<li><a href=\"{}\">{}</a></li>", escape(link), escape(line))
            })
            .collect();
        let text = format!(
            "{greeting}\n\n{what} to your leads since your last digest:\n\n{text_lines}\n— {PORTAL}\n\n\
             You get this digest because of your notification setting. To stop it, open\n{stop}\n",
            stop = self.unsubscribe_link,
        );
        let html = format!(
            "<!doctype html><html><body style=\"font-family:sans-serif;line-height:1.5\">\
             <p>{greeting}</p><p>{what} to your leads since your last digest:</p><ul>{html_lines}</ul>\
             <p>— {PORTAL}</p><p style=\"font-size:12px;color:#57606a\">You get this digest because \
             of your notification setting. <a href=\"{stop}\">Stop these emails</a>.</p></body></html>",
            greeting = escape(&greeting),
            stop = escape(self.unsubscribe_link),
        );
        Email {
            message_id: self.message_id.clone(),
            to: self.to.to_string(),
            subject: format!("{PORTAL}: your leads today ({what})"),
            text,
            html,
        }
    }
}

pub struct NotificationEmail<'a> {
    pub message_id: String,
    pub to: &'a str,
    pub name: Option<&'a str>,
    pub lead_name: &'a str,
    pub notice: Notice<'a>,
    pub lead_link: &'a str,
    pub unsubscribe_link: &'a str,
}

impl NotificationEmail<'_> {
    pub fn render(&self) -> Email {
        let lead = self.lead_name;
        let (subject, what) = match &self.notice {
            Notice::StatusChanged { old, new, by_crm } => (
                format!("{lead}: {new}"),
                format!(
                    "The lead {lead} you submitted is now {new} (it was {old}){}.",
                    if *by_crm { ", as the vendor's sales team set it in Soho CRM" } else { "" }
                ),
            ),
            Notice::PublicLead => (
                format!("New lead from your public form: {lead}"),
                format!("{lead} sent you a lead through your public form."),
            ),
            Notice::ChannelConflict => (
                format!("{lead}: registered by another partner too"),
                format!(
                    "The lead {lead} was also registered by another partner in the last 90 days. \
                     The vendor will settle whose it is; your registration receipt on the lead's \
                     page shows when you registered it."
                ),
            ),
        };
        let greeting = self.name.map_or("Hello,".to_string(), |n| format!("Hello {n},"));
        let text = format!(
            "{greeting}\n\n{what}\n\nOpen the lead: {link}\n\n— {PORTAL}\n\n\
             You get these emails because of your notification setting. To stop them, open\n{stop}\n",
            link = self.lead_link,
            stop = self.unsubscribe_link,
        );
        let html = format!(
            "<!doctype html><html><body style=\"font-family:sans-serif;line-height:1.5\">\
             <p>{greeting}</p><p>{what}</p><p><a href=\"{link}\">Open the lead</a></p>\
             <p>— {PORTAL}</p><p style=\"font-size:12px;color:#57606a\">You get these emails because \
             of your notification setting. <a href=\"{stop}\">Stop these emails</a>.</p></body></html>",
            greeting = escape(&greeting),
            what = escape(&what),
            link = escape(self.lead_link),
            stop = escape(self.unsubscribe_link),
        );
        Email {
            message_id: self.message_id.clone(),
            to: self.to.to_string(),
            subject: format!("{PORTAL}: {subject}"),
            text,
            html,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_lead_names_stay_text_in_the_html() {
        let email = NotificationEmail {
            message_id: "<m@x>".into(),
            to: "a@example.com",
            name: Some("Sam"),
            lead_name: "<img src=x onerror=alert(1)>",
            notice: Notice::PublicLead,
            lead_link: "https://portal.example/leads/1",
            unsubscribe_link: "https://portal.example/unsubscribe?user=1&token=t",
        }
        .render();
        assert!(!email.html.contains("<img"), "{}", email.html);
        assert!(email.html.contains("&lt;img"));
        assert!(email.html.contains("unsubscribe?user=1&amp;token=t"));
        assert!(!email.subject.contains('\n'));
    }
}
