//! `IdentityEndpoint`: an App Service / Container Apps style managed-identity endpoint on
//! 127.0.0.1 (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`), issuing a scripted token and recording
//! what it was asked.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

#[derive(Debug)]
struct Inner {
    token: String,
    secret: String,
    lifetime_secs: u64,
    /// The query strings received.
    requests: Mutex<Vec<String>>,
}

/// A managed-identity token endpoint on loopback; stops when dropped.
#[derive(Debug)]
pub struct IdentityEndpoint {
    addr: SocketAddr,
    inner: Arc<Inner>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl IdentityEndpoint {
    /// Issues `token` (valid for an hour) to callers presenting `secret` in
    /// `X-IDENTITY-HEADER`.
    pub fn spawn(token: &str, secret: &str) -> Self {
        let inner = Arc::new(Inner {
            token: token.to_owned(),
            secret: secret.to_owned(),
            lifetime_secs: 3600,
            requests: Mutex::new(Vec::new()),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("address");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&inner));
        std::thread::Builder::new()
            .name("identity-endpoint".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                    tokio::select! {
                        _ = axum::serve(listener, app) => {}
                        _ = rx => {}
                    }
                });
            })
            .expect("spawn the identity endpoint");
        Self {
            addr,
            inner,
            shutdown: Some(tx),
        }
    }

    /// The value for `IDENTITY_ENDPOINT`.
    pub fn url(&self) -> String {
        format!("http://{}/msi/token", self.addr)
    }

    /// The query strings of the token requests received.
    pub fn requests(&self) -> Vec<String> {
        self.inner.requests.lock().unwrap().clone()
    }
}

impl Drop for IdentityEndpoint {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

async fn handle(State(inner): State<Arc<Inner>>, uri: Uri, headers: HeaderMap) -> Response {
    let query = uri.query().unwrap_or_default().to_owned();
    inner.requests.lock().unwrap().push(query.clone());
    let presented = headers
        .get("x-identity-header")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if presented != inner.secret {
        return (
            StatusCode::UNAUTHORIZED,
            "missing or wrong X-IDENTITY-HEADER",
        )
            .into_response();
    }
    let resource = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("resource="))
        .unwrap_or_default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let body = json!({
        "access_token": inner.token,
        "expires_on": (now + inner.lifetime_secs).to_string(),
        "resource": resource,
        "token_type": "Bearer",
        "client_id": "00000000-0000-0000-0000-000000000000",
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
