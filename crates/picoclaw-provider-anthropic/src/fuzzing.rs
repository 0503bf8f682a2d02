//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, not part of the API): the
//! parsers a server's bytes reach, without the HTTP request before them.

use crate::{ChatResponse, ChatStream, ProviderError};
use std::time::Duration;

/// A whole answer, as `chat` reads it.
pub fn body(body: &str) -> Result<ChatResponse, ProviderError> {
    crate::parse_message(body)
}

/// A streamed answer, as `stream` reads it once the server answered.
pub fn stream(response: reqwest::Response) -> ChatStream {
    crate::answer_stream(Duration::from_secs(5), response)
}
