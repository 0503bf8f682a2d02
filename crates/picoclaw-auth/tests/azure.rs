//! Azure credentials built from an explicit environment map (no process variable is changed), the
//! certificate credential against the loopback Entra token endpoint, and Key Vault references
//! against the loopback Key Vault (testkit `EntraTokenEndpoint`, `KeyVaultFake`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use picoclaw_auth::{
    AzureCredentialKind, AzureIdentityConfig, AzureTokenSource, KEYVAULT_SCOPE, KeyVault,
    KeyVaultError, KeyVaultReference, StaticToken, TokenSource,
};
use picoclaw_testkit::{EntraTokenEndpoint, KeyVaultFake};
use ring::signature::{KeyPair as _, RSA_PKCS1_2048_8192_SHA256, RsaKeyPair, UnparsedPublicKey};
use rustls::pki_types::pem::{PemObject, SectionKind};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const TENANT: &str = "00000000-0000-0000-0000-0000000000aa";
const CLIENT: &str = "11111111-2222-3333-4444-555555555555";

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A client trusting only `ca_pem` (no system store is read).
fn client_trusting(ca_pem: &str) -> reqwest::Client {
    let ca = picoclaw_http::CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap();
    let tls = picoclaw_http::tls_config(
        picoclaw_http::default_crypto_provider().unwrap(),
        picoclaw_http::Roots::Only(vec![ca]),
    )
    .unwrap();
    picoclaw_http::with_tls(reqwest::Client::builder(), tls)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A client that trusts no certificate (for plain HTTP, and credentials never reaching a server).
fn client_trusting_nothing() -> reqwest::Client {
    let tls = picoclaw_http::tls_config(
        picoclaw_http::default_crypto_provider().unwrap(),
        picoclaw_http::Roots::Only(Vec::new()),
    )
    .unwrap();
    picoclaw_http::with_tls(reqwest::Client::builder(), tls)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn sections(path: &Path) -> Vec<(SectionKind, Vec<u8>)> {
    <(SectionKind, Vec<u8>)>::pem_slice_iter(&std::fs::read(path).unwrap())
        .map(Result::unwrap)
        .collect()
}

fn b64url_json(part: &str) -> serde_json::Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// The form fields of the Entra fake's only token request.
fn token_form(entra: &EntraTokenEndpoint) -> (String, HashMap<String, String>) {
    let requests = entra.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let (line, body) = &requests[0];
    let form = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    (line.clone(), form)
}

fn certificate_source(
    entra: &EntraTokenEndpoint,
    pem: &Path,
    extra: &[(&str, &str)],
) -> AzureTokenSource {
    let mut vars = env(&[
        ("AZURE_TENANT_ID", TENANT),
        ("AZURE_CLIENT_ID", CLIENT),
        ("AZURE_CLIENT_CERTIFICATE_PATH", pem.to_str().unwrap()),
        ("AZURE_AUTHORITY_HOST", &entra.authority_host()),
    ]);
    vars.extend(env(extra));
    AzureTokenSource::new(
        AzureIdentityConfig::default()
            .with_env(vars)
            .with_credential(AzureCredentialKind::Environment)
            .with_http_client(client_trusting(entra.ca_pem())),
    )
}

#[tokio::test]
async fn certificate_credential_gets_a_token_with_a_verifiable_assertion() {
    let entra = EntraTokenEndpoint::spawn("cert-token");
    let pem = data("client.pem");
    let source = certificate_source(&entra, &pem, &[]);
    assert_eq!(
        source.chain(),
        ["service principal certificate (AZURE_CLIENT_CERTIFICATE_PATH)"]
    );
    let token = source.token().await.unwrap();
    assert_eq!(token.token.expose(), "cert-token");

    let (line, form) = token_form(&entra);
    assert!(
        line.starts_with(&format!("POST /{TENANT}/oauth2/v2.0/token")),
        "{line}"
    );
    assert_eq!(
        form["client_assertion_type"],
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
    assert_eq!(form["client_id"], CLIENT);
    assert_eq!(form["grant_type"], "client_credentials");
    assert!(!form.contains_key("client_secret"));

    let jwt = &form["client_assertion"];
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header = b64url_json(parts[0]);
    let claims = b64url_json(parts[1]);

    // The signature verifies with the certificate's public key.
    let pem_sections = sections(&pem);
    let leaf = &pem_sections
        .iter()
        .find(|(k, _)| *k == SectionKind::Certificate)
        .unwrap()
        .1;
    let key = &pem_sections
        .iter()
        .find(|(k, _)| *k == SectionKind::PrivateKey)
        .unwrap()
        .1;
    let public = RsaKeyPair::from_pkcs8(key)
        .unwrap()
        .public_key()
        .as_ref()
        .to_vec();
    assert!(
        leaf.windows(public.len()).any(|w| w == public.as_slice()),
        "the certificate holds the key's public half"
    );
    let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &public)
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
        .expect("RS256 signature verifies");

    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "JWT");
    let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, leaf);
    let sha256 = ring::digest::digest(&ring::digest::SHA256, leaf);
    assert_eq!(header["x5t"], URL_SAFE_NO_PAD.encode(sha1.as_ref()));
    assert_eq!(header["x5t#S256"], URL_SAFE_NO_PAD.encode(sha256.as_ref()));
    assert!(header.get("x5c").is_none(), "no chain unless asked");

    assert_eq!(
        claims["aud"],
        format!("{}/{TENANT}/oauth2/v2.0/token", entra.authority_host())
    );
    assert_eq!(claims["iss"], CLIENT);
    assert_eq!(claims["sub"], CLIENT);
    let jti = claims["jti"].as_str().unwrap();
    assert!(
        jti.len() >= 32 && jti.chars().all(|c| c.is_ascii_hexdigit()),
        "{jti}"
    );
    let (nbf, iat, exp) = (
        claims["nbf"].as_u64().unwrap(),
        claims["iat"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert_eq!(nbf, iat);
    assert_eq!(exp, iat + 600);
}

#[tokio::test]
async fn certificate_chain_is_sent_when_asked_and_pkcs1_keys_work() {
    let entra = EntraTokenEndpoint::spawn("chain-token");
    let dir = tempfile::tempdir().unwrap();
    // Leaf + key (PKCS#1) + one more certificate standing for an intermediate.
    let pem = dir.path().join("chain.pem");
    let mut text = std::fs::read_to_string(data("client-pkcs1.pem")).unwrap();
    text.push_str(&std::fs::read_to_string(data("ec-client.pem")).unwrap());
    std::fs::write(&pem, text).unwrap();
    let source = certificate_source(
        &entra,
        &pem,
        &[("AZURE_CLIENT_SEND_CERTIFICATE_CHAIN", "true")],
    );
    assert_eq!(source.token().await.unwrap().token.expose(), "chain-token");
    let (_, form) = token_form(&entra);
    let header = b64url_json(form["client_assertion"].split('.').next().unwrap());
    let certificates: Vec<Vec<u8>> = sections(&pem)
        .into_iter()
        .filter(|(k, _)| *k == SectionKind::Certificate)
        .map(|(_, der)| der)
        .collect();
    let x5c: Vec<Vec<u8>> = header["x5c"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| STANDARD.decode(c.as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(
        x5c, certificates,
        "leaf first, then the chain, standard base64 DER"
    );
}

#[tokio::test]
async fn a_pem_converted_from_pfx_works_and_the_leaf_is_the_keys_certificate() {
    // `openssl pkcs12 -in client.pfx -out converted.pem -nodes`: bag attributes around the
    // blocks. Put the chain's other certificate before the leaf: the leaf is still found.
    let entra = EntraTokenEndpoint::spawn("converted-token");
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("converted.pem");
    let other = std::fs::read_to_string(data("ec-client.pem")).unwrap();
    let other_cert = &other[..other.find("-----BEGIN PRIVATE KEY-----").unwrap()];
    let converted = std::fs::read_to_string(data("converted.pem")).unwrap();
    std::fs::write(&pem, format!("{other_cert}{converted}")).unwrap();
    let source = certificate_source(
        &entra,
        &pem,
        &[("AZURE_CLIENT_SEND_CERTIFICATE_CHAIN", "1")],
    );
    assert_eq!(
        source.token().await.unwrap().token.expose(),
        "converted-token"
    );
    let (_, form) = token_form(&entra);
    let header = b64url_json(form["client_assertion"].split('.').next().unwrap());
    let leaf = sections(&data("rsa-cert.pem")).remove(0).1;
    let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &leaf);
    assert_eq!(header["x5t"], URL_SAFE_NO_PAD.encode(sha1.as_ref()));
    let x5c = header["x5c"].as_array().unwrap();
    assert_eq!(x5c.len(), 2);
    assert_eq!(x5c[0], STANDARD.encode(&leaf));
}

#[tokio::test]
async fn a_certificate_not_matching_the_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("mismatch.pem");
    let ec = std::fs::read_to_string(data("ec-client.pem")).unwrap();
    let rsa = std::fs::read_to_string(data("client.pem")).unwrap();
    let ec_cert = &ec[..ec.find("-----BEGIN PRIVATE KEY-----").unwrap()];
    let rsa_key = &rsa[rsa.find("-----BEGIN PRIVATE KEY-----").unwrap()..];
    std::fs::write(&pem, format!("{ec_cert}{rsa_key}")).unwrap();
    let m = environment_error(&[
        ("AZURE_TENANT_ID", TENANT),
        ("AZURE_CLIENT_ID", CLIENT),
        ("AZURE_CLIENT_CERTIFICATE_PATH", pem.to_str().unwrap()),
    ])
    .await;
    assert!(
        m.contains("no certificate in the file matches the private key"),
        "{m}"
    );
}

/// The error the pinned environment credential reports for these variables.
async fn environment_error(vars: &[(&str, &str)]) -> String {
    let source = AzureTokenSource::new(
        AzureIdentityConfig::default()
            .with_env(env(vars))
            .with_credential(AzureCredentialKind::Environment)
            .with_http_client(client_trusting_nothing()),
    );
    source.token().await.unwrap_err().to_string()
}

#[tokio::test]
async fn certificate_problems_are_listed_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let with_path = |path: &Path| -> Vec<(String, String)> {
        vec![
            ("AZURE_TENANT_ID".into(), TENANT.into()),
            ("AZURE_CLIENT_ID".into(), CLIENT.into()),
            (
                "AZURE_CLIENT_CERTIFICATE_PATH".into(),
                path.to_str().unwrap().into(),
            ),
        ]
    };
    let run = |vars: Vec<(String, String)>| async move {
        let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        environment_error(&pairs).await
    };

    // A PFX, by its extension and by its content under another name.
    let m = run(with_path(&data("client.pfx"))).await;
    assert!(
        m.contains("service principal certificate (AZURE_CLIENT_CERTIFICATE_PATH)"),
        "{m}"
    );
    assert!(m.contains("PKCS#12"), "{m}");
    assert!(
        m.contains("openssl pkcs12 -in cert.pfx -out cert.pem -nodes"),
        "{m}"
    );
    let renamed = dir.path().join("cert.pem");
    std::fs::copy(data("client.pfx"), &renamed).unwrap();
    let m = run(with_path(&renamed)).await;
    assert!(m.contains("not a PEM file"), "{m}");
    assert!(
        m.contains("openssl pkcs12 -in cert.pfx -out cert.pem -nodes"),
        "{m}"
    );

    // A password: encrypted keys are not supported.
    let mut vars = with_path(&data("client.pem"));
    vars.push(("AZURE_CLIENT_CERTIFICATE_PASSWORD".into(), "hunter2".into()));
    let m = run(vars).await;
    assert!(
        m.contains("encrypted private keys are not supported"),
        "{m}"
    );
    assert!(m.contains("PKCS#8") && m.contains("chmod 600"), "{m}");
    assert!(!m.contains("hunter2"), "the password is never shown: {m}");

    // A missing file, named.
    let missing = dir.path().join("nowhere.pem");
    let m = run(with_path(&missing)).await;
    assert!(m.contains("cannot read the client certificate"), "{m}");
    assert!(m.contains(missing.to_str().unwrap()), "{m}");

    // A non-RSA key.
    let m = run(with_path(&data("ec-client.pem"))).await;
    assert!(m.contains("not RSA"), "{m}");

    // No key, no certificate.
    let cert_only = data("rsa-cert.pem");
    let m = run(with_path(&cert_only)).await;
    assert!(m.contains("holds no private key"), "{m}");
    let key_only = dir.path().join("key.pem");
    let text = std::fs::read_to_string(data("client.pem")).unwrap();
    let key_start = text.find("-----BEGIN PRIVATE KEY-----").unwrap();
    std::fs::write(&key_only, &text[key_start..]).unwrap();
    let m = run(with_path(&key_only)).await;
    assert!(m.contains("holds no certificate"), "{m}");
}

#[tokio::test]
async fn pinned_environment_names_the_missing_variables() {
    let m = environment_error(&[("AZURE_CLIENT_ID", CLIENT)]).await;
    assert!(
        m.contains("AZURE_TENANT_ID, AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH not set"),
        "{m}"
    );
    let m = environment_error(&[("AZURE_TENANT_ID", TENANT), ("AZURE_CLIENT_ID", CLIENT)]).await;
    assert!(
        m.contains("AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH not set"),
        "{m}"
    );
}

fn chain_for(vars: &[(&str, &str)], kind: AzureCredentialKind) -> Vec<String> {
    AzureTokenSource::new(
        AzureIdentityConfig::default()
            .with_env(env(vars))
            .with_credential(kind)
            .with_http_client(client_trusting_nothing()),
    )
    .chain()
    .into_iter()
    .map(str::to_owned)
    .collect()
}

#[test]
fn chain_lists_credentials_in_the_documented_order() {
    let everything = [
        ("AZURE_TENANT_ID", TENANT),
        ("AZURE_CLIENT_ID", CLIENT),
        ("AZURE_CLIENT_SECRET", "s3cret"),
        ("AZURE_CLIENT_CERTIFICATE_PATH", "/nonexistent/cert.pem"),
        ("AZURE_FEDERATED_TOKEN_FILE", "/var/run/secrets/token"),
        ("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi/token"),
    ];
    assert_eq!(
        chain_for(&everything, AzureCredentialKind::Chain),
        [
            "service principal (AZURE_CLIENT_SECRET)",
            "workload identity (AZURE_FEDERATED_TOKEN_FILE)",
            "managed identity (IDENTITY_ENDPOINT)",
            "Azure CLI (az login)",
            "Azure Developer CLI (azd auth login)",
        ]
    );
    // A tenant and client id alone (what workload and managed identities also read) are no
    // service principal.
    assert_eq!(
        chain_for(&everything[..2], AzureCredentialKind::Chain),
        [
            "managed identity (IMDS)",
            "Azure CLI (az login)",
            "Azure Developer CLI (azd auth login)",
        ]
    );
    let cert = [
        ("AZURE_TENANT_ID", TENANT),
        ("AZURE_CLIENT_ID", CLIENT),
        ("AZURE_CLIENT_CERTIFICATE_PATH", "/nonexistent/cert.pem"),
    ];
    // Without a secret, the certificate.
    assert_eq!(
        chain_for(&cert, AzureCredentialKind::Chain)[0],
        "service principal certificate (AZURE_CLIENT_CERTIFICATE_PATH)"
    );
    // Nothing set: the probes and the command-line tools.
    assert_eq!(
        chain_for(&[], AzureCredentialKind::Chain),
        [
            "managed identity (IMDS)",
            "Azure CLI (az login)",
            "Azure Developer CLI (azd auth login)",
        ]
    );
    // A user-assigned identity (MANAGED_IDENTITY_CLIENT_ID here): only it.
    assert_eq!(
        chain_for(
            &[
                ("MANAGED_IDENTITY_CLIENT_ID", "mi-1"),
                ("AZURE_CLIENT_SECRET", "x")
            ],
            AzureCredentialKind::Chain
        ),
        ["managed identity (client id mi-1)"]
    );
    // The config's id wins over the variable.
    let configured = AzureTokenSource::new(
        AzureIdentityConfig::default()
            .with_env(env(&[("MANAGED_IDENTITY_CLIENT_ID", "mi-1")]))
            .with_managed_identity_client_id(Some("mi-2".into()))
            .with_http_client(client_trusting_nothing()),
    );
    assert_eq!(configured.chain(), ["managed identity (client id mi-2)"]);
    assert!(
        configured
            .describe()
            .contains("managed identity (client id mi-2)"),
        "{}",
        configured.describe()
    );
}

#[test]
fn each_pinned_kind_builds_only_its_credential() {
    let everything = [
        ("AZURE_TENANT_ID", TENANT),
        ("AZURE_CLIENT_ID", CLIENT),
        ("AZURE_CLIENT_SECRET", "s3cret"),
        ("AZURE_FEDERATED_TOKEN_FILE", "/var/run/secrets/token"),
        ("MANAGED_IDENTITY_CLIENT_ID", "mi-1"),
    ];
    let cases = [
        (
            AzureCredentialKind::Environment,
            "service principal (AZURE_CLIENT_SECRET)",
        ),
        (
            AzureCredentialKind::WorkloadIdentity,
            "workload identity (AZURE_FEDERATED_TOKEN_FILE)",
        ),
        (
            AzureCredentialKind::ManagedIdentity,
            "managed identity (client id mi-1)",
        ),
        (AzureCredentialKind::Cli, "Azure CLI (az login)"),
        (
            AzureCredentialKind::DeveloperCli,
            "Azure Developer CLI (azd auth login)",
        ),
    ];
    for (kind, name) in cases {
        assert_eq!(chain_for(&everything, kind), [name], "{kind}");
    }
    assert_eq!(
        chain_for(&[], AzureCredentialKind::ManagedIdentity),
        ["managed identity (IMDS)"]
    );
}

#[tokio::test]
async fn pinned_workload_identity_names_the_missing_variables() {
    let source = AzureTokenSource::new(
        AzureIdentityConfig::default()
            .with_env(env(&[("AZURE_CLIENT_ID", CLIENT)]))
            .with_credential(AzureCredentialKind::WorkloadIdentity)
            .with_http_client(client_trusting_nothing()),
    );
    let m = source.token().await.unwrap_err().to_string();
    assert!(
        m.contains("AZURE_FEDERATED_TOKEN_FILE, AZURE_TENANT_ID not set"),
        "{m}"
    );
}

#[test]
fn credential_kind_spellings() {
    use AzureCredentialKind as K;
    let cases = [
        ("chain", K::Chain),
        ("environment", K::Environment),
        ("workload_identity", K::WorkloadIdentity),
        ("managed_identity", K::ManagedIdentity),
        ("cli", K::Cli),
        ("developer_cli", K::DeveloperCli),
        ("azd", K::DeveloperCli),
        ("Managed-Identity", K::ManagedIdentity),
    ];
    for (text, kind) in cases {
        assert_eq!(text.parse::<K>().unwrap(), kind, "{text}");
    }
    for kind in [
        K::Chain,
        K::Environment,
        K::WorkloadIdentity,
        K::ManagedIdentity,
        K::Cli,
        K::DeveloperCli,
    ] {
        assert_eq!(kind.to_string().parse::<K>().unwrap(), kind);
    }
    assert_eq!(K::DeveloperCli.to_string(), "developer_cli");
    assert_eq!(K::default(), K::Chain);
    let e = "powershell".parse::<K>().unwrap_err();
    assert!(e.contains("`powershell`"), "{e}");
    assert!(
        e.contains(
            "chain, environment, workload_identity, managed_identity, cli, developer_cli, azd"
        ),
        "{e}"
    );
}

// --- Key Vault ---

fn reference(vault: &str, secret: &str, version: Option<&str>) -> KeyVaultReference {
    KeyVaultReference {
        vault: vault.into(),
        secret: secret.into(),
        version: version.map(str::to_owned),
    }
}

#[test]
fn keyvault_references_parse_in_every_form() {
    let cases = [
        (
            "keyvault://my-vault/openai-key",
            reference("my-vault", "openai-key", None),
        ),
        (
            "keyvault://my-vault/openai-key/0123abcd",
            reference("my-vault", "openai-key", Some("0123abcd")),
        ),
        (
            "@Microsoft.KeyVault(SecretUri=https://my-vault.vault.azure.net/secrets/openai-key/)",
            reference("https://my-vault.vault.azure.net", "openai-key", None),
        ),
        (
            "@Microsoft.KeyVault(SecretUri=https://my-vault.vault.azure.net/secrets/openai-key/0123abcd)",
            reference(
                "https://my-vault.vault.azure.net",
                "openai-key",
                Some("0123abcd"),
            ),
        ),
        (
            "@Microsoft.KeyVault(VaultName=my-vault;SecretName=openai-key)",
            reference("my-vault", "openai-key", None),
        ),
        (
            "@Microsoft.KeyVault(VaultName=my-vault;SecretName=openai-key;SecretVersion=0123abcd)",
            reference("my-vault", "openai-key", Some("0123abcd")),
        ),
    ];
    for (text, expected) in cases {
        let parsed = KeyVaultReference::parse(text).unwrap().unwrap();
        assert_eq!(parsed, expected, "{text}");
        // Display gives a reference that parses back to the same.
        let shown = parsed.to_string();
        assert_eq!(
            KeyVaultReference::parse(&shown).unwrap().unwrap(),
            expected,
            "{shown}"
        );
    }
    assert_eq!(
        reference("my-vault", "k", Some("v1")).to_string(),
        "keyvault://my-vault/k/v1"
    );
    // Not references at all.
    for text in [
        "sk-abc",
        "",
        "https://my-vault.vault.azure.net/secrets/x",
        "${KEY}",
    ] {
        assert!(KeyVaultReference::parse(text).is_none(), "{text}");
    }
}

#[test]
fn malformed_keyvault_references_say_the_expected_forms() {
    for text in [
        "keyvault://",
        "keyvault://ab/secret",
        "keyvault://a-vault-name-longer-than-24/secret",
        "keyvault://my_vault/secret",
        "keyvault://my-vault",
        "keyvault://my-vault/bad.name",
        "keyvault://my-vault/secret/v1/extra",
        "@Microsoft.KeyVault(SecretUri=http://my-vault.vault.azure.net/secrets/x)",
        "@Microsoft.KeyVault(SecretUri=https://my-vault.vault.azure.net/keys/x)",
        "@Microsoft.KeyVault(VaultName=my-vault)",
        "@Microsoft.KeyVault(VaultName=my-vault;SecretName=x",
        "@Microsoft.KeyVault(VaultName=my-vault;SecretName=x;Colour=blue)",
    ] {
        let e = KeyVaultReference::parse(text)
            .unwrap_or_else(|| panic!("{text} is a reference"))
            .unwrap_err();
        assert!(e.contains(text), "{e}");
        assert!(e.contains("keyvault://<vault-name>/<secret-name>"), "{e}");
        assert!(e.contains("@Microsoft.KeyVault(VaultName="), "{e}");
    }
}

fn vault(fake: &KeyVaultFake, bearer: &str) -> KeyVault {
    KeyVault::new(Arc::new(StaticToken::new(bearer)))
        .with_endpoint(Some(fake.url()))
        .with_http_client(client_trusting_nothing())
}

#[tokio::test]
async fn keyvault_reads_versions_and_rotations() {
    let fake = KeyVaultFake::spawn("kv-token");
    let first = fake.set("openai-key", "sk-one");
    let kv = vault(&fake, "kv-token");
    let r = KeyVaultReference::parse("keyvault://my-vault/openai-key")
        .unwrap()
        .unwrap();
    assert_eq!(kv.secret(&r).await.unwrap().expose(), "sk-one");

    // Rotation: the next read sees the new version; the old one stays readable by id.
    fake.set("openai-key", "sk-two");
    assert_eq!(kv.secret(&r).await.unwrap().expose(), "sk-two");
    let pinned = reference("my-vault", "openai-key", Some(&first));
    assert_eq!(kv.secret(&pinned).await.unwrap().expose(), "sk-one");

    assert_eq!(
        fake.requests(),
        [
            "/secrets/openai-key?api-version=7.4".to_owned(),
            "/secrets/openai-key?api-version=7.4".to_owned(),
            format!("/secrets/openai-key/{first}?api-version=7.4"),
        ]
    );
    assert_eq!(KEYVAULT_SCOPE, "https://vault.azure.net/.default");
}

#[tokio::test]
async fn keyvault_endpoint_override_applies_to_the_secret_uri_form() {
    let fake = KeyVaultFake::spawn("kv-token");
    fake.set("db-password", "hunter2");
    // The default HTTP client, and a SecretUri naming the real host: the override wins.
    let kv = KeyVault::new(Arc::new(StaticToken::new("kv-token")))
        .with_endpoint(Some(format!("{}/", fake.url())));
    let r = KeyVaultReference::parse(
        "@Microsoft.KeyVault(SecretUri=https://my-vault.vault.azure.net/secrets/db-password/)",
    )
    .unwrap()
    .unwrap();
    assert_eq!(kv.secret(&r).await.unwrap().expose(), "hunter2");
    assert_eq!(fake.requests(), ["/secrets/db-password?api-version=7.4"]);
}

#[tokio::test]
async fn keyvault_errors_name_the_reference() {
    let fake = KeyVaultFake::spawn("kv-token");
    fake.set("openai-key", "sk-one");
    let r = KeyVaultReference::parse("keyvault://my-vault/absent-key")
        .unwrap()
        .unwrap();

    let e = vault(&fake, "kv-token").secret(&r).await.unwrap_err();
    assert!(matches!(e, KeyVaultError::NotFound { .. }), "{e:?}");
    let m = e.to_string();
    assert!(m.contains("keyvault://my-vault/absent-key"), "{m}");
    assert!(m.contains("not found"), "{m}");

    let ok = reference("my-vault", "openai-key", None);
    let e = vault(&fake, "wrong-token").secret(&ok).await.unwrap_err();
    assert!(
        matches!(e, KeyVaultError::Denied { status: 401, .. }),
        "{e:?}"
    );
    let m = e.to_string();
    assert!(m.contains("keyvault://my-vault/openai-key"), "{m}");
    assert!(m.contains("Key Vault Secrets User"), "{m}");
    assert!(!m.contains("wrong-token"), "{m}");
}

#[tokio::test]
async fn keyvault_unreachable_endpoint_is_named() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let kv = KeyVault::new(Arc::new(StaticToken::new("t")))
        .with_endpoint(Some(endpoint.clone()))
        .with_http_client(client_trusting_nothing());
    let e = kv
        .secret(&reference("my-vault", "openai-key", None))
        .await
        .unwrap_err();
    assert!(matches!(e, KeyVaultError::Unreachable { .. }), "{e:?}");
    let m = e.to_string();
    assert!(m.contains("keyvault://my-vault/openai-key"), "{m}");
    assert!(
        m.contains(&format!("{endpoint}/secrets/openai-key?api-version=7.4")),
        "{m}"
    );
}

#[tokio::test]
async fn keyvault_without_a_token_lists_what_was_tried() {
    let tokens = AzureTokenSource::new(
        AzureIdentityConfig::default()
            .with_scope(KEYVAULT_SCOPE)
            .with_env(env(&[]))
            .with_credential(AzureCredentialKind::Environment)
            .with_http_client(client_trusting_nothing()),
    );
    let kv = KeyVault::new(Arc::new(tokens)).with_endpoint(Some("http://127.0.0.1:9".into()));
    let e = kv
        .secret(&reference("my-vault", "openai-key", None))
        .await
        .unwrap_err();
    assert!(matches!(e, KeyVaultError::NoToken { .. }), "{e:?}");
    let m = e.to_string();
    assert!(m.contains("keyvault://my-vault/openai-key"), "{m}");
    assert!(m.contains("https://vault.azure.net/.default"), "{m}");
    assert!(m.contains("service principal (environment)"), "{m}");
}

#[test]
fn config_debug_shows_variable_names_not_values() {
    let cfg = AzureIdentityConfig::default().with_env(env(&[("AZURE_CLIENT_SECRET", "s3cret")]));
    let shown = format!("{cfg:?}");
    assert!(shown.contains("AZURE_CLIENT_SECRET"), "{shown}");
    assert!(!shown.contains("s3cret"), "{shown}");
}
