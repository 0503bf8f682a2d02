//! `tools.gpio` through the real assembly: the gpio tool is offered only when enabled, with the
//! configured pins, and a wrong backend stops the start with a config error.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.
#![cfg(feature = "hardware")]

use picoclaw_gateway::{AssembleOptions, SetupError, assemble};
use serde_json::{Value, json};

/// The names of the tools the agent assembled from a config with these `tools` gets.
async fn tools_offered(tools: Value) -> Result<Vec<String>, SetupError> {
    let home = tempfile::tempdir().unwrap();
    let config_file = home.path().join("config.json");
    std::fs::write(
        &config_file,
        json!({
            "agents": {"defaults": {"model": "openai/test-model",
                                    "workspace": home.path().join("ws").display().to_string()}},
            // Never called: assembling talks to no provider.
            "providers": {"openai": {"api_key": "sk-test", "api_base": "http://127.0.0.1:9/v1"}},
            "tools": tools,
        })
        .to_string(),
    )
    .unwrap();
    let paths = picoclaw_config::Paths::new(home.path(), &config_file);
    let loaded = picoclaw_config::load(&paths).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let assembled = assemble(&loaded.config, &paths, AssembleOptions::streaming(false)).await?;
    let names = assembled.agent.tools().names().map(str::to_owned).collect();
    Ok(names)
}

#[tokio::test]
async fn the_gpio_tool_is_offered_only_when_enabled() {
    let off = tools_offered(json!({})).await.unwrap();
    assert!(!off.iter().any(|t| t == "gpio"), "{off:?}");
    let off = tools_offered(json!({"gpio": {"enabled": false, "pins": [17]}}))
        .await
        .unwrap();
    assert!(!off.iter().any(|t| t == "gpio"), "{off:?}");

    let on = tools_offered(json!({"gpio": {"enabled": true, "chip": "/dev/gpiochip0",
                                           "pins": [17, 27]}}))
    .await
    .unwrap();
    assert!(on.iter().any(|t| t == "gpio"), "{on:?}");
}

#[tokio::test]
async fn a_wrong_gpio_backend_is_a_config_error() {
    let err = tools_offered(json!({"gpio": {"enabled": true, "backend": "sysfs", "pins": [1]}}))
        .await
        .unwrap_err();
    assert!(err.is_config(), "{err}");
    assert!(err.to_string().contains("tools.gpio.backend"), "{err}");
}
