//! A webhook listener of a channel's own, for the original PicoClaw's `webhook_host`,
//! `webhook_port` and `webhook_path` (LINE, WeCom): when the port differs from the gateway's,
//! the channel serves its callbacks there too, exactly as on the gateway's `/webhook/<name>`
//! (the same handler, so the same signature checks). Plain HTTP/1.1, one request per
//! connection, bodies up to 1 MiB, headers within 10 s, each connection done within 90 s,
//! at most 256 connections at once (more wait in the kernel's backlog); other paths get 404.

use crate::ChannelError;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response};
use picoclaw_api::{WebhookRequest, WebhookResponse};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The largest callback body taken.
const MAX_BODY: usize = 1 << 20;

/// Longest a request may take to arrive and be answered.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest a client may take to send the request line and headers (shorter in unit tests).
const HEADER_TIMEOUT: Duration = if cfg!(test) {
    Duration::from_millis(300)
} else {
    Duration::from_secs(10)
};

/// Longest a connection may stay open, whatever it does (more than the header, body and
/// handler limits together).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(90);

/// Connections served at once.
const MAX_CONNECTIONS: usize = 256;

/// What answers one callback.
pub(crate) type Handler = Arc<
    dyn Fn(WebhookRequest) -> Pin<Box<dyn Future<Output = WebhookResponse> + Send>> + Send + Sync,
>;

/// Where a channel's own listener listens, from its `webhook_host` / `webhook_port` /
/// `webhook_path` settings: `None` when no port is set, or when it is the gateway's own
/// (`gateway_port`), whose `/webhook/<name>` route then serves the channel.
pub(crate) fn own_address(
    channel: &str,
    host: Option<&str>,
    port: Option<u16>,
    path: Option<&str>,
    gateway_port: Option<u16>,
) -> Result<Option<(SocketAddr, String)>, ChannelError> {
    let Some(port) = port.filter(|p| *p != 0) else {
        return Ok(None);
    };
    if Some(port) == gateway_port {
        return Ok(None);
    }
    let host = host
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .unwrap_or("0.0.0.0");
    let ip: std::net::IpAddr = host.parse().map_err(|_| {
        ChannelError::Rejected(format!(
            "channels.{channel}.webhook_host '{host}' is not an IP address (e.g. 0.0.0.0 or \
             127.0.0.1)"
        ))
    })?;
    let path = path.map(str::trim).filter(|p| !p.is_empty()).map_or_else(
        || format!("/webhook/{channel}"),
        |p| {
            if p.starts_with('/') {
                p.to_owned()
            } else {
                format!("/{p}")
            }
        },
    );
    Ok(Some((SocketAddr::new(ip, port), path)))
}

/// Serves `path` on `addr` with `handler` until `stop`. A port that cannot be bound is
/// [`ChannelError::Rejected`] (retrying will not free it).
pub(crate) async fn serve(
    channel: &str,
    addr: SocketAddr,
    path: String,
    handler: Handler,
    stop: CancellationToken,
) -> Result<(), ChannelError> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        ChannelError::Rejected(format!(
            "channels.{channel}: cannot listen on {addr} (webhook_host/webhook_port): {e}"
        ))
    })?;
    tracing::info!(%channel, %addr, %path, "webhook listener of the channel's own");
    let path: Arc<str> = path.into();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        // A free slot first: a flood of idle connections waits in the backlog instead of
        // taking every file descriptor of the gateway.
        let slot = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => return Ok(()),
            },
        };
        let (tcp, _peer) = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(%channel, error = %e, "webhook listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let handler = Arc::clone(&handler);
        let path = Arc::clone(&path);
        let stop = stop.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let handler = Arc::clone(&handler);
                let path = Arc::clone(&path);
                async move { Ok::<_, std::convert::Infallible>(answer(req, &path, handler).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false)
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service);
            tokio::select! {
                _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn) => {}
                () = stop.cancelled() => {}
            }
        });
    }
}

async fn answer(req: Request<Incoming>, path: &str, handler: Handler) -> Response<Full<Bytes>> {
    if req.uri().path() != path {
        return reply(WebhookResponse::text(404, "not found"));
    }
    let method = req.method().as_str().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let body = match tokio::time::timeout(
        REQUEST_TIMEOUT,
        Limited::new(req.into_body(), MAX_BODY).collect(),
    )
    .await
    {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(_)) => return reply(WebhookResponse::text(413, "body too large")),
        Err(_) => return reply(WebhookResponse::text(408, "request timed out")),
    };
    let mut request = WebhookRequest::new(method, body.to_vec()).with_query(query);
    for (name, value) in headers {
        request = request.with_header(&name, value);
    }
    // Spawned, so the handler runs to its end even when the client hangs up or the limit
    // fires (see `ChannelManager::webhook`).
    match tokio::time::timeout(REQUEST_TIMEOUT, tokio::spawn(handler(request))).await {
        Ok(Ok(response)) => reply(response),
        Ok(Err(_)) => reply(WebhookResponse::text(
            500,
            "the channel failed; retry later",
        )),
        Err(_) => reply(WebhookResponse::text(503, "the channel took too long")),
    }
}

fn reply(r: WebhookResponse) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(r.body)));
    if let Ok(status) = hyper::StatusCode::from_u16(r.status) {
        *response.status_mut() = status;
    }
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(r.content_type),
    );
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A listener on a free loopback port answering `/hook` with 200 "ok".
    async fn listening() -> (SocketAddr, CancellationToken) {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = free.local_addr().unwrap();
        drop(free);
        let stop = CancellationToken::new();
        let handler: Handler = Arc::new(|_req| {
            Box::pin(async { WebhookResponse::text(200, "ok") })
                as Pin<Box<dyn Future<Output = WebhookResponse> + Send>>
        });
        let s = stop.clone();
        tokio::spawn(async move { serve("line", addr, "/hook".into(), handler, s).await });
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (addr, stop)
    }

    async fn request(addr: SocketAddr, raw: &str) -> String {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(raw.as_bytes()).await.unwrap();
        let mut out = String::new();
        tcp.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn a_client_that_never_finishes_its_headers_is_cut_off() {
        let (addr, stop) = listening().await;
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"POST /hook HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        // The server gives up on the headers and closes the connection.
        let read = tokio::time::timeout(Duration::from_secs(20), slow.read_to_end(&mut buf)).await;
        assert!(
            read.is_ok(),
            "the half-sent request was still open after 20 s"
        );
        let ok = request(
            addr,
            "POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        )
        .await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        let other = request(addr, "GET /other HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(other.starts_with("HTTP/1.1 404"), "{other}");
        stop.cancel();
    }

    #[test]
    fn the_own_listener_is_used_only_off_the_gateways_port() {
        assert_eq!(
            own_address("line", None, None, None, Some(18790)).unwrap(),
            None
        );
        assert_eq!(
            own_address("line", None, Some(18790), None, Some(18790)).unwrap(),
            None
        );
        let (addr, path) = own_address("line", Some("127.0.0.1"), Some(18791), Some("hook"), None)
            .unwrap()
            .unwrap();
        assert_eq!(addr.to_string(), "127.0.0.1:18791");
        assert_eq!(path, "/hook");
        let (_, path) = own_address("line", None, Some(18791), None, Some(18790))
            .unwrap()
            .unwrap();
        assert_eq!(path, "/webhook/line");
        assert!(own_address("line", Some("example.com"), Some(1), None, None).is_err());
    }
}
