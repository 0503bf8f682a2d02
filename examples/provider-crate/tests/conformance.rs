//! echo-upper against picoclaw's provider contract suite, and its factory's settings.

use picoclaw_api::{ChatRequest, LlmProvider, ProviderError};
use picoclaw_echo_upper::{EchoUpper, factory};
use picoclaw_providers::ProviderSpec;
use picoclaw_testkit::conformance::{Contract, contract_suite};
use serde_json::json;

/// What echo-upper must answer: the suite's requests end with a user message.
fn upper_last(req: &ChatRequest) -> String {
    let last = req.messages.last().expect("the suite sends messages");
    last.text().to_uppercase()
}

#[tokio::test]
async fn passes_the_contract_suite() {
    contract_suite(&EchoUpper::new()).await;
}

#[tokio::test]
async fn answers_in_upper_case_streamed_in_two_or_more_deltas() {
    Contract::new()
        .model("x")
        .expect_answer(upper_last)
        .min_deltas(2)
        .run(&EchoUpper::new())
        .await;
}

#[tokio::test]
async fn the_factory_reads_its_settings_from_the_config_section() {
    let spec = ProviderSpec::new("echo-upper", "echo-upper", "x", "")
        .with_section(json!({"delay_ms": 5, "api_key": "left for picoclaw"}));
    let provider = factory(&spec).expect("a valid section");
    assert_eq!(provider.name(), "echo-upper");
    // The paced stream keeps the contract too.
    Contract::new()
        .expect_answer(upper_last)
        .min_deltas(2)
        .run(provider.as_ref())
        .await;

    let bad = spec.with_section(json!({"delay_ms": "soon"}));
    let err = factory(&bad).err().expect("a wrong type is refused");
    assert!(
        matches!(err, ProviderError::NotConfigured(ref m) if m.contains("providers.echo-upper")),
        "{err}"
    );
}
