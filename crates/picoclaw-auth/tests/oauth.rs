//! The OAuth flows against a loopback OAuth server (testkit `FakeOauth`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use picoclaw_api::Secret;
use picoclaw_auth::{
    AuthStore, Credential, LoginTokens, OauthCredential, OauthProvider, TokenSource,
};
use picoclaw_testkit::oauth::FakeOauth;
use std::sync::Arc;
use std::time::Duration;

fn openai(fake: &FakeOauth) -> OauthProvider {
    OauthProvider::known("openai", Some(&fake.issuer())).unwrap()
}

#[tokio::test]
async fn device_login_waits_through_pending_and_slow_down() {
    let fake = FakeOauth::start();
    fake.pending_polls(2);
    fake.slow_down_once();
    let provider = openai(&fake);
    let (prompt, code, interval) = picoclaw_auth::device_start(&provider).await.unwrap();
    assert_eq!(prompt.user_code, "WDJB-MJHT");
    assert!(
        prompt
            .verification_uri_complete
            .unwrap()
            .contains("WDJB-MJHT")
    );
    assert_eq!(interval, Duration::from_secs(1));
    let started = std::time::Instant::now();
    let cred = picoclaw_auth::device_poll(&provider, &code, interval, prompt.expires_in, 0.01)
        .await
        .unwrap();
    // Two pending, one slow_down, then the tokens: four polls, and after slow_down the
    // interval grew by 5 s (scaled: 60 ms instead of 10 ms).
    assert_eq!(fake.device_polls(), 4);
    assert!(
        started.elapsed() >= Duration::from_millis(80),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(cred.access_token.expose(), "at-1");
    assert_eq!(cred.refresh_token.as_ref().unwrap().expose(), "rt-1");
    assert_eq!(cred.account.as_deref(), Some("ada@example.com"));
    assert!(cred.expires_at.is_some());
    assert_eq!(fake.client_ids(), ["app_EMoamEEZ73f0CkXaXp7hrann"]);
}

#[tokio::test]
async fn device_login_refused_or_expired_says_so() {
    let fake = FakeOauth::start();
    let provider = openai(&fake);
    fake.deny();
    let (p, code, interval) = picoclaw_auth::device_start(&provider).await.unwrap();
    let err = picoclaw_auth::device_poll(&provider, &code, interval, p.expires_in, 0.01)
        .await
        .unwrap_err();
    assert!(
        matches!(err, picoclaw_auth::OauthError::Refused { .. }),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "the login was refused in the browser");
    let fake = FakeOauth::start();
    let provider = openai(&fake);
    fake.expire_device_code();
    let (p, code, interval) = picoclaw_auth::device_start(&provider).await.unwrap();
    let err = picoclaw_auth::device_poll(&provider, &code, interval, p.expires_in, 0.01)
        .await
        .unwrap_err();
    assert!(
        matches!(err, picoclaw_auth::OauthError::Expired(_)),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "the code expired before the login was approved; start again"
    );
}

/// Acts as the user's browser: follows the authorization URL, whose redirect lands on the
/// login's loopback listener.
fn browser(url: &str) {
    let url = url.to_owned();
    tokio::spawn(async move {
        let client = picoclaw_http::client_builder().unwrap().build().unwrap();
        // A forged redirect first (wrong state): ignored by the login.
        let redirect = url::Url::parse(&url)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "redirect_uri")
            .map(|(_, v)| v.into_owned())
            .unwrap();
        let forged = format!("{redirect}?code=stolen&state=forged");
        let _ = client.get(forged).send().await;
        let r = client.get(&url).send().await.unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    });
}

#[tokio::test]
async fn browser_login_with_pkce_and_state() {
    let fake = FakeOauth::start();
    let provider = openai(&fake);
    let mut shown = String::new();
    let cred = picoclaw_auth::browser_login(
        &provider,
        |url| {
            shown = url.to_owned();
            browser(url);
        },
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert!(shown.contains("code_challenge_method=S256"), "{shown}");
    assert!(shown.contains("state="), "{shown}");
    assert!(
        shown.contains("redirect_uri=http%3A%2F%2Flocalhost%3A"),
        "{shown}"
    );
    assert_eq!(cred.access_token.expose(), "at-2");
    assert_eq!(cred.account.as_deref(), Some("ada@example.com"));
}

fn stored(fake: &FakeOauth, store: &AuthStore, expires_in: i64, refresh: &str) {
    let provider = openai(fake);
    let mut cred = OauthCredential::new("at-old", &provider.token_url, &provider.client_id);
    cred.refresh_token = Some(Secret::new(refresh.to_owned()));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    cred.expires_at = Some((now + expires_in) as u64);
    store.put("openai", Credential::Oauth(cred)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_refresh_before_expiry_once_for_concurrent_callers() {
    let fake = FakeOauth::start();
    let dir = tempfile::tempdir().unwrap();
    let store = AuthStore::new(dir.path().join("auth.json"));
    // A refresh token the server knows: log in once through the device flow.
    let provider = openai(&fake);
    let (p, code, interval) = picoclaw_auth::device_start(&provider).await.unwrap();
    let first = picoclaw_auth::device_poll(&provider, &code, interval, p.expires_in, 0.01)
        .await
        .unwrap();
    let refresh = first.refresh_token.unwrap().expose().clone();
    // Still good for an hour: used as is.
    stored(&fake, &store, 3600, &refresh);
    let tokens = LoginTokens::new(store.clone(), "openai");
    assert_eq!(tokens.token().await.unwrap().token.expose(), "at-old");
    assert_eq!(fake.refreshes(), 0);
    // Expiring in 10 s (inside the 60 s margin): ten concurrent callers, one refresh.
    stored(&fake, &store, 10, &refresh);
    let tokens = LoginTokens::new(store.clone(), "openai");
    let handles: Vec<_> = (0..10)
        .map(|_| {
            let t = Arc::clone(&tokens);
            tokio::spawn(async move { t.token().await.unwrap().token.expose().clone() })
        })
        .collect();
    let mut got = Vec::new();
    for h in handles {
        got.push(h.await.unwrap());
    }
    assert!(got.iter().all(|t| t == "at-2"), "{got:?}");
    assert_eq!(fake.refreshes(), 1);
    // The renewed tokens were saved.
    match store.get("openai").unwrap().unwrap() {
        Credential::Oauth(c) => {
            assert_eq!(c.access_token.expose(), "at-2");
            assert_eq!(c.refresh_token.unwrap().expose(), "rt-2");
            assert_eq!(c.account.as_deref(), Some("ada@example.com"));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_expired_login_with_a_revoked_refresh_token_asks_to_log_in_again() {
    let fake = FakeOauth::start();
    let dir = tempfile::tempdir().unwrap();
    let store = AuthStore::new(dir.path().join("auth.json"));
    stored(&fake, &store, -100, "rt-unknown");
    let err = LoginTokens::new(store.clone(), "openai")
        .token()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("picoclaw auth login --provider openai"),
        "{err}"
    );
    let missing = LoginTokens::new(AuthStore::new(dir.path().join("none.json")), "openai")
        .token()
        .await
        .unwrap_err()
        .to_string();
    assert!(missing.contains("not logged in"), "{missing}");
}

#[tokio::test]
async fn copilot_logs_in_with_github_then_exchanges_tokens() {
    let fake = FakeOauth::start();
    let provider = OauthProvider::known("github-copilot", Some(&fake.issuer())).unwrap();
    let (p, code, interval) = picoclaw_auth::device_start(&provider).await.unwrap();
    let github = picoclaw_auth::device_poll(&provider, &code, interval, p.expires_in, 0.01)
        .await
        .unwrap();
    let cred = picoclaw_auth::copilot_from_github(&provider, github)
        .await
        .unwrap();
    assert!(cred.access_token.expose().starts_with("copilot-"));
    assert_eq!(cred.renewal, "copilot");
    // Renewal exchanges the GitHub token again.
    let renewed = picoclaw_auth::renew(&cred, "github-copilot").await.unwrap();
    assert_ne!(renewed.access_token.expose(), cred.access_token.expose());
    fake.revoke();
    let err = picoclaw_auth::renew(&cred, "github-copilot")
        .await
        .unwrap_err();
    // A revoked GitHub token ends the login: the user logs in again.
    assert!(err.needs_login(), "{err:?}");
    let err = err.to_string();
    assert!(err.contains("log") && err.contains("again"), "{err}");
}

#[tokio::test]
async fn a_login_the_provider_lacks_points_to_the_other_one() {
    let anthropic = OauthProvider::known("anthropic", None).unwrap();
    let err = picoclaw_auth::device_start(&anthropic).await.unwrap_err();
    assert!(
        matches!(err, picoclaw_auth::OauthError::NoDeviceLogin { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "anthropic has no device login; use the browser login (without --device)"
    );
    let copilot = OauthProvider::known("github-copilot", None).unwrap();
    let err = picoclaw_auth::browser_login(&copilot, |_| {}, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, picoclaw_auth::OauthError::NoBrowserLogin { .. }),
        "{err:?}"
    );
    assert!(!err.needs_login());
    assert_eq!(
        err.to_string(),
        "github-copilot has no browser login; use --device"
    );
}
