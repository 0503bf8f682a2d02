//! Speech to text against a loopback server speaking OpenAI's `/audio/transcriptions`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use picoclaw_api::SessionKey;
use picoclaw_tools::{Sandbox, SttConfig, Tool, ToolContext, TranscribeTool, Transcriber};
use serde_json::json;
use std::sync::{Arc, Mutex};

async fn server(seen: Arc<Mutex<Vec<String>>>) -> String {
    let app = Router::new().route(
        "/v1/audio/transcriptions",
        post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let seen = seen.clone();
            async move {
                if headers.get("authorization").and_then(|v| v.to_str().ok())
                    != Some("Bearer stt-key")
                {
                    return (
                        StatusCode::UNAUTHORIZED,
                        axum::Json(json!({"error": {"message": "Invalid API Key"}})),
                    )
                        .into_response();
                }
                let ct = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let text = String::from_utf8_lossy(&body).into_owned();
                seen.lock().unwrap().push(format!("{ct}\n{text}"));
                if !text.contains("OggS-fake-audio") {
                    return (
                        StatusCode::BAD_REQUEST,
                        axum::Json(json!({"error": {"message": "file is not audio"}})),
                    )
                        .into_response();
                }
                axum::Json(json!({"text": " Remind me to call Ana at six. "})).into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/v1")
}

#[tokio::test]
async fn voice_notes_become_text() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let base = server(seen.clone()).await;
    let ws = tempfile::tempdir().unwrap();
    std::fs::write(ws.path().join("note.ogg"), b"OggS-fake-audio").unwrap();
    std::fs::write(ws.path().join("note.txt"), b"not audio").unwrap();
    let config = SttConfig::from_json(
        Some(&json!({"api_key": "stt-key", "api_base": base, "model": "whisper-1"})),
        None,
    )
    .unwrap();
    let sandbox = Arc::new(Sandbox::new(ws.path()).unwrap());
    let tool = TranscribeTool::new(Transcriber::new(config), sandbox);
    let ctx = ToolContext::new(SessionKey::new("t"));

    let out = tool.call(&ctx, json!({"path": "note.ogg"})).await;
    assert_eq!(out.content, "Remind me to call Ana at six.", "{out:?}");
    let request = seen.lock().unwrap()[0].clone();
    assert!(
        request.starts_with("multipart/form-data; boundary="),
        "{request}"
    );
    assert!(
        request.contains("name=\"model\"\r\n\r\nwhisper-1"),
        "{request}"
    );
    assert!(
        request.contains("filename=\"note.ogg\"") && request.contains("audio/ogg"),
        "{request}"
    );

    // The service's complaint comes through; paths stay in the workspace; a wrong key is named.
    let out = tool.call(&ctx, json!({"path": "note.txt"})).await;
    assert!(
        out.is_error && out.content.contains("file is not audio"),
        "{out:?}"
    );
    let out = tool.call(&ctx, json!({"path": "../../etc/passwd"})).await;
    assert!(out.is_error, "{out:?}");
    let wrong =
        SttConfig::from_json(Some(&json!({"api_key": "nope", "api_base": base})), None).unwrap();
    let out = TranscribeTool::new(
        Transcriber::new(wrong),
        Arc::new(Sandbox::new(ws.path()).unwrap()),
    )
    .call(&ctx, json!({"path": "note.ogg"}))
    .await;
    assert!(
        out.is_error && out.content.contains("stt.api_key"),
        "{out:?}"
    );
}

#[test]
fn without_a_key_speech_to_text_is_off() {
    assert!(SttConfig::from_json(None, None).is_none());
    assert!(SttConfig::from_json(Some(&json!({"api_key": ""})), None).is_none());
    let from_env = SttConfig::from_json(None, Some("gsk-env".into())).unwrap();
    assert_eq!(from_env.api_key, "gsk-env");
    assert_eq!(from_env.api_base, "https://api.groq.com/openai/v1");
}
