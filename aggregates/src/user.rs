//! The User aggregate: a partner's admin, a sub-account, or an auditor, from invitation to
//! registration, and being disabled or enabled.
//!
//! Invitation tokens never enter the log: only their SHA-256 hash does, so a leaked event log
//! gives nobody a way in. Password hashes (Argon2id) are kept in the user's events because the
//! user's state is its events; the server reads them through the user lookup table.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::{InvitationId, PartnerId, UserId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A partner's primary user.
    #[default]
    Admin,
    /// A sub-account created by a partner's admin.
    Sub,
    /// A read-only auditor, bound to no partner.
    Auditor,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Sub => "sub",
            Self::Auditor => "auditor",
        }
    }

    /// The role a stored or sent name stands for; `None` for a name that is none of them
    /// (never a default: the auditor's role reads every lead).
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Admin, Self::Sub, Self::Auditor].into_iter().find(|r| r.as_str() == name)
    }
}

/// A fresh invitation: the hash of its one-time token and when it stops working.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Invitation {
    pub invitation_id: InvitationId,
    pub token_hash: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum UserCommand {
    Invite {
        user_id: UserId,
        partner_id: Option<PartnerId>,
        email: String,
        name: Option<String>,
        role: Role,
        invitation: Invitation,
        at: DateTime<Utc>,
    },
    /// Send a new link; the previous one stops working.
    ReissueInvitation {
        invitation: Invitation,
        at: DateTime<Utc>,
    },
    /// The invitation email left for the SMTP server (recorded by the process manager).
    RecordInvitationSent {
        invitation_id: InvitationId,
        at: DateTime<Utc>,
    },
    Register {
        token_hash: String,
        password_hash: String,
        name: Option<String>,
        at: DateTime<Utc>,
    },
    /// Soho CRM's approval of a partner claims this (unregistered) user's email for the
    /// partner's owner: the invitation stops working and the email is free again.
    VoidInvitation {
        at: DateTime<Utc>,
    },
    Disable {
        at: DateTime<Utc>,
    },
    Enable {
        at: DateTime<Utc>,
    },
    /// "Forgot your password?": a reset link for a registered, enabled user. Anyone else gets
    /// nothing (and the caller says the same either way).
    RequestPasswordReset {
        reset: Invitation,
        at: DateTime<Utc>,
    },
    /// A new password, chosen by the signed-in user (who gave the current one).
    ChangePassword {
        password_hash: String,
        at: DateTime<Utc>,
    },
    /// The name the user goes by, changed by the user.
    Rename {
        name: Option<String>,
        at: DateTime<Utc>,
    },
    /// A new password, set with the current reset link.
    ResetPassword {
        token_hash: String,
        password_hash: String,
        at: DateTime<Utc>,
    },
}

/// Stored externally tagged, so the tag equals `event_type()`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UserEvent {
    #[serde(rename_all = "camelCase")]
    UserInvited {
        user_id: UserId,
        partner_id: Option<PartnerId>,
        email: String,
        name: Option<String>,
        role: Role,
        invitation: Invitation,
        at: DateTime<Utc>,
    },
    #[serde(rename_all = "camelCase")]
    InvitationReissued { invitation: Invitation, at: DateTime<Utc> },
    #[serde(rename_all = "camelCase")]
    InvitationSent { invitation_id: InvitationId, at: DateTime<Utc> },
    #[serde(rename_all = "camelCase")]
    UserRegistered { name: Option<String>, password_hash: String, at: DateTime<Utc> },
    #[serde(rename_all = "camelCase")]
    InvitationVoided { at: DateTime<Utc> },
    #[serde(rename_all = "camelCase")]
    UserDisabled { at: DateTime<Utc> },
    #[serde(rename_all = "camelCase")]
    UserEnabled { at: DateTime<Utc> },
    /// A reset link made (its email follows, as an invitation's does).
    #[serde(rename_all = "camelCase")]
    PasswordResetRequested { reset: Invitation, at: DateTime<Utc> },
    #[serde(rename_all = "camelCase")]
    PasswordChanged { password_hash: String, at: DateTime<Utc> },
    #[serde(rename_all = "camelCase")]
    UserRenamed { name: Option<String>, at: DateTime<Utc> },
}

impl DomainEvent for UserEvent {
    fn event_type(&self) -> String {
        match self {
            Self::UserInvited { .. } => "UserInvited",
            Self::InvitationReissued { .. } => "InvitationReissued",
            Self::InvitationSent { .. } => "InvitationSent",
            Self::UserRegistered { .. } => "UserRegistered",
            Self::InvitationVoided { .. } => "InvitationVoided",
            Self::UserDisabled { .. } => "UserDisabled",
            Self::UserEnabled { .. } => "UserEnabled",
            Self::PasswordResetRequested { .. } => "PasswordResetRequested",
            Self::PasswordChanged { .. } => "PasswordChanged",
            Self::UserRenamed { .. } => "UserRenamed",
        }
        .to_string()
    }
    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    #[error("the user has already been invited")]
    AlreadyInvited,
    #[error("no such user")]
    NotFound,
    #[error("the invitation has already been accepted")]
    AlreadyRegistered,
    #[error("the invitation link is not valid")]
    InvalidToken,
    #[error("the invitation link has expired")]
    InvitationExpired,
    #[error("the account has been disabled")]
    Disabled,
    #[error("the password reset link is not valid or has been used")]
    InvalidResetLink,
    #[error("the password reset link has expired")]
    ResetLinkExpired,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: Option<UserId>,
    pub partner_id: Option<PartnerId>,
    pub email: String,
    pub name: Option<String>,
    pub role: Role,
    pub invitation: Option<Invitation>,
    /// Invitations already delivered, so a retried send is recognised and not repeated.
    pub sent_invitations: Vec<InvitationId>,
    pub registered: bool,
    pub disabled: bool,
    /// The invitation was voided before it was accepted: the user is gone.
    pub voided: bool,
    /// The password reset link that works now, if one was asked for and not yet used.
    #[serde(default)]
    pub password_reset: Option<Invitation>,
}

impl Aggregate for User {
    const TYPE: &'static str = "User";
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let exists = self.id.is_some() && !self.voided;
        if !matches!(command, UserCommand::Invite { .. } | UserCommand::VoidInvitation { .. })
            && !exists
        {
            return Err(UserError::NotFound);
        }
        match command {
            UserCommand::Invite { user_id, partner_id, email, name, role, invitation, at } => {
                if self.id.is_some() {
                    return Err(UserError::AlreadyInvited);
                }
                let event = UserEvent::UserInvited {
                    user_id,
                    partner_id,
                    email,
                    name,
                    role,
                    invitation,
                    at,
                };
                sink.write(event, self).await;
            }
            UserCommand::ReissueInvitation { invitation, at } => {
                if self.registered {
                    return Err(UserError::AlreadyRegistered);
                }
                sink.write(UserEvent::InvitationReissued { invitation, at }, self).await;
            }
            UserCommand::RecordInvitationSent { invitation_id, at } => {
                if !self.sent_invitations.contains(&invitation_id) {
                    sink.write(UserEvent::InvitationSent { invitation_id, at }, self).await;
                }
            }
            UserCommand::Register { token_hash, password_hash, name, at } => {
                if self.registered {
                    return Err(UserError::AlreadyRegistered);
                }
                let invitation = self.invitation.as_ref().ok_or(UserError::InvalidToken)?;
                // Checked before anything is written: a disabled invitee keeps its invitation
                // unused and sets no password (it is told why instead).
                if self.disabled && invitation.token_hash == token_hash {
                    return Err(UserError::Disabled);
                }
                if invitation.token_hash != token_hash {
                    return Err(UserError::InvalidToken);
                }
                if invitation.expires_at <= at {
                    return Err(UserError::InvitationExpired);
                }
                let name = name.or_else(|| self.name.clone());
                sink.write(UserEvent::UserRegistered { name, password_hash, at }, self).await;
            }
            UserCommand::VoidInvitation { at } => {
                if self.id.is_none() {
                    return Err(UserError::NotFound);
                }
                if self.registered {
                    return Err(UserError::AlreadyRegistered);
                }
                if !self.voided {
                    sink.write(UserEvent::InvitationVoided { at }, self).await;
                }
            }
            UserCommand::Disable { at } => {
                if !self.disabled {
                    sink.write(UserEvent::UserDisabled { at }, self).await;
                }
            }
            UserCommand::Enable { at } => {
                if self.disabled {
                    sink.write(UserEvent::UserEnabled { at }, self).await;
                }
            }
            UserCommand::RequestPasswordReset { reset, at } => {
                if self.registered && !self.disabled {
                    sink.write(UserEvent::PasswordResetRequested { reset, at }, self).await;
                }
            }
            UserCommand::ChangePassword { password_hash, at } => {
                if !self.registered {
                    return Err(UserError::NotFound);
                }
                if self.disabled {
                    return Err(UserError::Disabled);
                }
                sink.write(UserEvent::PasswordChanged { password_hash, at }, self).await;
            }
            UserCommand::Rename { name, at } => {
                if self.disabled {
                    return Err(UserError::Disabled);
                }
                if name != self.name {
                    sink.write(UserEvent::UserRenamed { name, at }, self).await;
                }
            }
            UserCommand::ResetPassword { token_hash, password_hash, at } => {
                let reset = self
                    .password_reset
                    .as_ref()
                    .filter(|r| r.token_hash == token_hash)
                    .ok_or(UserError::InvalidResetLink)?;
                if self.disabled {
                    return Err(UserError::Disabled);
                }
                if reset.expires_at <= at {
                    return Err(UserError::ResetLinkExpired);
                }
                sink.write(UserEvent::PasswordChanged { password_hash, at }, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            UserEvent::UserInvited {
                user_id, partner_id, email, name, role, invitation, ..
            } => {
                self.id = Some(user_id);
                self.partner_id = partner_id;
                self.email = email;
                self.name = name;
                self.role = role;
                self.invitation = Some(invitation);
            }
            UserEvent::InvitationReissued { invitation, .. } => self.invitation = Some(invitation),
            UserEvent::InvitationSent { invitation_id, .. } => {
                self.sent_invitations.push(invitation_id)
            }
            UserEvent::UserRegistered { name, .. } => {
                self.registered = true;
                self.name = name;
                // Single use: the token is spent.
                self.invitation = None;
            }
            UserEvent::InvitationVoided { .. } => {
                self.voided = true;
                self.invitation = None;
            }
            UserEvent::UserDisabled { .. } => self.disabled = true,
            UserEvent::UserEnabled { .. } => self.disabled = false,
            UserEvent::PasswordResetRequested { reset, .. } => self.password_reset = Some(reset),
            // Single use, as an invitation.
            UserEvent::PasswordChanged { .. } => self.password_reset = None,
            UserEvent::UserRenamed { name, .. } => self.name = name,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use cqrs_es::test::TestFramework;

    type Given = TestFramework<User>;

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-24T12:00:00Z").unwrap().with_timezone(&Utc)
    }
    fn invitation(hash: &str) -> Invitation {
        Invitation {
            invitation_id: InvitationId(uuid::Uuid::from_u128(hash.len() as u128)),
            token_hash: hash.into(),
            expires_at: at() + Duration::hours(72),
        }
    }
    fn invited() -> UserEvent {
        UserEvent::UserInvited {
            user_id: UserId(uuid::Uuid::from_u128(7)),
            partner_id: Some(PartnerId(uuid::Uuid::from_u128(1))),
            email: "owner@acme.example".into(),
            name: Some("Owner".into()),
            role: Role::Admin,
            invitation: invitation("h1"),
            at: at(),
        }
    }
    fn register(hash: &str, when: DateTime<Utc>) -> UserCommand {
        UserCommand::Register {
            token_hash: hash.into(),
            password_hash: "argon".into(),
            name: None,
            at: when,
        }
    }

    #[test]
    fn a_user_is_invited_once() {
        let UserEvent::UserInvited { user_id, partner_id, email, name, role, invitation, at } =
            invited()
        else {
            unreachable!()
        };
        let invite = UserCommand::Invite { user_id, partner_id, email, name, role, invitation, at };
        Given::with(())
            .given_no_previous_events()
            .when(invite.clone())
            .then_expect_events(vec![invited()]);
        Given::with(())
            .given(vec![invited()])
            .when(invite)
            .then_expect_error(UserError::AlreadyInvited);
    }

    #[test]
    fn registering_with_the_current_token_registers() {
        Given::with(()).given(vec![invited()]).when(register("h1", at())).then_expect_events(vec![
            UserEvent::UserRegistered {
                name: Some("Owner".into()),
                password_hash: "argon".into(),
                at: at(),
            },
        ]);
    }

    #[test]
    fn a_token_is_single_use() {
        let registered =
            UserEvent::UserRegistered { name: None, password_hash: "argon".into(), at: at() };
        Given::with(())
            .given(vec![invited(), registered])
            .when(register("h1", at()))
            .then_expect_error(UserError::AlreadyRegistered);
    }

    #[test]
    fn an_expired_or_wrong_token_is_refused() {
        Given::with(())
            .given(vec![invited()])
            .when(register("h1", at() + Duration::hours(72)))
            .then_expect_error(UserError::InvitationExpired);
        Given::with(())
            .given(vec![invited()])
            .when(register("nope", at()))
            .then_expect_error(UserError::InvalidToken);
    }

    #[test]
    fn a_disabled_invitee_is_told_so_and_nothing_is_written() {
        let disabled = UserEvent::UserDisabled { at: at() };
        Given::with(())
            .given(vec![invited(), disabled.clone()])
            .when(register("h1", at()))
            .then_expect_error(UserError::Disabled);
        // A wrong link learns nothing about the account.
        Given::with(())
            .given(vec![invited(), disabled])
            .when(register("nope", at()))
            .then_expect_error(UserError::InvalidToken);
    }

    #[test]
    fn a_reissued_invitation_retires_the_old_link() {
        Given::with(())
            .given(vec![
                invited(),
                UserEvent::InvitationReissued { invitation: invitation("h22"), at: at() },
            ])
            .when(register("h1", at()))
            .then_expect_error(UserError::InvalidToken);
    }

    #[test]
    fn an_invitation_is_recorded_as_sent_once() {
        let id = invitation("h1").invitation_id;
        Given::with(())
            .given(vec![invited(), UserEvent::InvitationSent { invitation_id: id, at: at() }])
            .when(UserCommand::RecordInvitationSent { invitation_id: id, at: at() })
            .then_expect_events(vec![]);
    }

    #[test]
    fn disable_and_enable_are_idempotent() {
        Given::with(())
            .given(vec![invited(), UserEvent::UserDisabled { at: at() }])
            .when(UserCommand::Disable { at: at() })
            .then_expect_events(vec![]);
        Given::with(())
            .given(vec![invited(), UserEvent::UserDisabled { at: at() }])
            .when(UserCommand::Enable { at: at() })
            .then_expect_events(vec![UserEvent::UserEnabled { at: at() }]);
    }

    #[test]
    fn an_unregistered_invitation_can_be_voided_once_and_is_then_gone() {
        let voided = UserEvent::InvitationVoided { at: at() };
        Given::with(())
            .given(vec![invited()])
            .when(UserCommand::VoidInvitation { at: at() })
            .then_expect_events(vec![voided.clone()]);
        Given::with(())
            .given(vec![invited(), voided.clone()])
            .when(UserCommand::VoidInvitation { at: at() })
            .then_expect_events(vec![]);
        Given::with(())
            .given(vec![invited(), voided.clone()])
            .when(register("h1", at()))
            .then_expect_error(UserError::NotFound);
        Given::with(())
            .given(vec![invited(), voided])
            .when(UserCommand::ReissueInvitation { invitation: invitation("h9"), at: at() })
            .then_expect_error(UserError::NotFound);
        let registered =
            UserEvent::UserRegistered { name: None, password_hash: "argon".into(), at: at() };
        Given::with(())
            .given(vec![invited(), registered])
            .when(UserCommand::VoidInvitation { at: at() })
            .then_expect_error(UserError::AlreadyRegistered);
    }

    #[test]
    fn commands_on_an_unknown_user_are_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(UserCommand::Disable { at: at() })
            .then_expect_error(UserError::NotFound);
    }

    #[test]
    fn a_password_is_reset_once_with_the_current_link_of_an_enabled_user() {
        let registered =
            UserEvent::UserRegistered { name: None, password_hash: "argon".into(), at: at() };
        let ask =
            |hash: &str| UserCommand::RequestPasswordReset { reset: invitation(hash), at: at() };
        let asked =
            |hash: &str| UserEvent::PasswordResetRequested { reset: invitation(hash), at: at() };
        let reset = |hash: &str, when| UserCommand::ResetPassword {
            token_hash: hash.into(),
            password_hash: "new".into(),
            at: when,
        };
        let changed = UserEvent::PasswordChanged { password_hash: "new".into(), at: at() };
        // Only a registered, enabled user gets a link.
        Given::with(()).given(vec![invited()]).when(ask("r1")).then_expect_events(vec![]);
        let disabled = UserEvent::UserDisabled { at: at() };
        Given::with(())
            .given(vec![invited(), registered.clone(), disabled.clone()])
            .when(ask("r1"))
            .then_expect_events(vec![]);
        Given::with(())
            .given(vec![invited(), registered.clone()])
            .when(ask("r1"))
            .then_expect_events(vec![asked("r1")]);
        // The current link works until it expires; an earlier one does not.
        let given = vec![invited(), registered.clone(), asked("r1"), asked("r22")];
        Given::with(())
            .given(given.clone())
            .when(reset("r22", at()))
            .then_expect_events(vec![changed.clone()]);
        Given::with(())
            .given(given.clone())
            .when(reset("r1", at()))
            .then_expect_error(UserError::InvalidResetLink);
        Given::with(())
            .given(given.clone())
            .when(reset("r22", at() + Duration::hours(73)))
            .then_expect_error(UserError::ResetLinkExpired);
        // Once.
        let mut used = given.clone();
        used.push(changed);
        Given::with(())
            .given(used)
            .when(reset("r22", at()))
            .then_expect_error(UserError::InvalidResetLink);
        // Not for an account disabled since.
        let mut off = given;
        off.push(disabled);
        Given::with(()).given(off).when(reset("r22", at())).then_expect_error(UserError::Disabled);
        // No link asked: nothing to use.
        Given::with(())
            .given(vec![invited(), registered])
            .when(reset("h1", at()))
            .then_expect_error(UserError::InvalidResetLink);
    }

    #[test]
    fn a_user_changes_its_own_password_and_name() {
        let registered =
            UserEvent::UserRegistered { name: None, password_hash: "argon".into(), at: at() };
        let change = || UserCommand::ChangePassword { password_hash: "new".into(), at: at() };
        let changed = UserEvent::PasswordChanged { password_hash: "new".into(), at: at() };
        Given::with(())
            .given(vec![invited(), registered.clone()])
            .when(change())
            .then_expect_events(vec![changed]);
        Given::with(())
            .given(vec![invited()])
            .when(change())
            .then_expect_error(UserError::NotFound);
        let disabled = UserEvent::UserDisabled { at: at() };
        Given::with(())
            .given(vec![invited(), registered.clone(), disabled])
            .when(change())
            .then_expect_error(UserError::Disabled);
        let rename = |name: &str| UserCommand::Rename { name: Some(name.into()), at: at() };
        let renamed = UserEvent::UserRenamed { name: Some("Ada".into()), at: at() };
        Given::with(())
            .given(vec![invited(), registered.clone()])
            .when(rename("Ada"))
            .then_expect_events(vec![renamed.clone()]);
        // The same name again changes nothing.
        Given::with(())
            .given(vec![invited(), registered, renamed])
            .when(rename("Ada"))
            .then_expect_events(vec![]);
    }
}
