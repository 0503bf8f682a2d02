//! Test helpers for picoclaw: scripted model answers ([`Reply`]), an in-process
//! [`ScriptedProvider`], a real OpenAI-compatible HTTP server on 127.0.0.1 ([`ScriptedEndpoint`])
//! that tests script turn by turn and that records what it received (in any wire format: see
//! [`dialect`]), the provider conformance suites ([`conformance`]), and [`TempWorkspace`].
//!
//! Nothing here reaches the internet; everything is deterministic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod anthropic;
pub mod browser;
mod chat_completions;
pub mod conformance;
pub mod dialect;
pub mod dingtalk;
pub mod discord;
mod endpoint;
mod entra;
pub mod feishu;
mod gemini;
mod identity;
mod keyvault;
pub mod line;
pub mod load;
pub mod oauth;
pub mod onebot;
mod provider;
pub mod qq;
mod reply;
mod responses;
mod rng;
mod serve;
pub mod slack;
pub mod telegram;
pub mod wecom;
pub mod whatsapp;
mod workspace;

pub use endpoint::{RecordedRequest, ScriptedEndpoint};
pub use entra::EntraTokenEndpoint;
pub use identity::IdentityEndpoint;
pub use keyvault::KeyVaultFake;
pub use provider::ScriptedProvider;
pub use reply::Reply;
pub use rng::SeededRng;
pub use workspace::TempWorkspace;
