//! Live updates (CONTRACT.md 6): the feed written by the leads projection, fanned out to the
//! WebSockets of every server through PostgreSQL `LISTEN/NOTIFY`, and served from the table for
//! `resume` and `/leads/changes`.

pub mod feed;
pub mod hub;
pub mod socket;

pub use feed::LiveMessage;
pub use hub::LiveHub;
