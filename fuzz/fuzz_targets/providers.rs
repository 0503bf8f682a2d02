//! The model answers a server sends, for each wire family: the first byte picks the parser, the
//! rest is the body (a whole JSON answer, or the bytes of an SSE stream). Streams are read to
//! the end the way the agent reads them.
#![no_main]

use futures::StreamExt;
use libfuzzer_sys::fuzz_target;
use picoclaw_provider_anthropic::fuzzing as anthropic;
use picoclaw_provider_gemini::fuzzing as gemini;
use picoclaw_provider_openai::fuzzing as openai;
use picoclaw_provider_openai::{ChatStream, StreamEvent};

/// A server's answer with `body`, as reqwest hands it to the provider after the request.
fn response(content_type: &str, body: &[u8]) -> reqwest::Response {
    let mut answer = http::Response::new(body.to_vec());
    if let Ok(value) = http::HeaderValue::from_str(content_type) {
        answer
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, value);
    }
    reqwest::Response::from(answer)
}

/// Reads a stream to its end; nothing may follow the final answer or an error.
fn drain(stream: ChatStream) {
    futures::executor::block_on(async move {
        let mut stream = stream;
        let mut ended = false;
        while let Some(event) = stream.next().await {
            assert!(!ended, "an event after the end of the stream");
            ended = matches!(event, Ok(StreamEvent::Completed(_)) | Err(_));
        }
    });
}

fn offered() -> Vec<String> {
    vec!["read_file".to_owned(), "exec".to_owned()]
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(body);
    match which % 10 {
        0 => {
            let _ = openai::chat_completion(&text, &offered());
        }
        1 => {
            let stream = futures::executor::block_on(openai::chat_stream(
                response("text/event-stream", body),
                offered(),
            ));
            if let Ok(stream) = stream {
                drain(stream);
            }
        }
        2 => {
            // A server that ignored `stream: true` (one JSON answer), with and without tools.
            let tools = if body.len() % 2 == 0 {
                offered()
            } else {
                Vec::new()
            };
            let stream = futures::executor::block_on(openai::chat_stream(
                response("application/json", body),
                tools,
            ));
            if let Ok(stream) = stream {
                drain(stream);
            }
        }
        3 => {
            let _ = openai::responses_body(&text);
        }
        4 => drain(openai::responses_stream(response(
            "text/event-stream",
            body,
        ))),
        5 => {
            let _ = anthropic::body(&text);
        }
        6 => drain(anthropic::stream(response("text/event-stream", body))),
        7 => {
            let _ = gemini::body(&text);
        }
        8 => drain(gemini::stream(response("text/event-stream", body))),
        _ => {
            let (_, calls) = openai::text_tool_calls(&text, &offered());
            if let Some((_, calls)) = calls {
                assert!(!calls.is_empty(), "a conversion without tool calls");
            }
        }
    }
});
