//! End to end: the real `picoclaw` binary against a scripted OpenAI-compatible endpoint on
//! 127.0.0.1, in a temporary home and workspace.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

#[allow(unused_imports)]
use assert_cmd::Command;
use picoclaw_testkit::{Reply, ScriptedEndpoint};
use serde_json::{Value, json};
use std::path::Path;

#[path = "../support/mod.rs"]
mod support;
#[allow(unused_imports)]
use support::*;

mod agent;
mod agents;
mod auth;
mod cron;
mod mcp;
mod minimal;
mod providers;
mod skills;
mod state;
mod status;
mod tools;
