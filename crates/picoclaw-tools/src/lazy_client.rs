//! An HTTP client built at first use: building one reads the system's TLS roots (some 150
//! files), which a turn that never uses the tool should not pay for.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

#[derive(Clone, Debug)]
pub(crate) struct LazyClient {
    cell: Arc<OnceLock<reqwest::Client>>,
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

    pub(crate) fn get(&self) -> &reqwest::Client {
        self.cell.get_or_init(|| {
            let _ = rustls::crypto::ring::default_provider().install_default();
            reqwest::Client::builder()
                .timeout(self.timeout)
                .user_agent(self.user_agent)
                .build()
                .unwrap_or_default()
        })
    }
}
