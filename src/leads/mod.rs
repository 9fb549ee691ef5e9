//! Leads: submission (with duplicate detection), status changes from both sides, and the
//! queries behind the lists, the history and the dashboard.

pub mod order;
pub mod queries;
pub mod status;
pub mod status_mapping;
pub mod submission;
pub mod writer;
