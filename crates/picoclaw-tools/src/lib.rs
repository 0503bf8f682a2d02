//! Tools an agent can call: the [`Tool`] trait, the [`ToolRegistry`] that holds them, and the
//! built-in tools. File access is confined by the workspace sandbox.

#![warn(clippy::unwrap_used, clippy::expect_used)]

mod tool;

pub use tool::{Tool, ToolContext, ToolOutput, ToolRegistry};
