//! Webhooks' receipts (`webhook_receipts`), kept by the lead writer: looked up for the batch's
//! webhooks before anything is decided, and written with the events they caused. A batch holds
//! a lock on each webhook id it answers until it commits, on every server, so a repeat always
//! finds the receipt of a delivery that came before it; two deliveries in one batch are told
//! apart here.

use std::collections::HashMap;

use serde_json::Value;
use sqlx::postgres::PgRow;

use super::opening::KeyedRead;
use super::{Job, Request};
use soho_projections::params::NulByte;

#[derive(Default)]
pub(super) struct Receipts {
    /// The answer each webhook id of the batch got before (stored, or given in this batch).
    answered: HashMap<String, Value>,
    /// Receipts to write: (webhook id, endpoint, answer).
    new: Vec<(String, &'static str, Value)>,
}

impl Receipts {
    /// A webhook id's earlier answer.
    pub(super) const READ: KeyedRead = KeyedRead {
        name: "writer_receipts",
        tag: "receipts",
        table: "webhook_receipts",
        key: "webhook_id",
        value: "response",
    };

    /// The statement that finds the batch's webhooks' earlier answers (tagged rows of the
    /// opening query), or none if no request comes from a webhook.
    pub(super) fn statement(requests: &[Request]) -> Result<Option<String>, NulByte> {
        Self::READ.statement(requests.iter().filter_map(|r| match &r.job {
            Job::Command { receipt: Some(receipt), .. } => Some(receipt.webhook_id.as_str()),
            _ => None,
        }))
    }

    pub(super) fn from_rows(rows: &[PgRow]) -> anyhow::Result<Self> {
        Ok(Self { answered: Self::READ.found(rows)?, new: Vec::new() })
    }

    /// No receipt to write.
    pub(super) fn is_empty(&self) -> bool {
        self.new.is_empty()
    }

    /// The answer `webhook_id` got before, if it did.
    pub(super) fn answered(&self, webhook_id: &str) -> Option<&Value> {
        self.answered.get(webhook_id)
    }

    /// `webhook_id` was written in this batch, answered `answer`.
    pub(super) fn add(&mut self, webhook_id: &str, endpoint: &'static str, answer: Value) {
        self.answered.insert(webhook_id.to_string(), answer.clone());
        self.new.push((webhook_id.to_string(), endpoint, answer));
    }

    /// The receipts' INSERT, a CTE of the batch's statement (parameters numbered from `first`).
    pub(super) fn sql(first: usize) -> String {
        let (ids, endpoints, answers) = (first, first + 1, first + 2);
        format!(
            "INSERT INTO webhook_receipts (webhook_id, endpoint, status_code, response) \
             SELECT id, endpoint, 200, response \
             FROM unnest(${ids}::text[], ${endpoints}::text[], ${answers}::jsonb[]) \
               AS r(id, endpoint, response)"
        )
    }

    pub(super) fn bind<'q, B: soho_projections::params::Binder<'q>>(&self, query: B) -> B {
        query
            .value(self.new.iter().map(|(id, _, _)| id.clone()).collect::<Vec<_>>())
            .value(self.new.iter().map(|(_, endpoint, _)| *endpoint).collect::<Vec<_>>())
            .value(self.new.iter().map(|(_, _, answer)| answer.clone()).collect::<Vec<_>>())
    }
}
