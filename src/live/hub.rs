//! The live hub: one per server. It follows the feed (woken by `NOTIFY live_feed`, polling as a
//! fallback) and broadcasts each new message once to this server's sockets. The broadcast
//! channel is bounded and shared: a socket that falls too far behind loses its place (and is
//! told to resume) instead of holding memory or slowing anyone else.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use super::feed::{self, LiveMessage};

/// Messages kept for sockets that are a little behind.
const BACKLOG: usize = 4096;

#[derive(Clone)]
pub struct LiveHub {
    sender: broadcast::Sender<Arc<LiveMessage>>,
    /// The last position broadcast (0 until the hub has read the feed's head).
    position: Arc<AtomicI64>,
}

impl Default for LiveHub {
    fn default() -> Self {
        Self { sender: broadcast::channel(BACKLOG).0, position: Arc::default() }
    }
}

impl LiveHub {
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveMessage>> {
        self.sender.subscribe()
    }

    /// Where the feed stood, as far as this server has broadcast it. Read before a page reads
    /// its leads, it is the position a client resumes from to miss nothing that changed after
    /// the read: every message at or below it was committed before the read began.
    pub fn position(&self) -> i64 {
        self.position.load(Ordering::Acquire)
    }

    /// Follows the feed from its current end until the task is aborted.
    pub fn spawn(&self, pool: PgPool) -> JoinHandle<()> {
        let hub = self.clone();
        tokio::spawn(async move { hub.follow(pool).await })
    }

    async fn follow(&self, pool: PgPool) {
        let mut last = loop {
            match feed::head(&pool).await {
                Ok(head) => break head,
                Err(error) => {
                    tracing::warn!(%error, "live hub cannot read the feed yet");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        self.position.store(last, Ordering::Release);
        let mut listener: Option<PgListener> = None;
        loop {
            if listener.is_none() {
                match PgListener::connect_with(&pool).await {
                    Ok(mut l) => match l.listen("live_feed").await {
                        Ok(()) => listener = Some(l),
                        Err(error) => tracing::warn!(%error, "live hub cannot LISTEN; polling"),
                    },
                    Err(error) => tracing::warn!(%error, "live hub cannot LISTEN; polling"),
                }
            }
            match self.drain(&pool, last).await {
                Ok(position) => last = position,
                Err(error) => tracing::warn!(%error, "live hub cannot read the feed"),
            }
            let woken = async {
                match listener.as_mut() {
                    Some(l) => l.recv().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ok = woken => if !ok { listener = None },
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Broadcasts everything after `last`; returns the new last position. With no socket on
    /// this server there is nobody to tell, and reading and rendering every message was a fifth
    /// of a server's time under a submission load: it only moves to the feed's head. The count
    /// is checked again after the head is read, so a socket that subscribed before that read
    /// gets every message from the hub, and one that subscribed after it resumes from the
    /// database past everything skipped.
    async fn drain(&self, pool: &PgPool, mut last: i64) -> Result<i64, sqlx::Error> {
        if self.sender.receiver_count() == 0 {
            let head = feed::head(pool).await?.max(last);
            if self.sender.receiver_count() == 0 {
                self.position.store(head, Ordering::Release);
                return Ok(head);
            }
        }
        loop {
            let messages = feed::after(pool, last, None, 1000).await?;
            let full = messages.len() == 1000;
            for message in messages {
                last = message.position;
                // No receivers is fine: nobody is connected to this server.
                let _ = self.sender.send(Arc::new(message));
            }
            self.position.store(last, Ordering::Release);
            if !full {
                return Ok(last);
            }
        }
    }
}
