//! `GET /pico/ws`: WebSocket upgrades handed to the channel that takes them (the Pico protocol,
//! docs/channels/pico.md). The channel decides first — its own token, its `allow_origins`, its
//! `max_connections` — and the gateway answers `101 Switching Protocols` only when it agreed,
//! then runs the channel's session over the upgraded connection. The gateway's key and `Host`
//! rules do not apply on this route (see `http::rules_for`): like a webhook, the channel
//! authenticates its clients itself.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// The routes of channels that take WebSocket connections.
pub fn socket_router(channels: Arc<picoclaw_channels::ChannelManager>) -> axum::Router {
    axum::Router::new()
        .route("/pico/ws", axum::routing::get(pico))
        .with_state(channels)
}

async fn pico(
    State(channels): State<Arc<picoclaw_channels::ChannelManager>>,
    request: Request,
) -> Response {
    upgrade(&channels, "pico", request).await
}

fn plain(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

/// Asks channel `name` about the upgrade request, and upgrades when it agrees.
async fn upgrade(
    channels: &picoclaw_channels::ChannelManager,
    name: &str,
    mut request: Request,
) -> Response {
    let headers = request.headers();
    let has = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|v| v.trim().eq_ignore_ascii_case(token))
    };
    if !has(header::UPGRADE, "websocket") || !has(header::CONNECTION, "upgrade") {
        return plain(
            StatusCode::UPGRADE_REQUIRED,
            format!("/{name}/ws takes WebSocket connections only"),
        );
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .and_then(|v| v.to_str().ok())
        != Some("13")
    {
        return plain(StatusCode::BAD_REQUEST, "Sec-WebSocket-Version must be 13");
    }
    let Some(key) = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|k| k.as_bytes().to_vec())
    else {
        return plain(StatusCode::BAD_REQUEST, "Sec-WebSocket-Key is missing");
    };
    let mut asked = picoclaw_channels::WebhookRequest::new(request.method().as_str(), Vec::new())
        .with_query(request.uri().query().unwrap_or_default());
    for (name, value) in headers {
        if let Ok(value) = value.to_str() {
            asked = asked.with_header(name.as_str(), value);
        }
    }
    let session = match channels.socket(name, asked).await {
        Ok(session) => session,
        Err(answer) => {
            return (
                StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                [(header::CONTENT_TYPE, answer.content_type)],
                answer.body,
            )
                .into_response();
        }
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key);
    let protocol = session.protocol();
    let channel = name.to_owned();
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                session
                    .run(Box::new(hyper_util::rt::TokioIo::new(upgraded)))
                    .await;
            }
            Err(e) => tracing::debug!(%channel, error = %e, "a WebSocket upgrade did not complete"),
        }
    });
    let mut response = Response::new(axum::body::Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    if let Some(protocol) = protocol.and_then(|p| HeaderValue::from_str(&p).ok()) {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, protocol);
    }
    response
}
