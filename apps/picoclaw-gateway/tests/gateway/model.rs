//! An OpenAI-compatible model on 127.0.0.1 for the tests that need answers to whatever they
//! send, in any order (several instances, crashes): it answers every request with the last
//! user message it was given, after a pause, and records what it saw.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the model saw: per conversation (the `conv=` tag of its messages), the requests in
/// flight and whether two ever overlapped; every request's user messages.
#[derive(Default)]
pub(crate) struct Seen {
    in_flight: HashMap<String, usize>,
    overlaps: Vec<String>,
    requests: Vec<Vec<String>>,
}

/// An OpenAI-compatible model on 127.0.0.1 that answers after a pause (5 s for a message
/// containing `slow`, else 150 ms), streaming or not, and records what it saw.
pub(crate) struct Model {
    pub(crate) base: String,
    seen: Arc<Mutex<Seen>>,
}

fn conv_of(text: &str) -> String {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix("conv="))
        .unwrap_or("none")
        .to_owned()
}

async fn answer(State(seen): State<Arc<Mutex<Seen>>>, body: String) -> Response {
    let req: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let users: Vec<String> = req["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "user")
        .map(|m| match &m["content"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    let last = users.last().cloned().unwrap_or_default();
    let conv = conv_of(&last);
    {
        let mut s = seen.lock().unwrap();
        s.requests.push(users.clone());
        let n = s.in_flight.entry(conv.clone()).or_default();
        *n += 1;
        if *n > 1 {
            s.overlaps.push(last.clone());
        }
    }
    let pause = if last.contains("slow") { 5000 } else { 150 };
    tokio::time::sleep(Duration::from_millis(pause)).await;
    *seen.lock().unwrap().in_flight.entry(conv).or_default() -= 1;
    let text = format!("answer to [{last}] after {} user messages", users.len());
    if req["stream"] == true {
        let chunk = |delta: Value, finish: Value| {
            json!({"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "m",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        };
        let body = format!(
            "data: {}\n\ndata: {}\n\ndata: [DONE]\n\n",
            chunk(json!({"role": "assistant", "content": text}), Value::Null),
            chunk(json!({}), json!("stop"))
        );
        ([("content-type", "text/event-stream")], body).into_response()
    } else {
        axum::Json(
            json!({"id": "c1", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}),
        )
        .into_response()
    }
}

impl Model {
    pub(crate) async fn start() -> Model {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let app = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(answer))
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Model {
            base: format!("http://{addr}/v1"),
            seen,
        }
    }

    pub(crate) fn overlaps(&self) -> Vec<String> {
        self.seen.lock().unwrap().overlaps.clone()
    }

    /// The requests whose last user message contains `text`.
    pub(crate) fn asked(&self, text: &str) -> Vec<Vec<String>> {
        self.seen
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|r| r.last().is_some_and(|m| m.contains(text)))
            .cloned()
            .collect()
    }
}
