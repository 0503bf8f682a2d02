//! The provider conformance suites.
//!
//! - [`contract_suite`] (and [`Contract`] to say more about the answers): what every
//!   [`LlmProvider`](picoclaw_api::LlmProvider) must do, whatever it talks to — a streamed answer
//!   is text deltas then exactly one `Completed` that agrees with them, `chat` and `stream` give
//!   the same answer, a request with a whole tool-calling history is accepted, a dropped stream
//!   leaves the provider usable, concurrent calls work. It takes a provider and nothing else, so
//!   an in-process provider (a contributor's `echo-upper`) runs it as it is.
//! - [`wire_suite`]: what a provider over HTTP must do, against a
//!   [`ScriptedEndpoint`](crate::ScriptedEndpoint) speaking its wire format through a
//!   [`Dialect`](crate::dialect::Dialect): text, usage, tool calls (one, several, streamed),
//!   the model id on the wire, errors classified (429 with `Retry-After`, 500, 400, a wrong key,
//!   a body that is not the API, streams cut short), and the contract suite on top. A new wire
//!   format implements `Dialect` in its own crate and runs this suite; testkit does not change.
//!
//! ```ignore
//! use picoclaw_testkit::{conformance, dialect::ChatCompletionsDialect};
//! conformance::contract_suite(&MyProvider::new()).await;
//! conformance::wire_suite(Arc::new(ChatCompletionsDialect), |ep| {
//!     Arc::new(MyHttpProvider::new(ep.base_url()))
//! })
//! .await;
//! ```

mod contract;
mod wire;

pub use contract::{Contract, contract_suite};
pub use wire::wire_suite;
