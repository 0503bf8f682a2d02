//! What every model client shares (feature `provider`): its HTTP client, sending a request
//! within the timeout, turning an HTTP failure into picoclaw-api's [`ProviderError`], reading an
//! SSE answer, quoting a bad body. The provider family crates (picoclaw-provider-openai,
//! -anthropic, -gemini) and a contributor's own provider crate use these, so a provider crate
//! needs picoclaw-api and this crate, nothing else of picoclaw's.

use crate::CryptoProvider;
use eventsource_stream::{Event, EventStreamError, Eventsource};
use picoclaw_api::Secret;
use picoclaw_api::provider::ProviderError;
use reqwest::header::HeaderMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// The `User-Agent` of every model request.
pub const USER_AGENT: &str = concat!("picoclaw/", env!("CARGO_PKG_VERSION"));

/// The HTTP client builder for a provider at `base`: TLS over `crypto` (else this crate's
/// default provider, never installed process-wide), trusting the platform's certificate
/// authorities, or none for a plain-HTTP endpoint reached without a proxy (a local model
/// server, a test's loopback fake: the system's roots, some 150 files, are then never read).
pub fn client_builder(
    provider: &str,
    base: &str,
    proxy: Option<&str>,
    crypto: Option<Arc<CryptoProvider>>,
) -> Result<reqwest::ClientBuilder, ProviderError> {
    crate::client_builder_for_endpoint(base, proxy, crypto).map_err(|e| {
        ProviderError::NotConfigured(format!("{provider}: cannot build the HTTP client: {e}"))
    })
}

/// Idle keep-alive connections a model client keeps per host. reqwest keeps every one by
/// default: after a burst of 200 concurrent turns a gateway held 200 idle connections to the
/// model, each with its buffers, and they pinned freed memory in the allocator's heap
/// (docs/PERFORMANCE.md, "2026-12-05, under load"). 32 keeps the connections a steady load
/// reuses, so it does not pay a new TLS handshake per call.
pub const POOL_MAX_IDLE_PER_HOST: usize = 32;

/// How long an idle connection to the model is kept (reqwest's default: 90 s). Below a
/// minute, so a gateway is back near its idle memory within a minute of a burst.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(20);

/// The HTTP client of a provider at `base` ([`client_builder`]): picoclaw's user agent,
/// `headers` on every request, the connect timeout, `read_timeout` between two reads of an
/// answer, at most [`POOL_MAX_IDLE_PER_HOST`] idle connections kept [`POOL_IDLE_TIMEOUT`],
/// and the proxy if there is one. Fails with a configuration error on a bad proxy.
pub fn build_client(
    provider: &str,
    base: &str,
    proxy: Option<&str>,
    crypto: Option<Arc<CryptoProvider>>,
    headers: HeaderMap,
    connect_timeout: Duration,
    read_timeout: Duration,
) -> Result<reqwest::Client, ProviderError> {
    let mut builder = client_builder(provider, base, proxy, crypto)?
        .user_agent(USER_AGENT)
        .default_headers(headers)
        .connect_timeout(connect_timeout)
        .read_timeout(read_timeout)
        .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT);
    if let Some(proxy) = proxy {
        let proxy = reqwest::Proxy::all(proxy).map_err(|e| {
            ProviderError::NotConfigured(format!("{provider}: proxy '{proxy}' is not usable: {e}"))
        })?;
        builder = builder.proxy(proxy);
    }
    builder.build().map_err(|e| {
        ProviderError::NotConfigured(format!("{provider}: cannot build the HTTP client: {e}"))
    })
}

/// A transport failure of a request to `url`: [`ProviderError::Timeout`] when reqwest timed
/// out, else [`ProviderError::Transport`] (the URL is kept apart, out of reqwest's message).
pub fn transport_error(
    provider: &str,
    url: &str,
    timeout: Duration,
    err: reqwest::Error,
) -> ProviderError {
    if err.is_timeout() {
        ProviderError::Timeout {
            provider: provider.to_owned(),
            after: timeout,
        }
    } else {
        ProviderError::Transport {
            provider: provider.to_owned(),
            url: url.to_owned(),
            source: Box::new(WithCauses::of(&err.without_url())),
        }
    }
}

/// An error's message followed by its causes' ("error sending request: connection closed
/// before message completed"): reqwest's own message names only the step that failed.
#[derive(Debug)]
struct WithCauses(String);

impl WithCauses {
    fn of(err: &dyn std::error::Error) -> Self {
        let mut text = err.to_string();
        let mut cause = err.source();
        while let Some(c) = cause {
            let more = c.to_string();
            if !text.contains(&more) {
                text.push_str(": ");
                text.push_str(&more);
            }
            cause = c.source();
        }
        Self(text)
    }
}

impl std::fmt::Display for WithCauses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WithCauses {}

/// Sends `request` (to `url`) and waits at most `timeout` for the answer's headers; the body is
/// left to the caller (a stream's is bounded by the client's read timeout between chunks).
pub async fn send(
    provider: &str,
    url: &str,
    timeout: Duration,
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response, ProviderError> {
    match tokio::time::timeout(timeout, request.send()).await {
        Ok(r) => r.map_err(|e| transport_error(provider, url, timeout, e)),
        Err(_) => Err(ProviderError::Timeout {
            provider: provider.to_owned(),
            after: timeout,
        }),
    }
}

/// Reads a whole answer body within `timeout`.
pub async fn read_body(
    provider: &str,
    url: &str,
    timeout: Duration,
    response: reqwest::Response,
) -> Result<String, ProviderError> {
    tokio::time::timeout(timeout, response.text())
        .await
        .map_err(|_elapsed| ProviderError::Timeout {
            provider: provider.to_owned(),
            after: timeout,
        })?
        .map_err(|e| transport_error(provider, url, timeout, e))
}

/// How long the vendor asks to wait: `retry-after-ms`, else `Retry-After` in seconds.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
    {
        return Some(Duration::from_secs_f64(ms.max(0.0) / 1000.0));
    }
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|s| Duration::from_secs_f64(s.max(0.0)))
}

/// The vendor's error message and code from an error body (`{"error": {"message", "code"}}`,
/// `{"error": "..."}`, `{"message": "..."}`), or a preview of the body.
pub fn vendor_message(body: &str) -> (String, String) {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
        let err = v.get("error").unwrap_or(&v);
        let message = err
            .get("message")
            .and_then(|m| m.as_str())
            .or_else(|| err.as_str())
            .map(str::to_owned);
        let code = err
            .get("code")
            .map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_owned))
            .unwrap_or_default();
        if let Some(message) = message {
            return (message, code);
        }
    }
    let body = preview(body, 200);
    (
        if body.is_empty() {
            "(empty body)".to_owned()
        } else {
            body
        },
        String::new(),
    )
}

/// Whether a vendor's error code or message says the prompt is longer than the model's
/// context window.
pub fn is_context_length(code: &str, message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    code == "context_length_exceeded"
        || m.contains("context length")
        || m.contains("context_length")
        || m.contains("maximum context")
        || m.contains("context window")
        || m.contains("too many tokens")
        || m.contains("prompt is too long")
}

/// `text` without the key, should a vendor echo it back.
pub fn redact(text: &str, key: Option<&Secret<String>>) -> String {
    match key {
        Some(key) if !key.expose().is_empty() => text.replace(key.expose().as_str(), "[redacted]"),
        _ => text.to_owned(),
    }
}

/// The [`ProviderError`] for a non-2xx answer: 401 and 403 are [`ProviderError::Auth`] (naming
/// `key_hint`), 429 [`ProviderError::RateLimited`], a 400 or 413 that speaks of the context
/// window [`ProviderError::ContextLength`], a 400 with a content-filter `code`
/// [`ProviderError::ContentFiltered`], other 4xx [`ProviderError::InvalidRequest`], the rest
/// [`ProviderError::Server`]. `message` should already be [`redact`]ed.
pub fn status_error(
    provider: &str,
    status: u16,
    retry_after: Option<Duration>,
    message: String,
    code: &str,
    key_hint: &str,
) -> ProviderError {
    let provider = provider.to_owned();
    match status {
        401 | 403 => ProviderError::Auth {
            provider,
            status,
            message,
            key_hint: key_hint.to_owned(),
        },
        429 => ProviderError::RateLimited {
            provider,
            retry_after,
            message,
        },
        400 | 413 if is_context_length(code, &message) => {
            ProviderError::ContextLength { provider, message }
        }
        400 if code == "content_filter" || code == "ResponsibleAIPolicyViolation" => {
            ProviderError::ContentFiltered { provider, message }
        }
        400..=499 => ProviderError::InvalidRequest {
            provider,
            status,
            message,
        },
        _ => ProviderError::Server {
            provider,
            status,
            message,
        },
    }
}

/// At most `max` characters of `s`, for quoting a bad body in an error.
pub fn preview(s: &str, max: usize) -> String {
    let s = s.trim();
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(max).collect();
        out.push('…');
        out
    }
}

/// The server-sent events of an answer ([`sse_events`]).
pub type SseEvents = Pin<
    Box<dyn futures_core::Stream<Item = Result<Event, EventStreamError<reqwest::Error>>> + Send>,
>;

/// The server-sent events of a streamed answer, one [`Event`] (its `data`) at a time.
pub fn sse_events(response: reqwest::Response) -> SseEvents {
    sse_events_from(Box::pin(response.bytes_stream()))
}

/// The events in a stream of body chunks (a response's `bytes_stream()`), byte order marks at
/// its start dropped first: eventsource-stream 0.2.3 panics on a stream that starts with one
/// (it cuts the three-byte character after its first byte). Found by the `providers` fuzz
/// target (docs/fuzzing.md). Every SSE reader goes through here.
pub fn sse_events_from<S, B>(chunks: S) -> SseEvents
where
    S: futures_core::Stream<Item = Result<B, reqwest::Error>> + Unpin + Send + 'static,
    B: AsRef<[u8]> + From<Vec<u8>> + Send + 'static,
{
    Box::pin(
        WithoutBom {
            inner: chunks,
            held: Vec::new(),
            state: BomState::Start,
        }
        .eventsource(),
    )
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

#[derive(PartialEq)]
enum BomState {
    /// No byte handed on yet: a BOM may still come (whole or in parts).
    Start,
    /// Past the start: chunks pass as they are.
    Passing,
    /// The inner stream ended.
    Done,
}

/// A stream of body chunks without the byte order marks it starts with.
struct WithoutBom<S> {
    inner: S,
    /// The first bytes, held while they may still be (the start of) a BOM.
    held: Vec<u8>,
    state: BomState,
}

impl<S, B> futures_core::Stream for WithoutBom<S>
where
    S: futures_core::Stream<Item = Result<B, reqwest::Error>> + Unpin,
    B: AsRef<[u8]> + From<Vec<u8>>,
{
    type Item = Result<B, reqwest::Error>;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = &mut *self;
        loop {
            match this.state {
                BomState::Done => return Poll::Ready(None),
                BomState::Passing => {
                    let next = Pin::new(&mut this.inner).poll_next(cx);
                    if let Poll::Ready(None) = next {
                        this.state = BomState::Done;
                    }
                    return next;
                }
                BomState::Start => {}
            }
            match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    this.held.extend_from_slice(chunk.as_ref());
                    while this.held.starts_with(BOM) {
                        this.held.drain(..BOM.len());
                    }
                    if this.held.is_empty() || BOM.starts_with(&this.held) {
                        continue; // all BOM so far, or a BOM cut between chunks
                    }
                    this.state = BomState::Passing;
                    return Poll::Ready(Some(Ok(B::from(std::mem::take(&mut this.held)))));
                }
                Poll::Ready(Some(Err(e))) => {
                    this.state = BomState::Passing;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    this.state = BomState::Done;
                    if this.held.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Ok(B::from(std::mem::take(&mut this.held)))));
                }
            }
        }
    }
}

/// The error for an SSE stream that broke off: [`ProviderError::Timeout`] when the server went
/// silent longer than the read timeout (`after`), else a [`ProviderError::Response`].
pub fn stream_error(
    provider: &str,
    after: Duration,
    err: EventStreamError<reqwest::Error>,
) -> ProviderError {
    match err {
        EventStreamError::Transport(e) if e.is_timeout() => ProviderError::Timeout {
            provider: provider.to_owned(),
            after,
        },
        other => ProviderError::response(provider, format!("the answer stream broke off: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback HTTP/1.1 server answering every request with a small 200 after `delay`,
    /// keeping connections alive; the count of connections open right now.
    async fn counting_server(delay: Duration) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/x", listener.local_addr().unwrap());
        let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = Arc::clone(&open);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let open = Arc::clone(&count);
                open.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut seen = Vec::new();
                    loop {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                        // One request per head (the client sends no body).
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            tokio::time::sleep(delay).await;
                            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if socket.write_all(answer).await.is_err() {
                                break;
                            }
                        }
                    }
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        (url, open)
    }

    #[tokio::test]
    async fn a_burst_leaves_at_most_the_pool_limit_of_idle_connections() {
        use std::sync::atomic::Ordering;
        let (url, open) = counting_server(Duration::from_millis(200)).await;
        let client = build_client(
            "p",
            &url,
            None,
            Some(Arc::new(rustls::crypto::ring::default_provider())),
            HeaderMap::new(),
            Duration::from_secs(5),
            Duration::from_secs(5),
        )
        .unwrap();
        let burst = POOL_MAX_IDLE_PER_HOST + 20;
        let calls: Vec<_> = (0..burst)
            .map(|_| {
                let (client, url) = (client.clone(), url.clone());
                tokio::spawn(async move { client.get(url).send().await.unwrap().text().await })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap().unwrap(), "ok");
        }
        // The connections beyond the limit are closed once their answers are read.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while open.load(Ordering::SeqCst) > POOL_MAX_IDLE_PER_HOST {
            assert!(
                std::time::Instant::now() < deadline,
                "{} connections still open after a burst of {burst}",
                open.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            open.load(Ordering::SeqCst) > 0,
            "the pool keeps some for reuse"
        );
    }

    /// Body chunks, as a response hands them on.
    struct Chunks(std::collections::VecDeque<Vec<u8>>);

    impl futures_core::Stream for Chunks {
        type Item = Result<Vec<u8>, reqwest::Error>;
        fn poll_next(
            mut self: Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(self.0.pop_front().map(Ok))
        }
    }

    /// The `data` of every event in `chunks`.
    async fn data_of(chunks: &[&[u8]]) -> Vec<String> {
        let mut events = sse_events_from(Chunks(chunks.iter().map(|c| c.to_vec()).collect()));
        let mut out = Vec::new();
        while let Some(event) = std::future::poll_fn(|cx| events.as_mut().poll_next(cx)).await {
            if let Ok(event) = event {
                out.push(event.data);
            }
        }
        out
    }

    /// Found by the `providers` fuzz target (docs/fuzzing.md): a stream that starts with a byte
    /// order mark made eventsource-stream panic.
    #[tokio::test]
    async fn streams_starting_with_byte_order_marks_are_read() {
        assert!(data_of(&[b"\xEF\xBB\xBF"]).await.is_empty());
        assert_eq!(data_of(&[b"\xEF\xBB\xBFdata: a\n\n"]).await, ["a"]);
        // Cut between chunks, and twice.
        assert_eq!(
            data_of(&[b"\xEF", b"\xBB", b"\xBF\xEF\xBB\xBFdata: b\n\n"]).await,
            ["b"]
        );
        assert_eq!(
            data_of(&[b"", b"data: c\n\n", b"data: d\n\n"]).await,
            ["c", "d"]
        );
        // Only the start is looked at: a BOM later is data.
        assert_eq!(data_of(&[b"data: e\xEF\xBB\xBF\n\n"]).await, ["e\u{feff}"]);
        // Half a BOM and the end: no panic, no event.
        assert!(data_of(&[b"\xEF\xBB"]).await.is_empty());
    }

    #[test]
    fn previews_are_cut_by_characters() {
        assert_eq!(preview("  short  ", 10), "short");
        assert_eq!(preview("ééééé", 3), "ééé…");
    }

    #[test]
    fn vendor_messages_come_from_the_usual_shapes() {
        assert_eq!(
            vendor_message(r#"{"error":{"message":"bad","code":"x"}}"#),
            ("bad".into(), "x".into())
        );
        assert_eq!(
            vendor_message(r#"{"error":{"message":"bad","code":429}}"#),
            ("bad".into(), "429".into())
        );
        assert_eq!(vendor_message(r#"{"error":"plain"}"#).0, "plain");
        assert_eq!(vendor_message(r#"{"message":"top"}"#).0, "top");
        assert_eq!(vendor_message("").0, "(empty body)");
        assert_eq!(vendor_message("<html>oops</html>").0, "<html>oops</html>");
    }

    #[test]
    fn statuses_map_to_their_errors() {
        let e = status_error("p", 401, None, "no".into(), "", "providers.p.api_key");
        assert!(
            matches!(e, ProviderError::Auth { ref key_hint, .. } if key_hint == "providers.p.api_key")
        );
        let e = status_error(
            "p",
            429,
            Some(Duration::from_secs(2)),
            "slow".into(),
            "",
            "",
        );
        assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
        let e = status_error("p", 400, None, "maximum context length".into(), "", "");
        assert!(matches!(e, ProviderError::ContextLength { .. }));
        let e = status_error("p", 400, None, "no".into(), "content_filter", "");
        assert!(matches!(e, ProviderError::ContentFiltered { .. }));
        let e = status_error("p", 404, None, "no".into(), "", "");
        assert!(matches!(
            e,
            ProviderError::InvalidRequest { status: 404, .. }
        ));
        let e = status_error("p", 503, None, "down".into(), "", "");
        assert!(matches!(e, ProviderError::Server { status: 503, .. }));
    }

    #[test]
    fn keys_are_redacted() {
        let key = Secret::new("sk-secret".to_owned());
        assert_eq!(
            redact("bad key sk-secret", Some(&key)),
            "bad key [redacted]"
        );
        assert_eq!(redact("abc", Some(&Secret::new(String::new()))), "abc");
        assert_eq!(redact("abc", None), "abc");
    }

    #[test]
    fn retry_after_reads_milliseconds_then_seconds() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", "1500".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(1500)));
    }
}
