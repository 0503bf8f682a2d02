//! Sign-ins and the credential store.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn device_login_then_the_agent_sends_the_obtained_token() {
    let oauth = picoclaw_testkit::oauth::FakeOauth::start();
    oauth.pending_polls(1);
    let endpoint = ScriptedEndpoint::start_with([Reply::text("Signed-in answer.")]).await;
    let home = Home::new();
    // No API key anywhere: only the login.
    home.write_config(&json!({
        "agents": {"defaults": {"model": "openai/test-model",
            "workspace": home.workspace().display().to_string()}},
        "providers": {"openai": {"api_base": endpoint.base_url()}},
    }));
    let out = run(
        home.cmd(),
        &[
            "auth",
            "login",
            "--provider",
            "openai",
            "--device",
            "--issuer",
            &oauth.issuer(),
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("enter the code WDJB-MJHT"),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout
            .contains("signed in to openai as ada@example.com"),
        "{}",
        out.stdout
    );
    let auth = home.path().join("auth.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&auth).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let status = run(home.cmd(), &["auth", "status"]).await;
    assert!(
        status.stdout.contains("openai") && status.stdout.contains("ada@example.com"),
        "{}",
        status.stdout
    );
    assert!(
        !status.stdout.contains("at-1"),
        "tokens are masked: {}",
        status.stdout
    );

    let out = run(home.cmd(), &["agent", "-m", "hello"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "Signed-in answer.");
    assert_eq!(
        endpoint.requests()[0].header("authorization"),
        Some("Bearer at-1")
    );
    // The Codex models use the same (ChatGPT) login through the Responses API, naming the
    // account the login belongs to.
    home.write_config(&json!({
        "agents": {"defaults": {"model": "codex/gpt-5-codex",
            "workspace": home.workspace().display().to_string()}},
        "providers": {"codex": {"api_base": endpoint.base_url()}},
    }));
    endpoint.push(Reply::text("Codex answer."));
    let out = run(home.cmd(), &["agent", "-m", "hello codex"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "Codex answer.");
    let codex = endpoint.requests().last().unwrap().clone();
    assert!(codex.path.ends_with("/responses"), "{}", codex.path);
    assert_eq!(codex.header("authorization"), Some("Bearer at-1"));
    assert_eq!(codex.header("chatgpt-account-id"), Some("acct-42"));

    // A file others can read is refused, with the fix.
    std::fs::set_permissions(&auth, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(home.cmd(), &["auth", "status"]).await;
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("chmod 600"), "{}", out.stderr);
    std::fs::set_permissions(&auth, std::fs::Permissions::from_mode(0o600)).unwrap();

    let out = run(home.cmd(), &["auth", "logout", "--provider", "openai"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let status = run(home.cmd(), &["auth", "status"]).await;
    assert!(status.stdout.contains("not signed in"), "{}", status.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_kept_in_the_credential_store_instead_of_the_config() {
    let endpoint = ScriptedEndpoint::start_with([Reply::text("ok")]).await;
    endpoint.require_api_key("sk-from-store-0123456789");
    let home = Home::keyless(&endpoint, "deepseek/deepseek-chat", "deepseek");
    let mut cmd = home.cmd();
    cmd.write_stdin("sk-from-store-0123456789\n");
    let out = run(
        cmd,
        &["auth", "login", "--provider", "deepseek", "--api-key", "-"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = run(home.cmd(), &["agent", "-m", "hi"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "ok");
    assert!(
        !std::fs::read_to_string(home.path().join("config.json"))
            .unwrap()
            .contains("sk-from-store"),
        "the key never went into config.json"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn onboard_enc_encrypts_the_credential_store_with_a_passphrase() {
    const PASS: &str = "a long passphrase";
    let endpoint = ScriptedEndpoint::start_with([Reply::text("ok")]).await;
    endpoint.require_api_key("sk-sealed-0123456789");
    let home = Home::keyless(&endpoint, "deepseek/deepseek-chat", "deepseek");
    let out = run(
        home.cmd(),
        &[
            "auth",
            "login",
            "-p",
            "deepseek",
            "--api-key",
            "sk-sealed-0123456789",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let with_pass = |mut cmd: Command| {
        cmd.env("PICOCLAW_AUTH_PASSPHRASE", PASS);
        cmd
    };
    let out = run(
        with_pass(home.cmd()),
        &["onboard", "--non-interactive", "--enc"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = std::fs::read_to_string(home.path().join("auth.json")).unwrap();
    assert!(!text.contains("sk-sealed"), "{text}");
    // With the passphrase: works. Without: a clear message, not a crash or a key error.
    let out = run(with_pass(home.cmd()), &["agent", "-m", "hi"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "ok");
    let out = run(home.cmd(), &["agent", "-m", "hi"]).await;
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("PICOCLAW_AUTH_PASSPHRASE"),
        "the failed request says why the stored key was not used: {}",
        out.stderr
    );
    let out = run(home.cmd(), &["auth", "status"]).await;
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("encrypted") && out.stderr.contains("PICOCLAW_AUTH_PASSPHRASE"),
        "{}",
        out.stderr
    );
    let mut wrong = home.cmd();
    wrong.env("PICOCLAW_AUTH_PASSPHRASE", "not the one");
    let out = run(wrong, &["auth", "status"]).await;
    assert!(out.stderr.contains("wrong passphrase"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn claude_with_a_setup_token_or_a_sign_in_sends_a_bearer() {
    let endpoint = ScriptedEndpoint::start_with([
        Reply::text("From a setup token."),
        Reply::text("From a sign-in."),
    ])
    .await;
    let home = Home::keyless(&endpoint, "anthropic/claude-test", "anthropic");
    let out = run(
        home.cmd(),
        &[
            "auth",
            "login",
            "-p",
            "anthropic",
            "--api-key",
            "sk-ant-oat01-setup-token",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = run(home.cmd(), &["agent", "-m", "hi"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "From a setup token.");
    let req = endpoint.requests()[0].clone();
    assert_eq!(
        req.header("authorization"),
        Some("Bearer sk-ant-oat01-setup-token")
    );
    assert_eq!(req.header("anthropic-beta"), Some("oauth-2025-04-20"));
    assert_eq!(req.header("x-api-key"), None);

    // An OAuth sign-in (as `auth login --provider anthropic` stores it).
    let store = picoclaw_auth::AuthStore::new(home.path().join("auth.json"));
    let mut cred = picoclaw_auth::OauthCredential::new(
        "sk-ant-oat01-signed-in",
        "https://console.anthropic.com/v1/oauth/token",
        "client",
    );
    cred.expires_at = Some(4_000_000_000);
    store
        .put("anthropic", picoclaw_auth::Credential::Oauth(cred))
        .unwrap();
    let out = run(home.cmd(), &["agent", "-m", "hi again"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let req = endpoint.requests()[1].clone();
    assert_eq!(
        req.header("authorization"),
        Some("Bearer sk-ant-oat01-signed-in")
    );
    assert_eq!(req.header("anthropic-beta"), Some("oauth-2025-04-20"));
}
