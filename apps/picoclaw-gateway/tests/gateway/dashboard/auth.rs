//! Logging in and out, the session cookie, CSRF and the security headers.

use super::super::{Gateway, KEY, home_with};
use super::{Dash, plain_client};
use picoclaw_testkit::ScriptedEndpoint;
use serde_json::json;

#[tokio::test]
async fn the_dashboard_needs_the_key_once_then_its_cookie() {
    let endpoint = ScriptedEndpoint::start().await;
    let home = home_with(&endpoint, json!({"port": 0, "api_key": KEY}));
    let gw = Gateway::start(home.path());
    let http = plain_client();

    // Without a session, pages send the browser to the login page, other requests are refused.
    let resp = http
        .get(format!("{}/ui/jobs", gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(
        resp.headers()["location"].to_str().unwrap(),
        "/ui/login?next=%2Fui%2Fjobs"
    );
    let resp = http.get(format!("{}/", gw.base)).send().await.unwrap();
    assert_eq!(resp.headers()["location"].to_str().unwrap(), "/ui/chat");

    // A wrong key is refused and sets no cookie.
    let resp = http
        .post(format!("{}/ui/login", gw.base))
        .form(&[("key", "not-the-key"), ("next", "/ui/jobs")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert!(resp.headers().get("set-cookie").is_none());
    assert!(resp.text().await.unwrap().contains("not the gateway"));
    // Without a session, nobody may send more than a login form.
    let resp = http
        .post(format!("{}/ui/login", gw.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("key={}", "k".repeat(64 * 1024)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);

    // The right key: a cookie the script cannot read and other sites do not send.
    let resp = http
        .post(format!("{}/ui/login", gw.base))
        .form(&[("key", KEY), ("next", "https://evil.example/")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(resp.headers()["location"].to_str().unwrap(), "/ui/chat");
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=43200"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }

    let dash = Dash::login(&gw).await;
    let resp = dash
        .http
        .get(format!("{}/ui/chat", gw.base))
        .header("cookie", &dash.cookie)
        .send()
        .await
        .unwrap();
    let csp = resp.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(resp.headers()["x-frame-options"], "DENY");
    assert_eq!(resp.headers()["cache-control"], "no-store");

    // A state-changing request without the CSRF token, or from another site, is refused.
    let resp = dash
        .http
        .post(format!("{}/ui/logout", gw.base))
        .header("cookie", &dash.cookie)
        .form(&[("x", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let resp = dash
        .http
        .post(format!("{}/ui/logout", gw.base))
        .header("cookie", &dash.cookie)
        .header("origin", "https://evil.example")
        .form(&[("csrf", dash.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let resp = dash
        .http
        .post(format!("{}/ui/logout", gw.base))
        .header("cookie", &dash.cookie)
        .header("sec-fetch-site", "cross-site")
        .form(&[("csrf", dash.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    assert_eq!(dash.get("/ui/chat").await.0, 200, "still logged in");

    // Logout ends the session on the server: the old cookie opens nothing.
    let (status, location) = dash.post_form("/ui/logout", &[]).await;
    assert_eq!((status, location.as_str()), (303, "/ui/login?out=1"));
    assert_eq!(dash.get("/ui/chat").await.0, 303);

    // The bearer key does not open the dashboard, and a session cookie does not open the API.
    let resp = http
        .get(format!("{}/ui/chat", gw.base))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    let other = Dash::login(&gw).await;
    let resp = http
        .get(format!("{}/v1/models", gw.base))
        .header("cookie", &other.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}

#[tokio::test]
async fn wrong_keys_pause_logging_in() {
    let endpoint = ScriptedEndpoint::start().await;
    let home = home_with(&endpoint, json!({"port": 0, "api_key": KEY}));
    let gw = Gateway::start(home.path());
    let http = plain_client();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let resp = http
            .post(format!("{}/ui/login", gw.base))
            .form(&[("key", "guess")])
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429]);
    // Even the right key waits out the window; the API's bearer key still works.
    let resp = http
        .post(format!("{}/ui/login", gw.base))
        .form(&[("key", KEY)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    let resp = http
        .get(format!("{}/v1/models", gw.base))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test]
async fn the_dashboard_can_be_switched_off() {
    let endpoint = ScriptedEndpoint::start().await;
    let home = home_with(
        &endpoint,
        json!({"port": 0, "api_key": KEY, "dashboard": false}),
    );
    let gw = Gateway::start(home.path());
    let resp = plain_client()
        .get(format!("{}/ui/login", gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401, "no dashboard: the API's rules");
}
