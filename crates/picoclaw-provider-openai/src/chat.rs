//! `OpenAiCompatible`: the Chat Completions API as spoken by OpenAI, OpenRouter, DeepSeek, Groq,
//! Zhipu, Moonshot, Gemini's OpenAI endpoint, vLLM, Ollama and any other compatible server.

use crate::wire::{StreamAssembler, parse_completion, request_body};
use crate::{
    Capabilities, ChatRequest, ChatResponse, ChatStream, LlmProvider, ProviderError, StreamEvent,
};
use async_trait::async_trait;
use futures::StreamExt;
use picoclaw_api::Secret;
use picoclaw_api::TokenSource;
use picoclaw_http::CryptoProvider;
use picoclaw_http::provider as http;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How to reach one OpenAI-compatible server.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct OpenAiCompatConfig {
    /// The provider's name in messages and logs (`openai`, `deepseek`, ...).
    pub name: String,
    /// The base URL, before `/chat/completions` (`https://api.openai.com/v1`).
    pub api_base: String,
    pub api_key: Option<Secret<String>>,
    /// Where the user sets the key, named in authentication errors.
    pub key_hint: String,
    /// An HTTP(S) proxy URL for this provider.
    pub proxy: Option<String>,
    /// The longest a plain request may take, and the longest a stream may stay silent.
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub extra_headers: Vec<(String, String)>,
    /// The TLS crypto provider; `None` for picoclaw-http's default (the process default if the
    /// application installed one, else ring with the `ring` feature).
    pub crypto_provider: Option<Arc<CryptoProvider>>,
    /// Whether the model is one of OpenAI's reasoning models (`max_completion_tokens`, no
    /// sampling parameters); `None` decides by the model's name (o1, o3, o4, gpt-5 and later).
    pub reasoning: Option<bool>,
    /// `low`, `medium` or `high`: sent as `reasoning_effort` (Chat Completions) or
    /// `reasoning.effort` (Responses).
    pub reasoning_effort: Option<String>,
    /// A temperature set for this model in particular: it replaces the request's, and is sent
    /// even to a reasoning model (which otherwise gets none).
    pub temperature: Option<f32>,
}

impl OpenAiCompatConfig {
    pub fn new(name: impl Into<String>, api_base: impl Into<String>) -> Self {
        let name = name.into();
        Self {
            key_hint: format!("providers.{name}.api_key"),
            name,
            api_base: api_base.into(),
            api_key: None,
            proxy: None,
            request_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(10),
            extra_headers: Vec::new(),
            crypto_provider: None,
            reasoning: None,
            reasoning_effort: None,
            temperature: None,
        }
    }

    /// Marks the model as a reasoning model (or not), whatever its name says.
    pub fn with_reasoning(mut self, reasoning: Option<bool>) -> Self {
        self.reasoning = reasoning;
        self
    }

    /// Sets the reasoning effort (`low`, `medium`, `high`); empty means none.
    pub fn with_reasoning_effort(mut self, effort: Option<String>) -> Self {
        self.reasoning_effort = effort
            .map(|e| e.trim().to_owned())
            .filter(|e| !e.is_empty());
        self
    }

    /// Sets a temperature for this model in particular (see [`Self::temperature`]).
    pub fn with_temperature(mut self, temperature: Option<f32>) -> Self {
        self.temperature = temperature;
        self
    }

    /// TLS through `provider` (a pure-Rust or FIPS rustls provider, say) instead of the default.
    pub fn with_crypto_provider(mut self, provider: Arc<CryptoProvider>) -> Self {
        self.crypto_provider = Some(provider);
        self
    }

    /// Sets the API key; an empty string means no key.
    pub fn with_api_key(mut self, key: impl Into<String>) -> Self {
        let key = key.into();
        self.api_key = if key.trim().is_empty() {
            None
        } else {
            Some(Secret::new(key.trim().to_owned()))
        };
        self
    }

    pub fn with_key_hint(mut self, hint: impl Into<String>) -> Self {
        self.key_hint = hint.into();
        self
    }

    pub fn with_proxy(mut self, proxy: Option<String>) -> Self {
        self.proxy = proxy.filter(|p| !p.trim().is_empty());
        self
    }

    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra_headers.push((name.into(), value.into()));
        self
    }
}

/// An OpenAI-compatible Chat Completions provider.
pub struct OpenAiCompatible {
    name: String,
    url: String,
    api_key: Option<Secret<String>>,
    key_hint: String,
    timeout: Duration,
    client: reqwest::Client,
    /// How the key travels: `Authorization: Bearer` (OpenAI) or an `api-key` header (Azure).
    key_header: Option<&'static str>,
    /// Bearer tokens from a token source (Azure Entra ID) instead of a key.
    tokens: Option<Arc<dyn TokenSource>>,
    /// `max_tokens`, or `max_completion_tokens` for Azure.
    max_tokens_field: &'static str,
    /// The configured reasoning settings (see [`OpenAiCompatConfig::reasoning`]).
    reasoning: Option<bool>,
    reasoning_effort: Option<String>,
    temperature: Option<f32>,
    /// The Azure deployment, whose name may say it is a reasoning model.
    deployment: Option<String>,
    /// What refusals taught us, per model (this client has one base URL).
    mends: Mutex<HashMap<String, Mend>>,
}

/// Request changes a server asked for by refusing a request (HTTP 400 naming a parameter).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Mend {
    /// `max_completion_tokens` instead of `max_tokens`.
    completion_tokens: bool,
    no_temperature: bool,
    no_top_p: bool,
}

/// What a 400 answer refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    MaxTokens,
    Temperature,
    TopP,
}

impl Mend {
    /// The mend with `refusal` fixed too; `None` when it already was (no point resending).
    fn with(self, refusal: Refusal) -> Option<Mend> {
        let mut m = self;
        let flag = match refusal {
            Refusal::MaxTokens => &mut m.completion_tokens,
            Refusal::Temperature => &mut m.no_temperature,
            Refusal::TopP => &mut m.no_top_p,
        };
        if *flag {
            return None;
        }
        *flag = true;
        Some(m)
    }
}

/// The refused parameter of an OpenAI error body, when it is one a request can do without.
fn refusal(body: &str) -> Option<Refusal> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let err = v.get("error")?;
    let param = err.get("param")?.as_str()?;
    let code = err.get("code")?.as_str()?;
    match (param, code) {
        ("max_tokens", "unsupported_parameter") => Some(Refusal::MaxTokens),
        ("temperature", "unsupported_value" | "unsupported_parameter") => {
            Some(Refusal::Temperature)
        }
        ("top_p", "unsupported_value" | "unsupported_parameter") => Some(Refusal::TopP),
        _ => None,
    }
}

/// Whether `model` is one of OpenAI's reasoning models by its name: o1, o3, o4 (and their
/// `-mini`, `-pro`, dated... variants) and gpt-5 and later (`gpt-5`, `gpt-5-mini`,
/// `gpt-5.2-chat`, `gpt-6`); not gpt-4o or gpt-4.1. A vendor prefix (`openai/o3`) is ignored.
pub fn is_reasoning_model(model: &str) -> bool {
    let m = model.trim().to_ascii_lowercase();
    let m = m.rsplit('/').next().unwrap_or_default();
    if let Some(rest) = m.strip_prefix('o') {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let after = &rest[digits.len()..];
        return !digits.is_empty()
            && digits.parse::<u32>().is_ok_and(|n| n >= 1)
            && (after.is_empty() || after.starts_with('-'));
    }
    if let Some(rest) = m.strip_prefix("gpt-") {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let after = &rest[digits.len()..];
        return digits.parse::<u32>().is_ok_and(|n| n >= 5)
            && (after.is_empty() || after.starts_with(['-', '.']));
    }
    false
}

/// Why a post failed, with what the server refused when it was a mendable 400.
pub(crate) struct Failure {
    pub(crate) error: ProviderError,
    refusal: Option<Refusal>,
}

impl std::fmt::Debug for OpenAiCompatible {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiCompatible")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("api_key", &self.api_key)
            .finish_non_exhaustive()
    }
}

impl OpenAiCompatible {
    /// Builds the HTTP client. Fails on a malformed base URL, proxy or header.
    pub fn new(cfg: OpenAiCompatConfig) -> Result<Self, ProviderError> {
        Self::with_path(cfg, "/chat/completions")
    }

    /// The same client posting to `{api_base}{path}` (the Responses API uses `/responses`).
    pub(crate) fn with_path(cfg: OpenAiCompatConfig, path: &str) -> Result<Self, ProviderError> {
        let base = cfg.api_base.trim().trim_end_matches('/');
        let parsed = reqwest::Url::parse(base).map_err(|e| {
            ProviderError::NotConfigured(format!(
                "{}: api_base '{base}' is not a URL ({e}); it should look like \
                 https://api.openai.com/v1",
                cfg.name
            ))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ProviderError::NotConfigured(format!(
                "{}: api_base '{base}' must start with http:// or https://",
                cfg.name
            )));
        }
        let mut headers = HeaderMap::new();
        for (k, v) in &cfg.extra_headers {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|e| {
                ProviderError::NotConfigured(format!("{}: bad header name '{k}': {e}", cfg.name))
            })?;
            let value = HeaderValue::from_str(v).map_err(|e| {
                ProviderError::NotConfigured(format!(
                    "{}: bad value for header '{k}': {e}",
                    cfg.name
                ))
            })?;
            headers.insert(name, value);
        }
        let client = http::build_client(
            &cfg.name,
            base,
            cfg.proxy.as_deref(),
            cfg.crypto_provider.clone(),
            headers,
            cfg.connect_timeout,
            cfg.request_timeout,
        )?;
        Ok(Self {
            url: format!("{base}{path}"),
            name: cfg.name,
            api_key: cfg.api_key,
            key_hint: cfg.key_hint,
            timeout: cfg.request_timeout,
            client,
            key_header: None,
            tokens: None,
            max_tokens_field: "max_tokens",
            reasoning: cfg.reasoning,
            reasoning_effort: cfg.reasoning_effort,
            temperature: cfg.temperature,
            deployment: None,
            mends: Mutex::new(HashMap::new()),
        })
    }

    /// Sends bearer tokens from `tokens` (an OAuth login) when no API key is set.
    pub fn with_tokens(mut self, tokens: Arc<dyn TokenSource>) -> Self {
        self.tokens = Some(tokens);
        self
    }

    /// Azure OpenAI: `POST {endpoint}/openai/deployments/{deployment}/chat/completions?api-version=…`
    /// with `max_completion_tokens`, authenticated by an `api-key` header when a key is set,
    /// otherwise by bearer tokens from `tokens` (Entra ID).
    pub fn azure(
        cfg: OpenAiCompatConfig,
        deployment: &str,
        api_version: &str,
        tokens: Option<Arc<dyn TokenSource>>,
    ) -> Result<Self, ProviderError> {
        let deployment = deployment.trim();
        if deployment.is_empty() {
            return Err(ProviderError::NotConfigured(
                "azure: no deployment set; set providers.azure.deployment or \
                 AZURE_OPENAI_DEPLOYMENT"
                    .into(),
            ));
        }
        if cfg.api_key.is_none() && tokens.is_none() {
            return Err(ProviderError::NotConfigured(
                "azure: neither an API key nor an Entra ID token source is configured".into(),
            ));
        }
        let base = cfg
            .api_base
            .trim()
            .trim_end_matches('/')
            .trim_end_matches("/openai")
            .to_owned();
        let path = format!(
            "/openai/deployments/{deployment}/chat/completions?api-version={}",
            api_version.trim()
        );
        let mut p = Self::with_path(
            OpenAiCompatConfig {
                api_base: base,
                ..cfg
            },
            &path,
        )?;
        p.key_header = Some("api-key");
        p.tokens = tokens;
        p.max_tokens_field = "max_completion_tokens";
        p.deployment = Some(deployment.to_owned());
        Ok(p)
    }

    /// The full Chat Completions URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn transport(&self, err: reqwest::Error) -> ProviderError {
        http::transport_error(&self.name, &self.url, self.timeout, err)
    }

    /// Whether requests for `model` are shaped for a reasoning model.
    pub(crate) fn is_reasoning(&self, model: &str) -> bool {
        self.reasoning.unwrap_or_else(|| {
            is_reasoning_model(model) || self.deployment.as_deref().is_some_and(is_reasoning_model)
        })
    }

    /// The model's own temperature (it replaces the request's), and the reasoning shape: no
    /// sampling parameters unless the model's own temperature is set, and the effort as
    /// `effort_key` says (`reasoning_effort`, or `reasoning` for the Responses API).
    pub(crate) fn shape_sampling(
        &self,
        body: &mut serde_json::Value,
        model: &str,
        responses: bool,
    ) {
        let reasoning = self.is_reasoning(model);
        let Some(obj) = body.as_object_mut() else {
            return;
        };
        if let Some(t) = self.temperature {
            let t: f64 = t.to_string().parse().unwrap_or(f64::from(t));
            obj.insert("temperature".into(), serde_json::json!(t));
        } else if reasoning {
            obj.remove("temperature");
            obj.remove("top_p");
        }
        if let Some(effort) = &self.reasoning_effort {
            if responses {
                obj.insert("reasoning".into(), serde_json::json!({"effort": effort}));
            } else {
                obj.insert("reasoning_effort".into(), serde_json::json!(effort));
            }
        }
    }

    /// A Chat Completions body shaped for `model` and what refusals taught about it.
    fn shape(&self, body: &mut serde_json::Value, model: &str, mend: Mend) {
        let reasoning = self.is_reasoning(model);
        self.shape_sampling(body, model, false);
        let Some(obj) = body.as_object_mut() else {
            return;
        };
        if (reasoning || mend.completion_tokens)
            && let Some(max) = obj.remove("max_tokens")
        {
            obj.insert("max_completion_tokens".into(), max);
        }
        if mend.no_temperature {
            obj.remove("temperature");
        }
        if mend.no_top_p {
            obj.remove("top_p");
        }
    }

    fn mend_for(&self, model: &str) -> Mend {
        let mends = self
            .mends
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        mends.get(model).copied().unwrap_or_default()
    }

    /// Posts the Chat Completions request; a 400 refusing `max_tokens`, `temperature` or
    /// `top_p` is mended and sent again, and the mend remembered for the model. Each kind of
    /// refusal is mended once (OpenAI names one refused parameter per answer, so a model that
    /// takes neither `max_tokens` nor a temperature costs two resends, once).
    async fn send(
        &self,
        req: &ChatRequest,
        stream: bool,
    ) -> Result<reqwest::Response, ProviderError> {
        let mut mend = self.mend_for(&req.model);
        let mut body = request_body(req, stream);
        self.shape(&mut body, &req.model, mend);
        loop {
            let failure = match self.post_checked(&body).await {
                Ok(response) => return Ok(response),
                Err(failure) => failure,
            };
            let refused_field = match failure.refusal {
                Some(Refusal::MaxTokens) => "max_tokens",
                Some(Refusal::Temperature) => "temperature",
                Some(Refusal::TopP) => "top_p",
                None => return Err(failure.error),
            };
            // A refusal already mended, or of a parameter this body does not carry, is the
            // server's last word: no resend.
            mend = match failure.refusal.and_then(|r| mend.with(r)) {
                Some(m) if body.get(refused_field).is_some() => m,
                _ => return Err(failure.error),
            };
            tracing::debug!(
                provider = %self.name,
                url = %self.url,
                model = %req.model,
                refused = refused_field,
                "the server refused a parameter; resending without it and remembering that for \
                 this model"
            );
            self.mends
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(req.model.clone(), mend);
            body = request_body(req, stream);
            self.shape(&mut body, &req.model, mend);
        }
    }

    /// Posts `body`; a non-2xx answer becomes the matching [`ProviderError`].
    pub(crate) async fn post_json(
        &self,
        body: &serde_json::Value,
    ) -> Result<reqwest::Response, ProviderError> {
        self.post_checked(body).await.map_err(|f| f.error)
    }

    /// Posts `body`; a non-2xx answer becomes the matching [`ProviderError`], with the refused
    /// parameter when it was a 400 naming one.
    async fn post_checked(&self, body: &serde_json::Value) -> Result<reqwest::Response, Failure> {
        let renamed;
        let body = match (self.max_tokens_field, body.get("max_tokens")) {
            ("max_tokens", _) | (_, None) => body,
            (field, Some(v)) => {
                let mut b = body.clone();
                if let Some(obj) = b.as_object_mut() {
                    obj.remove("max_tokens");
                    obj.insert(field.to_owned(), v.clone());
                }
                renamed = b;
                &renamed
            }
        };
        let fail = |error| Failure {
            error,
            refusal: None,
        };
        let mut request = self.client.post(&self.url).json(body);
        match (&self.api_key, self.key_header, &self.tokens) {
            (Some(key), Some(header), _) => request = request.header(header, key.expose()),
            (Some(key), None, _) => request = request.bearer_auth(key.expose()),
            (None, _, Some(tokens)) => {
                let token = tokens.token().await.map_err(|e| {
                    fail(ProviderError::Auth {
                        provider: self.name.clone(),
                        status: 401,
                        message: e.to_string(),
                        key_hint: self.key_hint.clone(),
                    })
                })?;
                request = request.bearer_auth(token.token.expose());
            }
            (None, _, None) => {}
        }
        // The whole exchange is bounded for plain calls; for streams only the wait for headers
        // (the body is bounded by the read timeout between chunks).
        let response = http::send(&self.name, &self.url, self.timeout, request)
            .await
            .map_err(fail)?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = http::retry_after(response.headers());
        let text = response.text().await.unwrap_or_default();
        let refused = if status.as_u16() == 400 {
            refusal(&text)
        } else {
            None
        };
        let (message, code) = http::vendor_message(&text);
        let message = http::redact(&message, self.api_key.as_ref());
        Err(Failure {
            error: http::status_error(
                &self.name,
                status.as_u16(),
                retry_after,
                message,
                &code,
                &self.key_hint,
            ),
            refusal: refused,
        })
    }

    /// Reads a whole answer body within the request timeout.
    pub(crate) async fn read_body(
        &self,
        response: reqwest::Response,
    ) -> Result<String, ProviderError> {
        http::read_body(&self.name, &self.url, self.timeout, response).await
    }
}

#[async_trait]
impl LlmProvider for OpenAiCompatible {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::full()
    }

    async fn chat(&self, req: ChatRequest) -> Result<ChatResponse, ProviderError> {
        let response = self.send(&req, false).await?;
        let body = self.read_body(response).await?;
        let mut resp = parse_completion(&self.name, &body)?;
        convert_text_tool_calls(&mut resp, &offered_tools(&req));
        Ok(resp)
    }

    async fn stream(&self, req: ChatRequest) -> Result<ChatStream, ProviderError> {
        let response = self.send(&req, true).await?;
        answer_stream(
            self.name.clone(),
            self.timeout,
            response,
            offered_tools(&req),
            |e| self.transport(e),
        )
        .await
    }
}

/// The streamed answer in `response`: SSE chunks assembled, or the whole answer when the server
/// ignored `stream: true`. `offered` are the tools of the request (for tool calls written as
/// text); `transport` maps a failure to read a one-piece answer.
pub(crate) async fn answer_stream(
    name: String,
    timeout: Duration,
    response: reqwest::Response,
    offered: Vec<String>,
    transport: impl FnOnce(reqwest::Error) -> ProviderError,
) -> Result<ChatStream, ProviderError> {
    let is_sse = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("text/event-stream"));
    if !is_sse {
        // The server ignored `stream: true` and answered in one piece.
        let body = response.text().await.map_err(transport)?;
        let mut resp = parse_completion(&name, &body)?;
        convert_text_tool_calls(&mut resp, &offered);
        let text = resp.message.text();
        let mut events = Vec::with_capacity(2);
        if !text.is_empty() {
            events.push(Ok(StreamEvent::TextDelta(text)));
        }
        events.push(Ok(StreamEvent::Completed(resp)));
        return Ok(Box::pin(futures::stream::iter(events)));
    }
    let state = StreamState {
        events: http::sse_events(response),
        assembler: Some(StreamAssembler::default()),
        name,
        timeout,
        holding: !offered.is_empty(),
        offered,
        held: String::new(),
        queued: std::collections::VecDeque::new(),
    };
    Ok(Box::pin(futures::stream::unfold(state, next_event)))
}

struct StreamState {
    events: http::SseEvents,
    /// `None` once the stream has ended (completed or failed).
    assembler: Option<StreamAssembler>,
    name: String,
    timeout: Duration,
    /// The tools offered in the request (for tool calls written as text).
    offered: Vec<String>,
    /// Text held back while it may still be a tool call written as text.
    held: String,
    holding: bool,
    /// Events ready to hand out before reading more.
    queued: std::collections::VecDeque<Result<StreamEvent, ProviderError>>,
}

fn offered_tools(req: &ChatRequest) -> Vec<String> {
    req.tools.iter().map(|t| t.name.clone()).collect()
}

/// Turns a tool call the model wrote as text into a real one (see `text_tools`).
pub(crate) fn convert_text_tool_calls(resp: &mut ChatResponse, offered: &[String]) {
    if offered.is_empty() || !resp.message.tool_calls.is_empty() {
        return;
    }
    if let Some((rest, calls)) = crate::text_tools::extract(&resp.message.text(), offered) {
        tracing::debug!(
            calls = calls.len(),
            "tool calls parsed from the answer text"
        );
        resp.message = picoclaw_api::ChatMessage::assistant_with_tools(rest, calls);
        resp.finish_reason = picoclaw_api::FinishReason::ToolCalls;
    }
}

impl StreamState {
    /// Queues the end of the stream: any held text that was not a tool call, then the answer.
    fn complete(&mut self, done: StreamAssembler) {
        let mut resp = done.into_response();
        convert_text_tool_calls(&mut resp, &self.offered);
        let held = std::mem::take(&mut self.held);
        if resp.message.tool_calls.is_empty() && !held.is_empty() {
            self.queued.push_back(Ok(StreamEvent::TextDelta(held)));
        }
        self.queued.push_back(Ok(StreamEvent::Completed(resp)));
    }

    /// What to hand out for a text delta, holding it back while it may be a tool call.
    fn text(&mut self, delta: String) -> Option<StreamEvent> {
        if !self.holding {
            return Some(StreamEvent::TextDelta(delta));
        }
        self.held.push_str(&delta);
        if crate::text_tools::may_be_tool_call(&self.held) {
            return None;
        }
        self.holding = false;
        Some(StreamEvent::TextDelta(std::mem::take(&mut self.held)))
    }
}

async fn next_event(
    mut st: StreamState,
) -> Option<(Result<StreamEvent, ProviderError>, StreamState)> {
    loop {
        if let Some(ev) = st.queued.pop_front() {
            return Some((ev, st));
        }
        let assembler = st.assembler.as_mut()?;
        let next = st.events.next().await;
        match next {
            Some(Ok(event)) => {
                let data = event.data.trim();
                if data.is_empty() {
                    continue;
                }
                if data == "[DONE]" {
                    let done = st.assembler.take()?;
                    st.complete(done);
                    continue;
                }
                match assembler.push(&st.name, data) {
                    Ok(Some(delta)) => {
                        if let Some(ev) = st.text(delta) {
                            return Some((Ok(ev), st));
                        }
                    }
                    Ok(None) => continue,
                    Err(e) => {
                        st.assembler = None;
                        return Some((Err(e), st));
                    }
                }
            }
            Some(Err(e)) => {
                st.assembler = None;
                let err = http::stream_error(&st.name, st.timeout, e);
                return Some((Err(err), st));
            }
            None => {
                let done = st.assembler.take()?;
                // Some servers close without `[DONE]` after the final chunk: complete if the
                // model said why it stopped, otherwise the answer was cut off.
                if done.finished() {
                    st.complete(done);
                    continue;
                }
                let err = ProviderError::response(
                    &st.name,
                    "the answer stream ended before the answer was complete (truncated: no \
                     finish_reason and no [DONE])",
                );
                return Some((Err(err), st));
            }
        }
    }
}
