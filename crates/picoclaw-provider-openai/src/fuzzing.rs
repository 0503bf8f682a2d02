//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, not part of the API): the
//! parsers a server's bytes reach, without the HTTP request before them.

use crate::{ChatResponse, ChatStream, ProviderError};
use picoclaw_api::ToolCall;
use std::time::Duration;

const NAME: &str = "fuzz";

/// A Chat Completions answer, as `chat` reads it; `offered` are the request's tools.
pub fn chat_completion(body: &str, offered: &[String]) -> Result<ChatResponse, ProviderError> {
    let mut resp = crate::wire::parse_completion(NAME, body)?;
    crate::chat::convert_text_tool_calls(&mut resp, offered);
    Ok(resp)
}

/// A streamed Chat Completions answer, as `stream` reads it once the server answered.
pub async fn chat_stream(
    response: reqwest::Response,
    offered: Vec<String>,
) -> Result<ChatStream, ProviderError> {
    crate::chat::answer_stream(
        NAME.to_owned(),
        Duration::from_secs(5),
        response,
        offered,
        |e| ProviderError::response(NAME, e.to_string()),
    )
    .await
}

/// A Responses API answer, as `OpenAiResponses::chat` reads it.
pub fn responses_body(body: &str) -> Result<ChatResponse, ProviderError> {
    crate::responses::parse_body(NAME, body)
}

/// A streamed Responses API answer, as `OpenAiResponses::stream` reads it.
pub fn responses_stream(response: reqwest::Response) -> ChatStream {
    crate::responses::answer_stream(NAME.to_owned(), response)
}

/// Tool calls a local model wrote as text (and whether a stream must hold the text back).
pub fn text_tool_calls(text: &str, offered: &[String]) -> (bool, Option<(String, Vec<ToolCall>)>) {
    (
        crate::text_tools::may_be_tool_call(text),
        crate::text_tools::extract(text, offered),
    )
}
