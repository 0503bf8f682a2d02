//! A WebSocket client for the channels that dial their platform (the WhatsApp bridge, OneBot,
//! Feishu's long connection, DingTalk Stream, the QQ gateway): `ws://` over TCP, `wss://` over
//! rustls with the platform's certificate verification (picoclaw-http's TLS configuration, ALPN
//! `http/1.1` only, since a WebSocket cannot ride HTTP/2), and the reconnection pause.

use crate::ChannelError;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
// Not every WebSocket channel closes with a frame of its own.
#[allow(unused_imports)]
pub(crate) use tokio_tungstenite::tungstenite::{Message, protocol::CloseFrame};

/// A byte stream a WebSocket runs over (TCP or TLS over TCP).
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An open WebSocket connection.
pub(crate) type WsStream = WebSocketStream<Pin<Box<dyn Io>>>;

/// Longest the TCP connect, the TLS and the WebSocket handshakes may take together.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// The largest frame or message taken from a platform (16 MiB).
const MAX_MESSAGE: usize = 16 << 20;

/// Dials `url` (`ws://` or `wss://`) with `headers` added to the upgrade request. `what` names
/// the connection in errors (`"the WhatsApp bridge"`). A refused handshake (401, 403...) comes
/// back as [`ChannelError::Rejected`] with the status, anything else as
/// [`ChannelError::Platform`].
pub(crate) async fn connect(
    what: &str,
    url: &str,
    headers: &[(&str, String)],
) -> Result<WsStream, ChannelError> {
    tokio::time::timeout(CONNECT_TIMEOUT, connect_inner(what, url, headers))
        .await
        .map_err(|_| {
            ChannelError::Platform(format!(
                "{what}: no connection within {}s ({})",
                CONNECT_TIMEOUT.as_secs(),
                shown(url)
            ))
        })?
}

/// [`connect`] for a URL the platform handed out with a ticket in it (Feishu, DingTalk, QQ's
/// gateway): a refused handshake there means the ticket expired, not that the configured
/// credentials are wrong, so every failure is [`ChannelError::Platform`] (retried with a new
/// ticket) rather than [`ChannelError::Rejected`].
#[cfg_attr(
    not(any(feature = "feishu", feature = "dingtalk", feature = "qq")),
    allow(dead_code)
)]
pub(crate) async fn connect_ticket(
    what: &str,
    url: &str,
    headers: &[(&str, String)],
) -> Result<WsStream, ChannelError> {
    connect(what, url, headers).await.map_err(|e| match e {
        ChannelError::Rejected(text) => ChannelError::Platform(text),
        other => other,
    })
}

/// `url` as errors and logs show it: without its query and user info, where platforms put
/// tickets, tokens and access keys (Feishu, DingTalk, a OneBot `?access_token=`).
pub(crate) fn shown(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            let had_query = parsed.query().is_some();
            parsed.set_query(None);
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            let mut text = parsed.to_string();
            if had_query {
                text.push_str("?…");
            }
            text
        }
        Err(_) => "(not a URL)".to_owned(),
    }
}

async fn connect_inner(
    what: &str,
    url: &str,
    headers: &[(&str, String)],
) -> Result<WsStream, ChannelError> {
    let parsed = url::Url::parse(url)
        .map_err(|e| ChannelError::Rejected(format!("{what}: the URL is not valid: {e}")))?;
    let url = &shown(url);
    let tls = match parsed.scheme() {
        "ws" => false,
        "wss" => true,
        other => {
            return Err(ChannelError::Rejected(format!(
                "{what}: '{url}' must be a ws:// or wss:// URL, not {other}://"
            )));
        }
    };
    let host = parsed
        .host_str()
        .ok_or_else(|| ChannelError::Rejected(format!("{what}: '{url}' names no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = parsed
        .port_or_known_default()
        .unwrap_or(if tls { 443 } else { 80 });
    let mut request = parsed
        .as_str()
        .into_client_request()
        .map_err(|e| ChannelError::Rejected(format!("{what}: {e}")))?;
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| ChannelError::Rejected(format!("{what}: header {name}: {e}")))?;
        let value = HeaderValue::from_str(value).map_err(|_| {
            ChannelError::Rejected(format!("{what}: the value of header {name} is not valid"))
        })?;
        request.headers_mut().insert(name, value);
    }
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| ChannelError::Platform(format!("{what}: cannot connect to {url}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let io: Pin<Box<dyn Io>> = if tls {
        let provider = picoclaw_http::default_crypto_provider()
            .map_err(|e| ChannelError::Platform(format!("{what}: TLS: {e}")))?;
        let mut config = picoclaw_http::tls_config(provider, picoclaw_http::Roots::Platform)
            .map_err(|e| ChannelError::Platform(format!("{what}: TLS: {e}")))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| ChannelError::Rejected(format!("{what}: host '{host}': {e}")))?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| ChannelError::Platform(format!("{what}: TLS with {host}: {e}")))?;
        Box::pin(stream)
    } else {
        Box::pin(tcp)
    };
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let (stream, _response) =
        tokio_tungstenite::client_async_with_config(request, io, Some(config))
            .await
            .map_err(|e| handshake_error(what, url, e))?;
    Ok(stream)
}

fn handshake_error(
    what: &str,
    url: &str,
    e: tokio_tungstenite::tungstenite::Error,
) -> ChannelError {
    use tokio_tungstenite::tungstenite::Error;
    match e {
        Error::Http(response) => {
            let status = response.status();
            let body = response
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(&b[..b.len().min(300)]).into_owned())
                .unwrap_or_default();
            let text = format!("{what} refused the connection to {url}: HTTP {status} {body}");
            if matches!(status.as_u16(), 401 | 403) {
                ChannelError::Rejected(text)
            } else {
                ChannelError::Platform(text)
            }
        }
        other => ChannelError::Platform(format!("{what}: WebSocket handshake with {url}: {other}")),
    }
}

/// The pause before reconnection attempt `attempt` (1-based) when `base` is the configured
/// interval: `base`, doubling per failed attempt, at most 60 s (and at least 100 ms).
pub(crate) fn reconnect_delay(base: Duration, attempt: u32) -> Duration {
    let base = base.max(Duration::from_millis(100));
    base.saturating_mul(1u32 << attempt.saturating_sub(1).min(6))
        .min(Duration::from_secs(60).max(base))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urls_in_errors_keep_no_secrets() {
        assert_eq!(
            shown("wss://user:pw@msg.example.com/ws?ticket=T&access_key=K"),
            "wss://msg.example.com/ws?…"
        );
        assert_eq!(shown("ws://127.0.0.1:3001/"), "ws://127.0.0.1:3001/");
        assert_eq!(shown("::"), "(not a URL)");
    }

    #[test]
    fn reconnection_backs_off_to_a_minute() {
        let s = Duration::from_secs(1);
        assert_eq!(reconnect_delay(s, 1), s);
        assert_eq!(reconnect_delay(s, 3), Duration::from_secs(4));
        assert_eq!(reconnect_delay(s, 30), Duration::from_secs(60));
        assert_eq!(
            reconnect_delay(Duration::ZERO, 1),
            Duration::from_millis(100)
        );
    }

    #[tokio::test]
    async fn urls_of_other_schemes_and_closed_ports_fail_clearly() {
        let Err(e) = connect("the bridge", "http://127.0.0.1:1/", &[]).await else {
            panic!("an http:// URL was dialled");
        };
        assert!(
            matches!(e, ChannelError::Rejected(ref m) if m.contains("ws://")),
            "{e}"
        );
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = free.local_addr().unwrap().port();
        drop(free);
        let Err(e) = connect("the bridge", &format!("ws://127.0.0.1:{port}/"), &[]).await else {
            panic!("a closed port answered");
        };
        assert!(
            matches!(e, ChannelError::Platform(ref m) if m.contains("cannot connect")),
            "{e}"
        );
    }
}
