//! Azure: a key kept in Key Vault and rotated while the gateway runs.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_key_rotated_in_key_vault_is_read_again_when_the_provider_refuses_the_old_one() {
    let identity = picoclaw_testkit::IdentityEndpoint::spawn("eyJ-vault-token", "hdr-secret");
    let vault = picoclaw_testkit::KeyVaultFake::spawn("eyJ-vault-token");
    vault.set("azure-openai-key", "kv-key-before");
    let endpoint = ScriptedEndpoint::start_with([
        Reply::text("with the first key"),
        Reply::text("with the rotated key"),
    ])
    .await;
    endpoint.require_api_key("kv-key-before");
    let home = home_with(
        &endpoint,
        json!({"host": "127.0.0.1", "port": 0, "api_key": KEY}),
    );
    edit_config(home.path(), |config| {
        config["agents"]["defaults"]["model"] = json!("azure/prod-chat");
        config["agents"]["defaults"]["max_retries"] = json!(0);
        config["providers"] = json!({"azure": {
            "api_base": endpoint.base_url().trim_end_matches("/v1"),
            "api_key": "keyvault://picoclaw-kv/azure-openai-key",
        }});
    });
    let gw = Gateway::start_env(
        home.path(),
        &[],
        "warn,picoclaw_config=info",
        &[
            ("IDENTITY_ENDPOINT", identity.url()),
            ("IDENTITY_HEADER", "hdr-secret".into()),
            ("MANAGED_IDENTITY_CLIENT_ID", "client-of-the-app".into()),
            ("AZURE_KEYVAULT_ENDPOINT", vault.url()),
        ],
    );
    let c = client();
    let ask =
        |text: &str| json!({"model": "picoclaw", "messages": [{"role": "user", "content": text}]});
    let (status, body) = complete(&c, &gw, Some("rotation"), ask("first")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "with the first key"
    );
    assert_eq!(vault.requests().len(), 1, "read once at start");

    // The key is rotated: the vendor takes only the new one, Key Vault holds it.
    vault.set("azure-openai-key", "kv-key-after");
    endpoint.require_api_key("kv-key-after");
    let (status, body) = complete(&c, &gw, Some("rotation"), ask("second")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "with the rotated key"
    );
    assert_eq!(vault.requests().len(), 2, "read again after the 401");
    let reqs = endpoint.requests();
    assert_eq!(reqs.last().unwrap().header("api-key"), Some("kv-key-after"));

    // A refusal while Key Vault still holds the same key is not retried in a loop.
    endpoint.require_api_key("a-key-nobody-has");
    let (status, _) = complete(&c, &gw, Some("rotation"), ask("third")).await;
    assert_ne!(status, 200);
    assert_eq!(vault.requests().len(), 3, "one more read, no more");
    let logged = gw.log.lock().unwrap().join("\n");
    assert!(
        !logged.contains("kv-key-"),
        "a key reached the log: {logged}"
    );
}
