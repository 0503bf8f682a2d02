//! Logging in to the dashboard: the gateway's key once, then a session cookie.
//!
//! A session is 32 random bytes (hex) in the `picoclaw_session` cookie (`HttpOnly`,
//! `SameSite=Strict`, `Path=/ui`, and `Secure` when the request came through HTTPS), kept in
//! memory with its CSRF token and a copy of the key it was opened with: it ends after
//! [`SESSION_LIFETIME`], at logout, at a restart, and as soon as the gateway's key is another.
//! At most [`MAX_SESSIONS`] live at once (the oldest is dropped). Wrong keys are limited per
//! client address ([`MAX_FAILURES_PER_ADDRESS`]) and in all ([`MAX_FAILURES`]) per
//! [`FAILURE_WINDOW`]; past either, every login is refused until the window has passed (the
//! bearer key on the API and open sessions are not affected).

use super::{Ctx, Page, Web, bare_page, changes_state, cross_site, to_login};
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use picoclaw_api::Secret;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The session cookie's name.
pub const COOKIE: &str = "picoclaw_session";
/// How long a session lasts after login.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);
/// Most sessions at once.
pub const MAX_SESSIONS: usize = 32;
/// Wrong keys one client address may send per window.
pub const MAX_FAILURES_PER_ADDRESS: u32 = 5;
/// Wrong keys from everyone together per window.
pub const MAX_FAILURES: u32 = 30;
/// Largest login form (a key and a path): nobody without a session sends more.
pub const MAX_LOGIN_BODY_BYTES: usize = 4 * 1024;
/// The window of the login limits.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(10 * 60);

#[derive(Debug)]
struct Session {
    token: Secret<String>,
    csrf: String,
    /// The key this session was opened with.
    key: Secret<String>,
    expires: Instant,
    /// Shown on the next page.
    notice: Option<super::Notice>,
}

#[derive(Debug, Default)]
struct Failures {
    window_start: Option<Instant>,
    total: u32,
    by_address: HashMap<IpAddr, u32>,
}

/// The logged-in browsers, and the count of wrong keys.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    live: Mutex<Vec<Session>>,
    failures: Mutex<Failures>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn random_hex() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn same(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl Sessions {
    /// Opens a session for a browser that sent `key`; `(token, csrf)`.
    fn open(&self, key: &str) -> Result<(String, String), getrandom::Error> {
        let token = random_hex()?;
        let csrf = random_hex()?;
        let mut live = lock(&self.live);
        let now = Instant::now();
        live.retain(|s| s.expires > now);
        if live.len() >= MAX_SESSIONS {
            // The oldest first: sessions are pushed in the order they were opened.
            live.remove(0);
        }
        live.push(Session {
            token: Secret::new(token.clone()),
            csrf: csrf.clone(),
            key: Secret::new(key.to_owned()),
            expires: now + SESSION_LIFETIME,
            notice: None,
        });
        Ok((token, csrf))
    }

    /// The CSRF token of the live session `token`, if it is one opened with a key `access`
    /// still accepts, and its notice when `take_notice`. Every live session is compared, in
    /// constant time.
    fn find(
        &self,
        token: &str,
        access: &crate::access::Access,
        take_notice: bool,
    ) -> Option<(String, Option<super::Notice>)> {
        let mut live = lock(&self.live);
        let now = Instant::now();
        live.retain(|s| s.expires > now && access.key_matches(s.key.expose()));
        let mut found = None;
        for s in live.iter_mut() {
            if same(s.token.expose(), token) {
                let notice = if take_notice { s.notice.take() } else { None };
                found = Some((s.csrf.clone(), notice));
            }
        }
        found
    }

    /// Leaves `notice` for the next page of session `token`.
    pub(crate) fn leave_notice(&self, token: &str, notice: super::Notice) {
        for s in lock(&self.live).iter_mut() {
            if same(s.token.expose(), token) {
                s.notice = Some(notice.clone());
            }
        }
    }

    /// Ends the session `token`.
    fn close(&self, token: &str) {
        lock(&self.live).retain(|s| !same(s.token.expose(), token));
    }

    /// How many sessions are open.
    #[cfg(test)]
    fn open_count(&self) -> usize {
        let now = Instant::now();
        lock(&self.live).iter().filter(|s| s.expires > now).count()
    }

    /// Whether `address` may try a key now.
    fn may_try(&self, address: IpAddr) -> bool {
        let mut f = lock(&self.failures);
        if f.window_start
            .is_some_and(|t| t.elapsed() >= FAILURE_WINDOW)
        {
            *f = Failures::default();
        }
        f.total < MAX_FAILURES
            && f.by_address.get(&address).copied().unwrap_or(0) < MAX_FAILURES_PER_ADDRESS
    }

    fn failed(&self, address: IpAddr) {
        let mut f = lock(&self.failures);
        if f.window_start.is_none() {
            f.window_start = Some(Instant::now());
        }
        f.total = f.total.saturating_add(1);
        // The map is bounded by MAX_FAILURES entries: `may_try` refuses before it grows more.
        *f.by_address.entry(address).or_insert(0) += 1;
    }
}

/// The session cookie's value in `headers`, if any.
fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_owned())
}

/// Whether the browser reached the gateway through HTTPS (a TLS proxy in front says so).
fn over_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

fn set_cookie(value: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/ui; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("picoclaw_session=; Path=/ui; Max-Age=0"))
}

/// Where to go after login: a dashboard path, nothing else (no open redirect).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with("/ui/")
                && !n.starts_with("/ui/login")
                && !n.contains("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control) =>
        {
            n.to_owned()
        }
        _ => Page::Chat.path().to_owned(),
    }
}

#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct LoginQuery {
    #[serde(default)]
    next: Option<String>,
    /// Set after logout.
    #[serde(default)]
    out: Option<String>,
}

fn login_form(next: &str, error: Option<&str>, out: bool) -> maud::Markup {
    bare_page(
        "Log in",
        html! {
            div.login {
                h1 { "picoclaw" }
                p { "Log in with the gateway's key: " code { "gateway.api_key" } ", or the key in "
                    code { "gateway.key" } " in picoclaw's home (" code { "picoclaw status" } " says where)." }
                @if out {
                    p.notice.ok role="status" { "Logged out." }
                }
                @if let Some(error) = error {
                    p.notice.error role="alert" { (error) }
                }
                form method="post" action="/ui/login" {
                    input type="hidden" name="next" value=(next);
                    label for="key" { "Gateway key" }
                    input #key type="password" name="key" autocomplete="current-password" required autofocus;
                    button type="submit" { "Log in" }
                }
            }
        },
    )
}

/// `GET /ui/login`.
pub(crate) async fn login_page(Query(q): Query<LoginQuery>) -> Response {
    let next = safe_next(q.next.as_deref());
    super::html_response(login_form(&next, None, q.out.is_some()))
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    key: String,
    #[serde(default)]
    next: Option<String>,
}

/// `POST /ui/login`: the key in a form; a session cookie and the page it was going to, or the
/// form again with why not.
pub(crate) async fn login(
    State(web): State<Web>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<LoginForm>,
) -> Response {
    if cross_site(&headers) {
        return (StatusCode::FORBIDDEN, "cross-site login refused").into_response();
    }
    let next = safe_next(form.next.as_deref());
    let sessions = &web.dash.sessions;
    let refuse = |status: StatusCode, why: &str| {
        let mut r = super::html_response(login_form(&next, Some(why), false));
        *r.status_mut() = status;
        r
    };
    if !sessions.may_try(peer.ip()) {
        tracing::warn!(
            target: "audit",
            kind = "dashboard_login",
            outcome = "rate_limited",
            address = %peer.ip(),
            "dashboard login refused: too many wrong keys"
        );
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many wrong keys: logging in is paused for a few minutes.",
        );
    }
    if form.key.trim().is_empty() || !web.api.access.key_matches(&form.key) {
        sessions.failed(peer.ip());
        tracing::warn!(
            target: "audit",
            kind = "dashboard_login",
            outcome = "wrong_key",
            address = %peer.ip(),
            "dashboard login refused: wrong key"
        );
        return refuse(StatusCode::UNAUTHORIZED, "That is not the gateway's key.");
    }
    let (token, _csrf) = match sessions.open(form.key.trim()) {
        Ok(t) => t,
        Err(e) => {
            return refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("cannot make a session: {e}"),
            );
        }
    };
    tracing::info!(
        target: "audit",
        kind = "dashboard_login",
        outcome = "ok",
        address = %peer.ip(),
        "dashboard login"
    );
    let mut response = Redirect::to(&next).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(&token, SESSION_LIFETIME.as_secs(), over_https(&headers)),
    );
    response
}

/// `POST /ui/logout` (behind [`require_session`], so with the CSRF token).
pub(crate) async fn logout(State(web): State<Web>, headers: HeaderMap) -> Response {
    if let Some(token) = cookie(&headers) {
        web.dash.sessions.close(&token);
    }
    let mut response = Redirect::to("/ui/login?out=1").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, set_cookie("", 0, over_https(&headers)));
    response
}

/// The CSRF token a request carries: the `X-CSRF-Token` header, or the `csrf` field of a form.
/// The form's body is read (up to the route's limit) and put back for the handler.
async fn csrf_of(request: Request) -> Result<(Option<String>, Request), Response> {
    if let Some(t) = request
        .headers()
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
    {
        return Ok((Some(t.to_owned()), request));
    }
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Ok((None, request));
    }
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, super::MAX_WEB_BODY_BYTES)
        .await
        .map_err(|_| super::json_error(StatusCode::PAYLOAD_TOO_LARGE, "the form is too large"))?;
    let token = form_urlencoded_field(&bytes, "csrf");
    Ok((
        token,
        Request::from_parts(parts, axum::body::Body::from(bytes)),
    ))
}

/// One field of an `application/x-www-form-urlencoded` body.
fn form_urlencoded_field(body: &[u8], name: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Only {
        csrf: Option<String>,
    }
    debug_assert_eq!(name, "csrf");
    serde_urlencoded::from_bytes::<Only>(body)
        .ok()
        .and_then(|o| o.csrf)
}

/// Every page but the login page: a live session, else the login page (GET) or 401; for a
/// request that changes something, the session's CSRF token and no cross-site fetch.
pub(crate) async fn require_session(
    State(web): State<Web>,
    request: Request,
    next: Next,
) -> Response {
    let token = cookie(request.headers());
    // A page (GET) shows the notice the last form left; a script's request leaves it there.
    let is_page = request.method() == axum::http::Method::GET
        && !request.uri().path().starts_with("/ui/api/");
    let found = token
        .as_deref()
        .and_then(|t| web.dash.sessions.find(t, &web.api.access, is_page));
    let (Some(token), Some((csrf, notice))) = (token, found) else {
        return to_login(&request);
    };
    let mut request = request;
    if changes_state(request.method()) {
        if cross_site(request.headers()) {
            return super::json_error(StatusCode::FORBIDDEN, "cross-site request refused");
        }
        let (given, rebuilt) = match csrf_of(request).await {
            Ok(r) => r,
            Err(response) => return response,
        };
        if !given.is_some_and(|g| same(&g, &csrf)) {
            tracing::warn!(
                target: "audit",
                kind = "dashboard_csrf",
                outcome = "refused",
                path = rebuilt.uri().path(),
                "dashboard request without its CSRF token refused"
            );
            return super::json_error(
                StatusCode::FORBIDDEN,
                "missing or wrong CSRF token: reload the page and try again",
            );
        }
        request = rebuilt;
    }
    request.extensions_mut().insert(Ctx {
        csrf,
        session: Secret::new(token),
        notice,
    });
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_the_dashboard() {
        assert_eq!(safe_next(Some("/ui/jobs?x=1")), "/ui/jobs?x=1");
        for bad in [
            None,
            Some("https://evil.example/"),
            Some("//evil.example/ui/"),
            Some("/ui//evil.example"),
            Some("/ui/\\evil"),
            Some("/v1/models"),
            Some("/ui/login?next=/ui/chat"),
        ] {
            assert_eq!(safe_next(bad), "/ui/chat", "{bad:?}");
        }
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; picoclaw_session=abc ; b=2"),
        );
        assert_eq!(cookie(&h).as_deref(), Some("abc"));
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("picoclaw_sessionx=1"),
        );
        assert_eq!(cookie(&h), None);
    }

    #[test]
    fn the_csrf_field_is_read_from_a_form() {
        assert_eq!(
            form_urlencoded_field(b"a=1&csrf=x%2By&b=2", "csrf").as_deref(),
            Some("x+y")
        );
        assert_eq!(form_urlencoded_field(b"a=1", "csrf"), None);
    }

    #[test]
    fn wrong_keys_are_limited_per_address_and_in_all() {
        let s = Sessions::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..MAX_FAILURES_PER_ADDRESS {
            assert!(s.may_try(a));
            s.failed(a);
        }
        assert!(!s.may_try(a));
        let mut n = 0;
        for i in 0..=255u8 {
            let b = IpAddr::from([10, 0, 1, i]);
            if !s.may_try(b) {
                break;
            }
            s.failed(b);
            n += 1;
        }
        assert_eq!(n + MAX_FAILURES_PER_ADDRESS, MAX_FAILURES);
    }

    #[test]
    fn sessions_are_capped_and_end_with_their_key() {
        let key = Secret::new("k".repeat(32));
        let settings = picoclaw_config::GatewayConfig::default();
        let access = crate::access::Access::new(key, &settings, "127.0.0.1:1".parse().unwrap());
        let s = Sessions::default();
        let (first, csrf) = s.open(&"k".repeat(32)).unwrap();
        assert_eq!(s.find(&first, &access, true).map(|f| f.0), Some(csrf));
        s.leave_notice(&first, super::super::Notice::Ok("done".into()));
        assert!(s.find(&first, &access, false).unwrap().1.is_none(), "kept");
        assert!(s.find(&first, &access, true).unwrap().1.is_some(), "taken");
        assert!(s.find(&first, &access, true).unwrap().1.is_none(), "once");
        for _ in 0..MAX_SESSIONS {
            s.open(&"k".repeat(32)).unwrap();
        }
        assert_eq!(s.open_count(), MAX_SESSIONS);
        assert!(
            s.find(&first, &access, true).is_none(),
            "the oldest was dropped"
        );
        let (other, _) = s.open(&"o".repeat(32)).unwrap();
        assert!(
            s.find(&other, &access, true).is_none(),
            "opened with another key"
        );
        let (last, _) = s.open(&"k".repeat(32)).unwrap();
        s.close(&last);
        assert!(s.find(&last, &access, true).is_none());
    }
}
