//! The wecom channel (being written).

use crate::{Channel, ChannelError, ChannelSetup};
use std::sync::Arc;

/// Builds `channels.wecom` (to be written).
pub(crate) fn build(setup: &ChannelSetup) -> Result<Arc<dyn Channel>, ChannelError> {
    Err(ChannelError::Rejected(format!(
        "channels.{}: not built yet",
        setup.name
    )))
}

/// Builds `channels.wecom_app` (to be written).
pub(crate) fn build_app(setup: &ChannelSetup) -> Result<Arc<dyn Channel>, ChannelError> {
    Err(ChannelError::Rejected(format!(
        "channels.{}: not built yet",
        setup.name
    )))
}
