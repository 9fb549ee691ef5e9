//! The peer: a command path built on stock cqrs-es + postgres-es as their documentation shows
//! it (one new aggregate per command, a `GenericQuery` view over `PostgresViewRepository`),
//! served over HTTP by axum in this process, in its own database of the same cluster with
//! postgres-es's own schema. It counts the view updates its query processor loses.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::GenericQuery;
use cqrs_es::{Aggregate, DomainEvent, EventEnvelope, View};
use postgres_es::{postgres_cqrs, PostgresCqrs, PostgresViewRepository};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::load::{closed_loop, Sample};
use crate::stack::Stack;

#[derive(Debug, Default, Serialize, Deserialize)]
struct PeerLead {
    submitted: bool,
}

#[derive(Debug, Deserialize)]
struct Submit {
    last_name: String,
    email: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum PeerLeadEvent {
    Submitted { last_name: String, email: String },
}

impl DomainEvent for PeerLeadEvent {
    fn event_type(&self) -> String {
        "Submitted".into()
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("already submitted")]
struct AlreadySubmitted;

impl Aggregate for PeerLead {
    const TYPE: &'static str = "PeerLead";
    type Command = Submit;
    type Event = PeerLeadEvent;
    type Error = AlreadySubmitted;
    type Services = ();

    async fn handle(
        &mut self,
        command: Submit,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), AlreadySubmitted> {
        if self.submitted {
            return Err(AlreadySubmitted);
        }
        let event = PeerLeadEvent::Submitted { last_name: command.last_name, email: command.email };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, _: PeerLeadEvent) {
        self.submitted = true;
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct PeerLeadView {
    last_name: String,
    email: String,
}

impl View<PeerLead> for PeerLeadView {
    fn update(&mut self, event: &EventEnvelope<PeerLead>) {
        let PeerLeadEvent::Submitted { last_name, email } = &event.payload;
        self.last_name = last_name.clone();
        self.email = email.clone();
    }
}

const SCHEMA: [&str; 3] = [
    "CREATE TABLE events (aggregate_type text NOT NULL, aggregate_id text NOT NULL, \
     sequence bigint CHECK (sequence >= 0) NOT NULL, event_type text NOT NULL, event_version text NOT NULL, \
     payload json NOT NULL, metadata json NOT NULL, PRIMARY KEY (aggregate_type, aggregate_id, sequence))",
    "CREATE TABLE snapshots (aggregate_type text NOT NULL, aggregate_id text NOT NULL, \
     last_sequence bigint CHECK (last_sequence >= 0) NOT NULL, current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL, \
     payload json NOT NULL, PRIMARY KEY (aggregate_type, aggregate_id, last_sequence))",
    "CREATE TABLE lead_view (view_id text NOT NULL, version bigint CHECK (version >= 0) NOT NULL, \
     payload json NOT NULL, PRIMARY KEY (view_id))",
];

/// What the peer did: its sample, and how many views its query processor failed to write.
pub struct PeerRun {
    pub sample: Sample,
    pub lost_views: i64,
}

pub async fn run(stack: &Stack, clients: usize, duration: Duration) -> anyhow::Result<PeerRun> {
    stack.cluster.create_database("peer").await?;
    let pool = soho_portal::db::pool(stack.cluster.connect_options("peer")).await?;
    for statement in SCHEMA {
        sqlx::query(statement).execute(&pool).await?;
    }
    let errors = Arc::new(AtomicU64::new(0));
    let mut query = GenericQuery::<_, PeerLeadView, PeerLead>::new(Arc::new(
        PostgresViewRepository::new("lead_view", pool.clone()),
    ));
    let counted = Arc::clone(&errors);
    query.use_error_handler(Box::new(move |_| {
        counted.fetch_add(1, Ordering::Relaxed);
    }));
    let cqrs: Arc<PostgresCqrs<PeerLead>> =
        Arc::new(postgres_cqrs(pool.clone(), vec![Box::new(query)], ()));
    let app = Router::new().route("/leads", post(submit)).with_state(cqrs);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let http = stack.http.clone();
    let sample = closed_loop(clients, duration, move |client, n| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let body = json!({"last_name": format!("Load {client}-{n}"), "email": format!("peer-{client}-{n}@example.com")});
            let response = http.post(format!("{base}/leads")).json(&body).send().await?;
            anyhow::ensure!(response.status().is_success(), "the peer answered {}", response.status());
            Ok(())
        }
    })
    .await?;
    server.abort();
    let (aggregates, views): (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM lead_view)")
            .fetch_one(&pool)
            .await?;
    pool.close().await;
    let lost_views = (aggregates - views).max(errors.load(Ordering::Relaxed) as i64);
    Ok(PeerRun { sample, lost_views })
}

async fn submit(
    State(cqrs): State<Arc<PostgresCqrs<PeerLead>>>,
    Json(command): Json<serde_json::Value>,
) -> StatusCode {
    let Ok(command) = serde_json::from_value::<Submit>(command) else {
        return StatusCode::BAD_REQUEST;
    };
    match cqrs.execute(&uuid::Uuid::new_v4().to_string(), command).await {
        Ok(()) => StatusCode::CREATED,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}
