//! The whatsapp channel (being written).

use crate::{Channel, ChannelError, ChannelSetup};
use std::sync::Arc;

/// Builds `channels.whatsapp` (to be written).
pub(crate) fn build(setup: &ChannelSetup) -> Result<Arc<dyn Channel>, ChannelError> {
    Err(ChannelError::Rejected(format!(
        "channels.{}: not built yet",
        setup.name
    )))
}
