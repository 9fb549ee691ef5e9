//! `GET /ws`: a partner user's live updates. Authenticated by `access_token` in the query or a
//! first message `{"type": "auth", "token": ...}`; closed with 4401 for a bad or expired token,
//! or once the user is disabled or its partner suspended. `{"type": "resume", "after": n}`
//! replays what was missed from the feed, then live messages continue with no gap and no repeat;
//! live messages wait for it up to `RESUME_WAIT` after authentication, so that what was missed
//! comes first even when a change is broadcast between the two.
//!
//! Close codes: 4401 not (or no longer) authorised; 4403 not a partner's user (auditors); 4410
//! too far behind: reconnect and resume from the last position received.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::AppState;
use crate::auth::{AuthError, CurrentUser};
use crate::leads::queries::LeadScope;
use crate::live::feed;
use crate::portal::Portal;

pub const UNAUTHORISED: u16 = 4401;
pub const FORBIDDEN: u16 = 4403;
pub const TOO_FAR_BEHIND: u16 = 4410;

const AUTH_WAIT: Duration = Duration::from_secs(10);
const PING_EVERY: Duration = Duration::from_secs(25);
const STANDING_EVERY: Duration = Duration::from_secs(2);
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
const CLOSE_PATIENCE: Duration = Duration::from_secs(60);
/// How long live messages wait, after authentication, for the client's `resume` (they queue
/// meanwhile): a reconnecting client sends it at once, and must first receive what it missed,
/// positions strictly increasing; a message broadcast between the two would otherwise come first.
const RESUME_WAIT: Duration = Duration::from_millis(250);

#[derive(Deserialize)]
pub struct SocketQuery {
    access_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum ClientMessage {
    Auth { token: String },
    Resume { after: i64 },
}

/// Live updates over a WebSocket.
#[utoipa::path(get, path = "/ws", tag = "live", params(("access_token" = Option<String>, Query, description = "the JWT, unless sent as the first message")),
    responses((status = 101, description = "switching to the WebSocket protocol")))]
pub async fn upgrade(
    State(portal): State<AppState>,
    Query(query): Query<SocketQuery>,
    upgrade: WebSocketUpgrade,
) -> Response {
    // Clients only ever send a token or a resume position: small buffers, not the 128 KiB
    // defaults, which made 1,000 idle sockets cost over 100 MB (issue 8's memory row).
    upgrade
        .read_buffer_size(4 * 1024)
        .write_buffer_size(4 * 1024)
        .max_message_size(64 * 1024)
        .on_upgrade(move |socket| session(portal.0, socket, query.access_token))
}

async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame { code, reason: Utf8Bytes::from_static(reason) };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

async fn session(portal: Arc<Portal>, mut socket: WebSocket, token: Option<String>) {
    let token = match token {
        Some(token) => token,
        None => match tokio::time::timeout(AUTH_WAIT, socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => match serde_json::from_str(&text) {
                Ok(ClientMessage::Auth { token }) => token,
                _ => return close(&mut socket, UNAUTHORISED, "authenticate first").await,
            },
            _ => return close(&mut socket, UNAUTHORISED, "authenticate first").await,
        },
    };
    let user = match CurrentUser::from_token(&portal, &token).await {
        Ok(user) => user,
        Err(_) => return close(&mut socket, UNAUTHORISED, "invalid or expired token").await,
    };
    let Some(partner) = user.partner_id.filter(|_| user.role != soho_aggregates::Role::Auditor)
    else {
        return close(&mut socket, FORBIDDEN, "live updates are for partners' users").await;
    };
    let scope = super::leads::scope_of(&user, partner);
    let span = tracing::info_span!("live_socket", user = %user.id);
    tracing::Instrument::instrument(serve(portal, socket, token, scope), span).await
}

async fn serve(portal: Arc<Portal>, socket: WebSocket, token: String, scope: LeadScope) {
    let (mut sink, mut stream) = socket.split();
    let mut live = portal.live.subscribe();
    let mut last_sent = 0i64;
    let mut ping = tokio::time::interval(PING_EVERY);
    let mut standing = tokio::time::interval(STANDING_EVERY);
    let mut pong_due = false;
    let resume_wait = tokio::time::sleep(RESUME_WAIT);
    tokio::pin!(resume_wait);
    let mut waiting_for_resume = true;
    let outcome: Option<(u16, &'static str)> = loop {
        tokio::select! {
            () = &mut resume_wait, if waiting_for_resume => waiting_for_resume = false,
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    waiting_for_resume = false;
                    if let Ok(ClientMessage::Resume { after }) = serde_json::from_str(&text) {
                        // Live messages keep queueing meanwhile; those already sent are skipped.
                        match replay(&portal, &mut sink, after, scope).await {
                            Ok(Some(position)) => last_sent = last_sent.max(position),
                            Ok(None) => last_sent = last_sent.max(after),
                            Err(()) => break None,
                        }
                    }
                }
                Some(Ok(Message::Pong(_))) => pong_due = false,
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break None,
                Some(Ok(_)) => {}
            },
            message = live.recv(), if !waiting_for_resume => match message {
                Ok(message) if message.position > last_sent && message.visible_to(&scope) => {
                    last_sent = message.position;
                    if send(&mut sink, Message::Text(Utf8Bytes::from(&*message.json))).await.is_err() {
                        break Some((TOO_FAR_BEHIND, "too slow to keep up: resume"));
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => break Some((TOO_FAR_BEHIND, "too far behind: reconnect and resume")),
                Err(RecvError::Closed) => break None,
            },
            _ = ping.tick() => {
                if pong_due {
                    tracing::info!("no pong: closing a dead connection");
                    break None;
                }
                pong_due = true;
                if send(&mut sink, Message::Ping(Default::default())).await.is_err() {
                    break None;
                }
            }
            _ = standing.tick() => match CurrentUser::from_token(&portal, &token).await {
                Ok(_) => {}
                // The database is away for a moment: that says nothing about the user. The
                // socket stays; the next tick checks again.
                Err(AuthError::Internal(error)) => {
                    tracing::warn!(error = format!("{error:#}"), "cannot check a live socket's user now");
                }
                Err(_) => break Some((UNAUTHORISED, "no longer authorised")),
            },
        }
    };
    if let Some((code, reason)) = outcome {
        let frame = CloseFrame { code, reason: Utf8Bytes::from_static(reason) };
        // A client that stopped reading has a full buffer: give it time to drain and take the
        // code (which tells it to resume) rather than dropping the connection without one.
        let _ = tokio::time::timeout(CLOSE_PATIENCE, sink.send(Message::Close(Some(frame)))).await;
        // Finish the closing handshake: wait for the client's close (reading what it still
        // sends). Dropping the socket with unread input would reset the connection, and the
        // client would lose the close frame, and its code, in its buffer.
        let _ = tokio::time::timeout(CLOSE_PATIENCE, async {
            while let Some(Ok(message)) = stream.next().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
}

async fn send(
    sink: &mut futures::stream::SplitSink<WebSocket, Message>,
    message: Message,
) -> Result<(), ()> {
    match tokio::time::timeout(SEND_TIMEOUT, sink.send(message)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// Sends what the client missed after `after`; returns the last position sent.
async fn replay(
    portal: &Portal,
    sink: &mut futures::stream::SplitSink<WebSocket, Message>,
    mut after: i64,
    scope: LeadScope,
) -> Result<Option<i64>, ()> {
    let mut last = None;
    loop {
        let messages =
            feed::after(&portal.pool, after, Some(scope), 500).await.map_err(|error| {
                tracing::warn!(%error, "cannot replay the feed");
            })?;
        let full = messages.len() == 500;
        for message in messages {
            after = message.position;
            last = Some(message.position);
            send(sink, Message::Text(Utf8Bytes::from(&*message.json))).await?;
        }
        if !full {
            return Ok(last);
        }
    }
}
