//! The Pico channel's sessions over an in-memory WebSocket: what the gateway's `/pico/ws`
//! route hands it after the upgrade.
#![cfg(feature = "pico")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

mod common;

use common::{Kept, wait_kept};
use futures::{SinkExt, StreamExt};
use picoclaw_api::OutboundMessage;
use picoclaw_channels::pico::{PicoChannel, PicoConfig};
use picoclaw_channels::settings::ChannelSettings;
use picoclaw_channels::{Channel, Inbox, WebhookRequest};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

type Client = WebSocketStream<tokio::io::DuplexStream>;

fn channel(settings: Value) -> Arc<PicoChannel> {
    let mut v = json!({"enabled": true, "token": "tok", "rate_limit_per_minute": 0});
    for (k, val) in settings.as_object().unwrap() {
        v[k] = val.clone();
    }
    Arc::new(PicoChannel::new(PicoConfig::from_json(&v).unwrap()).unwrap())
}

/// Opens a session as the gateway would after the upgrade.
async fn open(ch: &Arc<PicoChannel>, inbox: &Arc<Kept>, query: &str) -> Client {
    let request = WebhookRequest::new("GET", "")
        .with_header("Authorization", "Bearer tok")
        .with_query(query);
    let session = ch
        .socket(request, inbox.clone() as Arc<dyn Inbox>)
        .await
        .unwrap();
    let (server, client) = tokio::io::duplex(64 * 1024);
    tokio::spawn(session.run(Box::new(server)));
    let client = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
    for _ in 0..500 {
        if ch.connections() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    client
}

async fn next(client: &mut Client) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), client.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Message::Text(text) = frame {
            return serde_json::from_str(text.as_str()).unwrap();
        }
    }
}

async fn say(client: &mut Client, frame: Value) {
    client.send(Message::text(frame.to_string())).await.unwrap();
}

#[tokio::test]
async fn pico_sessions_stream_answers_and_pair_with_the_one_time_code() {
    let dir = tempfile::tempdir().unwrap();
    let config = PicoConfig::from_json(&json!({"token": "tok", "rate_limit_per_minute": 0}))
        .unwrap()
        .with_paired_file(dir.path().join("pico-paired.json"));
    let ch = Arc::new(PicoChannel::new(config).unwrap());
    let inbox = Arc::new(Kept::default());
    let mut client = open(&ch, &inbox, "session_id=s1&client_id=ada").await;
    // Nobody is allowed yet: refused, then paired with the code from the log.
    say(
        &mut client,
        json!({"type": "message.send", "payload": {"content": "hi"}}),
    )
    .await;
    assert_eq!(next(&mut client).await["payload"]["code"], "not_allowed");
    let code = ch.access().pairing_code().unwrap();
    say(
        &mut client,
        json!({"type": "message.send", "payload": {"content": format!("/pair {code}")}}),
    )
    .await;
    let paired = next(&mut client).await;
    assert_eq!(
        paired["payload"]["content"],
        "Paired: you can talk to me now."
    );
    say(
        &mut client,
        json!({"type": "message.send", "id": "m1", "payload": {"content": "hi"}}),
    )
    .await;
    wait_kept(&inbox, 1).await;
    let msg = &inbox.all()[0];
    assert_eq!(msg.session_key.as_str(), "pico:s1");
    assert_eq!(
        (msg.chat_id.as_str(), msg.sender_id.as_str()),
        ("s1", "ada")
    );

    // The answer streams: create, update, the final update with the whole text.
    ch.stream_text("s1", "");
    ch.stream_text("s1", "Hel");
    ch.stream_text("s1", "lo");
    ch.send(&OutboundMessage::new("pico", "s1", "Hello!"))
        .await
        .unwrap();
    let (a, b, c) = (
        next(&mut client).await,
        next(&mut client).await,
        next(&mut client).await,
    );
    assert_eq!(
        (a["type"].as_str(), a["payload"]["content"].as_str()),
        (Some("message.create"), Some("Hel"))
    );
    assert_eq!(
        (b["type"].as_str(), b["payload"]["delta"].as_str()),
        (Some("message.update"), Some("lo"))
    );
    assert_eq!(b["payload"]["content"], "Hello");
    assert_eq!(c["type"], "message.update");
    assert_eq!(c["payload"]["content"], "Hello!");
    assert_eq!(c["payload"]["final"], true);
    assert_eq!(a["payload"]["message_id"], c["payload"]["message_id"]);
    // A cancelled turn's half answer is not continued by the next one.
    ch.stream_text("s1", "");
    ch.stream_text("s1", "abandoned");
    let _ = next(&mut client).await;
    ch.stream_text("s1", "");
    ch.stream_text("s1", "New");
    let fresh = next(&mut client).await;
    assert_eq!(
        (fresh["type"].as_str(), fresh["payload"]["content"].as_str()),
        (Some("message.create"), Some("New"))
    );

    // Joining another conversation from the same connection.
    say(
        &mut client,
        json!({"type": "message.send", "session_id": "s2", "payload": {"content": "other"}}),
    )
    .await;
    wait_kept(&inbox, 2).await;
    assert_eq!(inbox.all()[1].session_key.as_str(), "pico:s2");
    ch.send(&OutboundMessage::new("pico", "s2", "there"))
        .await
        .unwrap();
    let there = next(&mut client).await;
    assert_eq!(
        (there["session_id"].as_str(), there["type"].as_str()),
        (Some("s2"), Some("message.create"))
    );

    // Gone: sending fails (the outbox retries), the slot is given back.
    drop(client);
    for _ in 0..500 {
        if ch.connections() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(ch.connections(), 0);
    assert!(
        ch.send(&OutboundMessage::new("pico", "s1", "late"))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn pico_refuses_bad_ids_and_a_full_house_before_the_upgrade() {
    let ch = channel(json!({"allow_from": ["pico-user"], "max_connections": 1}));
    let inbox = Arc::new(Kept::default());
    let bad = WebhookRequest::new("GET", "")
        .with_header("Authorization", "Bearer tok")
        .with_query("session_id=a%20b");
    let refused = ch
        .socket(bad, inbox.clone() as Arc<dyn Inbox>)
        .await
        .unwrap_err();
    assert_eq!(refused.status, 400);
    let _first = open(&ch, &inbox, "").await;
    let again = WebhookRequest::new("GET", "").with_header("Authorization", "Bearer tok");
    let full = ch
        .socket(again, inbox.clone() as Arc<dyn Inbox>)
        .await
        .unwrap_err();
    assert_eq!(full.status, 503);
}

#[tokio::test]
async fn pico_closes_a_silent_client_and_shows_typing_while_a_turn_runs() {
    let ch = channel(json!({"allow_from": ["pico-user"], "read_timeout": 1}));
    let inbox = Arc::new(Kept::default());
    let mut client = open(&ch, &inbox, "session_id=t").await;
    // Typing starts once however often the dispatcher renews it, and stops before the answer.
    ch.typing("t").await;
    ch.typing("t").await;
    ch.send(&OutboundMessage::new("pico", "t", "done"))
        .await
        .unwrap();
    let kinds: Vec<Value> = vec![
        next(&mut client).await["type"].clone(),
        next(&mut client).await["type"].clone(),
        next(&mut client).await["type"].clone(),
    ];
    assert_eq!(kinds, ["typing.start", "typing.stop", "message.create"]);
    // A client that reads nothing (so answers no ping) and says nothing: closed after
    // read_timeout, its slot given back.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..200 {
        if ch.connections() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(ch.connections(), 0);
    drop(client);
}
