//! The MaixCam channel through a TCP client speaking the boards' protocol.
#![cfg(feature = "maixcam")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

mod common;

use common::{Kept, wait_kept};
use picoclaw_api::OutboundMessage;
use picoclaw_channels::Channel;
use picoclaw_channels::maixcam::{MAX_EVENT_BYTES, MaixcamChannel, MaixcamConfig};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Starts the channel on a free loopback port; its address once it listens.
async fn start(
    settings: Value,
) -> (
    Arc<MaixcamChannel>,
    Arc<Kept>,
    std::net::SocketAddr,
    CancellationToken,
) {
    let mut v = json!({"enabled": true, "host": "127.0.0.1", "port": 0,
                       "rate_limit_per_minute": 0});
    for (k, val) in settings.as_object().unwrap() {
        v[k] = val.clone();
    }
    let channel = Arc::new(MaixcamChannel::new(MaixcamConfig::from_json(&v).unwrap()).unwrap());
    let inbox = Arc::new(Kept::default());
    let stop = CancellationToken::new();
    let (c, i, s) = (channel.clone(), inbox.clone(), stop.clone());
    tokio::spawn(async move { c.run(i, s).await });
    for _ in 0..500 {
        if let Some(addr) = channel.local_addr() {
            return (channel, inbox, addr, stop);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the listener did not open");
}

fn person(score: f64) -> String {
    json!({"type": "person_detected", "tips": "", "timestamp": 1_700_000_000.0,
           "data": {"class_id": 0, "class_name": "person", "score": score,
                    "x": 120, "y": 80, "w": 60, "h": 150}})
    .to_string()
}

async fn wait_boards(channel: &MaixcamChannel, n: usize) {
    for _ in 0..500 {
        if channel.boards() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("expected {n} boards, have {}", channel.boards());
}

#[tokio::test]
async fn maixcam_an_event_becomes_a_message_and_the_answer_goes_back_as_a_command() {
    let (channel, inbox, addr, stop) = start(json!({"allow_from": ["127.0.0.1"]})).await;
    let board = TcpStream::connect(addr).await.unwrap();
    let (read, mut write) = board.into_split();
    let mut lines = BufReader::new(read).lines();
    // A heartbeat and a status are logged only; two events back to back without a newline.
    let heartbeat = json!({"type": "heartbeat", "timestamp": 1.0, "data": {}}).to_string();
    let status = json!({"type": "status", "data": {"fps": 25}}).to_string();
    write
        .write_all(format!("{heartbeat}\n{status}\n{}{}", person(0.91), person(0.5)).as_bytes())
        .await
        .unwrap();
    wait_kept(&inbox, 2).await;
    let msg = &inbox.all()[0];
    assert_eq!(msg.channel.as_str(), "maixcam");
    assert_eq!(msg.chat_id, "default");
    assert_eq!(msg.session_key.as_str(), "maixcam:default");
    assert_eq!(msg.sender_id, "127.0.0.1");
    assert!(msg.content.contains("Person detected"), "{}", msg.content);
    assert!(msg.content.contains("91.0%"), "{}", msg.content);
    assert_eq!(msg.metadata["w"], "60");

    // The answer: a command line to the board.
    wait_boards(&channel, 1).await;
    channel
        .send(&OutboundMessage::new("maixcam", "default", "Wave hello"))
        .await
        .unwrap();
    let line = tokio::time::timeout(Duration::from_secs(5), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let command: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(command["type"], "command");
    assert_eq!(command["message"], "Wave hello");
    assert_eq!(command["chat_id"], "default");

    // The board goes away: sending fails (retried later); it comes back and gets the next one.
    drop(write);
    drop(lines);
    wait_boards(&channel, 0).await;
    assert!(
        channel
            .send(&OutboundMessage::new("maixcam", "default", "anyone?"))
            .await
            .is_err()
    );
    let mut again = TcpStream::connect(addr).await.unwrap();
    again.write_all(person(0.7).as_bytes()).await.unwrap();
    wait_kept(&inbox, 3).await;
    stop.cancel();
}

#[tokio::test]
async fn maixcam_an_oversized_or_malformed_event_is_skipped_and_the_connection_goes_on() {
    let (_channel, inbox, addr, stop) = start(json!({"allow_from": ["*"]})).await;
    let mut board = TcpStream::connect(addr).await.unwrap();
    let huge = format!(
        "{{\"type\": \"person_detected\", \"data\": {{\"pad\": \"{}\"}}}}\n",
        "x".repeat(MAX_EVENT_BYTES + 10)
    );
    board.write_all(huge.as_bytes()).await.unwrap();
    board
        .write_all(b"{\"type\": }\nnot json at all\n")
        .await
        .unwrap();
    board
        .write_all(b"{\"type\": \"person_detected\", \"data\": {\"class_name\": \"a {brace} \\\" in text\"}}\n")
        .await
        .unwrap();
    wait_kept(&inbox, 1).await;
    let msg = &inbox.all()[0];
    assert!(
        msg.content.contains("a {brace} \" in text"),
        "{}",
        msg.content
    );
    // Nothing else got through, and another board still connects.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(inbox.all().len(), 1);
    let mut other = TcpStream::connect(addr).await.unwrap();
    other.write_all(person(0.8).as_bytes()).await.unwrap();
    wait_kept(&inbox, 2).await;
    stop.cancel();
}

#[tokio::test]
async fn maixcam_refuses_boards_not_on_allow_from_and_needs_the_list() {
    let (_channel, inbox, addr, stop) = start(json!({"allow_from": ["10.9.9.9"]})).await;
    let mut board = TcpStream::connect(addr).await.unwrap();
    let _ = board.write_all(person(0.9).as_bytes()).await;
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), board.read(&mut buf))
        .await
        .expect("the connection was not closed");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(inbox.all().is_empty());
    stop.cancel();

    let e = MaixcamConfig::from_json(&json!({"enabled": true, "port": 18791})).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("channels.maixcam.allow_from is empty"),
        "{e}"
    );
    let e = MaixcamConfig::from_json(&json!({"enabled": true, "allow_from": ["*"]})).unwrap_err();
    assert!(e.to_string().starts_with("channels.maixcam.port"), "{e}");
    let e = MaixcamConfig::from_json(&json!({"port": 1, "allow_from": ["cam-1"]})).unwrap_err();
    assert!(
        e.to_string().contains("'cam-1' is not an IP address"),
        "{e}"
    );
}
