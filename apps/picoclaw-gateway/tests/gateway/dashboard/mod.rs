//! The web dashboard over HTTP (the browser tests are in `browser.rs`): a logged-in client that
//! reads pages and posts forms with the session's CSRF token, as the pages do.

use super::{Gateway, KEY};
use reqwest::redirect::Policy;
use std::time::Duration;

/// A browser's session on the dashboard: its cookie and CSRF token.
pub(crate) struct Dash {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
    pub(crate) cookie: String,
    pub(crate) csrf: String,
}

/// A client that does not follow redirects (the tests look at them).
pub(crate) fn plain_client() -> reqwest::Client {
    picoclaw_http::client_builder()
        .unwrap()
        .timeout(Duration::from_secs(30))
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// The `content` of `<meta name="csrf-token">` in a page.
pub(crate) fn csrf_of(page: &str) -> Option<String> {
    let at = page.find("name=\"csrf-token\" content=\"")?;
    let rest = &page[at + "name=\"csrf-token\" content=\"".len()..];
    Some(rest[..rest.find('"')?].to_owned())
}

impl Dash {
    /// Logs in with the gateway's key.
    pub(crate) async fn login(gw: &Gateway) -> Dash {
        let http = plain_client();
        let resp = http
            .post(format!("{}/ui/login", gw.base))
            .form(&[("key", KEY), ("next", "/ui/chat")])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 303, "login refused");
        let cookie = resp
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .expect("a session cookie")
            .to_owned();
        let mut dash = Dash {
            http,
            base: gw.base.clone(),
            cookie,
            csrf: String::new(),
        };
        let (status, page) = dash.get("/ui/chat").await;
        assert_eq!(status, 200, "{page}");
        dash.csrf = csrf_of(&page).expect("a CSRF token in the page");
        dash
    }

    /// A page: status and body.
    pub(crate) async fn get(&self, path: &str) -> (u16, String) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    /// Posts a form with the CSRF token: status and where it redirects to.
    pub(crate) async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> (u16, String) {
        let mut fields: Vec<(&str, &str)> = fields.to_vec();
        fields.push(("csrf", &self.csrf));
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .form(&fields)
            .send()
            .await
            .unwrap();
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let status = resp.status().as_u16();
        if location.is_empty() {
            return (status, resp.text().await.unwrap_or_default());
        }
        (status, location)
    }

    /// Posts JSON with the CSRF header (as the pages' script does): status and body.
    #[allow(dead_code)] // for the pages' tests
    pub(crate) async fn post_json(&self, path: &str, body: &serde_json::Value) -> (u16, String) {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("x-csrf-token", &self.csrf)
            .json(body)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }
}

mod auth;
mod chat;
mod ops;
mod settings;
mod usage;
