//! The event store of the Partner and User commands, and the set rules their events claim.
//!
//! Two rules span aggregates: one partner per Soho CRM id, one user per email (whatever its
//! case). Each is a lookup table with a unique key (`partner_soho_ids`, `user_emails`), written
//! in the transaction that appends the event claiming it, so an event breaking a rule is never
//! in the log. A trigger on the log used to write them, reading the values out of the payloads'
//! JSON and raising a SQLSTATE of its own; here the events are read as the aggregates' types,
//! and a broken rule is the unique key's own violation, known by the constraint's name (the
//! rule's name: `partner_soho_id_unique`, `user_email_unique`).
//!
//! Everything but the append is postgres-es's repository; the append writes the same table and
//! columns as it does (`soho_projections::log::append`).

use cqrs_es::persist::{
    PersistedEventRepository, PersistedEventStore, PersistenceError, ReplayStream, SerializedEvent,
    SerializedSnapshot,
};
use cqrs_es::{Aggregate, CqrsFramework};
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use soho_aggregates::aggregate_type::{PARTNER, USER};
use soho_aggregates::{PartnerEvent, UserEvent};
use soho_projections::log::{self, NewEvent};
use sqlx::{PgConnection, PgPool};

/// The rules' constraints: a unique violation of one of these is a command refused by the rule
/// of that name (see `classify`).
pub(super) const RULES: [&str; 2] = ["partner_soho_id_unique", "user_email_unique"];

/// A cqrs-es framework whose appends keep the set rules.
pub type RuledCqrs<A> = CqrsFramework<A, PersistedEventStore<RuledEventRepository, A>>;

/// The framework for aggregate `A`, on `pool` (no queries: the read models follow the log).
pub(super) fn ruled_cqrs<A: Aggregate>(pool: PgPool, services: A::Services) -> RuledCqrs<A> {
    let repository =
        RuledEventRepository { events: PostgresEventRepository::new(pool.clone()), pool };
    CqrsFramework::new(PersistedEventStore::new_event_store(repository), vec![], services)
}

/// postgres-es's repository, with appends that write the set rules' rows alongside.
pub struct RuledEventRepository {
    events: PostgresEventRepository,
    pool: PgPool,
}

impl PersistedEventRepository for RuledEventRepository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.events.get_events::<A>(aggregate_id).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.events.get_last_events::<A>(aggregate_id, last_sequence).await
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        self.events.get_snapshot::<A>(aggregate_id).await
    }

    #[tracing::instrument(skip_all, fields(aggregate = A::TYPE, events = events.len()), err)]
    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        if snapshot_update.is_some() {
            // The frameworks here are event stores (`new_event_store`): none takes snapshots.
            return Err(PersistenceError::UnknownError("snapshots are not kept".into()));
        }
        let appended = events
            .iter()
            .map(|event| {
                Ok(NewEvent {
                    aggregate_type: A::TYPE,
                    aggregate_id: event.aggregate_id.clone(),
                    sequence: i64::try_from(event.sequence)
                        .map_err(|error| PersistenceError::UnknownError(Box::new(error)))?,
                    event_type: event.event_type.clone(),
                    event_version: event.event_version.clone(),
                    payload: event.payload.clone(),
                    metadata: event.metadata.clone(),
                })
            })
            .collect::<Result<Vec<_>, PersistenceError>>()?;
        let mut tx = self.pool.begin().await.map_err(failed)?;
        // A sequence taken already is another command's commit in between: cqrs-es tries again
        // on the new state.
        log::append(&mut tx, &appended).await.map_err(|error| match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                PersistenceError::OptimisticLockError
            }
            _ => failed(error),
        })?;
        for event in events {
            keep_rules(&mut tx, event).await?;
        }
        tx.commit().await.map_err(failed)
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        self.events.stream_events::<A>(aggregate_id).await
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        self.events.stream_all_events::<A>().await
    }
}

/// Writes the rows of the set rules `event` claims or gives up. A unique violation is the
/// database's own error, named by its constraint: the command is refused by that rule.
async fn keep_rules(
    conn: &mut PgConnection,
    event: &SerializedEvent,
) -> Result<(), PersistenceError> {
    let id = || {
        uuid::Uuid::parse_str(&event.aggregate_id)
            .map_err(|error| PersistenceError::UnknownError(error.into()))
    };
    let statement = match (event.aggregate_type.as_str(), event.event_type.as_str()) {
        (PARTNER, "PartnerRegistered") => {
            let PartnerEvent::PartnerRegistered { soho_partner_id, .. } = decode(event)? else {
                return Err(disagree(event));
            };
            sqlx::query(
                "INSERT INTO partner_soho_ids (soho_partner_id, partner_id) VALUES ($1, $2)",
            )
            .bind(soho_partner_id)
            .bind(id()?)
        }
        (USER, "UserInvited") => {
            let UserEvent::UserInvited { email, .. } = decode(event)? else {
                return Err(disagree(event));
            };
            // Lower-cased by the database, as every reader of the table compares it.
            sqlx::query("INSERT INTO user_emails (email, user_id) VALUES (lower($1), $2)")
                .bind(email)
                .bind(id()?)
        }
        (USER, "InvitationVoided") => {
            sqlx::query("DELETE FROM user_emails WHERE user_id = $1").bind(id()?)
        }
        _ => return Ok(()),
    };
    statement.execute(conn).await.map_err(failed)?;
    Ok(())
}

fn decode<E: serde::de::DeserializeOwned>(event: &SerializedEvent) -> Result<E, PersistenceError> {
    Ok(serde_json::from_value(event.payload.clone())?)
}

/// An event whose payload is not the event its type names: its rule cannot be kept, so it is
/// not appended.
fn disagree(event: &SerializedEvent) -> PersistenceError {
    PersistenceError::UnknownError(
        format!("{} with another event's payload", event.event_type).into(),
    )
}

/// A database error as cqrs-es carries it: the `sqlx::Error` itself, for `classify` to name a
/// broken rule by.
fn failed(error: sqlx::Error) -> PersistenceError {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
            PersistenceError::ConnectionError(Box::new(error))
        }
        error => PersistenceError::UnknownError(Box::new(error)),
    }
}
