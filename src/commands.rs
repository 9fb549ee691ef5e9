//! Running Partner and User commands: cqrs-es over postgres-es's event store, with the portal's
//! metadata on every event, retries on optimistic-lock conflicts, set-based rules kept in the
//! append's transaction and reported by name (see [`rules`]), and read-your-writes (the call
//! returns once the read models have applied the command's events). Their commands are rare.
//! Lead commands, which are not, go through the lead writer (`crate::leads::writer`), which
//! writes their read models in the same transaction.

use std::collections::HashMap;
use std::time::Duration;

use cqrs_es::AggregateError;
use soho_aggregates::{Actor, Identified, Partner, User};
use soho_projections::{Checkpoints, LogPosition};
use sqlx::PgPool;
use uuid::Uuid;

mod rules;

use rules::ruled_cqrs;
pub use rules::{RuledCqrs, RuledEventRepository};

/// Who asked, and why: stored as each event's metadata, for auditors.
#[derive(Debug, Clone)]
pub struct CommandContext {
    pub actor: Actor,
    pub correlation_id: Uuid,
    /// The Soho CRM webhook that carried the change, if one did.
    pub webhook_id: Option<String>,
}

impl CommandContext {
    pub fn new(actor: Actor) -> Self {
        Self { actor, correlation_id: Uuid::now_v7(), webhook_id: None }
    }

    pub fn with_webhook(mut self, webhook_id: impl Into<String>) -> Self {
        self.webhook_id = Some(webhook_id.into());
        self
    }

    pub(crate) fn metadata(&self) -> HashMap<String, String> {
        let mut metadata = HashMap::new();
        metadata.insert("actorType".into(), self.actor.kind.as_str().into());
        if let Some(id) = &self.actor.id {
            metadata.insert("actorId".into(), id.clone());
        }
        metadata.insert("correlationId".into(), self.correlation_id.to_string());
        if let Some(webhook_id) = &self.webhook_id {
            metadata.insert("webhookId".into(), webhook_id.clone());
        }
        metadata
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::error::Error> {
    /// The aggregate refused: a business rule.
    #[error(transparent)]
    Rule(E),
    /// A set-based rule (unique email, ...) refused, by its constraint name.
    #[error("{0} is already taken")]
    Taken(String),
    /// Still conflicting after retries: another command keeps winning.
    #[error("the resource is being changed by another request; try again")]
    Conflict,
    #[error("the event store failed: {0}")]
    Store(String),
}

/// How long a command waits for the read models before answering anyway.
const READ_YOUR_WRITES_TIMEOUT: Duration = Duration::from_secs(10);
const CONFLICT_RETRIES: usize = 4;

pub struct Commands {
    pool: PgPool,
    checkpoints: Checkpoints,
    /// For each aggregate type, the read models that follow it: what a command waits for.
    read_models: HashMap<&'static str, Vec<&'static str>>,
    pub partners: RuledCqrs<Partner>,
    pub users: RuledCqrs<User>,
}

impl Commands {
    pub fn new(
        pool: PgPool,
        checkpoints: Checkpoints,
        read_models: HashMap<&'static str, Vec<&'static str>>,
    ) -> Self {
        Self {
            partners: ruled_cqrs(pool.clone(), ()),
            users: ruled_cqrs(pool.clone(), ()),
            pool,
            checkpoints,
            read_models,
        }
    }

    /// Executes `command` on aggregate `id`; once committed, waits until the read models have
    /// the resulting events, and returns where the aggregate's stream now ends in the log.
    pub async fn execute<A>(
        &self,
        cqrs: &RuledCqrs<A>,
        id: A::Id,
        command: A::Command,
        context: &CommandContext,
    ) -> Result<Option<LogPosition>, CommandError<A::Error>>
    where
        A: Identified,
        A::Command: Clone,
    {
        self.record(cqrs, id, command, context).await?;
        let mut conn = self.pool.acquire().await.map_err(|e| CommandError::Store(e.to_string()))?;
        let head = soho_projections::log::stream_head(&mut conn, A::TYPE, &id.to_string())
            .await
            .map_err(|e| CommandError::Store(e.to_string()))?;
        drop(conn);
        if let Some(position) = head {
            self.wait_for(A::TYPE, position).await;
        }
        Ok(head)
    }

    /// Executes `command` without waiting for the read models: for background work (the process
    /// manager), which reads nothing back and must not wait on the subscribers it runs beside.
    pub async fn record<A>(
        &self,
        cqrs: &RuledCqrs<A>,
        id: A::Id,
        command: A::Command,
        context: &CommandContext,
    ) -> Result<(), CommandError<A::Error>>
    where
        A: Identified,
        A::Command: Clone,
    {
        let metadata = context.metadata();
        let id = id.to_string();
        let mut attempt = 0;
        loop {
            match cqrs.execute_with_metadata(&id, command.clone(), metadata.clone()).await {
                Ok(()) => break,
                Err(AggregateError::AggregateConflict) if attempt < CONFLICT_RETRIES => {
                    attempt += 1;
                    tracing::debug!(attempt, aggregate = A::TYPE, id, "conflict; retrying");
                }
                Err(error) => return Err(classify(error)),
            }
        }
        Ok(())
    }

    /// Waits until the read models of `aggregate_type` have applied `position` (bounded; a stuck
    /// projection is logged, and the caller answers with what the read model has).
    pub async fn wait_for(&self, aggregate_type: &str, position: LogPosition) {
        let Some(read_models) = self.read_models.get(aggregate_type) else { return };
        match self
            .checkpoints
            .wait_for(&self.pool, read_models, position, READ_YOUR_WRITES_TIMEOUT)
            .await
        {
            Ok(true) => {}
            Ok(false) => tracing::warn!(?position, "read models are lagging behind a command"),
            Err(error) => tracing::warn!(%error, "could not wait for the read models"),
        }
    }
}

/// For each aggregate type, the names of the read models that follow it.
pub fn read_models(
    projections: &[std::sync::Arc<dyn soho_projections::Projection>],
) -> HashMap<&'static str, Vec<&'static str>> {
    let mut read_models: HashMap<&'static str, Vec<&'static str>> = HashMap::new();
    for projection in projections {
        for aggregate_type in projection.follows() {
            read_models.entry(*aggregate_type).or_default().push(projection.name());
        }
    }
    read_models
}

/// An aggregate as its events make it now (or up to `until`, for audits), folded from the log.
pub async fn load_aggregate<A: Identified>(
    conn: &mut sqlx::PgConnection,
    id: A::Id,
    until: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<(A, usize), anyhow::Error> {
    let mut aggregate = A::default();
    let mut applied = 0;
    for stored in soho_projections::log::read_stream(conn, A::TYPE, &id.to_string()).await? {
        if until.is_some_and(|until| stored.recorded_at > until) {
            break;
        }
        aggregate.apply(stored.decode::<A::Event>()?);
        applied += 1;
    }
    Ok((aggregate, applied))
}

fn classify<E: std::error::Error>(error: AggregateError<E>) -> CommandError<E> {
    match error {
        AggregateError::UserError(e) => CommandError::Rule(e),
        AggregateError::AggregateConflict => CommandError::Conflict,
        AggregateError::UnexpectedError(inner) | AggregateError::DatabaseConnectionError(inner) => {
            // A set rule's key taken: the unique violation names the rule (see `rules`).
            if let Some(sqlx::Error::Database(db)) = inner.downcast_ref::<sqlx::Error>() {
                if let Some(rule) = db.constraint().filter(|c| rules::RULES.contains(c)) {
                    if db.is_unique_violation() {
                        return CommandError::Taken(rule.to_string());
                    }
                }
            }
            CommandError::Store(inner.to_string())
        }
        AggregateError::DeserializationError(inner) => CommandError::Store(inner.to_string()),
    }
}
