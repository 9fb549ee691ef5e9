//! Newtypes for the portal's ids, so a lead id can never be passed where a partner id is meant.

use std::fmt;
use std::str::FromStr;

macro_rules! decl_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub uuid::Uuid);

        impl $name {
            /// A new id, time-ordered (UUID v7) so that index inserts stay local.
            pub fn new() -> Self {
                Self(uuid::Uuid::now_v7())
            }
            pub fn as_uuid(&self) -> uuid::Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self(uuid::Uuid::nil())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                uuid::Uuid::parse_str(s).map(Self)
            }
        }

        impl From<uuid::Uuid> for $name {
            fn from(id: uuid::Uuid) -> Self {
                Self(id)
            }
        }
    };
}

decl_id!(
    /// A partner: a reseller or referrer approved in Soho CRM.
    PartnerId
);
decl_id!(
    /// A portal user: a partner's admin, a sub-account, or an auditor.
    UserId
);
decl_id!(
    /// A lead submitted through the portal.
    LeadId
);
decl_id!(
    /// A partner's API key (its id, never the key itself).
    ApiKeyId
);
decl_id!(
    /// A partner's webhook endpoint, where the portal posts lead changes.
    EndpointId
);
decl_id!(
    /// A single-use link sent by email: an invitation, or a password reset (its token is an
    /// HMAC of this id).
    InvitationId
);
