//! Who may do what: passwords, access tokens, keys, the role extractors, and rate limits.

pub mod api_keys;
pub mod guard;
pub mod keys;
pub mod password;
pub mod rate_limit;
pub mod refresh;
pub mod session;
pub mod sign_ins;

pub use guard::{Auditor, CurrentUser, MaybeUser, PartnerAdmin, PartnerMember};
pub use keys::Keys;
