//! The duplicate rules' reads for a batch's submissions: the same person submitted by this
//! partner in the last 24 hours (answered with that lead), or by another partner in the last 90
//! days (a channel conflict), from the read model and from the batch itself.

use std::collections::HashMap;

use soho_projections::params::{Binder, Literals, NulByte};
use sqlx::postgres::PgRow;
use sqlx::Row;
use uuid::Uuid;

use super::{Job, Request, Submission};

/// What the duplicate rules found for one submission.
pub(super) struct Found {
    /// This partner's lead for the same person from the last 24 hours.
    pub(super) existing: Option<Uuid>,
    /// Another partner has the person from the last 90 days.
    pub(super) conflict: bool,
}

/// The duplicate rules' answers from the read model, for each submission of the batch.
pub(super) struct People {
    found: Vec<(Option<Uuid>, bool)>,
    /// Which answer is whose: the index of each submission among the requests.
    index: HashMap<usize, usize>,
}

impl People {
    const TAG: &'static str = "people";
    const PREPARED: &'static str = "writer_people";

    /// The lookup, prepared once a connection (in a simple query it would be planned anew for
    /// every batch). Email and phone are looked up apart, each on
    /// its own index (`leads_by_email`, `leads_by_phone`): an OR of the two would scan every
    /// lead of the partner.
    pub(super) fn prepare() -> String {
        format!(
            "PREPARE {} (uuid[], text[], text[]) AS SELECT '{}' AS lookup, t.n, \
               (SELECT m.lead_id FROM ( \
                  SELECT l.lead_id, l.created_at FROM leads l WHERE lower(l.email) = t.email \
                    AND l.created_at > now() - interval '24 hours' AND l.partner_id = t.partner \
                  UNION ALL \
                  SELECT l.lead_id, l.created_at FROM leads l WHERE l.phone_key = t.phone \
                    AND l.created_at > now() - interval '24 hours' AND l.partner_id = t.partner \
                ) m ORDER BY m.created_at DESC LIMIT 1) AS existing, \
               (EXISTS (SELECT 1 FROM leads l WHERE lower(l.email) = t.email \
                  AND l.created_at > now() - interval '90 days' AND l.partner_id <> t.partner) \
               OR EXISTS (SELECT 1 FROM leads l WHERE l.phone_key = t.phone \
                  AND l.created_at > now() - interval '90 days' AND l.partner_id <> t.partner)) AS conflict \
             FROM unnest($1, $2, $3) WITH ORDINALITY AS t(partner, email, phone, n) \
             ORDER BY t.n",
            Self::PREPARED,
            Self::TAG
        )
    }

    /// The statement that looks up every submission's person (tagged rows of the opening
    /// query), or none if the batch has no submission.
    pub(super) fn statement(requests: &[Request]) -> Result<Option<String>, NulByte> {
        let submissions: Vec<&Submission> = requests
            .iter()
            .filter_map(|r| match &r.job {
                Job::Submit(s) => Some(s),
                Job::Command { .. } => None,
            })
            .collect();
        if submissions.is_empty() {
            return Ok(None);
        }
        let partners: Vec<Uuid> = submissions.iter().map(|s| s.partner.as_uuid()).collect();
        let emails: Vec<Option<String>> =
            submissions.iter().map(|s| s.details.email_key()).collect();
        let phones: Vec<Option<String>> =
            submissions.iter().map(|s| s.details.phone_key()).collect();
        let values = Literals::default().value(partners).value(emails).value(phones);
        values.execute(Self::PREPARED).map(Some)
    }

    /// The answers among the opening query's rows, and which submission each is for.
    pub(super) fn from_rows(rows: &[PgRow], requests: &[Request]) -> anyhow::Result<Self> {
        let index = requests
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r.job, Job::Submit(_)))
            .enumerate()
            .map(|(at, (n, _))| (n, at))
            .collect();
        let mut found = Vec::new();
        for row in super::opening::tagged(rows, Self::TAG) {
            found.push((row.try_get("existing")?, row.try_get("conflict")?));
        }
        Ok(Self { found, index })
    }

    /// The rules for the `n`th request, `submission`: the read model's answer, and what this
    /// batch submitted before it (newer, so it comes first).
    pub(super) fn decide(&self, n: usize, submission: &Submission, batch: &InBatch) -> Found {
        let (stored, stored_conflict) =
            self.index.get(&n).and_then(|at| self.found.get(*at)).copied().unwrap_or((None, false));
        let (batched, batched_conflict) = batch.found(submission);
        Found { existing: batched.or(stored), conflict: stored_conflict || batched_conflict }
    }
}

/// The submissions of this batch so far, by person.
#[derive(Default)]
pub(super) struct InBatch {
    people: Vec<(Uuid, Vec<String>, Uuid)>,
}

impl InBatch {
    fn keys(submission: &Submission) -> Vec<String> {
        let details = &submission.details;
        details.email_key().into_iter().chain(details.phone_key()).collect()
    }

    pub(super) fn add(&mut self, submission: &Submission, lead: Uuid) {
        self.people.push((submission.partner.as_uuid(), Self::keys(submission), lead));
    }

    fn found(&self, submission: &Submission) -> (Option<Uuid>, bool) {
        let keys = Self::keys(submission);
        let partner = submission.partner.as_uuid();
        let same = |other: &Vec<String>| other.iter().any(|k| keys.contains(k));
        let existing = self
            .people
            .iter()
            .rev()
            .find(|(p, other, _)| *p == partner && same(other))
            .map(|(_, _, lead)| *lead);
        let conflict = self.people.iter().any(|(p, other, _)| *p != partner && same(other));
        (existing, conflict)
    }
}
