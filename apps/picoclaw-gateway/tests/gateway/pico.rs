//! The Pico protocol on the real gateway: a WebSocket client on `/pico/ws`.

use super::*;
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const TOKEN: &str = "pico-token-0123456789";

type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Opens `/pico/ws?<query>` with `headers`; the socket, or the HTTP status that refused it.
async fn connect(gw: &Gateway, query: &str, headers: &[(&str, &str)]) -> Result<Socket, u16> {
    let addr = gw.base.trim_start_matches("http://");
    let mut request = format!("ws://{addr}/pico/ws?{query}")
        .into_client_request()
        .unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    match tokio_tungstenite::client_async(request, tcp).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("unexpected handshake error: {e}"),
    }
}

const BEARER: (&str, &str) = ("authorization", "Bearer pico-token-0123456789");

async fn send(socket: &mut Socket, frame: Value) {
    socket.send(Message::text(frame.to_string())).await.unwrap();
}

/// The next protocol frame (pings and pongs skipped).
async fn next(socket: &mut Socket) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), socket.next())
            .await
            .expect("no frame within 30 s")
            .expect("the connection closed")
            .unwrap();
        match frame {
            Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

fn pico_home(endpoint: &ScriptedEndpoint, pico: Value) -> tempfile::TempDir {
    let home = home_with(
        endpoint,
        json!({"host": "127.0.0.1", "port": 0, "api_key": KEY}),
    );
    set_channels(home.path(), json!({ "pico": pico }));
    home
}

#[tokio::test(flavor = "multi_thread")]
async fn pico_refuses_without_the_token_a_foreign_origin_and_past_max_connections() {
    let endpoint = ScriptedEndpoint::start_with([]).await;
    let home = pico_home(
        &endpoint,
        json!({"enabled": true, "token": TOKEN, "allow_from": ["pico-user"],
               "max_connections": 2, "allow_origins": ["https://app.example"]}),
    );
    let gw = Gateway::start(home.path());
    // No token, a wrong one, the gateway's own key, the token in the query (not allowed by
    // default): 401.
    assert_eq!(connect(&gw, "", &[]).await.err(), Some(401));
    let wrong = ("authorization", "Bearer pico-token-012345678");
    assert_eq!(connect(&gw, "", &[wrong]).await.err(), Some(401));
    let gateway_key = format!("Bearer {KEY}");
    let key = ("authorization", gateway_key.as_str());
    assert_eq!(connect(&gw, "", &[key]).await.err(), Some(401));
    assert_eq!(
        connect(&gw, &format!("token={TOKEN}"), &[]).await.err(),
        Some(401)
    );
    // A page of another origin, even with the token: 403; the listed one connects.
    let evil = ("origin", "https://evil.example");
    assert_eq!(connect(&gw, "", &[BEARER, evil]).await.err(), Some(403));
    let app = ("origin", "https://app.example");
    let first = connect(&gw, "", &[BEARER, app]).await.unwrap();
    // The token as a subprotocol (browsers cannot set headers): accepted and echoed.
    let protocol = format!("token.{TOKEN}");
    let second = connect(&gw, "", &[("sec-websocket-protocol", &protocol)])
        .await
        .unwrap();
    // max_connections is 2: a third waits for one to close.
    assert_eq!(connect(&gw, "", &[BEARER]).await.err(), Some(503));
    drop(first);
    drop(second);
    let mut again = None;
    for _ in 0..1200 {
        if let Ok(socket) = connect(&gw, "", &[BEARER]).await {
            again = Some(socket);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        again.is_some(),
        "a closed connection's slot was not given back"
    );
    assert!(endpoint.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn pico_streams_the_answer_and_refuses_clients_not_on_allow_from() {
    let endpoint = ScriptedEndpoint::start_with([Reply::text(
        "Hello from the pico channel, streamed in pieces.",
    )])
    .await;
    let home = pico_home(
        &endpoint,
        json!({"enabled": true, "token": TOKEN, "allow_from": ["script-1"],
               "ping_interval": 1}),
    );
    let gw = Gateway::start(home.path());
    let mut socket = connect(&gw, "session_id=s1&client_id=script-1", &[BEARER])
        .await
        .unwrap();
    // An application-level ping: a pong with the same id.
    send(&mut socket, json!({"type": "ping", "id": "p1"})).await;
    let pong = next(&mut socket).await;
    assert_eq!(
        (pong["type"].as_str(), pong["id"].as_str()),
        (Some("pong"), Some("p1"))
    );
    // Garbage and unknown types: errors, the connection stays.
    socket.send(Message::text("not json")).await.unwrap();
    assert_eq!(
        next(&mut socket).await["payload"]["code"],
        "invalid_message"
    );
    send(&mut socket, json!({"type": "dance"})).await;
    assert_eq!(next(&mut socket).await["payload"]["code"], "unknown_type");
    send(
        &mut socket,
        json!({"type": "message.send", "id": "m1", "payload": {"content": "hi"}}),
    )
    .await;
    // The answer grows: created with its first piece, updated with each delta, and the last
    // update is the whole answer, final.
    let mut frames = Vec::new();
    loop {
        let frame = next(&mut socket).await;
        let done = frame["payload"]["final"] == true;
        frames.push(frame);
        if done {
            break;
        }
    }
    let answer = "Hello from the pico channel, streamed in pieces.";
    let created = &frames[0];
    assert_eq!(created["type"], "message.create", "{frames:?}");
    assert_eq!(created["session_id"], "s1");
    let id = created["payload"]["message_id"].as_str().unwrap();
    let deltas: String = frames
        .iter()
        .filter(|f| f["payload"]["final"] == false)
        .map(|f| f["payload"]["delta"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, answer);
    assert!(
        frames
            .iter()
            .filter(|f| f["payload"]["final"] == false)
            .count()
            >= 2,
        "the answer was not streamed: {frames:?}"
    );
    let last = frames.last().unwrap();
    assert_eq!(last["type"], "message.update");
    assert_eq!(last["payload"]["message_id"], id);
    assert_eq!(last["payload"]["content"], answer);
    // The conversation is pico:s1.
    let requests = endpoint.requests();
    assert_eq!(requests.len(), 1);
    assert!(requests[0].body.to_string().contains("hi"));

    // WebSocket pings arrive every ping_interval.
    let ping = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(Ok(Message::Ping(_))) = socket.next().await {
                return;
            }
        }
    })
    .await;
    assert!(ping.is_ok(), "no ping within 10 s at ping_interval 1");

    // A client not on allow_from: refused, nothing reaches the model.
    let mut stranger = connect(&gw, "client_id=stranger", &[BEARER]).await.unwrap();
    send(
        &mut stranger,
        json!({"type": "message.send", "payload": {"content": "let me in"}}),
    )
    .await;
    let refused = next(&mut stranger).await;
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["payload"]["code"], "not_allowed");
    // Empty content: an error too.
    send(
        &mut socket,
        json!({"type": "message.send", "payload": {"content": "  "}}),
    )
    .await;
    assert_eq!(next(&mut socket).await["payload"]["code"], "empty_content");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(endpoint.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn pico_without_a_token_is_not_started_and_says_which_key() {
    let endpoint = ScriptedEndpoint::start_with([]).await;
    let home = pico_home(&endpoint, json!({"enabled": true}));
    let gw = Gateway::start(home.path());
    assert_eq!(connect(&gw, "", &[BEARER]).await.err(), Some(404));
    let log = gw.log.lock().unwrap().join("\n");
    assert!(log.contains("channels.pico.token is empty"), "{log}");
}
