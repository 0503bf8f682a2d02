//! Architecture invariants (docs/ARCHITECTURE.md): reads `cargo metadata` and fails when a crate
//! depends on one it may not (an upward edge in the layer table of docs/ARCHITECTURE.md).
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Command;

/// Layer of every internal package. A new crate must be added here (and to ARCHITECTURE.md).
fn layer(name: &str) -> Option<u8> {
    Some(match name {
        // picoclaw-fs and picoclaw-http (the HTTPS client builder) depend on nothing internal:
        // leaves beside the vocabulary, so auth (layer 1) and everything above may use them.
        "picoclaw-api" | "picoclaw-fs" | "picoclaw-http" => 0,
        "picoclaw-auth" | "picoclaw-state" => 1,
        // The model clients, one crate per wire family, over api and http only (see
        // `forbidden`); the registry (providers, layer 2) enables them by feature.
        "picoclaw-provider-openai" | "picoclaw-provider-anthropic" | "picoclaw-provider-gemini" => {
            1
        }
        "picoclaw-providers" | "picoclaw-tools" | "picoclaw-skills" | "picoclaw-mcp"
        | "picoclaw-channels" => 2,
        "picoclaw-core" => 3,
        "picoclaw-config" | "picoclaw-gateway" => 4,
        "picoclaw-testkit" => 4,
        "picoclaw-cli" | "picoclaw-benches" => 5,
        "picoclaw" => 4,
        n if n.starts_with("example-") => 5,
        "picoclaw-gateway-bin" => 5,
        _ => return None,
    })
}

/// Same-layer edges that are allowed, one way only: the gateway is configured by the config
/// crate (it loads the file, builds providers from it), and the config crate never knows the
/// gateway; an executable skill's tools and an MCP server's tools are tools (the `Tool` trait,
/// the sandboxed process helpers), and tools never know skills or MCP; picoclaw-http's
/// `provider` feature (the helpers every model client shares) speaks picoclaw-api's
/// `ProviderError`, and picoclaw-api never knows HTTP; the gateway binary is picoclaw-cli's
/// `run_gateway` (the process set-up the two binaries share).
fn same_layer_allowed(from: &str, to: &str) -> bool {
    matches!(
        (from, to),
        ("picoclaw-gateway", "picoclaw-config")
            | ("picoclaw-http", "picoclaw-api")
            | ("picoclaw-skills", "picoclaw-tools")
            | ("picoclaw-mcp", "picoclaw-tools")
            | ("picoclaw-gateway-bin", "picoclaw-cli")
    )
}

/// Edges the layer rule alone would allow but docs/ARCHITECTURE.md forbids.
fn forbidden(from: &str, to: &str) -> Option<&'static str> {
    match (from, to) {
        (from, to)
            if from.starts_with("picoclaw-provider-")
                && !matches!(to, "picoclaw-api" | "picoclaw-http") =>
        {
            Some(
                "a provider family crate depends on picoclaw-api and picoclaw-http only (it is \
                 the model for a provider crate from outside the workspace)",
            )
        }
        ("picoclaw-tools", "picoclaw-providers") => Some("tools must not depend on providers"),
        ("picoclaw-core", "picoclaw-channels") => Some("the agent core knows nothing of channels"),
        ("picoclaw-channels", "picoclaw-providers" | "picoclaw-tools" | "picoclaw-state") => {
            Some("channels never call providers, tools or state")
        }
        (from, "picoclaw-testkit")
            if !(from.starts_with("example-") || from == "picoclaw-benches") =>
        {
            Some("the testkit is a dev-dependency only (examples and benches excepted)")
        }
        _ => None,
    }
}

fn metadata() -> Value {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata JSON")
}

#[test]
fn dependencies_point_down_the_layers() {
    let meta = metadata();
    let packages = meta["packages"].as_array().expect("packages");
    let internal: BTreeMap<&str, &Value> = packages
        .iter()
        .map(|p| (p["name"].as_str().expect("name"), p))
        .collect();
    let mut violations = Vec::new();
    for (name, pkg) in &internal {
        let Some(from_layer) = layer(name) else {
            violations.push(format!(
                "{name} has no layer: add it to the table in apps/picoclaw/tests/architecture.rs \
                 and docs/ARCHITECTURE.md"
            ));
            continue;
        };
        for dep in pkg["dependencies"].as_array().expect("dependencies") {
            let dep_name = dep["name"].as_str().expect("dep name");
            if !internal.contains_key(dep_name) {
                continue;
            }
            let is_dev = dep["kind"].as_str() == Some("dev");
            if is_dev {
                continue;
            }
            let to_layer = layer(dep_name).unwrap_or(u8::MAX);
            if to_layer >= from_layer && !same_layer_allowed(name, dep_name) {
                violations.push(format!(
                    "{name} (layer {from_layer}) depends on {dep_name} (layer {to_layer}): \
                     dependencies must point down"
                ));
            }
            if let Some(why) = forbidden(name, dep_name) {
                violations.push(format!("{name} depends on {dep_name}: {why}"));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "architecture violations:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_api_crate_depends_only_on_its_allowed_list() {
    let meta = metadata();
    let types = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|p| p["name"] == "picoclaw-api")
        .expect("picoclaw-api package");
    for dep in types["dependencies"].as_array().expect("deps") {
        if dep["kind"].as_str() == Some("dev") {
            continue;
        }
        let name = dep["name"].as_str().expect("name");
        assert!(
            matches!(
                name,
                "serde"
                    | "serde_json"
                    | "async-trait"
                    | "futures-core"
                    | "thiserror"
                    | "schemars"
                    | "chrono"
                    | "tokio-util"
                    | "tokio"
            ),
            "picoclaw-api must stay IO-free and light (docs/ARCHITECTURE.md), but depends on {name}"
        );
        // tokio for its AsyncRead/AsyncWrite traits only (an upgraded socket's byte stream):
        // no runtime, no I/O of its own (tokio-util already brings tokio in).
        if name == "tokio" {
            assert_eq!(
                dep["uses_default_features"], false,
                "picoclaw-api takes tokio without its default features"
            );
            assert!(
                dep["features"].as_array().is_some_and(Vec::is_empty),
                "picoclaw-api takes no tokio feature: {}",
                dep["features"]
            );
        }
    }
}

#[test]
fn the_http_crate_reaches_the_api_crate_only_through_its_provider_feature() {
    let meta = metadata();
    let http = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|p| p["name"] == "picoclaw-http")
        .expect("picoclaw-http package");
    for dep in http["dependencies"].as_array().expect("deps") {
        if dep["kind"].as_str() == Some("dev") || dep["name"] != "picoclaw-api" {
            continue;
        }
        assert_eq!(
            dep["optional"],
            Value::Bool(true),
            "picoclaw-http must stay a leaf without its `provider` feature: picoclaw-api is an \
             optional dependency of it"
        );
    }
}

#[test]
fn the_layer_rule_itself_catches_an_upward_edge() {
    // Guard against the check above silently passing: the table must rank these as upward.
    assert!(layer("picoclaw-core") > layer("picoclaw-providers"));
    assert!(layer("picoclaw-api") < layer("picoclaw-state"));
    assert!(forbidden("picoclaw-tools", "picoclaw-providers").is_some());
    assert!(layer("picoclaw-provider-gemini") < layer("picoclaw-providers"));
    assert!(forbidden("picoclaw-provider-openai", "picoclaw-auth").is_some());
    assert!(forbidden("picoclaw-provider-anthropic", "picoclaw-provider-openai").is_some());
    assert!(forbidden("picoclaw-provider-gemini", "picoclaw-http").is_none());
    assert!(forbidden("picoclaw-providers", "picoclaw-provider-gemini").is_none());
    assert!(layer("picoclaw-unknown").is_none());
}
