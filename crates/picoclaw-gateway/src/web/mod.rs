//! The web dashboard (feature `web`): server-rendered pages (maud) under `/ui/`, one small
//! script of our own (`assets/app.js`, no framework, no CDN) and one stylesheet, all embedded in
//! the binary. See docs/dashboard.md.
//!
//! Access: the gateway's key, typed once on `/ui/login`, opens a session ([`auth`]): a random
//! token in an `HttpOnly; SameSite=Strict` cookie, kept in memory, that expires after
//! [`auth::SESSION_LIFETIME`], ends at logout, and ends when the gateway's key is no longer the
//! one it was opened with. Every request that changes something (any method but GET and HEAD)
//! carries the session's CSRF token (a form field `csrf`, or the `X-CSRF-Token` header) and is
//! refused when the browser says it came from another site (`Sec-Fetch-Site`); the gateway's
//! [`crate::http::guard`] has already refused a foreign `Origin` and a foreign `Host`. Pages
//! are sent with a strict Content-Security-Policy: scripts and styles only from the gateway,
//! no inline script, no framing.
//!
//! Model output never reaches the page as HTML: maud escapes everything it renders, and the
//! script builds the chat's Markdown with `textContent` and `createElement` only.

pub mod auth;
mod channels;
mod chat;
mod conversations;
mod extensions;
mod jobs;
pub mod logs;
mod memory;
mod settings;
mod usage;

pub use logs::LogRing;

use crate::http::ApiState;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, html};
use picoclaw_config::{Config, Paths};
use std::sync::Arc;

/// Largest request body a dashboard route takes (a chat message with an attached file).
pub const MAX_WEB_BODY_BYTES: usize = 12 * 1024 * 1024;

/// The Content-Security-Policy of every dashboard response.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data: blob:; connect-src 'self'; form-action 'self'; \
    frame-ancestors 'none'; base-uri 'none'";

/// What the dashboard needs beyond the API's state: the config it was started with, where it
/// lives, the sessions of logged-in browsers, and the recent log lines.
#[derive(Debug)]
pub struct Dashboard {
    /// The config the gateway runs with (the Settings page shows it; edits go to the file and
    /// apply at the next start).
    pub(crate) config: Arc<Config>,
    pub(crate) paths: Paths,
    pub(crate) sessions: auth::Sessions,
    /// The gateway's recent log lines, when the application captures them.
    pub(crate) logs: Option<Arc<LogRing>>,
}

impl Dashboard {
    pub fn new(config: Arc<Config>, paths: Paths, logs: Option<Arc<LogRing>>) -> Self {
        Self {
            config,
            paths,
            sessions: auth::Sessions::default(),
            logs,
        }
    }
}

/// What every dashboard handler gets: the API's state and the dashboard's.
#[derive(Clone, Debug)]
pub(crate) struct Web {
    pub(crate) api: Arc<ApiState>,
    pub(crate) dash: Arc<Dashboard>,
}

/// The logged-in browser a request comes from (put in the request's extensions by
/// `auth::require_session`).
#[derive(Clone, Debug)]
pub(crate) struct Ctx {
    /// The session's CSRF token, for the forms and scripts of the page.
    pub(crate) csrf: String,
    /// The session's cookie value (to leave a notice for the next page).
    session: picoclaw_api::Secret<String>,
    /// What the previous request (a form) left to say, shown by [`layout`] above the page.
    pub(crate) notice: Option<Notice>,
}

/// The pages, in the order of the navigation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Page {
    Chat,
    Conversations,
    Usage,
    Jobs,
    Channels,
    Extensions,
    Memory,
    Settings,
    Logs,
}

impl Page {
    pub(crate) const ALL: [Page; 9] = [
        Page::Chat,
        Page::Conversations,
        Page::Usage,
        Page::Jobs,
        Page::Channels,
        Page::Extensions,
        Page::Memory,
        Page::Settings,
        Page::Logs,
    ];

    pub(crate) fn path(self) -> &'static str {
        match self {
            Page::Chat => "/ui/chat",
            Page::Conversations => "/ui/conversations",
            Page::Usage => "/ui/usage",
            Page::Jobs => "/ui/jobs",
            Page::Channels => "/ui/channels",
            Page::Extensions => "/ui/extensions",
            Page::Memory => "/ui/memory",
            Page::Settings => "/ui/settings",
            Page::Logs => "/ui/logs",
        }
    }

    pub(crate) fn title(self) -> &'static str {
        match self {
            Page::Chat => "Chat",
            Page::Conversations => "Conversations",
            Page::Usage => "Usage",
            Page::Jobs => "Scheduled jobs",
            Page::Channels => "Channels",
            Page::Extensions => "Skills & agents",
            Page::Memory => "Memory",
            Page::Settings => "Settings",
            Page::Logs => "Logs",
        }
    }
}

/// The dashboard's routes (under `/ui/`, and `/` sending the browser there), with the session
/// check, the CSRF check and the security headers. The gateway's [`crate::http::guard`] runs
/// first.
pub fn router(api: Arc<ApiState>, dash: Arc<Dashboard>) -> Router {
    let web = Web { api, dash };
    let pages = Router::new()
        .merge(chat::routes())
        .merge(conversations::routes())
        .merge(usage::routes())
        .merge(jobs::routes())
        .merge(channels::routes())
        .merge(extensions::routes())
        .merge(memory::routes())
        .merge(settings::routes())
        .merge(logs::routes())
        .route("/ui/logout", axum::routing::post(auth::logout))
        .route("/ui", get(|| async { Redirect::to(Page::Chat.path()) }))
        .route("/ui/", get(|| async { Redirect::to(Page::Chat.path()) }))
        .layer(axum::middleware::from_fn_with_state(
            web.clone(),
            auth::require_session,
        ));
    Router::new()
        .route("/", get(|| async { Redirect::to(Page::Chat.path()) }))
        // Before a session, bodies are small: a key and where to go.
        .route(
            "/ui/login",
            get(auth::login_page)
                .post(auth::login)
                .layer(DefaultBodyLimit::max(auth::MAX_LOGIN_BODY_BYTES)),
        )
        .route("/ui/assets/{name}", get(asset))
        .merge(pages)
        .fallback_service(Router::new().fallback(not_found))
        .layer(DefaultBodyLimit::max(MAX_WEB_BODY_BYTES))
        .layer(axum::middleware::from_fn(headers))
        .with_state(web)
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "no such page").into_response()
}

/// The security headers of every dashboard response; pages are never cached.
async fn headers(request: Request, next: Next) -> Response {
    let is_asset = request.uri().path().starts_with("/ui/assets/");
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // `same-origin`, not `no-referrer`: under `no-referrer` Chromium sends `Origin: null` with
    // the pages' own form posts, which the gateway refuses as foreign.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    if !is_asset {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The embedded assets: name, content type, bytes. A page's own script is added here and
/// loaded by the page (`script src=(asset_url("page.js")) defer {}`).
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("assets/app.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    ),
    ("icon.svg", "image/svg+xml", include_str!("assets/icon.svg")),
    (
        "chat.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/chat.js"),
    ),
    (
        "logs.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/logs.js"),
    ),
];

async fn asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                // The URLs carry the version (asset_url): a new binary's assets are fetched
                // again; an hour keeps a phone from asking on every page.
                (header::CACHE_CONTROL, "private, max-age=3600"),
            ],
            *body,
        )
            .into_response(),
        None => not_found().await,
    }
}

/// The asset URLs carry the version, so a new binary's assets are fetched again.
pub(crate) fn asset_url(name: &str) -> String {
    format!("/ui/assets/{name}?v={}", env!("CARGO_PKG_VERSION"))
}

/// A page's head: CSP-clean (no inline script or style); with a session's CSRF token, the
/// token for the scripts and the common script.
fn head(title: &str, csrf: Option<&str>) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="color-scheme" content="light dark";
            @if let Some(csrf) = csrf {
                meta name="csrf-token" content=(csrf);
            }
            title { (title) " · picoclaw" }
            link rel="icon" href=(asset_url("icon.svg"));
            link rel="stylesheet" href=(asset_url("app.css"));
            @if csrf.is_some() {
                script src=(asset_url("app.js")) defer {}
            }
        }
    }
}

/// The page around `body`: the head (CSP-clean: no inline script or style), the navigation with
/// `current` marked, the logout button.
pub(crate) fn layout(ctx: &Ctx, current: Page, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(current.title(), Some(&ctx.csrf)))
            body data-page=(current.path()) {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/ui/chat" { "picoclaw" }
                    nav aria-label="Pages" {
                        ul {
                            @for page in Page::ALL {
                                li {
                                    @if page == current {
                                        a href=(page.path()) aria-current="page" { (page.title()) }
                                    } @else {
                                        a href=(page.path()) { (page.title()) }
                                    }
                                }
                            }
                        }
                    }
                    form.logout method="post" action="/ui/logout" {
                        (csrf_field(ctx))
                        button type="submit" { "Log out" }
                    }
                }
                main #main tabindex="-1" {
                    @if let Some(notice) = &ctx.notice {
                        (notice.render())
                    }
                    (body)
                }
            }
        }
    };
    html_response(markup)
}

/// A page without the navigation (the login page).
pub(crate) fn bare_page(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, None))
            body.bare {
                main #main { (body) }
            }
        }
    }
}

pub(crate) fn html_response(markup: Markup) -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

/// The hidden form field that carries the CSRF token.
pub(crate) fn csrf_field(ctx: &Ctx) -> Markup {
    html! { input type="hidden" name="csrf" value=(ctx.csrf); }
}

/// A notice above a page's content: what the last action did, or why it was refused. Kept in
/// the session (never in the URL, where a link could put any text on the page) and shown once.
#[derive(Clone, Debug)]
pub(crate) enum Notice {
    Ok(String),
    Error(String),
}

impl Notice {
    pub(crate) fn render(&self) -> Markup {
        html! {
            @match self {
                Notice::Ok(text) => p.notice.ok role="status" { (text) },
                Notice::Error(text) => p.notice.error role="alert" { (text) },
            }
        }
    }
}

/// After a form: back to `path` with a notice shown once there (post/redirect/get, so a reload
/// sends nothing again).
pub(crate) fn back_to(
    web: &Web,
    ctx: &Ctx,
    path: &str,
    result: Result<String, String>,
) -> Response {
    let notice = match result {
        Ok(t) => Notice::Ok(t.chars().take(500).collect()),
        Err(t) => Notice::Error(t.chars().take(1000).collect()),
    };
    web.dash.sessions.leave_notice(ctx.session.expose(), notice);
    Redirect::to(path).into_response()
}

/// Percent-encodes a query value (everything but unreserved characters).
pub(crate) fn encode_query(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A time in milliseconds since the epoch as `YYYY-MM-DD HH:MM UTC`.
pub(crate) fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| "-".to_owned())
}

/// An error shown in place of a page's content.
pub(crate) fn failure(
    ctx: &Ctx,
    page: Page,
    what: &str,
    error: impl std::fmt::Display,
) -> Response {
    let body = html! {
        h1 { (page.title()) }
        p.notice.error role="alert" { (what) ": " (error.to_string()) }
    };
    let mut response = layout(ctx, page, body);
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}

/// A JSON error for the scripts' requests.
pub(crate) fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(serde_json::json!({"error": message.into()})),
    )
        .into_response()
}

/// Whether a request changes something (needs the CSRF token).
fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// `Sec-Fetch-Site` of another site: browsers send it with every request, and no page of
/// ours sends cross-site requests.
fn cross_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.eq_ignore_ascii_case("cross-site") || v.eq_ignore_ascii_case("same-site")
        })
}

/// Redirects a GET without a session to the login page (with where it was going), and refuses
/// any other request.
fn to_login(request: &Request) -> Response {
    if request.method() == Method::GET {
        let next = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/ui/chat");
        return Redirect::to(&format!("/ui/login?next={}", encode_query(next))).into_response();
    }
    json_error(
        StatusCode::UNAUTHORIZED,
        "not logged in (or the session expired): log in again at /ui/login",
    )
}
