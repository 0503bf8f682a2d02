//! An HTTP client built at first use: building one reads the system's TLS roots (some 150
//! files), which a turn that never uses the tool should not pay for.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

#[derive(Clone, Debug)]
pub(crate) struct LazyClient {
    cell: Arc<OnceLock<Result<reqwest::Client, String>>>,
    timeout: Duration,
    user_agent: &'static str,
}

impl LazyClient {
    pub(crate) fn new(timeout: Duration, user_agent: &'static str) -> Self {
        Self {
            cell: Arc::default(),
            timeout,
            user_agent,
        }
    }

    /// The client, or why it could not be built (no TLS crypto provider, no system roots).
    pub(crate) fn get(&self) -> Result<&reqwest::Client, String> {
        self.cell
            .get_or_init(|| {
                picoclaw_http::client_builder()
                    .map_err(|e| e.to_string())?
                    .timeout(self.timeout)
                    .user_agent(self.user_agent)
                    .build()
                    .map_err(|e| format!("cannot build the HTTP client: {e}"))
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}
