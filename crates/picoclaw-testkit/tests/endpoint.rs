//! The scripted endpoint over real HTTP/1.1 on loopback, spoken to with a plain socket.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use picoclaw_testkit::{Reply, ScriptedEndpoint};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;

/// Sends one request and returns (status, headers, body) with chunked encoding undone.
fn send(
    ep: &ScriptedEndpoint,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: &Value,
) -> (u16, String, String) {
    let mut sock = TcpStream::connect(ep.addr()).unwrap();
    let body = body.to_string();
    let auth = auth
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    write!(
        sock,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    sock.read_to_string(&mut raw).unwrap();
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = rest;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let size = usize::from_str_radix(size.trim(), 16).unwrap();
            if size == 0 {
                break;
            }
            out.push_str(&tail[..size]);
            rest = &tail[size + 2..];
        }
        out
    } else {
        rest.to_owned()
    };
    (status, head.to_owned(), body)
}

fn chat(stream: bool) -> Value {
    json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

#[test]
fn plain_text_and_tool_calls() {
    let ep = ScriptedEndpoint::spawn([
        Reply::text("hello").with_usage(5, 2),
        Reply::tool_call("read_file", json!({"path": "a.txt"})),
    ]);
    let (status, _, body) = send(&ep, "POST", "/v1/chat/completions", None, &chat(false));
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "hello");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["total_tokens"], 7);

    let (_, _, body) = send(&ep, "POST", "/v1/chat/completions", None, &chat(false));
    let v: Value = serde_json::from_str(&body).unwrap();
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["id"], "call_1");
    assert_eq!(call["function"]["name"], "read_file");
    assert_eq!(call["function"]["arguments"], r#"{"path":"a.txt"}"#);
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");

    let reqs = ep.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].path, "/v1/chat/completions");
    assert_eq!(reqs[0].message_texts(), ["hi"]);
    assert_eq!(reqs[0].header("content-type"), Some("application/json"));
}

#[test]
fn streams_text_and_split_tool_arguments() {
    let ep = ScriptedEndpoint::spawn([
        Reply::text("hello world").with_usage(1, 2),
        Reply::tool_call("exec", json!({"command": "echo hi"})),
    ]);
    let (status, head, body) = send(&ep, "POST", "/v1/chat/completions", None, &chat(true));
    assert_eq!(status, 200);
    assert!(head.to_ascii_lowercase().contains("text/event-stream"));
    let datas: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(*datas.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = datas[..datas.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "hello world");
    assert!(chunks.iter().any(|c| c["usage"]["total_tokens"] == 3));

    let (_, _, body) = send(&ep, "POST", "/v1/chat/completions", None, &chat(true));
    let chunks: Vec<Value> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let fragments: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .filter(|s| !s.is_empty())
        .collect();
    assert!(fragments.len() > 1, "arguments split across chunks");
    assert_eq!(fragments.concat(), r#"{"command":"echo hi"}"#);
}

#[test]
fn errors_auth_truncation_and_empty_script() {
    let ep = ScriptedEndpoint::spawn([Reply::rate_limited(3), Reply::truncated("partial answer")]);
    ep.require_api_key("sk-right");
    let (status, _, body) = send(
        &ep,
        "POST",
        "/v1/chat/completions",
        Some("sk-wrong"),
        &chat(false),
    );
    assert_eq!(status, 401);
    assert!(body.contains("invalid_api_key"));
    assert!(!body.contains("sk-wrong"));

    let (status, head, _) = send(
        &ep,
        "POST",
        "/v1/chat/completions",
        Some("sk-right"),
        &chat(false),
    );
    assert_eq!(status, 429);
    assert!(head.to_ascii_lowercase().contains("retry-after: 3"));

    let (status, _, body) = send(
        &ep,
        "POST",
        "/v1/chat/completions",
        Some("sk-right"),
        &chat(true),
    );
    assert_eq!(status, 200);
    assert!(body.contains("\"content\":\"parti"), "{body}");
    assert!(!body.contains("[DONE]"));
    assert!(!body.contains("finish_reason\":\"stop"));

    let (status, _, body) = send(
        &ep,
        "POST",
        "/v1/chat/completions",
        Some("sk-right"),
        &chat(false),
    );
    assert_eq!(status, 500);
    assert!(body.contains("ran out"));

    let (status, _, body) = send(&ep, "GET", "/v1/models", Some("sk-right"), &Value::Null);
    assert_eq!(status, 200);
    assert!(body.contains("scripted-model"));
    assert_eq!(ep.requests().len(), 5);
}
