//! Each wire format end to end: Claude, Gemini, Codex (Responses), Azure OpenAI with a key, a managed identity, the Azure CLI and a service principal.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn claude_end_to_end_through_the_messages_api() {
    let endpoint = ScriptedEndpoint::start_with([
        Reply::tool_call(
            "write_file",
            json!({"path": "claude.txt", "content": "from claude"}),
        ),
        Reply::text("I wrote claude.txt."),
    ])
    .await;
    endpoint.require_api_key("sk-ant-e2e");
    let home = Home::new();
    home.write_config(&json!({
        "agents": {"defaults": {"model": "anthropic/claude-sonnet-4-5",
                                "workspace": home.workspace().display().to_string()}},
        "providers": {"anthropic": {"api_key": "sk-ant-e2e", "api_base": endpoint.base_url()}},
    }));
    let out = run(home.cmd(), &["agent", "-m", "write a file"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("I wrote claude.txt."), "{}", out.stdout);
    assert_eq!(
        std::fs::read_to_string(home.workspace().join("claude.txt")).unwrap(),
        "from claude"
    );
    let reqs = endpoint.requests();
    assert!(reqs.iter().all(|r| r.path == "/v1/messages"));
    let second = &reqs[1].body;
    assert_eq!(second["model"], "claude-sonnet-4-5");
    let last = second["messages"].as_array().unwrap().last().unwrap();
    assert_eq!(last["role"], "user");
    assert_eq!(last["content"][0]["type"], "tool_result");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_cut_inside_a_tool_call_runs_nothing() {
    let endpoint = ScriptedEndpoint::start_with([
        Reply::truncated_tool_call("write_file", r#"{"path": "half.txt", "cont"#),
        Reply::text("recovered"),
    ])
    .await;
    let home = Home::with_config(&endpoint, json!({}));
    let out = run(home.cmd(), &["agent", "-m", "write something"]).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("truncated"), "{}", out.stderr);
    assert!(
        !home.workspace().join("half.txt").exists(),
        "no half-executed tool"
    );
    let out = run(home.cmd(), &["agent", "-m", "again"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let texts = endpoint.requests()[1].message_texts().join("\n");
    assert!(
        texts.contains("write something"),
        "the cut turn's message is kept: {texts}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn gemini_native_end_to_end() {
    let endpoint = ScriptedEndpoint::start_with([
        Reply::tool_call("list_dir", json!({"path": "."})),
        Reply::text("The workspace is empty."),
    ])
    .await;
    let home = Home::new();
    home.write_config(&json!({
        "agents": {"defaults": {"model": "google/gemini-2.5-flash",
                                "workspace": home.workspace().display().to_string()}},
        "providers": {"google": {"api_key": "AIza-e2e",
                                 "api_base": endpoint.base_url().replace("/v1", "/v1beta")}},
    }));
    let out = run(home.cmd(), &["agent", "-m", "what is here?"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("The workspace is empty."),
        "{}",
        out.stdout
    );
    let reqs = endpoint.requests();
    assert!(
        reqs[0]
            .path
            .ends_with("/models/gemini-2.5-flash:streamGenerateContent"),
        "{}",
        reqs[0].path
    );
    let contents = reqs[1].body["contents"].as_array().unwrap();
    assert!(
        contents.last().unwrap()["parts"][0]
            .get("functionResponse")
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn codex_through_the_responses_api_end_to_end() {
    let endpoint = ScriptedEndpoint::start_with([
        Reply::tool_call("exec", json!({"command": "echo from-codex > out.txt"})),
        Reply::text("Done."),
    ])
    .await;
    endpoint.require_api_key(KEY);
    let home = Home::new();
    home.write_config(&json!({
        "agents": {"defaults": {"model": "codex/gpt-5-codex",
                                "workspace": home.workspace().display().to_string()}},
        "providers": {"codex": {"api_key": KEY, "api_base": endpoint.base_url()}},
    }));
    let out = run(home.cmd(), &["agent", "-m", "run it", "--no-stream"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("Done."), "{}", out.stdout);
    assert_eq!(
        std::fs::read_to_string(home.workspace().join("out.txt")).unwrap(),
        "from-codex\n"
    );
    let reqs = endpoint.requests();
    assert!(reqs.iter().all(|r| r.path == "/v1/responses"));
    let items = reqs[1].body["input"].as_array().unwrap();
    assert_eq!(items.last().unwrap()["type"], "function_call_output");
}

fn azure_home(endpoint: &ScriptedEndpoint, provider: Value) -> Home {
    let home = Home::new();
    let mut azure = json!({"api_base": endpoint.base_url().trim_end_matches("/v1")});
    for (k, v) in provider.as_object().unwrap() {
        azure[k] = v.clone();
    }
    home.write_config(&json!({
        "agents": {"defaults": {"model": "azure/gpt-5.2-chat", "max_retries": 0,
                                "workspace": home.workspace().display().to_string()}},
        "providers": {"azure": azure},
    }));
    home
}

fn clear_azure_env(cmd: &mut Command) {
    for var in [
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_ID",
        "AZURE_CLIENT_SECRET",
        "AZURE_FEDERATED_TOKEN_FILE",
        "IDENTITY_ENDPOINT",
        "IDENTITY_HEADER",
        "MSI_ENDPOINT",
        "MSI_SECRET",
        "AZURE_OPENAI_ENDPOINT",
        "AZURE_OPENAI_DEPLOYMENT",
    ] {
        cmd.env_remove(var);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_with_an_api_key() {
    let endpoint = ScriptedEndpoint::start_with([Reply::text("Hello from Azure.")]).await;
    endpoint.require_api_key("azure-key-e2e");
    let home = azure_home(
        &endpoint,
        json!({"api_key": "azure-key-e2e", "api_version": "2024-10-21"}),
    );
    let mut cmd = home.cmd();
    clear_azure_env(&mut cmd);
    let out = run(cmd, &["agent", "-m", "hi"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("Hello from Azure."), "{}", out.stdout);
    let r = &endpoint.requests()[0];
    assert_eq!(r.path, "/openai/deployments/gpt-5.2-chat/chat/completions");
    assert_eq!(r.query.as_deref(), Some("api-version=2024-10-21"));
    assert_eq!(r.header("api-key"), Some("azure-key-e2e"));
    assert!(r.body.get("max_completion_tokens").is_some() && r.body.get("max_tokens").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_with_a_managed_identity_from_the_app_service_endpoint() {
    let identity =
        picoclaw_testkit::IdentityEndpoint::spawn("eyJ-managed-identity-token", "hdr-secret");
    let endpoint = ScriptedEndpoint::start_with([Reply::text("one"), Reply::text("two")]).await;
    endpoint.require_api_key("eyJ-managed-identity-token");
    let home = azure_home(&endpoint, json!({}));
    for message in ["first", "second"] {
        let mut cmd = home.cmd();
        clear_azure_env(&mut cmd);
        cmd.env("IDENTITY_ENDPOINT", identity.url())
            .env("IDENTITY_HEADER", "hdr-secret");
        let out = run(cmd, &["agent", "-m", message]).await;
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    let r = &endpoint.requests()[0];
    assert_eq!(
        r.header("authorization"),
        Some("Bearer eyJ-managed-identity-token")
    );
    assert!(r.header("api-key").is_none());
    assert!(r.body.get("max_completion_tokens").is_some());
    let asked = identity.requests();
    assert!(
        asked[0].contains("resource=https%3A%2F%2Fcognitiveservices.azure.com"),
        "{asked:?}"
    );
    assert!(asked[0].contains("api-version=2019-08-01"), "{asked:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_falls_through_to_the_azure_cli_and_explains_failures() {
    // A dead identity endpoint (nothing listens), then `az` from PATH.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let bin = tempfile::tempdir().unwrap();
    let az = bin.path().join("az");
    std::fs::write(
        &az,
        "#!/bin/sh\necho '{\"accessToken\": \"eyJ-from-az-cli\", \"expiresOn\": \"2099-01-01 00:00:00.000000\", \"expires_on\": 4070908800, \"subscription\": \"s\", \"tenant\": \"t\", \"tokenType\": \"Bearer\"}'\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&az, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let endpoint = ScriptedEndpoint::start_with([Reply::text("via az")]).await;
    endpoint.require_api_key("eyJ-from-az-cli");
    let home = azure_home(&endpoint, json!({}));
    let mut cmd = home.cmd();
    clear_azure_env(&mut cmd);
    cmd.env("IDENTITY_ENDPOINT", format!("http://{dead}/msi/token"))
        .env("IDENTITY_HEADER", "x")
        .env("PATH", &path);
    let out = run(cmd, &["agent", "-m", "hi"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("via az"), "{}", out.stdout);

    // With no working credential at all, the error names every one that was tried.
    let empty_bin = tempfile::tempdir().unwrap();
    let mut cmd = home.cmd();
    clear_azure_env(&mut cmd);
    cmd.env("IDENTITY_ENDPOINT", format!("http://{dead}/msi/token"))
        .env("IDENTITY_HEADER", "x")
        .env("PATH", empty_bin.path());
    let out = run(cmd, &["agent", "-m", "hi"]).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("managed identity (IDENTITY_ENDPOINT)"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("Azure CLI"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_with_a_service_principal_from_the_environment() {
    let entra = picoclaw_testkit::EntraTokenEndpoint::spawn("eyJ-service-principal-token");
    let certs = tempfile::tempdir().unwrap();
    let ca = certs.path().join("ca.pem");
    std::fs::write(&ca, entra.ca_pem()).unwrap();
    let endpoint = ScriptedEndpoint::start_with([Reply::text("as the service principal")]).await;
    endpoint.require_api_key("eyJ-service-principal-token");
    let home = azure_home(&endpoint, json!({}));
    let mut cmd = home.cmd();
    clear_azure_env(&mut cmd);
    cmd.env("AZURE_TENANT_ID", "72f988bf-86f1-41af-91ab-2d7cd011db47")
        .env("AZURE_CLIENT_ID", "11111111-2222-3333-4444-555555555555")
        .env("AZURE_CLIENT_SECRET", "sp-secret-value")
        .env("AZURE_AUTHORITY_HOST", entra.authority_host())
        .env("SSL_CERT_FILE", &ca)
        .env("PATH", certs.path());
    let out = run(cmd, &["agent", "-m", "hi"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("as the service principal"),
        "{}",
        out.stdout
    );
    let (line, form) = &entra.requests()[0];
    assert!(
        line.starts_with("POST /72f988bf-86f1-41af-91ab-2d7cd011db47/oauth2/v2.0/token"),
        "{line}"
    );
    assert!(
        form.contains("client_id=11111111-2222-3333-4444-555555555555"),
        "{form}"
    );
    assert!(
        form.contains("scope=https%3A%2F%2Fcognitiveservices.azure.com%2F.default"),
        "{form}"
    );
    assert!(!out.stderr.contains("sp-secret-value"));
}

/// A Chat Completions endpoint that refuses exactly as OpenAI (and Azure OpenAI) do what
/// reasoning models do not take: `max_tokens`, and a temperature other than the default.
async fn refusing_reasoning_endpoint() -> ScriptedEndpoint {
    ScriptedEndpoint::start_with([
        Reply::raw_json(
            400,
            json!({"error": {"message": "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
                "type": "invalid_request_error", "param": "max_tokens", "code": "unsupported_parameter"}}),
        )
        .when_request_contains("\"max_tokens\""),
        Reply::raw_json(
            400,
            json!({"error": {"message": "Unsupported value: 'temperature' does not support 0.7 with this model. Only the default (1) value is supported.",
                "type": "invalid_request_error", "param": "temperature", "code": "unsupported_value"}}),
        )
        .when_request_contains("\"temperature\""),
        Reply::text("reasoned hello"),
    ])
    .await
}

fn assert_asked_as_a_reasoning_model(body: &Value) {
    assert!(body.get("max_tokens").is_none(), "{body}");
    assert!(body.get("temperature").is_none(), "{body}");
    assert!(body["max_completion_tokens"].as_u64().is_some(), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn openai_reasoning_models_are_asked_right_the_first_time() {
    for model in ["o3-mini", "gpt-5"] {
        let endpoint = refusing_reasoning_endpoint().await;
        let home = Home::new();
        home.write_config(&json!({
            "agents": {"defaults": {"model": format!("openai/{model}"), "max_retries": 0,
                                    "workspace": home.workspace().display().to_string()}},
            "providers": {"openai": {"api_key": "sk-e2e", "api_base": endpoint.base_url()}},
        }));
        let out = run(home.cmd(), &["agent", "-m", "hi"]).await;
        assert_eq!(out.code, 0, "{model}: {}", out.stderr);
        assert!(out.stdout.contains("reasoned hello"), "{}", out.stdout);
        let reqs = endpoint.requests();
        assert_eq!(reqs.len(), 1, "{model}: right the first time");
        assert_eq!(reqs[0].body["model"], model);
        assert_asked_as_a_reasoning_model(&reqs[0].body);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_azure_reasoning_deployment_answers_marked_or_not() {
    // Marked in model_list: right the first time, whatever the deployment is called.
    let endpoint = refusing_reasoning_endpoint().await;
    let home = Home::new();
    let base = endpoint.base_url().trim_end_matches("/v1").to_owned();
    home.write_config(&json!({
        "agents": {"defaults": {"model": "thinker", "max_retries": 0,
                                "workspace": home.workspace().display().to_string()}},
        "model_list": [{"model_name": "thinker", "model": "azure/prod-deployment-7",
                        "api_key": "azure-key", "api_base": base, "reasoning": true,
                        "reasoning_effort": "low"}],
    }));
    let mut cmd = home.cmd();
    clear_azure_env(&mut cmd);
    let out = run(cmd, &["agent", "-m", "hi"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("reasoned hello"), "{}", out.stdout);
    let reqs = endpoint.requests();
    assert_eq!(reqs.len(), 1, "right the first time");
    assert!(
        reqs[0]
            .path
            .contains("/openai/deployments/prod-deployment-7/chat/completions"),
        "{}",
        reqs[0].path
    );
    assert_asked_as_a_reasoning_model(&reqs[0].body);
    assert_eq!(reqs[0].body["reasoning_effort"], "low");

    // Not marked: the refusals are mended one by one and the answer still comes.
    let endpoint = refusing_reasoning_endpoint().await;
    let home = azure_home(&endpoint, json!({"api_key": "azure-key"}));
    let mut config = home.config();
    config["agents"]["defaults"]["model"] = json!("azure/prod-chat");
    home.write_config(&config);
    let mut cmd = home.cmd();
    clear_azure_env(&mut cmd);
    let out = run(cmd, &["agent", "-m", "hi"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("reasoned hello"), "{}", out.stdout);
    let reqs = endpoint.requests();
    // Azure is always sent max_completion_tokens; the temperature is refused, then dropped.
    assert_eq!(reqs.len(), 2, "the temperature refused, then answered");
    assert!(reqs[0].body.get("temperature").is_some());
    assert_asked_as_a_reasoning_model(&reqs[1].body);
}

/// The architecture's App Service setup: a user-assigned identity named by
/// `MANAGED_IDENTITY_CLIENT_ID` reads the Azure OpenAI key from Key Vault at start.
#[tokio::test(flavor = "multi_thread")]
async fn app_service_with_a_user_assigned_identity_and_the_key_in_key_vault() {
    let identity = picoclaw_testkit::IdentityEndpoint::spawn("eyJ-vault-token", "hdr-secret");
    let vault = picoclaw_testkit::KeyVaultFake::spawn("eyJ-vault-token");
    vault.set("azure-openai-key", "kv-azure-key-1");
    let endpoint =
        ScriptedEndpoint::start_with([Reply::text("answered with the vault's key")]).await;
    endpoint.require_api_key("kv-azure-key-1");
    let home = azure_home(
        &endpoint,
        json!({"api_key": "keyvault://picoclaw-kv/azure-openai-key"}),
    );
    let app_service = |home: &Home| {
        let mut cmd = home.cmd();
        clear_azure_env(&mut cmd);
        cmd.env("IDENTITY_ENDPOINT", identity.url())
            .env("IDENTITY_HEADER", "hdr-secret")
            .env(
                "MANAGED_IDENTITY_CLIENT_ID",
                "11111111-2222-3333-4444-555555555555",
            )
            .env("AZURE_KEYVAULT_ENDPOINT", vault.url());
        cmd
    };
    let out = run(app_service(&home), &["agent", "-m", "hi"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("answered with the vault's key"),
        "{}",
        out.stdout
    );
    // The vault token was asked for Key Vault's resource, as the user-assigned identity.
    let asked = identity.requests();
    assert!(
        asked
            .iter()
            .any(|q| q.contains("resource=https%3A%2F%2Fvault.azure.net")
                && q.contains("client_id=11111111-2222-3333-4444-555555555555")),
        "{asked:?}"
    );
    let reads = vault.requests();
    assert_eq!(reads.len(), 1, "read once at start: {reads:?}");
    assert!(
        reads[0].starts_with("/secrets/azure-openai-key?api-version="),
        "{reads:?}"
    );
    // The secret never reaches the file, and status names its source, masked.
    let file = std::fs::read_to_string(home.path().join("config.json")).unwrap();
    assert!(file.contains("keyvault://picoclaw-kv/azure-openai-key"));
    assert!(!file.contains("kv-azure-key-1"));
    let status = run(app_service(&home), &["status"]).await;
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(
        status
            .stdout
            .contains("(from Key Vault keyvault://picoclaw-kv/azure-openai-key)"),
        "{}",
        status.stdout
    );
    assert!(
        !status.stdout.contains("kv-azure-key-1"),
        "{}",
        status.stdout
    );

    // A secret the vault does not have: one error naming the reference, nothing sent.
    let mut config = home.config();
    config["providers"]["azure"]["api_key"] = json!("keyvault://picoclaw-kv/no-such-secret");
    home.write_config(&config);
    let before = endpoint.requests().len();
    let out = run(app_service(&home), &["agent", "-m", "hi"]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("keyvault://picoclaw-kv/no-such-secret"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("not found"), "{}", out.stderr);
    assert_eq!(endpoint.requests().len(), before);

    // App Service's own reference form works the same way.
    config["providers"]["azure"]["api_key"] = json!(
        "@Microsoft.KeyVault(SecretUri=https://picoclaw-kv.vault.azure.net/secrets/azure-openai-key/)"
    );
    home.write_config(&config);
    endpoint.push(Reply::text("again"));
    let out = run(app_service(&home), &["agent", "-m", "hi"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("again"), "{}", out.stdout);
}

/// A service principal with a certificate, its variables in `~/.picoclaw/.env` (never in the
/// process environment), the credential pinned in the `azure` section.
#[tokio::test(flavor = "multi_thread")]
async fn azure_with_a_certificate_from_a_dotenv_and_a_pinned_credential() {
    let entra = picoclaw_testkit::EntraTokenEndpoint::spawn("eyJ-certificate-token");
    let certs = tempfile::tempdir().unwrap();
    let ca = certs.path().join("ca.pem");
    std::fs::write(&ca, entra.ca_pem()).unwrap();
    let client_pem = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../crates/picoclaw-auth/tests/data/client.pem")
        .canonicalize()
        .unwrap();
    let endpoint = ScriptedEndpoint::start_with([Reply::text("as the certificate")]).await;
    endpoint.require_api_key("eyJ-certificate-token");
    let home = azure_home(&endpoint, json!({}));
    let mut config = home.config();
    config["azure"] = json!({"credential": "environment"});
    home.write_config(&config);
    let dotenv = home.path().join(".env");
    std::fs::write(
        &dotenv,
        format!(
            "AZURE_TENANT_ID=72f988bf-86f1-41af-91ab-2d7cd011db47\n\
             AZURE_CLIENT_ID=11111111-2222-3333-4444-555555555555\n\
             AZURE_CLIENT_CERTIFICATE_PATH={}\n\
             AZURE_AUTHORITY_HOST={}\n",
            client_pem.display(),
            entra.authority_host()
        ),
    )
    .unwrap();
    let mut cmd = home.cmd();
    clear_azure_env(&mut cmd);
    // A managed identity is reachable, but the pinned credential is the only one tried.
    let identity = picoclaw_testkit::IdentityEndpoint::spawn("eyJ-wrong-identity", "hdr");
    cmd.env("SSL_CERT_FILE", &ca)
        .env("IDENTITY_ENDPOINT", identity.url())
        .env("IDENTITY_HEADER", "hdr")
        .env("PATH", certs.path());
    let out = run(cmd, &["agent", "-m", "hi"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("as the certificate"), "{}", out.stdout);
    assert!(
        identity.requests().is_empty(),
        "the managed identity was tried"
    );
    let (line, form) = &entra.requests()[0];
    assert!(
        line.contains("/72f988bf-86f1-41af-91ab-2d7cd011db47/oauth2/v2.0/token"),
        "{line}"
    );
    assert!(
        form.contains(
            "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
        ),
        "{form}"
    );
    assert!(form.contains("client_assertion=ey"), "{form}");

    // Pinned to the Azure CLI, which is not installed: only that one is named.
    config["azure"] = json!({"credential": "cli"});
    home.write_config(&config);
    let mut cmd = home.cmd();
    clear_azure_env(&mut cmd);
    cmd.env("SSL_CERT_FILE", &ca)
        .env("IDENTITY_ENDPOINT", identity.url())
        .env("IDENTITY_HEADER", "hdr")
        .env("PATH", certs.path());
    let out = run(cmd, &["agent", "-m", "hi"]).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("tried: Azure CLI (az login)"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("managed identity (IDENTITY_ENDPOINT)"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("certificate"), "{}", out.stderr);

    // A credential that does not exist is a config error naming the accepted ones.
    config["azure"] = json!({"credential": "powershell"});
    home.write_config(&config);
    let out = run(home.cmd(), &["agent", "-m", "hi"]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("azure.credential"), "{}", out.stderr);
    assert!(out.stderr.contains("managed_identity"), "{}", out.stderr);
}
