//! The portal's aggregates: Partner, User and Lead, with their commands, events and rules.
//!
//! Pure on purpose: no I/O and no clock. Time comes in with each command (`at`), so a command
//! replayed by cqrs-es after an optimistic-lock conflict decides the same thing, and the tests
//! are plain given/when/then over values.

pub mod ids;
pub mod lead;
pub mod partner;
pub mod user;

pub use ids::{ApiKeyId, EndpointId, InvitationId, LeadId, PartnerId, UserId};
pub use lead::{Lead, LeadCommand, LeadError, LeadEvent, LeadStatus};
pub use partner::{Partner, PartnerCommand, PartnerError, PartnerEvent, PartnerStatus};
pub use user::{Role, User, UserCommand, UserError, UserEvent};

/// The aggregate type names the event store keys streams by (`events.aggregate_type`), for
/// code that reads the log without an aggregate in hand: the names are the aggregates' own.
pub mod aggregate_type {
    use cqrs_es::Aggregate;

    pub const PARTNER: &str = <crate::Partner as Aggregate>::TYPE;
    pub const USER: &str = <crate::User as Aggregate>::TYPE;
    pub const LEAD: &str = <crate::Lead as Aggregate>::TYPE;
}

/// An aggregate and the newtype of its ids: what the command path takes instead of the
/// string cqrs-es keys streams by, so a partner's id cannot address a user's stream.
pub trait Identified: cqrs_es::Aggregate {
    type Id: Copy + std::fmt::Display + std::fmt::Debug;
}

impl Identified for Partner {
    type Id = PartnerId;
}

impl Identified for User {
    type Id = UserId;
}

impl Identified for Lead {
    type Id = LeadId;
}

/// Who caused a change, as kept with every event and shown to auditors.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Actor {
    #[serde(rename = "type")]
    pub kind: ActorKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActorKind {
    /// A logged-in portal user.
    User,
    /// Soho CRM, through a signed webhook (the id is the webhook id).
    Crm,
    /// Someone using a partner's public form.
    Public,
    /// The portal itself (the process manager, the command line).
    System,
    /// A partner's own system, with one of the partner's API keys (the id is the key's).
    #[serde(rename = "api_key")]
    ApiKey,
}

impl ActorKind {
    /// The name stored in events' metadata and the read models (as serialised).
    pub fn as_str(&self) -> &'static str {
        match self {
            ActorKind::User => "user",
            ActorKind::Crm => "crm",
            ActorKind::Public => "public",
            ActorKind::System => "system",
            ActorKind::ApiKey => "api_key",
        }
    }
}

impl Actor {
    pub fn user(id: UserId) -> Self {
        Self { kind: ActorKind::User, id: Some(id.to_string()) }
    }
    pub fn crm(webhook_id: impl Into<String>) -> Self {
        Self { kind: ActorKind::Crm, id: Some(webhook_id.into()) }
    }
    pub fn public() -> Self {
        Self { kind: ActorKind::Public, id: None }
    }
    pub fn system() -> Self {
        Self { kind: ActorKind::System, id: None }
    }
    pub fn api_key(key: ApiKeyId) -> Self {
        Self { kind: ActorKind::ApiKey, id: Some(key.to_string()) }
    }
}
