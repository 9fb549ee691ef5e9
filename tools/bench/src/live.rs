//! Live updates: sockets of the partner's admin, a status change sent as Soho CRM's webhook, and
//! the time until each socket has the message.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::load::Sample;
use crate::stack::{webhook, Stack};

/// Connected sockets; each reports when a `lead.status_changed` message reaches it, and all
/// count the messages they drain.
pub struct Sockets {
    arrivals: Vec<mpsc::UnboundedReceiver<Instant>>,
    tasks: Vec<JoinHandle<()>>,
    pub messages: Arc<AtomicU64>,
}

impl Sockets {
    /// `count` sockets, spread round-robin over the servers.
    pub async fn connect(stack: &Stack, count: usize) -> anyhow::Result<Self> {
        let mut sockets =
            Self { arrivals: Vec::new(), tasks: Vec::new(), messages: Arc::default() };
        let bases = stack.bases(stack.servers.len());
        for n in 0..count {
            let base = &bases[n % bases.len()];
            let url = format!("{}/ws?access_token={}", base.replace("http://", "ws://"), stack.jwt);
            let (socket, _) = tokio_tungstenite::connect_async(&url).await?;
            let (tx, rx) = mpsc::unbounded_channel::<Instant>();
            let messages = Arc::clone(&sockets.messages);
            sockets.tasks.push(tokio::spawn(async move {
                let (_, mut read) = socket.split();
                while let Some(Ok(message)) = read.next().await {
                    if let Message::Text(text) = message {
                        messages.fetch_add(1, Ordering::Relaxed);
                        if text.contains("lead.status_changed") && tx.send(Instant::now()).is_err()
                        {
                            return;
                        }
                    }
                }
            }));
            sockets.arrivals.push(rx);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(sockets)
    }

    pub fn close(self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

/// `changes` status changes of one lead, one at a time: the latency of every delivery.
pub async fn webhook_to_socket(
    stack: &Stack,
    sockets: &mut Sockets,
    changes: usize,
) -> anyhow::Result<Sample> {
    let base = &stack.servers[0].base;
    let lead: Value = stack
        .http
        .post(format!("{base}/leads"))
        .bearer_auth(&stack.jwt)
        .json(&json!({"lastName": "Live", "email": format!("live-{}@example.com", uuid::Uuid::new_v4())}))
        .send()
        .await?
        .json()
        .await?;
    let lead = lead["id"].as_str().context("a lead")?.to_string();
    // Drain what the socket saw of earlier leads.
    for arrivals in sockets.arrivals.iter_mut() {
        while arrivals.try_recv().is_ok() {}
    }
    let statuses = ["Contacted", "Pre-Qualified", "Converted", "Lost Lead", "Not Contacted"];
    let mut latencies = Vec::with_capacity(sockets.arrivals.len() * changes);
    let started = Instant::now();
    for n in 0..changes {
        let body = json!({"event": "lead.status_changed", "occurredAt": chrono::Utc::now(),
            "lead": {"portalLeadId": lead, "status": statuses[n % statuses.len()]}});
        let sent = Instant::now();
        let id = format!("msg_live_{}_{n}", &lead[..8]);
        webhook(&stack.http, base, "/webhooks/soho/lead-status", &id, &body).await?;
        for arrivals in sockets.arrivals.iter_mut() {
            let at = tokio::time::timeout(Duration::from_secs(10), arrivals.recv())
                .await
                .context("a socket waited 10 s for a message")?
                .context("a socket closed")?;
            latencies.push(at.duration_since(sent));
        }
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Ok(Sample { latencies, elapsed })
}
