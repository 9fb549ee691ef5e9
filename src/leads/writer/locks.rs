//! The locks a batch takes, and in which order.
//!
//! A batch's transaction begins by taking, in one round trip with its BEGIN, the replay's lock
//! in its shared form (a replay, which takes it alone, waits for every batch in flight and holds
//! the next ones off) and one lock for each thing the batch reads a rule from: each person it
//! submits (email and phone keys), each lead it changes, each webhook id it answers and each Soho
//! CRM id it claims. Two batches about the same person or lead then run one after the other, so
//! what the first wrote is what the second reads, on any server; batches of different servers
//! about different ones read and decide at the same time. The locks are taken in one order
//! (sorted), so no two batches wait for each other.
//!
//! Only the write itself is serialised: [`ORDER`] is held through the batch's commit, from just
//! before its one writing statement, or, while this server is the only one writing, from the
//! end of its opening query ([`Placement`]). The live feed's positions and the log's transaction
//! ids then grow in commit order (a reader that follows them never skips a late commit, and a
//! replay writes the read models in the order the writers did), and the counters a batch adds to
//! are never waited on by another batch holding other locks. (Measured: holding it from BEGIN
//! ran 2,431 leads/s and 0.56 × with two servers; from just before the write, 2,803 and 0.60 ×.
//! Two batches in flight a server, one deciding while the other commits, ran 2,263: the batches
//! halve and each pays the commit.)

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use soho_aggregates::lead::LeadCommand;

use super::{Job, Request};

/// The lock every batch writes under, from every server, held through its commit.
pub(super) const ORDER: &str = "EXECUTE writer_order";

/// The statements every batch runs, prepared on the writer's connection when it opens: the
/// statements of a simple query are planned each time they run, and these run in every batch.
/// (`writer_announce` tells the Soho CRM workers of new tasks, with the batch's COMMIT.)
pub(super) fn prepare() -> String {
    let shared = soho_projections::reader::lock_shared_statement(soho_projections::leads::NAME);
    let order = soho_projections::reader::lock_statement("lead writes");
    format!(
        "PREPARE writer_replay_shared AS {shared}; \
         PREPARE writer_locks (int[]) AS \
           SELECT count(pg_advisory_xact_lock(hashtext('soho-lead-writer'), k)) FROM unnest($1) AS k; \
         PREPARE writer_order AS {order}; \
         PREPARE writer_announce (text) AS {}",
        soho_projections::reader::announce_statement_with("$1")
    )
}

/// Where a batch takes [`ORDER`]: at the end of its opening query while this server writes
/// alone (one round trip less a batch), or in a round trip of its own just before its write
/// while another server's writes come between its own (then the lock is held for as little as
/// can be: the batches of all servers take turns under it). Either is correct; only the time the
/// lock is held differs.
#[derive(Default)]
pub(super) struct Placement {
    /// The log position of this server's last appended event.
    last: Option<i64>,
    /// Until when another server's writes are taken to be coming in between.
    shared_until: Option<Instant>,
}

impl Placement {
    /// How long one sign of another writer holds the lock at its narrow place.
    const SHARED_FOR: Duration = Duration::from_secs(2);

    pub(super) fn in_opening(&self) -> bool {
        self.shared_until.is_none_or(|until| Instant::now() >= until)
    }

    /// A batch appended the log positions `first..=last`: a gap since the last batch's means
    /// someone else appended in between (another server's writer, mostly; a partner's or a
    /// user's command, or a rolled-back batch, now and then).
    pub(super) fn appended(&mut self, first: i64, last: i64) {
        if self.last.is_some_and(|previous| first != previous + 1) {
            self.shared_until = Some(Instant::now() + Self::SHARED_FOR);
        }
        self.last = Some(last);
    }
}

/// BEGIN, the replay's lock (shared) and the locks on what `requests` read, as one simple query.
pub(super) fn begin_statement(requests: &[Request]) -> String {
    let mut keys: Vec<i32> = requests.iter().flat_map(keys_of).map(|name| key(&name)).collect();
    if keys.is_empty() {
        return "BEGIN; EXECUTE writer_replay_shared".to_string();
    }
    keys.sort_unstable();
    keys.dedup();
    let list = keys.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
    // unnest yields the array's elements in order: the locks are taken sorted.
    format!("BEGIN; EXECUTE writer_replay_shared; EXECUTE writer_locks(ARRAY[{list}]::int[])")
}

/// What a request reads a rule from, by name.
fn keys_of(request: &Request) -> Vec<String> {
    match &request.job {
        Job::Submit(submission) => {
            let details = &submission.details;
            let email = details.email_key().map(|k| format!("person email {k}"));
            let phone = details.phone_key().map(|k| format!("person phone {k}"));
            email.into_iter().chain(phone).collect()
        }
        Job::Command { lead, command, receipt } => {
            let mut keys = vec![format!("lead {lead}")];
            if let Some(receipt) = receipt {
                keys.push(format!("webhook {}", receipt.webhook_id));
            }
            if let LeadCommand::RecordCrmSync { soho_lead_id, .. } = command {
                keys.push(format!("soho lead {soho_lead_id}"));
            }
            keys
        }
    }
}

/// A lock's key: 32 bits of the name's SHA-256, the same on every server and build (two names
/// sharing a key only make their batches take turns).
fn key(name: &str) -> i32 {
    let digest = Sha256::digest(name.as_bytes());
    i32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_tell_names_apart() {
        assert_ne!(key("person email a@example.com"), key("person phone a@example.com"));
        // Pinned: a key that changed between builds would let two servers of different builds
        // miss each other's locks.
        assert_eq!(key("lead x"), 1_342_802_716);
    }
}
