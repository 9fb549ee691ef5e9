//! The invitation email: the portal's name, the partner's, the link, and when it expires.

use chrono::{DateTime, Utc};
use soho_aggregates::Role;

use super::{escape, Email};

pub struct InvitationEmail<'a> {
    pub invitation_id: soho_aggregates::InvitationId,
    pub to: &'a str,
    pub name: Option<&'a str>,
    pub partner_name: Option<&'a str>,
    pub role: Role,
    pub link: &'a str,
    pub expires_at: DateTime<Utc>,
}

const PORTAL: &str = "Soho Partner Portal";

impl InvitationEmail<'_> {
    pub fn render(&self) -> Email {
        let greeting = self.name.map_or("Hello,".to_string(), |n| format!("Hello {n},"));
        let partner = self.partner_name.unwrap_or("your company");
        let what = match self.role {
            Role::Admin => format!("{partner} has been approved as a partner. You are its administrator on the {PORTAL}."),
            Role::Sub => format!("You have been invited to join {partner} on the {PORTAL}."),
            Role::Auditor => format!("You have been given auditor access to the {PORTAL}."),
        };
        let expires = self.expires_at.format("%Y-%m-%d %H:%M UTC");
        let text = format!(
            "{greeting}\n\n{what}\n\nSet your password and sign in here:\n{link}\n\n\
             This link works once and expires on {expires}. If it has expired, ask the person who \
             invited you to send a new one.\n\n— {PORTAL}\n",
            link = self.link
        );
        let html = format!(
            "<!doctype html><html><body style=\"font-family:sans-serif;line-height:1.5\">\
             <p>{greeting}</p><p>{what}</p>\
             <p><a href=\"{link}\" style=\"display:inline-block;padding:10px 16px;background:#1f5fbf;\
             color:#fff;text-decoration:none;border-radius:4px\">Set your password</a></p>\
             <p>Or open this link: <a href=\"{link}\">{link}</a></p>\
             <p>This link works once and expires on {expires}. If it has expired, ask the person who \
             invited you to send a new one.</p><p>— {PORTAL}</p></body></html>",
            greeting = escape(&greeting),
            what = escape(&what),
            link = escape(self.link),
        );
        Email {
            message_id: format!("<invitation-{}@soho-partner-portal>", self.invitation_id),
            to: self.to.to_string(),
            subject: match self.role {
                Role::Auditor => format!("{PORTAL}: your invitation"),
                _ => format!("{PORTAL}: your invitation from {partner}"),
            },
            text,
            html,
        }
    }
}
