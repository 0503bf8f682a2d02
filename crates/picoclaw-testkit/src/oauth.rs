//! `FakeOauth`: an OAuth 2.0 server on 127.0.0.1 speaking the documented shapes: the device
//! authorization grant (RFC 8628: `authorization_pending`, `slow_down`, `expired_token`,
//! `access_denied`), the authorization-code grant with PKCE S256 (RFC 7636; the authorize
//! endpoint approves at once and redirects), refresh (with revocation: `invalid_grant`), and
//! GitHub's Copilot token exchange.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
struct Inner {
    /// Polls answered `authorization_pending` before approval.
    pending_polls: Mutex<u32>,
    /// Answer one poll with `slow_down` (after the pending ones).
    slow_down: Mutex<bool>,
    deny: Mutex<bool>,
    expire: Mutex<bool>,
    polls: Mutex<Vec<String>>,
    /// code → (challenge, redirect_uri, client_id)
    codes: Mutex<HashMap<String, (String, String, String)>>,
    refresh_tokens: Mutex<Vec<String>>,
    revoked: Mutex<bool>,
    refreshes: Mutex<u32>,
    access_ttl: Mutex<u64>,
    next: Mutex<u32>,
    issued: Mutex<Vec<String>>,
    client_ids: Mutex<Vec<String>>,
}

/// The fake server; stops when dropped.
#[derive(Debug)]
pub struct FakeOauth {
    addr: SocketAddr,
    inner: Arc<Inner>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

fn oauth_error(code: &str, text: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": code, "error_description": text})),
    )
        .into_response()
}

fn next(inner: &Inner) -> u32 {
    let mut n = inner.next.lock().unwrap();
    *n += 1;
    *n
}

fn tokens(inner: &Inner) -> Response {
    let n = next(inner);
    let access = format!("at-{n}");
    let refresh = format!("rt-{n}");
    inner.issued.lock().unwrap().push(access.clone());
    inner.refresh_tokens.lock().unwrap().push(refresh.clone());
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
        json!({"email": "ada@example.com", "sub": "user-1",
               "https://api.openai.com/auth": {"chatgpt_account_id": "acct-42"}})
        .to_string(),
    );
    let ttl = *inner.access_ttl.lock().unwrap();
    axum::Json(json!({
        "access_token": access, "refresh_token": refresh, "token_type": "Bearer",
        "expires_in": if ttl == 0 { 3600 } else { ttl },
        "id_token": format!("eyJhbGciOiJub25lIn0.{claims}.sig"),
    }))
    .into_response()
}

async fn device_code(State(inner): State<Arc<Inner>>, body: String) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    inner
        .client_ids
        .lock()
        .unwrap()
        .push(form.get("client_id").cloned().unwrap_or_default());
    axum::Json(json!({
        "device_code": "dev-code-1", "user_code": "WDJB-MJHT",
        "verification_uri": "https://example.test/device",
        "verification_uri_complete": "https://example.test/device?user_code=WDJB-MJHT",
        "expires_in": 600, "interval": 1,
    }))
    .into_response()
}

async fn token(State(inner): State<Arc<Inner>>, body: String) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let grant = form.get("grant_type").cloned().unwrap_or_default();
    match grant.as_str() {
        "urn:ietf:params:oauth:grant-type:device_code" => {
            inner.polls.lock().unwrap().push(grant.clone());
            if form.get("device_code").map(String::as_str) != Some("dev-code-1") {
                return oauth_error("invalid_grant", "unknown device code");
            }
            if *inner.expire.lock().unwrap() {
                return oauth_error("expired_token", "the device code expired");
            }
            if *inner.deny.lock().unwrap() {
                return oauth_error("access_denied", "the user said no");
            }
            {
                let mut pending = inner.pending_polls.lock().unwrap();
                if *pending > 0 {
                    *pending -= 1;
                    return oauth_error("authorization_pending", "waiting for the user");
                }
            }
            {
                let mut slow = inner.slow_down.lock().unwrap();
                if *slow {
                    *slow = false;
                    return oauth_error("slow_down", "polling too fast");
                }
            }
            tokens(&inner)
        }
        "authorization_code" => {
            let code = form.get("code").cloned().unwrap_or_default();
            let Some((challenge, redirect, client)) = inner.codes.lock().unwrap().remove(&code)
            else {
                return oauth_error("invalid_grant", "unknown or used code");
            };
            let verifier = form.get("code_verifier").cloned().unwrap_or_default();
            let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
            let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref());
            if expected != challenge {
                return oauth_error("invalid_grant", "PKCE verification failed");
            }
            if form.get("redirect_uri") != Some(&redirect) {
                return oauth_error("invalid_grant", "redirect_uri mismatch");
            }
            if form.get("client_id") != Some(&client) {
                return oauth_error("invalid_client", "client mismatch");
            }
            tokens(&inner)
        }
        "refresh_token" => {
            let rt = form.get("refresh_token").cloned().unwrap_or_default();
            if *inner.revoked.lock().unwrap() || !inner.refresh_tokens.lock().unwrap().contains(&rt)
            {
                return oauth_error("invalid_grant", "the refresh token was revoked");
            }
            *inner.refreshes.lock().unwrap() += 1;
            tokens(&inner)
        }
        other => oauth_error("unsupported_grant_type", other),
    }
}

async fn authorize(
    State(inner): State<Arc<Inner>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if q.get("code_challenge_method").map(String::as_str) != Some("S256")
        || q.get("response_type").map(String::as_str) != Some("code")
    {
        return (
            StatusCode::BAD_REQUEST,
            "PKCE S256 and response_type=code required",
        )
            .into_response();
    }
    let code = format!("code-{}", next(&inner));
    let redirect = q.get("redirect_uri").cloned().unwrap_or_default();
    inner.codes.lock().unwrap().insert(
        code.clone(),
        (
            q.get("code_challenge").cloned().unwrap_or_default(),
            redirect.clone(),
            q.get("client_id").cloned().unwrap_or_default(),
        ),
    );
    let state = q.get("state").cloned().unwrap_or_default();
    let mut url = url::Url::parse(&redirect).unwrap_or_else(|_| {
        url::Url::parse("http://invalid.test/").unwrap_or_else(|_| unreachable!())
    });
    url.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &state);
    Redirect::to(url.as_str()).into_response()
}

async fn copilot(State(inner): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some(gh) = auth.strip_prefix("token ") else {
        return (StatusCode::UNAUTHORIZED, "no token").into_response();
    };
    if !inner.issued.lock().unwrap().iter().any(|t| t == gh) || *inner.revoked.lock().unwrap() {
        return (StatusCode::UNAUTHORIZED, "bad token").into_response();
    }
    let n = next(&inner);
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        + 1800;
    axum::Json(json!({"token": format!("copilot-{n}"), "expires_at": expires})).into_response()
}

impl FakeOauth {
    /// Starts the server (on its own thread, so it serves whatever runtime the test uses).
    pub fn start() -> Self {
        let inner = Arc::new(Inner::default());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let app = Router::new()
            .route("/oauth/device/code", post(device_code))
            .route("/login/device/code", post(device_code))
            .route("/oauth/token", post(token))
            .route("/v1/oauth/token", post(token))
            .route("/login/oauth/access_token", post(token))
            .route("/oauth/authorize", get(authorize))
            .route("/copilot_internal/v2/token", get(copilot))
            .with_state(Arc::clone(&inner));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
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
        });
        Self {
            addr,
            inner,
            shutdown: Some(tx),
        }
    }

    /// The issuer: what `--issuer` / `OauthProvider::known(.., Some(issuer))` takes.
    pub fn issuer(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The first `n` device polls answer `authorization_pending`.
    pub fn pending_polls(&self, n: u32) {
        *self.inner.pending_polls.lock().unwrap() = n;
    }

    /// The next approvable poll answers `slow_down` once.
    pub fn slow_down_once(&self) {
        *self.inner.slow_down.lock().unwrap() = true;
    }

    pub fn deny(&self) {
        *self.inner.deny.lock().unwrap() = true;
    }

    pub fn expire_device_code(&self) {
        *self.inner.expire.lock().unwrap() = true;
    }

    /// Every refresh token stops working (`invalid_grant`).
    pub fn revoke(&self) {
        *self.inner.revoked.lock().unwrap() = true;
    }

    /// Lifetime of issued access tokens (`expires_in`), in seconds.
    pub fn access_ttl(&self, secs: u64) {
        *self.inner.access_ttl.lock().unwrap() = secs;
    }

    pub fn device_polls(&self) -> usize {
        self.inner.polls.lock().unwrap().len()
    }

    pub fn refreshes(&self) -> u32 {
        *self.inner.refreshes.lock().unwrap()
    }

    /// Access tokens issued so far (`at-1`, `at-2`...).
    pub fn issued(&self) -> Vec<String> {
        self.inner.issued.lock().unwrap().clone()
    }

    /// Client ids that asked for device codes.
    pub fn client_ids(&self) -> Vec<String> {
        self.inner.client_ids.lock().unwrap().clone()
    }
}

impl Drop for FakeOauth {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
