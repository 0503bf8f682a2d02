//! The HTTP server: `GET /health`, `GET /ready`, `GET /metrics` (Prometheus), and the
//! OpenAI-compatible API
//! (`GET /v1/models`, `POST /v1/chat/completions`, plain and streaming), so any OpenAI client or
//! SDK can talk to the agent with its tools and memory.
//!
//! Sessions: an `X-Session-Key` header (or else the request's `user` field) continues the
//! server-side session `api:<value>`, and only the request's last user message is new. API
//! sessions live in their own key space: no value names a channel's conversation
//! (`telegram:<chat>` becomes `api:telegram:<chat>`). Without either, the request is stateless:
//! its `messages` are the whole history, kept in memory for the length of the request.
//!
//! Every request passes [`guard`] first (see [`crate::access`]): a foreign `Origin` is refused
//! everywhere; the `Host` must name this gateway; the bearer key is required; requests with a
//! body must be JSON. `/health` and `/ready` (and `/metrics` with `gateway.metrics_public`)
//! need neither the key nor a known `Host`: orchestrators probe them by the pod's address, and
//! they show no conversation.
//!
//! `GET /pico/ws` (with the `pico` feature) takes the Pico protocol's WebSocket connections
//! ([`crate::socket`]): the Pico channel authenticates them with `channels.pico.token` and checks
//! their `Origin` against `channels.pico.allow_origins`; the gateway's key, `Host` and origin
//! rules do not apply there.
//!
//! `/webhook/<channel>` (any method) passes platform callbacks (Slack's Events API, LINE,
//! Telegram in webhook mode) to the channel of that name, which verifies them itself: the bearer
//! key does not apply there, since platforms cannot send it, and neither does the `Host` rule,
//! since platforms call the public name a reverse proxy may forward unchanged.

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
    /// Who may call: the key, the gateway's own names and origins.
    pub access: crate::access::Access,
    /// Longest a turn may take before the request fails with 504.
    pub turn_timeout: Duration,
    /// The channel dispatcher, for `/metrics` (queue depth).
    pub dispatcher: Option<Arc<crate::Dispatcher>>,
    /// The channels, for `/ready`.
    pub channels: Option<Arc<picoclaw_channels::ChannelManager>>,
    /// Turn, tool and delivery counters for `/metrics` (shared with the dispatcher).
    pub metrics: Arc<crate::metrics::Metrics>,
    pub(crate) next_id: AtomicU64,
    /// Every agent of the gateway (a request names one with `model: "agent:<id>"` or
    /// `X-Picoclaw-Agent`; else the default agent, which `agent` and `ephemeral` are).
    pub agents: Option<Arc<crate::AgentSet>>,
    /// The web dashboard (with the `web` feature), when the gateway serves it.
    #[cfg(feature = "web")]
    pub dashboard: Option<Arc<crate::web::Dashboard>>,
}

impl ApiState {
    /// The API of the gateway's agents.
    pub fn with_agents(
        agents: Arc<crate::AgentSet>,
        access: crate::access::Access,
        turn_timeout: Duration,
    ) -> Self {
        let main = agents.default_agent();
        Self {
            agent: main.agent.clone(),
            ephemeral: main.ephemeral.clone(),
            store: agents.store().clone(),
            model_label: main.model_label.clone(),
            access,
            turn_timeout,
            dispatcher: None,
            channels: None,
            metrics: Arc::default(),
            next_id: AtomicU64::new(1),
            agents: Some(agents),
            #[cfg(feature = "web")]
            dashboard: None,
        }
    }

    pub fn new(
        assembled: &crate::Assembled,
        access: crate::access::Access,
        turn_timeout: Duration,
    ) -> Self {
        Self {
            agent: assembled.agent.clone(),
            ephemeral: assembled.ephemeral.clone(),
            store: assembled.store.clone(),
            model_label: assembled.model_label.clone(),
            access,
            turn_timeout,
            dispatcher: None,
            channels: None,
            metrics: Arc::default(),
            next_id: AtomicU64::new(1),
            agents: None,
            #[cfg(feature = "web")]
            dashboard: None,
        }
    }

    /// The agent a request names: `X-Picoclaw-Agent`, else a `model` of `agent:<id>`, else
    /// the default one. `(id, agent, ephemeral)`; an unknown id is an error naming the known.
    fn pick_agent(
        &self,
        headers: &HeaderMap,
        model: Option<&str>,
    ) -> Result<(Option<String>, picoclaw_core::Agent, picoclaw_core::Agent), String> {
        let named = match headers.get("x-picoclaw-agent") {
            Some(v) => Some(
                v.to_str()
                    .map_err(|_| "X-Picoclaw-Agent must be plain text".to_owned())?
                    .trim()
                    .to_owned(),
            ),
            None => model
                .and_then(|m| m.trim().strip_prefix("agent:"))
                .map(|id| id.trim().to_owned()),
        };
        let Some(id) = named.filter(|id| !id.is_empty()) else {
            return Ok((None, self.agent.clone(), self.ephemeral.clone()));
        };
        let Some(agents) = &self.agents else {
            return if id == picoclaw_config::MAIN_AGENT {
                Ok((None, self.agent.clone(), self.ephemeral.clone()))
            } else {
                Err(format!("no agent '{id}'; this gateway has one agent, main"))
            };
        };
        match agents.get(&id) {
            Some(a) => Ok((Some(a.id.clone()), a.agent.clone(), a.ephemeral.clone())),
            None => Err(format!("no agent '{id}'; known: {}", agents.ids())),
        }
    }
}

/// The router with every route, each behind [`guard`].
pub fn router(state: Arc<ApiState>) -> Router {
    let webhooks = state.channels.clone().map(webhook_router);
    let mut router = Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_text))
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat_completions))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state.clone());
    #[cfg(feature = "pico")]
    if let Some(channels) = state.channels.clone() {
        router = router.merge(crate::socket::socket_router(channels));
    }
    if let Some(webhooks) = webhooks {
        router = router.merge(webhooks);
    }
    #[cfg(feature = "web")]
    if let Some(dashboard) = state.dashboard.clone() {
        router = router.merge(crate::web::router(state.clone(), dashboard));
    }
    // `layer` (not `route_layer`): unknown paths and the fallback are guarded too.
    router.layer(axum::middleware::from_fn_with_state(state, guard))
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

/// What a route asks of a request.
struct Rules {
    /// A known `Origin` (when one is sent); off where the channel checks its own list.
    origin: bool,
    /// The `Host` must name this gateway.
    host: bool,
    /// The bearer key.
    key: bool,
    /// A body must be JSON.
    json: bool,
}

fn rules_for(path: &str, metrics_public: bool, dashboard: bool) -> Rules {
    if path == "/pico/ws" {
        // The Pico channel checks its own token and `channels.pico.allow_origins`; clients,
        // like platforms, may reach the public name.
        return Rules {
            origin: false,
            host: false,
            key: false,
            json: false,
        };
    }
    if path.starts_with("/webhook/") {
        // The channel checks the platform's signature; platforms reach the public name.
        return Rules {
            origin: true,
            host: false,
            key: false,
            json: false,
        };
    }
    if dashboard && is_dashboard_path(path) {
        // The dashboard checks its session cookie and CSRF token itself, and takes forms; a
        // foreign Origin and a foreign Host are refused here as everywhere.
        return Rules {
            origin: true,
            host: true,
            key: false,
            json: false,
        };
    }
    let public = path == "/health" || path == "/ready" || (path == "/metrics" && metrics_public);
    Rules {
        origin: true,
        host: !public,
        key: !public,
        json: true,
    }
}

/// The access rules every request passes before its handler: a foreign `Origin` (WebSocket
/// upgrades included) is refused on every route but `/pico/ws`, whose channel checks
/// `channels.pico.allow_origins` itself; then, per `rules_for`, the `Host`, the
/// bearer key, and JSON for requests with a body.
pub async fn guard(State(state): State<Arc<ApiState>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let path = request.uri().path();
    let access = &state.access;
    #[cfg(feature = "web")]
    let dashboard = state.dashboard.is_some();
    #[cfg(not(feature = "web"))]
    let dashboard = false;
    let rules = rules_for(path, access.metrics_public, dashboard);
    let host = headers
        .get(header::HOST)
        .map(|h| h.to_str().unwrap_or("\u{fffd}"))
        .or_else(|| request.uri().authority().map(|a| a.as_str()));
    if rules.host
        && let Some(host) = host
        && !access.host_allowed(host)
    {
        // Debug, not warn: a hostile page could send these in a loop to fill the log.
        tracing::debug!(host, path, "refused a request for another host name");
        return api_error(
            StatusCode::FORBIDDEN,
            "misdirected_request",
            format!(
                "this gateway does not answer to the host name '{}'; if clients reach it by \
                 that name (a reverse proxy, a LAN name), add it to gateway.allowed_hosts",
                host.chars().take(200).collect::<String>()
            ),
        );
    }
    if rules.origin
        && let Some(origin) = headers.get(header::ORIGIN)
    {
        let origin = origin.to_str().unwrap_or("\u{fffd}");
        if !access.origin_allowed(origin, host) {
            tracing::debug!(origin, path, "refused a request from a foreign web page");
            return api_error(
                StatusCode::FORBIDDEN,
                "forbidden_origin",
                format!(
                    "requests from web pages at '{}' are refused; if that site is yours, add \
                     it to gateway.allowed_origins",
                    origin.chars().take(200).collect::<String>()
                ),
            );
        }
    }
    if rules.key {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| access.key_matches(g)) {
            // A wrong key is worth the audit trail (someone holds an old one, or guesses); a
            // missing one is not (any web page can send those, and in a loop).
            if given.is_some() {
                tracing::trace!(
                    target: "audit",
                    kind = "api_key_refused",
                    path,
                    outcome = "wrong_key",
                    "gateway key refused"
                );
            }
            return api_error(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                "missing or wrong API key: send Authorization: Bearer <key>, the key being \
                 gateway.api_key or, when that is unset, the one in the gateway.key file in \
                 picoclaw's home (`picoclaw status` says where)",
            );
        }
    }
    if rules.json && has_body(request.method(), headers) && !is_json(headers) {
        let given = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none");
        return api_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request_error",
            format!(
                "{} {path} takes a JSON body: send Content-Type: application/json (this request \
                 sent {})",
                request.method(),
                given.chars().take(100).collect::<String>()
            ),
        );
    }
    next.run(request).await
}

/// Whether a path is the dashboard's (`/`, `/ui`, `/ui/...`).
fn is_dashboard_path(path: &str) -> bool {
    path == "/" || path == "/ui" || path.starts_with("/ui/")
}

/// A POST, PUT or PATCH that carries a body.
fn has_body(method: &axum::http::Method, headers: &HeaderMap) -> bool {
    use axum::http::Method;
    if ![Method::POST, Method::PUT, Method::PATCH].contains(method) {
        return false;
    }
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    length.is_some_and(|n| n > 0) || headers.contains_key(header::TRANSFER_ENCODING)
}

/// `Content-Type: application/json`, parameters (`; charset=utf-8`) allowed.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
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
        state.metrics.render(active),
    )
        .into_response()
}

async fn models(State(state): State<Arc<ApiState>>) -> Json<Value> {
    let mut data = vec![
        json!({"id": state.model_label, "object": "model", "created": 0, "owned_by": "picoclaw"}),
    ];
    // Each agent is a model a client can pick (`agent:<id>`).
    if let Some(agents) = &state.agents {
        for a in agents.agents() {
            data.push(
                json!({"id": format!("agent:{}", a.id), "object": "model", "created": 0,
                             "owned_by": "picoclaw", "name": a.name, "model": a.model_label}),
            );
        }
    }
    Json(json!({"object": "list", "data": data}))
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

/// Which session a request continues, if any: always one in the API's own key space.
fn session_of(headers: &HeaderMap, user: Option<&str>) -> Result<Option<SessionKey>, String> {
    if let Some(v) = headers.get("x-session-key") {
        let key = v
            .to_str()
            .map_err(|_| "X-Session-Key must be plain text".to_owned())?
            .trim();
        if key.is_empty() || key.len() > 256 {
            return Err("X-Session-Key must be 1 to 256 characters".into());
        }
        return Ok(Some(api_session(key)));
    }
    Ok(user
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| api_session(&u.chars().take(200).collect::<String>())))
}

/// `api:<name>`: a name that already starts with `api:` is kept as it is (it is in the API's
/// space already), anything else, a channel's `telegram:<chat>` included, is put under `api:`.
fn api_session(name: &str) -> SessionKey {
    if name.starts_with("api:") {
        SessionKey::new(name)
    } else {
        SessionKey::new(format!("api:{name}"))
    }
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
    let (agent_id, chosen, chosen_ephemeral) =
        match state.pick_agent(&headers, request.model.as_deref()) {
            Ok(picked) => picked,
            Err(e) => return api_error(StatusCode::NOT_FOUND, "model_not_found", e),
        };
    // Another agent's API conversations are its own: `agent:<id>:api:<user>`.
    let session = match (&agent_id, &state.agents, session) {
        (Some(id), Some(agents), Some(key)) => Some(agents.session_key(id, key.as_str())),
        (_, _, session) => session,
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
        Some(key) => (chosen, key, false),
        None => {
            // Stateless: the request's history, in memory for this request only.
            let key = SessionKey::new(format!("stateless:{id}"));
            if !history.is_empty()
                && let Err(e) = chosen_ephemeral
                    .session_store()
                    .append(&key, &history)
                    .await
            {
                return api_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    e.to_string(),
                );
            }
            (chosen_ephemeral, key, true)
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
        count_turn(&state.metrics, started, &result);
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

pub(crate) fn count_turn(
    m: &crate::metrics::Metrics,
    started: std::time::Instant,
    result: &Result<
        Result<picoclaw_core::TurnOutcome, picoclaw_core::AgentError>,
        tokio::time::error::Elapsed,
    >,
) {
    match result {
        Ok(Ok(o)) => {
            m.turn(
                crate::metrics::Source::Api,
                true,
                started.elapsed(),
                o.tool_calls,
                o.usage.prompt_tokens,
                o.usage.completion_tokens,
            );
            m.reasoning(o.usage.reasoning_tokens);
        }
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
    let metrics = state.metrics.clone();
    let turn = tokio::spawn(async move {
        let options = TurnOptions::new()
            .cancel_with(cancel)
            .chat("api", key.as_str());
        let started = std::time::Instant::now();
        let result =
            tokio::time::timeout(timeout, agent.turn(&key, message, options, &Deltas(tx))).await;
        count_turn(&metrics, started, &result);
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
    fn sessions_come_from_the_header_then_the_user_field() {
        let mut h = HeaderMap::new();
        assert_eq!(session_of(&h, None).unwrap(), None);
        assert_eq!(session_of(&h, Some(" ")).unwrap(), None);
        assert_eq!(
            session_of(&h, Some("ada")).unwrap(),
            Some(SessionKey::new("api:ada"))
        );
        assert_eq!(
            session_of(&h, Some("api:ada")).unwrap(),
            Some(SessionKey::new("api:ada"))
        );
        // A channel's conversation cannot be named: it lands in the API's space.
        h.insert("x-session-key", "telegram:42".parse().unwrap());
        assert_eq!(
            session_of(&h, Some("ada")).unwrap(),
            Some(SessionKey::new("api:telegram:42"))
        );
        assert_eq!(
            session_of(&HeaderMap::new(), Some("telegram:42")).unwrap(),
            Some(SessionKey::new("api:telegram:42"))
        );
        h.insert("x-session-key", "api:ada".parse().unwrap());
        assert_eq!(
            session_of(&h, None).unwrap(),
            Some(SessionKey::new("api:ada"))
        );
        h.insert("x-session-key", "   ".parse().unwrap());
        assert!(session_of(&h, None).is_err());
    }

    #[test]
    fn rules_per_route() {
        let r = rules_for("/v1/chat/completions", false, true);
        assert!(r.host && r.key && r.json);
        let r = rules_for("/nowhere", false, true);
        assert!(r.host && r.key && r.json);
        for public in ["/health", "/ready"] {
            let r = rules_for(public, false, true);
            assert!(!r.host && !r.key, "{public}");
        }
        assert!(rules_for("/metrics", false, true).key);
        assert!(!rules_for("/metrics", true, true).key);
        let r = rules_for("/webhook/slack", false, true);
        assert!(r.origin && !r.host && !r.key && !r.json);
        // The Pico channel checks its token and allow_origins itself.
        let r = rules_for("/pico/ws", false, true);
        assert!(!r.origin && !r.host && !r.key && !r.json);
        assert!(rules_for("/pico/other", false, true).origin);
        // The dashboard: its own session check instead of the bearer key, but the Host and
        // Origin rules still apply; without the dashboard, its paths need the key.
        for path in ["/", "/ui", "/ui/chat", "/ui/login"] {
            let r = rules_for(path, false, true);
            assert!(r.origin && r.host && !r.key && !r.json, "{path}");
            assert!(rules_for(path, false, false).key, "{path}");
        }
        assert!(rules_for("/uix", false, true).key);
    }

    #[test]
    fn bodies_must_be_json() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, "12".parse().unwrap());
        assert!(has_body(&axum::http::Method::POST, &h));
        assert!(!has_body(&axum::http::Method::GET, &h));
        h.insert(header::CONTENT_LENGTH, "0".parse().unwrap());
        assert!(!has_body(&axum::http::Method::POST, &h));
        h.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        assert!(has_body(&axum::http::Method::PUT, &h));
        for ok in ["application/json", "Application/JSON; charset=utf-8"] {
            h.insert(header::CONTENT_TYPE, ok.parse().unwrap());
            assert!(is_json(&h), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ] {
            h.insert(header::CONTENT_TYPE, bad.parse().unwrap());
            assert!(!is_json(&h), "{bad}");
        }
        h.remove(header::CONTENT_TYPE);
        assert!(!is_json(&h));
    }
}
