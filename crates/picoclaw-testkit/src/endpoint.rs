//! `ScriptedEndpoint`: a real HTTP server on 127.0.0.1 answering from a script and recording
//! every request, in the wire formats of its [`Dialect`]s (by default every built-in one, each
//! on its own paths: OpenAI Chat Completions, Responses, Anthropic, Gemini).
//!
//! The server runs on its own thread with its own runtime, so it keeps answering while a test
//! blocks on a child process (the real `picoclaw` binary) or uses a single-threaded runtime.

use crate::dialect::{
    Answer, Content, Dialect, RenderContext, ScriptedCall, WireBody, WireResponse, first_half,
};
use crate::reply::{Reply, ReplyKind};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
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
            .map(|msgs| msgs.iter().map(content_text).collect())
            .unwrap_or_default()
    }
}

/// A Chat Completions message's text: its `content` string, or its text parts joined.
pub(crate) fn content_text(message: &Value) -> String {
    match &message["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

#[derive(Debug)]
struct Inner {
    dialects: Vec<Arc<dyn Dialect>>,
    script: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<RecordedRequest>>,
    api_key: Mutex<Option<String>>,
    next_id: AtomicU64,
    /// Answers what the script does not, without recording (see [`ScriptedEndpoint::responding`]).
    responder: Option<Responder>,
}

/// A function from a request body to its reply.
type RespondFn = dyn Fn(&Value) -> Reply + Send + Sync;

struct Responder(Box<RespondFn>);

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Responder")
    }
}

/// A scripted model server on a random loopback port; it stops when dropped.
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
        Self::serve(crate::dialect::builtin(), replies)
    }

    /// Starts an endpoint that speaks only `dialect` (on every path: requests it does not
    /// [serve](Dialect::serves) get its 404), answering `replies` in order. A wire format from
    /// outside testkit is tested this way. Needs no async context.
    pub fn speaking(dialect: Arc<dyn Dialect>, replies: impl IntoIterator<Item = Reply>) -> Self {
        Self::serve(vec![dialect], replies)
    }

    /// Starts an endpoint (every built-in dialect) that answers every request with
    /// `respond(body)`, for as many requests as come: a load test's model, which may also
    /// check what each request carries. Requests are not recorded ([`ScriptedEndpoint::requests`]
    /// stays empty), so memory stays flat however long it runs. Needs no async context.
    pub fn responding(respond: impl Fn(&Value) -> Reply + Send + Sync + 'static) -> Self {
        Self::serve_with(
            crate::dialect::builtin(),
            [],
            Some(Responder(Box::new(respond))),
        )
    }

    fn serve(dialects: Vec<Arc<dyn Dialect>>, replies: impl IntoIterator<Item = Reply>) -> Self {
        Self::serve_with(dialects, replies, None)
    }

    fn serve_with(
        dialects: Vec<Arc<dyn Dialect>>,
        replies: impl IntoIterator<Item = Reply>,
        responder: Option<Responder>,
    ) -> Self {
        assert!(!dialects.is_empty(), "an endpoint needs a dialect");
        let inner = Arc::new(Inner {
            dialects,
            script: Mutex::new(replies.into_iter().collect()),
            requests: Mutex::default(),
            api_key: Mutex::default(),
            next_id: AtomicU64::new(0),
            responder,
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

    /// From now on, requests without `key` where their dialect expects it (`Authorization:
    /// Bearer <key>`, `x-api-key`...) get the dialect's answer to a wrong key (a 401).
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
    let n = if inner.responder.is_some() {
        usize::try_from(inner.next_id.load(std::sync::atomic::Ordering::Relaxed)).unwrap_or(0) + 1
    } else {
        let mut requests = inner.requests.lock().unwrap();
        requests.push(recorded.clone());
        requests.len()
    };

    // The dialect whose paths these are; the first one answers paths nobody serves.
    let served = inner.dialects.iter().find(|d| d.serves(&recorded));
    let dialect = Arc::clone(served.unwrap_or(&inner.dialects[0]));
    let required = inner.api_key.lock().unwrap().clone();
    if let Some(key) = required
        && !dialect.has_key(&recorded, &key)
    {
        return into_response(dialect.unauthorized(), None);
    }
    if let Some(fixed) = dialect.fixed(&recorded) {
        return into_response(fixed, None);
    }
    let path = uri.path();
    if method != Method::POST || served.is_none() {
        return into_response(
            dialect.error(404, &format!("Invalid URL ({method} {path})")),
            None,
        );
    }
    if !body_json.is_object() {
        return into_response(
            dialect.error(400, "We could not parse the JSON body of your request."),
            None,
        );
    }

    let scripted = Reply::take_for(&mut inner.script.lock().unwrap(), &body_json.to_string());
    let next = scripted.or_else(|| inner.responder.as_ref().map(|r| (r.0)(&body_json)));
    let Some(reply) = next else {
        return into_response(
            dialect.error(
                500,
                &format!("scripted endpoint: the script ran out (no reply for request #{n})"),
            ),
            None,
        );
    };
    if let Some(delay) = reply.delay {
        tokio::time::sleep(delay).await;
    }
    let model = dialect
        .model(&recorded)
        .unwrap_or_else(|| "scripted-model".to_owned());
    let cx = RenderContext {
        model: &model,
        request_number: n,
        ids: &inner.next_id,
    };
    let mut response = render(
        dialect.as_ref(),
        &reply,
        dialect.is_streaming(&recorded),
        &cx,
    );
    for (k, v) in &reply.headers {
        response.headers.push((k.clone(), v.clone()));
    }
    into_response(response, reply.pace)
}

/// A scripted reply in `dialect`'s wire format: answers through its renderings, and the
/// failure modes built from them.
fn render(
    dialect: &dyn Dialect,
    reply: &Reply,
    stream: bool,
    cx: &RenderContext<'_>,
) -> WireResponse {
    let answer = |content| Answer {
        content,
        usage: reply.usage,
    };
    let complete = |content| {
        let answer = answer(content);
        if stream {
            WireResponse::events(dialect.stream(&answer, false, cx))
        } else {
            WireResponse::json(200, dialect.answer(&answer, cx))
        }
    };
    let cut = |content| {
        let answer = answer(content);
        if stream {
            WireResponse::events(dialect.stream(&answer, true, cx))
        } else {
            let full = dialect.answer(&answer, cx).to_string();
            WireResponse::text(200, "application/json", first_half(&full))
        }
    };
    match &reply.kind {
        ReplyKind::Text(text) => complete(Content::Text(text)),
        ReplyKind::ToolCalls(calls) => complete(Content::ToolCalls(
            calls
                .iter()
                .map(|(name, arguments)| ScriptedCall { name, arguments })
                .collect(),
        )),
        ReplyKind::Error { status, message } => dialect.error(*status, message),
        ReplyKind::Raw { status, body } => WireResponse::json(*status, body.clone()),
        ReplyKind::Garbage(body) if stream => {
            WireResponse::events(vec![dialect.garbage_event(body)])
        }
        ReplyKind::Garbage(body) => WireResponse::text(200, "application/json", body.clone()),
        ReplyKind::Truncated(text) => cut(Content::Text(text)),
        ReplyKind::TruncatedToolCall { name, partial } if stream => {
            cut(Content::ToolCalls(vec![ScriptedCall {
                name,
                arguments: partial,
            }]))
        }
        ReplyKind::TruncatedToolCall { .. } => cut(Content::Text("")),
    }
}

/// Turns a dialect's response into axum's, waiting `pace` before each stream event.
fn into_response(response: WireResponse, pace: Option<std::time::Duration>) -> Response {
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut out = match response.body {
        WireBody::Json(value) => (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            value.to_string(),
        )
            .into_response(),
        WireBody::Text { content_type, text } => {
            let mut r = (status, text).into_response();
            if let Ok(value) = HeaderValue::from_str(&content_type) {
                r.headers_mut().insert(header::CONTENT_TYPE, value);
            }
            r
        }
        WireBody::Events(events) => {
            let stream =
                futures::StreamExt::then(futures::stream::iter(events), move |e| async move {
                    if let Some(pause) = pace {
                        tokio::time::sleep(pause).await;
                    }
                    Ok::<_, std::io::Error>(Bytes::from(e))
                });
            let mut r = (status, Body::from_stream(stream)).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            r
        }
    };
    for (k, v) in &response.headers {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            out.headers_mut().insert(name, value);
        }
    }
    out
}
