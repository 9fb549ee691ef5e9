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
//! Only the write itself is serialised: [`ORDER`] is taken in the batch's last round trip, just
//! before its one writing statement, and held through its commit, which the same simple query
//! sends (see [`super::batch`]): never across a round trip to the server. The live feed's
//! positions and the log's transaction ids then grow in commit order (a reader that follows
//! them never skips a late commit, and a replay writes the read models in the order the writers
//! did), and the counters a batch adds to are never waited on by another batch holding other
//! locks. (Measured: holding it from BEGIN ran 2,431 leads/s and 0.56 × with two servers; from
//! just before the write, as a round trip of its own, 2,803 and 0.60 ×. Two batches in flight a
//! server, one deciding while the other commits, ran 2,263: the batches halve and each pays the
//! commit.)

use sha2::{Digest, Sha256};
use soho_aggregates::lead::LeadCommand;

use super::{Job, Request};

/// The lock every batch writes under, from every server, held through its commit.
pub(super) const ORDER: &str = "EXECUTE writer_order";

/// The lock statements every batch runs, prepared on the writer's connection when it opens:
/// the statements of a simple query are planned each time they run, and these run in every
/// batch.
pub(super) fn prepare() -> String {
    let shared = soho_projections::reader::lock_shared_statement(soho_projections::leads::NAME);
    let order = soho_projections::reader::lock_statement("lead writes");
    format!(
        "PREPARE writer_replay_shared AS {shared}; \
         PREPARE writer_locks (int[]) AS \
           SELECT count(pg_advisory_xact_lock(hashtext('soho-lead-writer'), k)) FROM unnest($1) AS k; \
         PREPARE writer_order AS {order}"
    )
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
