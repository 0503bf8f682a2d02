//! MaixCam on the real gateway: a board's event becomes a turn, the answer goes back to it.

use super::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[tokio::test(flavor = "multi_thread")]
async fn maixcam_an_event_becomes_a_turn_and_the_answer_goes_back_to_the_board() {
    let endpoint = ScriptedEndpoint::start_with([Reply::text("Someone is at the door.")]).await;
    // A free port for the boards (the listener is the gateway's, in another process).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let home = home_with(
        &endpoint,
        json!({"host": "127.0.0.1", "port": 0, "api_key": KEY}),
    );
    set_channels(
        home.path(),
        json!({"maixcam": {"enabled": true, "host": "127.0.0.1", "port": port,
                           "allow_from": ["127.0.0.1"]}}),
    );
    let _gw = Gateway::start(home.path());
    let mut board = None;
    for _ in 0..1200 {
        if let Ok(stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            board = Some(stream);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (read, mut write) = board
        .expect("the MaixCam listener did not open")
        .into_split();
    let event = json!({"type": "person_detected", "tips": "", "timestamp": 1_700_000_000.0,
                       "data": {"class_id": 0, "class_name": "person", "score": 0.93,
                                "x": 10, "y": 20, "w": 30, "h": 40}});
    write
        .write_all(format!("{event}\n").as_bytes())
        .await
        .unwrap();
    let mut lines = BufReader::new(read).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("no answer within 30 s")
        .unwrap()
        .unwrap();
    let command: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(command["type"], "command");
    assert_eq!(command["message"], "Someone is at the door.");
    assert_eq!(command["chat_id"], "default");
    let asked = endpoint.requests()[0].body.to_string();
    assert!(asked.contains("Person detected"), "{asked}");
    assert!(asked.contains("93.0%"), "{asked}");
}
