//! `ScriptedEndpoint`: a real HTTP server on 127.0.0.1 speaking OpenAI Chat Completions, answering
//! from a script and recording every request.
//!
//! The server runs on its own thread with its own runtime, so it keeps answering while a test
//! blocks on a child process (the real `picoclaw` binary) or uses a single-threaded runtime.

use crate::reply::{Reply, ReplyKind, error_json, split_pieces, usage_json};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A request the endpoint received.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// The query string, if any (`api-version=...`).
    pub query: Option<String>,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    /// The JSON body (`Value::Null` when empty, a string when it was not JSON).
    pub body: Value,
}

impl RecordedRequest {
    /// The first value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The text of every message in the request body, in order (handy for history checks).
    pub fn message_texts(&self) -> Vec<String> {
        self.body["messages"]
            .as_array()
            .map(|msgs| {
                msgs.iter()
                    .map(|m| match &m["content"] {
                        Value::String(s) => s.clone(),
                        Value::Array(parts) => parts
                            .iter()
                            .filter_map(|p| p["text"].as_str())
                            .collect::<Vec<_>>()
                            .join(""),
                        _ => String::new(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[derive(Debug, Default)]
struct Inner {
    script: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<RecordedRequest>>,
    api_key: Mutex<Option<String>>,
    next_id: AtomicU64,
}

/// A scripted OpenAI-compatible server on a random loopback port; it stops when dropped.
#[derive(Debug)]
pub struct ScriptedEndpoint {
    addr: SocketAddr,
    inner: Arc<Inner>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl ScriptedEndpoint {
    /// Starts an endpoint with an empty script (requests get a 500 until replies are pushed).
    pub async fn start() -> Self {
        Self::start_with([]).await
    }

    /// Starts an endpoint that answers `replies` in order.
    pub async fn start_with(replies: impl IntoIterator<Item = Reply>) -> Self {
        Self::spawn(replies)
    }

    /// Starts an endpoint without needing an async context.
    pub fn spawn(replies: impl IntoIterator<Item = Reply>) -> Self {
        let inner = Arc::new(Inner {
            script: Mutex::new(replies.into_iter().collect()),
            ..Inner::default()
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind a loopback port for the endpoint");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("listener address");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&inner));
        std::thread::Builder::new()
            .name("scripted-endpoint".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("endpoint runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    let server = axum::serve(listener, app);
                    tokio::select! {
                        res = server => {
                            if let Err(e) = res {
                                eprintln!("scripted endpoint stopped: {e}");
                            }
                        }
                        _ = rx => {}
                    }
                });
            })
            .expect("spawn the endpoint thread");
        Self {
            addr,
            inner,
            shutdown: Some(tx),
        }
    }

    /// Appends a reply to the script.
    pub fn push(&self, reply: Reply) {
        self.inner.script.lock().unwrap().push_back(reply);
    }

    /// `http://127.0.0.1:PORT/v1`
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// From now on, requests without `Authorization: Bearer <key>` get a 401 in OpenAI's shape.
    pub fn require_api_key(&self, key: &str) {
        *self.inner.api_key.lock().unwrap() = Some(key.to_owned());
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.inner.requests.lock().unwrap().clone()
    }

    /// How many scripted replies have not been used yet.
    pub fn remaining(&self) -> usize {
        self.inner.script.lock().unwrap().len()
    }
}

impl Drop for ScriptedEndpoint {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body_json = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
    };
    let recorded = RecordedRequest {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    v.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect(),
        body: body_json.clone(),
    };
    let n = {
        let mut requests = inner.requests.lock().unwrap();
        requests.push(recorded.clone());
        requests.len()
    };

    let path = uri.path();
    // Anthropic's Messages API lives at `/v1/messages`; everything else speaks OpenAI.
    let anthropic = path.ends_with("/messages");
    // Gemini's native API: `/v1beta/models/{model}:generateContent` (or `:streamGenerateContent`).
    let gemini = path.contains(":generateContent") || path.contains(":streamGenerateContent");
    let responses = path.ends_with("/responses");
    let required = inner.api_key.lock().unwrap().clone();
    if let Some(key) = required {
        let ok = if anthropic {
            recorded.header("x-api-key") == Some(key.as_str())
        } else if gemini {
            recorded.header("x-goog-api-key") == Some(key.as_str())
        } else if path.contains("/openai/deployments/") {
            // Azure OpenAI: an `api-key` header, or an Entra ID bearer token.
            recorded.header("api-key") == Some(key.as_str())
                || recorded.header("authorization") == Some(format!("Bearer {key}").as_str())
        } else {
            recorded.header("authorization") == Some(format!("Bearer {key}").as_str())
        };
        if !ok {
            if anthropic {
                return crate::anthropic::error_response(401, "invalid x-api-key");
            }
            if gemini {
                return crate::gemini::error_response(
                    400,
                    "API key not valid. Please pass a valid API key.",
                );
            }
            return error_response(
                401,
                "Incorrect API key provided. You can find your API key in your account settings.",
            );
        }
    }

    if method == Method::GET && path.ends_with("/models") {
        return json_response(
            StatusCode::OK,
            &json!({"object": "list", "data": [{"id": "scripted-model", "object": "model", "owned_by": "picoclaw-testkit"}]}),
        );
    }
    if method != Method::POST
        || !(path.ends_with("/chat/completions") || anthropic || gemini || responses)
    {
        return error_response(404, &format!("Invalid URL ({method} {path})"));
    }
    if !body_json.is_object() {
        return error_response(400, "We could not parse the JSON body of your request.");
    }

    let next = Reply::take_for(&mut inner.script.lock().unwrap(), &body_json.to_string());
    let Some(reply) = next else {
        return error_response(
            500,
            &format!("scripted endpoint: the script ran out (no reply for request #{n})"),
        );
    };
    if let Some(delay) = reply.delay {
        tokio::time::sleep(delay).await;
    }
    let stream = body_json["stream"].as_bool().unwrap_or(false);
    let model = body_json["model"]
        .as_str()
        .unwrap_or("scripted-model")
        .to_owned();
    let id = format!("chatcmpl-{n}");
    if gemini {
        let response = if path.contains(":streamGenerateContent") {
            crate::gemini::stream_response(&reply)
        } else {
            crate::gemini::plain_response(&reply)
        };
        return with_headers(response, &reply);
    }
    if responses {
        let response = if stream {
            crate::responses::stream_response(&inner.next_id, &reply, &model)
        } else {
            crate::responses::plain_response(&inner.next_id, &reply, &model)
        };
        return with_headers(response, &reply);
    }
    let mut response = match (anthropic, stream) {
        (true, true) => crate::anthropic::stream_response(&inner.next_id, &reply, &model),
        (true, false) => crate::anthropic::plain_response(&inner.next_id, &reply, &model),
        (false, true) => stream_response(&inner, &reply, &id, &model),
        (false, false) => plain_response(&inner, &reply, &id, &model),
    };
    for (k, v) in &reply.headers {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// Adds the reply's scripted headers (`Retry-After`...) to a response.
fn with_headers(mut response: Response, reply: &Reply) -> Response {
    for (k, v) in &reply.headers {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

pub(crate) fn raw_response(status: u16, body: &Value) -> Response {
    json_response(
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body,
    )
}

pub(crate) fn json_response(status: StatusCode, value: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn error_response(status: u16, message: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &error_json(status, message))
}

fn call_ids(inner: &Inner, count: usize) -> Vec<String> {
    (0..count)
        .map(|_| format!("call_{}", inner.next_id.fetch_add(1, Ordering::Relaxed) + 1))
        .collect()
}

fn plain_response(inner: &Inner, reply: &Reply, id: &str, model: &str) -> Response {
    let (message, finish) = match &reply.kind {
        ReplyKind::Text(text) => (json!({"role": "assistant", "content": text}), "stop"),
        ReplyKind::ToolCalls(calls) => {
            let ids = call_ids(inner, calls.len());
            let calls: Vec<Value> = calls
                .iter()
                .zip(ids)
                .map(|((name, args), id)| {
                    json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}})
                })
                .collect();
            (
                json!({"role": "assistant", "content": null, "tool_calls": calls}),
                "tool_calls",
            )
        }
        ReplyKind::Error { status, message } => return error_response(*status, message),
        ReplyKind::Raw { status, body } => {
            return crate::endpoint::raw_response(*status, body);
        }
        ReplyKind::Garbage(body) => {
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body.clone(),
            )
                .into_response();
        }
        ReplyKind::Truncated(_) | ReplyKind::TruncatedToolCall { .. } => {
            let text = match &reply.kind {
                ReplyKind::Truncated(t) => t.clone(),
                _ => String::new(),
            };
            let full = json!({"id": id, "object": "chat.completion", "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]})
            .to_string();
            let half: String = full.chars().take(full.chars().count() / 2).collect();
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                half,
            )
                .into_response();
        }
    };
    let mut body = json!({
        "id": id,
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
    });
    if let Some(usage) = &reply.usage {
        body["usage"] = usage_json(usage);
    }
    json_response(StatusCode::OK, &body)
}

fn chunk(id: &str, model: &str, delta: Value, finish: Option<&str>) -> String {
    let chunk = json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    });
    format!("data: {chunk}\n\n")
}

fn stream_response(inner: &Inner, reply: &Reply, id: &str, model: &str) -> Response {
    let mut events: Vec<String> = Vec::new();
    let mut done = true;
    match &reply.kind {
        ReplyKind::Text(text) => {
            events.push(chunk(
                id,
                model,
                json!({"role": "assistant", "content": ""}),
                None,
            ));
            for piece in split_pieces(text, 3) {
                events.push(chunk(id, model, json!({"content": piece}), None));
            }
            events.push(chunk(id, model, json!({}), Some("stop")));
        }
        ReplyKind::ToolCalls(calls) => {
            events.push(chunk(
                id,
                model,
                json!({"role": "assistant", "content": null}),
                None,
            ));
            let ids = call_ids(inner, calls.len());
            for (index, ((name, args), call_id)) in calls.iter().zip(ids).enumerate() {
                events.push(chunk(
                    id,
                    model,
                    json!({"tool_calls": [{"index": index, "id": call_id, "type": "function",
                        "function": {"name": name, "arguments": ""}}]}),
                    None,
                ));
                for piece in split_pieces(args, 3) {
                    events.push(chunk(
                        id,
                        model,
                        json!({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}),
                        None,
                    ));
                }
            }
            events.push(chunk(id, model, json!({}), Some("tool_calls")));
        }
        ReplyKind::Error { status, message } => return error_response(*status, message),
        ReplyKind::Raw { status, body } => {
            return crate::endpoint::raw_response(*status, body);
        }
        ReplyKind::Garbage(body) => {
            events.push(format!("data: {body}\n\n"));
            done = false;
        }
        ReplyKind::TruncatedToolCall { name, partial } => {
            events.push(chunk(
                id,
                model,
                json!({"role": "assistant", "content": null}),
                None,
            ));
            let call_id = call_ids(inner, 1).remove(0);
            events.push(chunk(
                id,
                model,
                json!({"tool_calls": [{"index": 0, "id": call_id, "type": "function",
                    "function": {"name": name, "arguments": ""}}]}),
                None,
            ));
            events.push(chunk(
                id,
                model,
                json!({"tool_calls": [{"index": 0, "function": {"arguments": partial}}]}),
                None,
            ));
            done = false;
        }
        ReplyKind::Truncated(text) => {
            events.push(chunk(
                id,
                model,
                json!({"role": "assistant", "content": ""}),
                None,
            ));
            for piece in split_pieces(text, 3) {
                events.push(chunk(id, model, json!({"content": piece}), None));
            }
            done = false;
        }
    }
    if done {
        if let Some(usage) = &reply.usage {
            let last = json!({"id": id, "object": "chat.completion.chunk", "created": 1_700_000_000,
                "model": model, "choices": [], "usage": usage_json(usage)});
            events.push(format!("data: {last}\n\n"));
        }
        events.push("data: [DONE]\n\n".to_owned());
    }
    let pace = reply.pace;
    let stream = futures::StreamExt::then(futures::stream::iter(events), move |e| async move {
        if let Some(pause) = pace {
            tokio::time::sleep(pause).await;
        }
        Ok::<_, std::io::Error>(Bytes::from(e))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| error_response(500, "could not build the stream"))
}
