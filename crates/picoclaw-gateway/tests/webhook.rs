//! `/webhook/<channel>`: the gateway's mount point for channels that receive through platform
//! callbacks, served on loopback and driven over real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use async_trait::async_trait;
use picoclaw_api::{InboundMessage, OutboundMessage};
use picoclaw_channels::{
    Channel, ChannelError, ChannelManager, Inbox, WebhookRequest, WebhookResponse,
};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// A platform that signs its callbacks with a shared secret in a header and sends one message
/// per request.
struct Hooky {
    secret: &'static str,
}

#[async_trait]
impl Channel for Hooky {
    fn name(&self) -> &str {
        "hooky"
    }
    async fn run(
        &self,
        _inbox: Arc<dyn Inbox>,
        stop: CancellationToken,
    ) -> Result<(), ChannelError> {
        stop.cancelled().await;
        Ok(())
    }
    async fn send(&self, _msg: &OutboundMessage) -> Result<(), ChannelError> {
        Ok(())
    }
    fn takes_webhooks(&self) -> bool {
        true
    }
    async fn webhook(&self, request: WebhookRequest, inbox: Arc<dyn Inbox>) -> WebhookResponse {
        if request.header("X-Hooky-Secret") != Some(self.secret) {
            return WebhookResponse::text(401, "bad signature");
        }
        if request.query == "challenge=abc" {
            return WebhookResponse::text(200, "abc");
        }
        let Ok(event) = serde_json::from_slice::<Value>(&request.body) else {
            return WebhookResponse::text(400, "not JSON");
        };
        let msg = InboundMessage::new(
            "hooky",
            event["chat"].as_str().unwrap_or_default(),
            event["user"].as_str().unwrap_or_default(),
            event["text"].as_str().unwrap_or_default(),
        );
        match inbox.deliver(msg).await {
            Ok(()) => WebhookResponse::json(&json!({"ok": true})),
            Err(e) => WebhookResponse::text(503, e.to_string()),
        }
    }
}

/// A channel in poll mode: its name is not a webhook route.
struct Poller;

#[async_trait]
impl Channel for Poller {
    fn name(&self) -> &str {
        "poller"
    }
    async fn run(
        &self,
        _inbox: Arc<dyn Inbox>,
        stop: CancellationToken,
    ) -> Result<(), ChannelError> {
        stop.cancelled().await;
        Ok(())
    }
    async fn send(&self, _msg: &OutboundMessage) -> Result<(), ChannelError> {
        Ok(())
    }
}

#[derive(Default)]
struct Collect {
    got: Mutex<Vec<InboundMessage>>,
    refuse: Mutex<bool>,
}

#[async_trait]
impl Inbox for Collect {
    async fn deliver(&self, msg: InboundMessage) -> Result<(), picoclaw_api::InboxError> {
        if *self.refuse.lock().unwrap() {
            return Err(
                picoclaw_api::StateError::Database("the journal is unavailable".into()).into(),
            );
        }
        self.got.lock().unwrap().push(msg);
        Ok(())
    }
}

async fn serve(manager: Arc<ChannelManager>) -> String {
    let app = picoclaw_gateway::http::webhook_router(manager);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

#[tokio::test]
async fn webhooks_reach_their_channel_which_checks_them_and_fills_the_inbox() {
    let mut manager = ChannelManager::new();
    manager.add(Arc::new(Hooky { secret: "s3cret" }));
    manager.add(Arc::new(Poller));
    let manager = Arc::new(manager);
    let base = serve(manager.clone()).await;
    let client = picoclaw_http::client_builder().unwrap().build().unwrap();
    let post = |path: &str, secret: Option<&str>, body: Vec<u8>| {
        let mut req = client.post(format!("{base}{path}")).body(body);
        if let Some(s) = secret {
            req = req.header("x-hooky-secret", s);
        }
        req.send()
    };
    let event = serde_json::to_vec(&json!({"user": "u1", "chat": "c1", "text": "hello"})).unwrap();

    // Before the channels run there is no inbox: the platform is told to retry.
    let r = post("/webhook/hooky", Some("s3cret"), event.clone())
        .await
        .unwrap();
    assert_eq!(r.status(), 503);

    let inbox = Arc::new(Collect::default());
    let stop = CancellationToken::new();
    let _tasks = manager.start(inbox.clone(), stop.clone());

    let r = post("/webhook/hooky", Some("s3cret"), event.clone())
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"ok": true}));
    {
        let got = inbox.got.lock().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].content, "hello");
        assert_eq!(got[0].chat_id, "c1");
        assert_eq!(got[0].sender_id, "u1");
    }

    // Unsigned or wrongly signed: refused by the channel, nothing delivered.
    for secret in [None, Some("guess")] {
        let r = post("/webhook/hooky", secret, event.clone()).await.unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(r.text().await.unwrap(), "bad signature");
    }
    // The query string and the method reach the channel (URL verification handshakes).
    let r = client
        .get(format!("{base}/webhook/hooky?challenge=abc"))
        .header("x-hooky-secret", "s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "abc");
    // Garbage is the channel's 400.
    let r = post("/webhook/hooky", Some("s3cret"), b"{oops".to_vec())
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // A channel that does not take webhooks, and one that does not exist: 404 naming it.
    for name in ["poller", "nope"] {
        let r = post(&format!("/webhook/{name}"), None, event.clone())
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        assert!(r.text().await.unwrap().contains(name));
    }
    // Oversized bodies are refused before any channel sees them. (Own client: the server drops
    // the connection without reading the body, which a pooled connection would trip over.)
    let r = picoclaw_http::client_builder()
        .unwrap()
        .build()
        .unwrap()
        .post(format!("{base}/webhook/hooky"))
        .header("x-hooky-secret", "s3cret")
        .body(vec![b'x'; picoclaw_gateway::http::MAX_BODY_BYTES + 1])
        .send()
        .await;
    if let Ok(r) = r {
        assert_eq!(r.status(), 413);
    }
    // When the inbox cannot keep the message, the platform hears it and sends it again.
    *inbox.refuse.lock().unwrap() = true;
    let r = post("/webhook/hooky", Some("s3cret"), event.clone())
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(inbox.got.lock().unwrap().len(), 1);
    stop.cancel();
}
