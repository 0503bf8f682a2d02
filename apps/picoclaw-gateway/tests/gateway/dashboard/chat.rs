//! The Chat and Conversations pages: a streamed chat turn kept as `web:<id>`, tool calls,
//! one turn at a time, cancelling, attachments, and the conversations' list, search, export
//! and clear.

use super::super::{Gateway, KEY, client, home_with};
use super::Dash;
use picoclaw_testkit::{Reply, ScriptedEndpoint};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The events of a `text/event-stream` body: `(name, data)`.
fn events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut name = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = n.to_owned();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            (name, serde_json::from_str(&data).unwrap())
        })
        .collect()
}

/// Standard base64 with padding (what the page's script sends).
fn b64(bytes: &[u8]) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The text of the `delta` events.
fn deltas(events: &[(String, Value)]) -> String {
    events
        .iter()
        .filter(|(n, _)| n == "delta")
        .map(|(_, d)| d.as_str().unwrap())
        .collect()
}

/// Sends a chat message; status and the body (the events, or the JSON error).
async fn chat(dash: &Dash, conversation: &str, message: &str) -> (u16, String) {
    dash.post_json(
        "/ui/api/chat",
        &json!({"conversation": conversation, "message": message}),
    )
    .await
}

/// The `Content-Disposition` and body of an export.
async fn export(dash: &Dash, key: &str, format: &str) -> (u16, String, String) {
    let resp = dash
        .http
        .get(format!(
            "{}/ui/conversations/export?key={key}&format={format}",
            dash.base
        ))
        .header("cookie", &dash.cookie)
        .send()
        .await
        .unwrap();
    let disposition = resp
        .headers()
        .get("content-disposition")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (
        resp.status().as_u16(),
        disposition,
        resp.text().await.unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dashboard_chat_streams_is_kept_and_listed() {
    let endpoint = ScriptedEndpoint::start_with([
        Reply::text("Hello **there**, zebra fan."),
        Reply::tool_call("read_file", json!({"path": "notes.txt"})),
        Reply::text("I see notes.txt."),
        Reply::text("<script>alert(1)</script><img src=x onerror=alert(2)>"),
        Reply::text("Hello Ada."),
    ])
    .await;
    let home = home_with(&endpoint, json!({"port": 0, "api_key": KEY}));
    std::fs::create_dir_all(home.path().join("workspace")).unwrap();
    std::fs::write(home.path().join("workspace/notes.txt"), "striped notes").unwrap();
    let gw = Gateway::start(home.path());
    let dash = Dash::login(&gw).await;

    // A new conversation gets a fresh id; the page has the chat's controls.
    let (status, page) = dash.get("/ui/chat").await;
    assert_eq!(status, 200);
    for id in [
        "id=\"chat-input\"",
        "id=\"chat-send\"",
        "id=\"chat-cancel\"",
        "id=\"chat-file\"",
        "id=\"chat-new\"",
        "id=\"chat-log\"",
        "id=\"chat-conversations\"",
        "/ui/assets/chat.js",
    ] {
        assert!(page.contains(id), "{id} missing");
    }
    let at = page.find("data-conversation=\"").unwrap() + "data-conversation=\"".len();
    let fresh = &page[at..at + 12];
    assert!(fresh.chars().all(|c| c.is_ascii_hexdigit()), "{fresh}");
    let (_, again) = dash.get("/ui/chat").await;
    assert!(!again.contains(&format!("data-conversation=\"{fresh}\"")));

    // The answer streams as deltas, then `done` with the usage; the turn is kept as web:<id>.
    let (status, body) = chat(&dash, "t1", "first question about zebras").await;
    assert_eq!(status, 200, "{body}");
    let evs = events(&body);
    assert_eq!(deltas(&evs), "Hello **there**, zebra fan.");
    let (last, done) = evs.last().unwrap();
    assert_eq!(last, "done", "{body}");
    assert_eq!(done["finish"], "stop");
    assert!(done["usage"]["prompt_tokens"].is_u64(), "{done}");
    assert_eq!(
        endpoint.requests()[0].message_texts().last().unwrap(),
        "first question about zebras"
    );

    // A tool call: tool_start, then tool_end with its result, then the answer.
    let (status, body) = chat(&dash, "t1", "what files are there?").await;
    assert_eq!(status, 200, "{body}");
    let evs = events(&body);
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    let start = names.iter().position(|n| *n == "tool_start").unwrap();
    let end = names.iter().position(|n| *n == "tool_end").unwrap();
    let first_delta = names.iter().position(|n| *n == "delta").unwrap();
    assert!(start < end && end < first_delta, "{names:?}");
    assert_eq!(names.last(), Some(&"done"));
    assert_eq!(evs[start].1["name"], "read_file");
    assert!(evs[start].1["arguments"].as_str().unwrap().contains("path"));
    assert_eq!(evs[end].1["is_error"], false);
    assert!(
        evs[end].1["preview"]
            .as_str()
            .unwrap()
            .contains("striped notes"),
        "{:?}",
        evs[end]
    );
    assert_eq!(deltas(&evs), "I see notes.txt.");

    // A hostile answer is kept as text: escaped in the page, never markup.
    let (status, body) = chat(&dash, "t1", "say something nasty").await;
    assert_eq!(status, 200, "{body}");

    // The page renders the history: the user's words, the tool folded, the answers as text.
    let (status, page) = dash.get("/ui/chat?c=t1").await;
    assert_eq!(status, 200);
    assert!(page.contains("first question about zebras"));
    assert!(page.contains("<details class=\"tool\">"), "{page}");
    assert!(page.contains("striped notes"));
    assert!(page.contains("Hello **there**, zebra fan."));
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;")
    );
    assert!(!page.contains("<script>alert"));
    assert!(!page.contains("<img src=x"));
    // The list beside the chat has it, titled by its first words.
    let list = &page[page.find("id=\"chat-conversations\"").unwrap()..];
    assert!(list.contains("href=\"/ui/chat?c=t1\""), "{list}");
    assert!(list.contains("first question about zebras"));

    // The conversations page lists it with a link to the chat; search finds it by a word of
    // its text (not of its key).
    let (_, page) = dash.get("/ui/conversations").await;
    assert!(page.contains("id=\"conversation-search\""));
    let table = &page[page.find("id=\"conversation-list\"").unwrap()..];
    assert!(table.contains(">web:t1<"), "{table}");
    assert!(table.contains("href=\"/ui/chat?c=t1\""));
    let (_, page) = dash.get("/ui/conversations?q=ZEBRAS").await;
    assert!(page.contains(">web:t1<"), "{page}");
    let (_, page) = dash.get("/ui/conversations?q=okapi").await;
    assert!(page.contains("No conversation matches"), "{page}");
    assert!(!page.contains(">web:t1<"));

    // One conversation's page, with its exports and the clear button.
    let (status, page) = dash.get("/ui/conversations/view?key=web%3At1").await;
    assert_eq!(status, 200);
    for part in [
        "class=\"button secondary export-json\"",
        "class=\"button secondary export-md\"",
        "id=\"conversation-clear\"",
        "first question about zebras",
        "<details class=\"tool\">",
    ] {
        assert!(page.contains(part), "{part}: {page}");
    }

    // Exports: every message, as an attachment with a safe name.
    let (status, disposition, body) = export(&dash, "web%3At1", "json").await;
    assert_eq!(status, 200);
    assert_eq!(
        disposition,
        "attachment; filename=\"conversation-web_t1.json\""
    );
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["key"], "web:t1");
    let messages = doc["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "user");
    assert_eq!(
        messages[0]["content"][0]["text"],
        "first question about zebras"
    );
    assert!(body.contains("Hello **there**, zebra fan."));
    assert!(body.contains("read_file"));
    let (status, disposition, body) = export(&dash, "web%3At1", "md").await;
    assert_eq!(status, 200);
    assert_eq!(
        disposition,
        "attachment; filename=\"conversation-web_t1.md\""
    );
    assert!(
        body.contains("## User\n\nfirst question about zebras"),
        "{body}"
    );
    assert!(body.contains("## Assistant\n\nI see notes.txt."), "{body}");
    assert!(body.contains("### Tool call `read_file`"), "{body}");
    assert_eq!(export(&dash, "web%3At1", "html").await.0, 400);
    assert_eq!(export(&dash, "web%3Anope", "json").await.0, 404);

    // The conversation survives a restart of the gateway.
    gw.terminate();
    let gw = Gateway::start(home.path());
    let dash = Dash::login(&gw).await;
    let (_, page) = dash.get("/ui/chat?c=t1").await;
    assert!(page.contains("first question about zebras"));
    assert!(page.contains("I see notes.txt."));

    // An API conversation and a channel's are read-only: clearing them is refused.
    let resp = client()
        .post(format!("{}/v1/chat/completions", gw.base))
        .bearer_auth(KEY)
        .header("X-Session-Key", "ada")
        .json(&json!({"messages": [{"role": "user", "content": "hello from the API"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    for key in ["telegram:1", "api:ada"] {
        let (status, location) = dash
            .post_form("/ui/conversations/clear", &[("key", key)])
            .await;
        assert_eq!((status, location.as_str()), (303, "/ui/conversations"));
        let (_, page) = dash.get("/ui/conversations").await;
        assert!(page.contains("belongs to its channel"), "{page}");
    }
    let (status, page) = dash.get("/ui/conversations/view?key=api%3Aada").await;
    assert_eq!(status, 200);
    assert!(page.contains("hello from the API"));
    assert!(!page.contains("id=\"conversation-clear\""));

    // Clearing the dashboard's conversation deletes its history.
    let (status, location) = dash
        .post_form("/ui/conversations/clear", &[("key", "web:t1")])
        .await;
    assert_eq!((status, location.as_str()), (303, "/ui/conversations"));
    let (_, page) = dash.get("/ui/conversations").await;
    assert!(page.contains("Cleared the conversation web:t1."), "{page}");
    assert!(!page.contains(">web:t1<"));
    assert!(page.contains(">api:ada<"));
    let (status, _) = dash.get("/ui/conversations/view?key=web%3At1").await;
    assert_eq!(status, 404);
    // Without the CSRF token nothing is cleared.
    let resp = dash
        .http
        .post(format!("{}/ui/conversations/clear", dash.base))
        .header("cookie", &dash.cookie)
        .form(&[("key", "api:ada")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_chat_requests_are_refused_and_files_stay_in_their_folder() {
    let endpoint =
        ScriptedEndpoint::start_with([Reply::text("Got the file."), Reply::text("Nice picture.")])
            .await;
    let home = home_with(&endpoint, json!({"port": 0, "api_key": KEY}));
    let gw = Gateway::start(home.path());
    let dash = Dash::login(&gw).await;
    let workspace = home.path().join("workspace");

    // Bad ids, an empty message, an unknown agent, a body that is not a chat message.
    let long = "x".repeat(65);
    for bad in ["../../etc", "a b", "web:x", "", long.as_str()] {
        let (status, body) = chat(&dash, bad, "hello").await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.contains("conversation id"), "{body}");
    }
    let (status, body) = chat(&dash, "ok1", "   ").await;
    assert_eq!(status, 400);
    assert!(body.contains("the message is empty"), "{body}");
    let (status, body) = dash
        .post_json(
            "/ui/api/chat",
            &json!({"conversation": "ok1", "message": "hi", "agent": "ghost"}),
        )
        .await;
    assert_eq!(status, 404);
    assert!(body.contains("no agent 'ghost'"), "{body}");
    let (status, body) = dash
        .post_json("/ui/api/chat", &json!({"message": "hi"}))
        .await;
    assert_eq!(status, 400);
    assert!(body.contains("not a chat message"), "{body}");
    let (status, page) = dash.get("/ui/chat?c=..%2Fetc").await;
    assert_eq!(status, 400);
    assert!(page.contains("not valid"));
    // Without the CSRF token, no turn.
    let resp = dash
        .http
        .post(format!("{}/ui/api/chat", dash.base))
        .header("cookie", &dash.cookie)
        .json(&json!({"conversation": "ok1", "message": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);

    // An attachment over 10 MiB: 413 and nothing saved.
    let big = b64(&vec![7u8; 10 * 1024 * 1024 + 512 * 1024]);
    let (status, body) = dash
        .post_json(
            "/ui/api/chat",
            &json!({"conversation": "big", "message": "take this",
                    "attachment": {"name": "big.bin", "type": "application/octet-stream", "data": big}}),
        )
        .await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("larger than 10 MiB"), "{body}");
    assert!(!workspace.join("media/web/big").exists());
    // Not base64.
    let (status, body) = dash
        .post_json(
            "/ui/api/chat",
            &json!({"conversation": "b64", "message": "x",
                    "attachment": {"name": "a.txt", "data": "%%%"}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not base64"), "{body}");
    assert!(
        endpoint.requests().is_empty(),
        "no refused request reached the model"
    );

    // A file named to climb out of its folder lands inside it, under its last name; the model
    // is told where.
    let (status, body) = dash
        .post_json(
            "/ui/api/chat",
            &json!({"conversation": "files", "message": "read this",
                    "attachment": {"name": "../../etc/passwd", "type": "text/plain",
                                   "data": b64(b"root:x:0:0")}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(deltas(&events(&body)), "Got the file.");
    let saved = workspace.join("media/web/files/passwd");
    assert_eq!(std::fs::read(&saved).unwrap(), b"root:x:0:0");
    let entries: Vec<_> = std::fs::read_dir(workspace.join("media/web/files"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, vec![std::ffi::OsString::from("passwd")]);
    assert!(!home.path().join("etc").exists() && !workspace.join("etc").exists());
    let told = endpoint.requests()[0]
        .message_texts()
        .last()
        .unwrap()
        .clone();
    assert!(
        told.starts_with("read this\n[file passwd saved at "),
        "{told}"
    );
    assert!(told.contains("media/web/files/passwd"), "{told}");

    // An image is shown to the model, as a channel's photo is.
    let png = [0x89u8, b'P', b'N', b'G', 13, 10, 26, 10, 0, 0];
    let (status, body) = dash
        .post_json(
            "/ui/api/chat",
            &json!({"conversation": "files", "message": "",
                    "attachment": {"name": "dot.png", "type": "image/png", "data": b64(&png)}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let request = endpoint.requests()[1].body.to_string();
    assert!(
        request.contains(&format!("data:image/png;base64,{}", b64(&png))),
        "{request}"
    );
    assert!(workspace.join("media/web/files/dot.png").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn one_turn_at_a_time_and_a_cancelled_turn_is_abandoned() {
    let endpoint = ScriptedEndpoint::start_with([
        Reply::text("the slow answer nobody waits for").delayed(Duration::from_secs(30)),
        Reply::text("the quick answer"),
    ])
    .await;
    let home = home_with(&endpoint, json!({"port": 0, "api_key": KEY}));
    let gw = Gateway::start(home.path());
    let dash = Dash::login(&gw).await;

    // A turn is running (the model takes its time)...
    let slow = super::plain_client()
        .post(format!("{}/ui/api/chat", dash.base))
        .header("cookie", &dash.cookie)
        .header("x-csrf-token", &dash.csrf)
        .json(&json!({"conversation": "busy", "message": "take your time"}))
        .send()
        .await
        .unwrap();
    assert_eq!(slow.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while endpoint.requests().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the turn never reached the model"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...so a second message to the same conversation is refused.
    let (status, body) = chat(&dash, "busy", "are you there?").await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("still answering"), "{body}");

    // The browser goes away (the Cancel button aborts the fetch): the turn is cancelled, the
    // conversation takes messages again long before the slow reply would have come.
    drop(slow);
    let started = Instant::now();
    let body = loop {
        let (status, body) = chat(&dash, "busy", "quick one please").await;
        if status == 200 {
            break body;
        }
        assert_eq!(status, 409, "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the cancelled turn still holds the conversation"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(deltas(&events(&body)), "the quick answer");
    let (_, page) = dash.get("/ui/chat?c=busy").await;
    assert!(page.contains("the quick answer"));
    assert!(!page.contains("the slow answer nobody waits for"));
    assert_eq!(endpoint.requests().len(), 2);
}
