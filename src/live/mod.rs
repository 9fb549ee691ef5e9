//! Live updates (CONTRACT.md 6): the feed written by the leads projection, fanned out to the
//! WebSockets of every server through PostgreSQL `LISTEN/NOTIFY`, and served from the table for
//! `resume` and `/leads/changes`. The socket itself is the HTTP layer's: `http::live`.

pub mod feed;
pub mod hub;

pub use feed::LiveMessage;
pub use hub::LiveHub;
