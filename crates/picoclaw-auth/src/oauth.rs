//! OAuth logins: the device authorization grant (RFC 8628, for boards without a browser), the
//! authorization-code grant with PKCE and a loopback redirect (RFC 7636, RFC 8252), refresh,
//! and GitHub Copilot's token exchange; plus [`LoginTokens`], the [`TokenSource`] that keeps a
//! stored login fresh, refreshing shortly before expiry with concurrent refreshes coalesced.

use crate::store::{AuthStore, Credential, OauthCredential};
use async_trait::async_trait;
use base64::Engine;
use picoclaw_api::Secret;
use picoclaw_api::auth::{AccessToken, AuthError, TokenSource};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where a provider's OAuth endpoints are.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct OauthProvider {
    /// `openai`, `anthropic`, `github-copilot`.
    pub name: String,
    pub client_id: String,
    pub authorize_url: String,
    pub token_url: String,
    pub device_url: String,
    pub scope: String,
    /// For GitHub Copilot: where the GitHub token is exchanged for a Copilot token.
    pub exchange_url: Option<String>,
    /// Loopback port the authorization-code flow listens on (the port registered for the
    /// client), 0 for any.
    pub redirect_port: u16,
    pub redirect_path: String,
}

impl OauthProvider {
    /// The known providers with their public endpoints. `issuer` replaces the scheme and host
    /// of every endpoint (a self-hosted or test server).
    pub fn known(name: &str, issuer: Option<&str>) -> Option<OauthProvider> {
        let mut p = match name {
            // ChatGPT sign-in for the Codex models (the public client of OpenAI's Codex CLI).
            "openai" | "codex" => OauthProvider {
                name: "openai".into(),
                client_id: "app_EMoamEEZ73f0CkXaXp7hrann".into(),
                authorize_url: "https://auth.openai.com/oauth/authorize".into(),
                token_url: "https://auth.openai.com/oauth/token".into(),
                device_url: "https://auth.openai.com/oauth/device/code".into(),
                scope: "openid profile email offline_access".into(),
                exchange_url: None,
                redirect_port: 1455,
                redirect_path: "/auth/callback".into(),
            },
            "anthropic" => OauthProvider {
                name: "anthropic".into(),
                client_id: "9d1c250a-e61b-44d9-88ed-5944d1962f5e".into(),
                authorize_url: "https://claude.ai/oauth/authorize".into(),
                token_url: "https://console.anthropic.com/v1/oauth/token".into(),
                device_url: String::new(),
                scope: "org:create_api_key user:profile user:inference".into(),
                exchange_url: None,
                redirect_port: 0,
                redirect_path: "/callback".into(),
            },
            "github-copilot" | "copilot" => OauthProvider {
                name: "github-copilot".into(),
                client_id: "Iv1.b507a08c87ecfe98".into(),
                authorize_url: String::new(),
                token_url: "https://github.com/login/oauth/access_token".into(),
                device_url: "https://github.com/login/device/code".into(),
                scope: "read:user".into(),
                exchange_url: Some("https://api.github.com/copilot_internal/v2/token".into()),
                redirect_port: 0,
                redirect_path: String::new(),
            },
            _ => return None,
        };
        if let Some(issuer) = issuer
            .map(|i| i.trim_end_matches('/'))
            .filter(|i| !i.is_empty())
        {
            let rebase = |u: &str| -> String {
                if u.is_empty() {
                    return String::new();
                }
                match url::Url::parse(u) {
                    Ok(parsed) => format!("{issuer}{}", parsed.path()),
                    Err(_) => u.to_owned(),
                }
            };
            p.authorize_url = rebase(&p.authorize_url);
            p.token_url = rebase(&p.token_url);
            p.device_url = rebase(&p.device_url);
            p.exchange_url = p.exchange_url.as_deref().map(rebase);
            p.redirect_port = 0;
        }
        Some(p)
    }
}

/// Why an OAuth login or renewal failed. Each variant says what the user can do; the message is
/// one line for the terminal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OauthError {
    /// The provider has no device login: use the browser login instead.
    #[error("{provider} has no device login; use the browser login (without --device)")]
    NoDeviceLogin { provider: String },
    /// The provider has no browser login: use the device login instead.
    #[error("{provider} has no browser login; use --device")]
    NoBrowserLogin { provider: String },
    /// This build has no browser login (built without picoclaw-auth's `browser-login` feature):
    /// use the device login.
    #[error(
        "this build of picoclaw has no browser login (built without the `browser-login` feature); use --device"
    )]
    BrowserLoginNotBuilt,
    /// The loopback port for the browser's redirect is taken or refused: use the device login.
    #[error("cannot listen on 127.0.0.1:{port} for the login redirect ({error}); use --device")]
    Listen { port: u16, error: std::io::Error },
    /// The user did not finish in time (the device code expired, no redirect arrived): start
    /// again.
    #[error("{0}; start again")]
    Expired(&'static str),
    /// The user refused the login in the browser.
    #[error("the login was refused{}", reason.as_deref().map(|r| format!(": {r}")).unwrap_or_else(|| " in the browser".to_owned()))]
    Refused { reason: Option<String> },
    /// The stored login cannot be renewed any more (revoked, expired, no refresh token): log in
    /// again.
    #[error(
        "the {provider} login has ended ({why}); run `picoclaw auth login --provider {provider}` \
         again"
    )]
    LoginEnded { provider: String, why: String },
    /// GitHub refused the token for Copilot: no subscription, or the token was revoked.
    #[error("GitHub refused the token (no Copilot subscription, or the token was revoked)")]
    CopilotRefused,
    /// The OAuth server could not be reached, answered with an error, or sent a response
    /// without what it must hold; `step` is what failed. Trying again later may help.
    #[error("{step}: {message}")]
    Server { step: String, message: String },
    /// The server answered with an HTTP error status. Trying again later may help.
    #[error("{url} answered HTTP {status}")]
    Http { url: String, status: u16 },
    /// A response without what it must hold (`the token response has no access_token`).
    #[error("{0}")]
    BadResponse(&'static str),
    /// The provider's endpoints are not usable as configured (a bad URL, no Copilot exchange
    /// endpoint).
    #[error("{0}")]
    NotConfigured(String),
    /// Something on this machine failed (no randomness, no HTTP client, the listener stopped).
    #[error("{0}")]
    Local(String),
}

impl OauthError {
    fn server(step: impl Into<String>, message: impl Into<String>) -> Self {
        OauthError::Server {
            step: step.into(),
            message: message.into(),
        }
    }

    /// Whether the user must log in again (rather than retry or fix the config).
    pub fn needs_login(&self) -> bool {
        matches!(
            self,
            OauthError::LoginEnded { .. } | OauthError::CopilotRefused
        )
    }
}

/// What the user must do to finish a device login.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DevicePrompt {
    pub verification_uri: String,
    /// The same with the code filled in, when the server offers it.
    pub verification_uri_complete: Option<String>,
    pub user_code: String,
    pub expires_in: Duration,
}

fn http() -> Result<reqwest::Client, String> {
    picoclaw_http::client_builder()
        .map_err(|e| e.to_string())?
        .timeout(Duration::from_secs(30))
        .user_agent(concat!("picoclaw/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Posts a form to a token endpoint and returns its JSON, or the OAuth error code and text.
async fn post_form(
    client: &reqwest::Client,
    url: &str,
    form: &[(&str, &str)],
) -> Result<Value, (String, String)> {
    let response = client
        .post(url)
        .header("Accept", "application/json")
        .form(form)
        .send()
        .await
        .map_err(|e| ("unreachable".to_owned(), format!("cannot reach {url}: {e}")))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if let Some(code) = body.get("error").and_then(Value::as_str) {
        let text = body
            .get("error_description")
            .and_then(Value::as_str)
            .unwrap_or(code)
            .to_owned();
        return Err((code.to_owned(), text));
    }
    if !status.is_success() {
        return Err(("http".to_owned(), format!("{url} answered HTTP {status}")));
    }
    Ok(body)
}

/// The tokens of a token response as a stored credential.
fn credential_of(body: &Value, provider: &OauthProvider) -> Result<OauthCredential, OauthError> {
    let access = body
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or(OauthError::BadResponse(
            "the token response has no access_token",
        ))?;
    let mut cred = OauthCredential::new(access, &provider.token_url, &provider.client_id);
    cred.refresh_token = body
        .get("refresh_token")
        .and_then(Value::as_str)
        .map(|t| Secret::new(t.to_owned()));
    cred.expires_at = body
        .get("expires_in")
        .and_then(Value::as_u64)
        .map(|s| now_secs() + s);
    let claims = body
        .get("id_token")
        .and_then(Value::as_str)
        .and_then(claims_of_id_token);
    if let Some(claims) = claims {
        cred.account = claims
            .get("email")
            .or_else(|| claims.get("sub"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        cred.account_id = claims
            .get("https://api.openai.com/auth")
            .and_then(|a| a.get("chatgpt_account_id"))
            .and_then(Value::as_str)
            .map(str::to_owned);
    }
    Ok(cred)
}

/// The claims of an OpenID id_token. The signature is not checked: they are only shown to the
/// user and echoed to the same provider.
fn claims_of_id_token(jwt: &str) -> Option<Value> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Device login, step one: asks for a user code. Show the returned prompt, then call
/// [`device_poll`].
pub async fn device_start(
    provider: &OauthProvider,
) -> Result<(DevicePrompt, String, Duration), OauthError> {
    if provider.device_url.is_empty() {
        return Err(OauthError::NoDeviceLogin {
            provider: provider.name.clone(),
        });
    }
    let client = http().map_err(OauthError::Local)?;
    let body = post_form(
        &client,
        &provider.device_url,
        &[
            ("client_id", &provider.client_id),
            ("scope", &provider.scope),
        ],
    )
    .await
    .map_err(|(_, text)| OauthError::server("the device login could not start", text))?;
    let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
    let device_code = text("device_code").ok_or(OauthError::BadResponse(
        "the device response has no device_code",
    ))?;
    let prompt = DevicePrompt {
        verification_uri: text("verification_uri")
            .or_else(|| text("verification_url"))
            .ok_or(OauthError::BadResponse(
                "the device response has no verification_uri",
            ))?,
        verification_uri_complete: text("verification_uri_complete"),
        user_code: text("user_code").ok_or(OauthError::BadResponse(
            "the device response has no user_code",
        ))?,
        expires_in: Duration::from_secs(
            body.get("expires_in")
                .and_then(Value::as_u64)
                .unwrap_or(900),
        ),
    };
    let interval = Duration::from_secs(
        body.get("interval")
            .and_then(Value::as_u64)
            .unwrap_or(5)
            .max(1),
    );
    Ok((prompt, device_code, interval))
}

/// Device login, step two: polls until the user approved (or refused, or the code expired).
/// `authorization_pending` keeps polling; `slow_down` adds five seconds to the interval.
/// `pace` scales the waits (1.0 in real use; tests shrink it).
pub async fn device_poll(
    provider: &OauthProvider,
    device_code: &str,
    mut interval: Duration,
    expires_in: Duration,
    pace: f64,
) -> Result<OauthCredential, OauthError> {
    const EXPIRED: &str = "the code expired before the login was approved";
    let client = http().map_err(OauthError::Local)?;
    let deadline = tokio::time::Instant::now() + expires_in.mul_f64(pace.max(0.0001));
    loop {
        tokio::time::sleep(interval.mul_f64(pace)).await;
        if tokio::time::Instant::now() > deadline {
            return Err(OauthError::Expired(EXPIRED));
        }
        match post_form(
            &client,
            &provider.token_url,
            &[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", device_code),
                ("client_id", &provider.client_id),
            ],
        )
        .await
        {
            Ok(body) => return credential_of(&body, provider),
            Err((code, _)) if code == "authorization_pending" => {}
            Err((code, _)) if code == "slow_down" => interval += Duration::from_secs(5),
            Err((code, _)) if code == "expired_token" => {
                return Err(OauthError::Expired(EXPIRED));
            }
            Err((code, _)) if code == "access_denied" => {
                return Err(OauthError::Refused { reason: None });
            }
            Err((_, text)) => return Err(OauthError::server("the login failed", text)),
        }
    }
}

/// A PKCE verifier and its S256 challenge.
#[cfg(feature = "browser-login")]
fn pkce() -> Result<(String, String), String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "no randomness available".to_owned())?;
    let verifier = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref());
    Ok((verifier, challenge))
}

#[cfg(feature = "browser-login")]
fn random_state() -> Result<String, String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "no randomness available".to_owned())?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Browser login: listens on a loopback port, hands `show_url` the authorization URL (to print
/// or open), waits for the redirect, checks its `state`, and exchanges the code with the PKCE
/// verifier. Gives up after `timeout`.
#[cfg(feature = "browser-login")]
pub async fn browser_login(
    provider: &OauthProvider,
    show_url: impl FnOnce(&str),
    timeout: Duration,
) -> Result<OauthCredential, OauthError> {
    use axum::extract::Query;
    use std::collections::HashMap;
    if provider.authorize_url.is_empty() {
        return Err(OauthError::NoBrowserLogin {
            provider: provider.name.clone(),
        });
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", provider.redirect_port))
        .await
        .map_err(|error| OauthError::Listen {
            port: provider.redirect_port,
            error,
        })?;
    let port = listener
        .local_addr()
        .map_err(|e| OauthError::Local(e.to_string()))?
        .port();
    let redirect = format!("http://localhost:{port}{}", provider.redirect_path);
    let (verifier, challenge) = pkce().map_err(OauthError::Local)?;
    let state = random_state().map_err(OauthError::Local)?;
    let mut url = url::Url::parse(&provider.authorize_url).map_err(|e| {
        OauthError::NotConfigured(format!(
            "the authorization URL {} is not a URL: {e}",
            provider.authorize_url
        ))
    })?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &provider.client_id)
        .append_pair("redirect_uri", &redirect)
        .append_pair("scope", &provider.scope)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", &state);
    let (tx, rx) = tokio::sync::mpsc::channel::<HashMap<String, String>>(1);
    let app = axum::Router::new().route(
        &provider.redirect_path,
        axum::routing::get(move |Query(q): Query<HashMap<String, String>>| {
            let tx = tx.clone();
            async move {
                let failed = q.contains_key("error");
                let _ = tx.send(q).await;
                if failed {
                    "The login did not complete. You can close this tab and look at the terminal."
                } else {
                    "Logged in to picoclaw. You can close this tab."
                }
            }
        }),
    );
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    show_url(url.as_str());
    let mut rx = rx;
    let result = async {
        loop {
            let query = tokio::time::timeout(timeout, rx.recv())
                .await
                .map_err(|_| OauthError::Expired("no login arrived in time"))?
                .ok_or_else(|| OauthError::Local("the login listener stopped".into()))?;
            if query.get("state") != Some(&state) {
                // A request that is not ours (or forged): ignore it and keep waiting.
                tracing::warn!("ignored a login redirect with the wrong state");
                continue;
            }
            if let Some(err) = query.get("error") {
                return Err(OauthError::Refused {
                    reason: Some(query.get("error_description").unwrap_or(err).clone()),
                });
            }
            let code = query
                .get("code")
                .ok_or(OauthError::BadResponse("the redirect carried no code"))?;
            let client = http().map_err(OauthError::Local)?;
            let body = post_form(
                &client,
                &provider.token_url,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", code),
                    ("redirect_uri", &redirect),
                    ("client_id", &provider.client_id),
                    ("code_verifier", &verifier),
                ],
            )
            .await
            .map_err(|(_, text)| OauthError::server("the code exchange failed", text))?;
            return credential_of(&body, provider);
        }
    }
    .await;
    server.abort();
    result
}

/// Without the `browser-login` feature: refuses, pointing at the device login.
#[cfg(not(feature = "browser-login"))]
pub async fn browser_login(
    _provider: &OauthProvider,
    _show_url: impl FnOnce(&str),
    _timeout: Duration,
) -> Result<OauthCredential, OauthError> {
    Err(OauthError::BrowserLoginNotBuilt)
}

/// Renews a credential: a refresh-token grant, or for Copilot a new exchange of the GitHub
/// token. An `invalid_grant` (revoked or expired refresh token) says to log in again.
pub async fn renew(
    cred: &OauthCredential,
    provider_name: &str,
) -> Result<OauthCredential, OauthError> {
    let client = http().map_err(OauthError::Local)?;
    let relogin = |why: &str| OauthError::LoginEnded {
        provider: provider_name.to_owned(),
        why: why.to_owned(),
    };
    let Some(refresh) = &cred.refresh_token else {
        return Err(relogin("it cannot be renewed"));
    };
    if cred.renewal == "copilot" {
        let mut fresh = copilot_exchange(&client, &cred.token_url, refresh.expose())
            .await
            .map_err(|e| relogin(&e.to_string()))?;
        fresh.refresh_token = Some(refresh.clone());
        fresh.account = cred.account.clone();
        fresh.client_id = cred.client_id.clone();
        return Ok(fresh);
    }
    let body = post_form(
        &client,
        &cred.token_url,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.expose()),
            ("client_id", &cred.client_id),
        ],
    )
    .await
    .map_err(|(code, text)| {
        if code == "invalid_grant" || code == "unauthorized_client" {
            relogin(&text)
        } else {
            OauthError::server(format!("renewing the {provider_name} login failed"), text)
        }
    })?;
    let provider = OauthProvider {
        name: provider_name.to_owned(),
        client_id: cred.client_id.clone(),
        authorize_url: String::new(),
        token_url: cred.token_url.clone(),
        device_url: String::new(),
        scope: String::new(),
        exchange_url: None,
        redirect_port: 0,
        redirect_path: String::new(),
    };
    let mut fresh = credential_of(&body, &provider)?;
    // Servers may keep the refresh token unchanged (and not send it again).
    if fresh.refresh_token.is_none() {
        fresh.refresh_token = cred.refresh_token.clone();
    }
    if fresh.account.is_none() {
        fresh.account = cred.account.clone();
    }
    if fresh.account_id.is_none() {
        fresh.account_id = cred.account_id.clone();
    }
    Ok(fresh)
}

/// GitHub Copilot: exchanges a GitHub OAuth token for a short-lived Copilot token
/// (`{"token": ..., "expires_at": unix seconds}`). The returned credential renews by exchanging
/// again (`renewal = "copilot"`, the GitHub token kept as the refresh token).
pub async fn copilot_exchange(
    client: &reqwest::Client,
    exchange_url: &str,
    github_token: &str,
) -> Result<OauthCredential, OauthError> {
    let response = client
        .get(exchange_url)
        .header("Authorization", format!("token {github_token}"))
        .header("Accept", "application/json")
        .send()
        .await
        .map_err(|e| OauthError::server(format!("cannot reach {exchange_url}"), e.to_string()))?;
    let status = response.status();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(OauthError::CopilotRefused);
    }
    if !status.is_success() {
        return Err(OauthError::Http {
            url: exchange_url.to_owned(),
            status: status.as_u16(),
        });
    }
    let body: Value = response.json().await.map_err(|e| {
        OauthError::server(
            format!("the Copilot token response from {exchange_url}"),
            e.to_string(),
        )
    })?;
    let token = body
        .get("token")
        .and_then(Value::as_str)
        .ok_or(OauthError::BadResponse(
            "the Copilot token response has no token",
        ))?;
    let mut cred = OauthCredential::new(token, exchange_url, "");
    cred.expires_at = body.get("expires_at").and_then(Value::as_u64);
    cred.refresh_token = Some(Secret::new(github_token.to_owned()));
    cred.renewal = "copilot".into();
    Ok(cred)
}

/// Finishes a GitHub device login for Copilot: the GitHub token is exchanged once now (which
/// also checks the subscription).
pub async fn copilot_from_github(
    provider: &OauthProvider,
    github: OauthCredential,
) -> Result<OauthCredential, OauthError> {
    let exchange = provider
        .exchange_url
        .as_deref()
        .ok_or_else(|| OauthError::NotConfigured("no Copilot token endpoint configured".into()))?;
    let client = http().map_err(OauthError::Local)?;
    let mut cred = copilot_exchange(&client, exchange, github.access_token.expose()).await?;
    cred.account = github.account;
    Ok(cred)
}

/// A stored login as a [`TokenSource`]: the access token while it is good for more than the
/// margin, else a renewal, saved back to the store. Concurrent callers share one renewal.
pub struct LoginTokens {
    store: AuthStore,
    provider: String,
    margin: Duration,
    lock: tokio::sync::Mutex<Option<OauthCredential>>,
}

impl std::fmt::Debug for LoginTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginTokens")
            .field("provider", &self.provider)
            .field("store", &self.store.path())
            .finish_non_exhaustive()
    }
}

impl LoginTokens {
    pub fn new(store: AuthStore, provider: impl Into<String>) -> Arc<Self> {
        Arc::new(Self {
            store,
            provider: provider.into(),
            margin: Duration::from_secs(60),
            lock: tokio::sync::Mutex::new(None),
        })
    }

    fn fresh(cred: &OauthCredential, margin: Duration) -> bool {
        match cred.expires_at {
            None => true,
            Some(at) => at > now_secs() + margin.as_secs(),
        }
    }

    fn token_of(cred: &OauthCredential) -> AccessToken {
        AccessToken::new(
            cred.access_token.expose().clone(),
            cred.expires_at.map(|s| UNIX_EPOCH + Duration::from_secs(s)),
        )
    }
}

#[async_trait]
impl TokenSource for LoginTokens {
    fn describe(&self) -> String {
        format!(
            "the {} login in {}",
            self.provider,
            self.store.path().display()
        )
    }

    async fn token(&self) -> Result<AccessToken, AuthError> {
        // One caller at a time past this point: the others wait and then find it fresh.
        let mut held = self.lock.lock().await;
        if let Some(cred) = held.as_ref()
            && Self::fresh(cred, self.margin)
        {
            return Ok(Self::token_of(cred));
        }
        let stored = self
            .store
            .get(&self.provider)
            .map_err(|e| AuthError::Config(e.to_string()))?;
        let cred = match stored {
            Some(Credential::Oauth(c)) => c,
            Some(Credential::ApiKey { key }) => {
                return Ok(AccessToken::new(key.expose().clone(), None));
            }
            None => {
                return Err(AuthError::Config(format!(
                    "not logged in to {}; run `picoclaw auth login --provider {}`",
                    self.provider, self.provider
                )));
            }
        };
        if Self::fresh(&cred, self.margin) {
            let token = Self::token_of(&cred);
            *held = Some(cred);
            return Ok(token);
        }
        tracing::info!(provider = %self.provider, "renewing the login token");
        let fresh = renew(&cred, &self.provider)
            .await
            .map_err(|e| AuthError::Config(e.to_string()))?;
        self.store
            .put(&self.provider, Credential::Oauth(fresh.clone()))
            .map_err(|e| AuthError::Config(e.to_string()))?;
        let token = Self::token_of(&fresh);
        *held = Some(fresh);
        Ok(token)
    }
}
