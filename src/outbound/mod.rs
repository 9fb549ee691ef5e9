//! Outbound webhooks (contract 8): a partner's admin registers endpoints, and the lead changes
//! its partner's systems asked for are delivered to them, signed with Standard Webhooks (the
//! scheme Soho CRM signs its webhooks to us with), with the live socket's message shapes.
//!
//! `endpoints`: the endpoints and their deliveries' log. `fanout`: follows the live feed and
//! records a delivery per message and endpoint. `delivery`: sends what is due, retries on the
//! Standard Webhooks schedule, and disables an endpoint that has failed for three days.
//! `notice`: emails the admins of an endpoint the portal disabled. `address`: where an endpoint
//! may point (SSRF).

pub mod address;
use soho_projections::leads::FeedKind;

pub mod delivery;
pub mod endpoints;
pub mod fanout;
pub mod notice;

/// The event types an endpoint may ask for: the live feed's kinds.
pub const EVENT_TYPES: [&str; 4] = [
    FeedKind::Created.as_str(),
    FeedKind::StatusChanged.as_str(),
    FeedKind::Synced.as_str(),
    FeedKind::SyncFailed.as_str(),
];
