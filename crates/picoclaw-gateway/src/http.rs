//! The HTTP server: `GET /health`, `GET /ready`, `GET /metrics` (Prometheus), and the
//! OpenAI-compatible API
//! (`GET /v1/models`, `POST /v1/chat/completions`, plain and streaming), so any OpenAI client or
//! SDK can talk to the agent with its tools and memory.
//!
//! Sessions: an `X-Session-Key` header (or else the request's `user` field, as `api:<user>`)
//! continues that server-side session, and only the request's last user message is new. Without
//! either, the request is stateless: its `messages` are the whole history, kept in memory for the
//! length of the request.
//!
//! `/webhook/<channel>` (any method) passes platform callbacks (Slack's Events API, LINE,
//! Telegram in webhook mode) to the channel of that name, which verifies them itself: the bearer
//! key does not apply there, since platforms cannot send it.

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use picoclaw_core::{AgentEvent, ChatMessage, Role, SessionKey, TurnEnd, TurnOptions};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// What the handlers share.
#[derive(Debug)]
pub struct ApiState {
    pub agent: picoclaw_core::Agent,
    pub ephemeral: picoclaw_core::Agent,
    pub store: Arc<dyn picoclaw_state::StateBackend>,
    /// The model name `/v1/models` lists and responses carry.
    pub model_label: String,
    /// Bearer token required on `/v1/*` when set.
    pub api_key: Option<String>,
    /// Longest a turn may take before the request fails with 504.
    pub turn_timeout: Duration,
    /// The channel dispatcher, for `/metrics` (queue depth).
    pub dispatcher: Option<Arc<crate::Dispatcher>>,
    /// The channels, for `/ready`.
    pub channels: Option<Arc<picoclaw_channels::ChannelManager>>,
    pub(crate) next_id: AtomicU64,
}

impl ApiState {
    pub fn new(
        assembled: &crate::Assembled,
        api_key: Option<String>,
        turn_timeout: Duration,
    ) -> Self {
        Self {
            agent: assembled.agent.clone(),
            ephemeral: assembled.ephemeral.clone(),
            store: assembled.store.clone(),
            model_label: assembled.model_label.clone(),
            api_key: api_key.filter(|k| !k.trim().is_empty()),
            turn_timeout,
            dispatcher: None,
            channels: None,
            next_id: AtomicU64::new(1),
        }
    }
}

/// The router with every route.
pub fn router(state: Arc<ApiState>) -> Router {
    // Everything but the liveness and readiness probes needs the key when one is set.
    let protected = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat_completions))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_key,
        ));
    let webhooks = state.channels.clone().map(webhook_router);
    let mut router = Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/ready", get(ready))
        .merge(protected)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state);
    if let Some(webhooks) = webhooks {
        router = router.merge(webhooks);
    }
    router
}

/// Longest a channel may take to answer a webhook (platforms give up after a few seconds and
/// send the request again).
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// `/webhook/{channel}`: platform callbacks, handed to the channel of that name.
pub fn webhook_router(channels: Arc<picoclaw_channels::ChannelManager>) -> Router {
    Router::new()
        .route("/webhook/{channel}", axum::routing::any(webhook))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(channels)
}

async fn webhook(
    State(channels): State<Arc<picoclaw_channels::ChannelManager>>,
    axum::extract::Path(channel): axum::extract::Path<String>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let mut request = picoclaw_channels::WebhookRequest::new(method.as_str(), body.to_vec())
        .with_query(uri.query().unwrap_or_default());
    for (name, value) in &headers {
        if let Ok(value) = value.to_str() {
            request = request.with_header(name.as_str(), value);
        }
    }
    match tokio::time::timeout(WEBHOOK_TIMEOUT, channels.webhook(&channel, request)).await {
        Ok(answer) => (
            StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            [(header::CONTENT_TYPE, answer.content_type)],
            answer.body,
        )
            .into_response(),
        Err(_) => {
            tracing::warn!(%channel, "a webhook request took too long and was dropped");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the channel did not answer in time; send it again",
            )
                .into_response()
        }
    }
}

/// An error in OpenAI's shape.
pub(crate) fn api_error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    let body =
        json!({"error": {"message": message.into(), "type": kind, "param": null, "code": null}});
    (status, Json(body)).into_response()
}

async fn require_key(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    if let Some(key) = &state.api_key {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        // Compare without leaking the key's length or prefix through timing.
        let ok = given.is_some_and(|g| constant_time_eq(g.as_bytes(), key.as_bytes()));
        if !ok {
            return api_error(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                "missing or wrong API key: send Authorization: Bearer <gateway.api_key>",
            );
        }
    }
    next.run(request).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(a.ct_eq(b))
}

async fn ready(State(state): State<Arc<ApiState>>) -> Response {
    // The store answers a cheap read.
    let store_ok = state
        .store
        .kv_get("gateway", "ready-probe")
        .await
        .map_err(|e| e.to_string());
    // Channel states: a failed channel makes the gateway degraded, not unready (restarting the
    // process does not fix a rejected token).
    let mut channels = serde_json::Map::new();
    let mut degraded = false;
    if let Some(manager) = &state.channels {
        for (name, st) in manager.states() {
            let text = match st {
                picoclaw_channels::ChannelState::Starting => "starting".to_owned(),
                picoclaw_channels::ChannelState::Running => "running".to_owned(),
                picoclaw_channels::ChannelState::Stopped => "stopped".to_owned(),
                picoclaw_channels::ChannelState::Restarting {
                    attempt,
                    last_error,
                } => {
                    degraded = true;
                    format!("restarting (attempt {attempt}): {last_error}")
                }
                picoclaw_channels::ChannelState::Failed { error } => {
                    degraded = true;
                    format!("failed: {error}")
                }
                _ => "unknown".to_owned(),
            };
            channels.insert(name, Value::from(text));
        }
    }
    let status = match (&store_ok, degraded) {
        (Err(_), _) => "not ready",
        (Ok(_), true) => "degraded",
        (Ok(_), false) => "ready",
    };
    let body = json!({
        "status": status,
        "store": match &store_ok { Ok(_) => Value::from("ok"), Err(e) => Value::from(e.clone()) },
        "model": state.model_label,
        "channels": channels,
    });
    let status = if store_ok.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn metrics_text(State(state): State<Arc<ApiState>>) -> Response {
    let active = state.dispatcher.as_ref().map_or(0, |d| d.active_sessions());
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::metrics().render(active),
    )
        .into_response()
}

async fn models(State(state): State<Arc<ApiState>>) -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{"id": state.model_label, "object": "model", "created": 0, "owned_by": "picoclaw"}],
    }))
}

#[derive(Deserialize)]
struct CompletionRequest {
    #[serde(default)]
    model: Option<String>,
    messages: Vec<Value>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    user: Option<String>,
}

/// Which session a request continues, if any.
fn session_of(headers: &HeaderMap, user: Option<&str>) -> Result<Option<SessionKey>, String> {
    if let Some(v) = headers.get("x-session-key") {
        let key = v
            .to_str()
            .map_err(|_| "X-Session-Key must be plain text".to_owned())?
            .trim();
        if key.is_empty() || key.len() > 256 {
            return Err("X-Session-Key must be 1 to 256 characters".into());
        }
        return Ok(Some(SessionKey::new(key)));
    }
    Ok(user
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| SessionKey::new(format!("api:{}", u.chars().take(200).collect::<String>()))))
}

async fn chat_completions(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let request: CompletionRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                format!("the body is not a chat completion request: {e}"),
            );
        }
    };
    let session = match session_of(&headers, request.user.as_deref()) {
        Ok(s) => s,
        Err(e) => return api_error(StatusCode::BAD_REQUEST, "invalid_request_error", e),
    };
    // Convert the messages; the last must be the user's new one.
    let mut history = Vec::with_capacity(request.messages.len());
    let mut names = std::collections::HashMap::new();
    for (i, m) in request.messages.iter().enumerate() {
        match picoclaw_state::legacy::convert_message(m, &names) {
            Ok(Some(msg)) => {
                for call in &msg.tool_calls {
                    names.insert(call.id.clone(), call.name.clone());
                }
                history.push(msg);
            }
            Ok(None) => {}
            Err(e) => {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    format!("messages[{i}]: {e}"),
                );
            }
        }
    }
    let Some(last) = history.pop().filter(|m| m.role == Role::User) else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "the last message must be the user's",
        );
    };
    let id = format!(
        "chatcmpl-pc{}",
        state.next_id.fetch_add(1, Ordering::Relaxed)
    );
    let model = request
        .model
        .filter(|m| !m.trim().is_empty())
        .unwrap_or_else(|| state.model_label.clone());
    let (agent, key, ephemeral) = match session {
        Some(key) => (state.agent.clone(), key, false),
        None => {
            // Stateless: the request's history, in memory for this request only.
            let key = SessionKey::new(format!("stateless:{id}"));
            if !history.is_empty()
                && let Err(e) = state.ephemeral.session_store().append(&key, &history).await
            {
                return api_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    e.to_string(),
                );
            }
            (state.ephemeral.clone(), key, true)
        }
    };
    let created = chrono::Utc::now().timestamp();
    if request.stream {
        stream_turn(state, agent, key, ephemeral, last, id, model, created)
    } else {
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(
            state.turn_timeout,
            agent.turn(
                &key,
                last,
                TurnOptions::new().chat("api", key.as_str()),
                &(),
            ),
        )
        .await;
        count_turn(started, &result);
        if ephemeral {
            let _ = agent.session_store().delete(&key).await;
        }
        match result {
            Err(_) => api_error(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                "the agent did not finish within the gateway's turn timeout",
            ),
            Ok(Err(e)) => turn_error(&e),
            Ok(Ok(outcome)) => {
                let finish = finish_reason(&outcome.end);
                Json(json!({
                    "id": id,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [{"index": 0,
                                 "message": {"role": "assistant", "content": outcome.text},
                                 "finish_reason": finish}],
                    "usage": {"prompt_tokens": outcome.usage.prompt_tokens,
                              "completion_tokens": outcome.usage.completion_tokens,
                              "total_tokens": outcome.usage.prompt_tokens + outcome.usage.completion_tokens},
                }))
                .into_response()
            }
        }
    }
}

fn count_turn(
    started: std::time::Instant,
    result: &Result<
        Result<picoclaw_core::TurnOutcome, picoclaw_core::AgentError>,
        tokio::time::error::Elapsed,
    >,
) {
    let m = crate::metrics::metrics();
    match result {
        Ok(Ok(o)) => m.turn(
            crate::metrics::Source::Api,
            true,
            started.elapsed(),
            o.tool_calls,
            o.usage.prompt_tokens,
            o.usage.completion_tokens,
        ),
        _ => m.turn(
            crate::metrics::Source::Api,
            false,
            started.elapsed(),
            0,
            0,
            0,
        ),
    }
}

fn finish_reason(end: &TurnEnd) -> &'static str {
    match end {
        TurnEnd::Truncated => "length",
        _ => "stop",
    }
}

fn turn_error(e: &picoclaw_core::AgentError) -> Response {
    let (status, kind) = match e {
        picoclaw_core::AgentError::TooLarge { .. } => {
            (StatusCode::BAD_REQUEST, "context_length_exceeded")
        }
        picoclaw_core::AgentError::Provider(_) => (StatusCode::BAD_GATEWAY, "upstream_error"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
    };
    api_error(status, kind, e.to_string())
}

/// Forwards a turn's text deltas to the response stream.
struct Deltas(tokio::sync::mpsc::UnboundedSender<String>);

impl picoclaw_core::EventSink for Deltas {
    fn event(&self, event: AgentEvent) {
        if let AgentEvent::TextDelta(text) = event {
            let _ = self.0.send(text);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn stream_turn(
    state: Arc<ApiState>,
    agent: picoclaw_core::Agent,
    key: SessionKey,
    ephemeral: bool,
    message: ChatMessage,
    id: String,
    model: String,
    created: i64,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let cancel = picoclaw_core::CancellationToken::new();
    let guard = cancel.clone().drop_guard();
    let timeout = state.turn_timeout;
    let turn = tokio::spawn(async move {
        let options = TurnOptions::new()
            .cancel_with(cancel)
            .chat("api", key.as_str());
        let started = std::time::Instant::now();
        let result =
            tokio::time::timeout(timeout, agent.turn(&key, message, options, &Deltas(tx))).await;
        count_turn(started, &result);
        if ephemeral {
            let _ = agent.session_store().delete(&key).await;
        }
        result
    });
    let chunk = {
        let (id, model) = (id.clone(), model.clone());
        move |delta: Value, finish: Option<&str>| {
            let body = json!({"id": id, "object": "chat.completion.chunk", "created": created,
                "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
            format!("data: {body}\n\n")
        }
    };
    let first = futures::stream::once({
        let chunk = chunk.clone();
        async move { chunk(json!({"role": "assistant", "content": ""}), None) }
    });
    let deltas = tokio_stream_from(rx).map({
        let chunk = chunk.clone();
        move |text| chunk(json!({"content": text}), None)
    });
    let tail = futures::stream::once(async move {
        // Hold the guard until the end: a client that disconnects cancels the turn.
        let _guard = guard;
        match turn.await {
            Ok(Ok(Ok(outcome))) => {
                format!(
                    "{}data: [DONE]\n\n",
                    chunk(json!({}), Some(finish_reason(&outcome.end)))
                )
            }
            Ok(Ok(Err(e))) => {
                let err = json!({"error": {"message": e.to_string(), "type": "server_error"}});
                format!("data: {err}\n\ndata: [DONE]\n\n")
            }
            Ok(Err(_)) => {
                let err = json!({"error": {"message": "the agent did not finish within the gateway's turn timeout", "type": "timeout"}});
                format!("data: {err}\n\ndata: [DONE]\n\n")
            }
            Err(e) => {
                let err = json!({"error": {"message": format!("the turn failed: {e}"), "type": "server_error"}});
                format!("data: {err}\n\ndata: [DONE]\n\n")
            }
        }
    });
    let body = first
        .chain(deltas)
        .chain(tail)
        .map(|s| Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(s)));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(axum::body::Body::from_stream(body))
        .unwrap_or_else(|_| api_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "stream"))
}

/// An unbounded receiver as a stream (ends when every sender is gone, i.e. the turn is over).
fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<String>,
) -> impl futures::Stream<Item = String> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_in_constant_time_and_correctly() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"secret"));
        assert!(!constant_time_eq(b"secret", b""));
    }

    #[test]
    fn sessions_come_from_the_header_then_the_user_field() {
        let mut h = HeaderMap::new();
        assert_eq!(session_of(&h, None).unwrap(), None);
        assert_eq!(session_of(&h, Some(" ")).unwrap(), None);
        assert_eq!(
            session_of(&h, Some("ada")).unwrap(),
            Some(SessionKey::new("api:ada"))
        );
        h.insert("x-session-key", "telegram:42".parse().unwrap());
        assert_eq!(
            session_of(&h, Some("ada")).unwrap(),
            Some(SessionKey::new("telegram:42"))
        );
        h.insert("x-session-key", "   ".parse().unwrap());
        assert!(session_of(&h, None).is_err());
    }
}
