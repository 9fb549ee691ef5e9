//! Who may do what: passwords, access tokens, keys, who a caller is, and rate limits. (The
//! role extractors are the HTTP layer's: `http::guard`.)

pub mod api_keys;
pub mod keys;
pub mod password;
pub mod rate_limit;
pub mod refresh;
pub mod session;
pub mod sign_ins;
pub mod standing;

pub use keys::Keys;
pub use standing::{AuthError, CurrentUser};
