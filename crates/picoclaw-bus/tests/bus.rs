//! The bus under load and at its limits.

use picoclaw_bus::{
    InboundMessage, MediaKind, MediaRef, MessageBus, OutboundMessage, PublishError, Queue,
};
use std::time::Duration;

fn msg(i: usize) -> InboundMessage {
    InboundMessage::new("telegram", "42", "user-1", format!("message {i}"))
}

#[test]
fn envelopes_carry_what_channels_need() {
    let m = InboundMessage::new("telegram", "42", "ada", "look at this")
        .with_media(MediaRef::new(MediaKind::Image, "/tmp/a.jpg").with_mime("image/jpeg"))
        .with_metadata("message_id", "777");
    assert_eq!(m.session_key.as_str(), "telegram:42");
    let reply = OutboundMessage::reply(&m, "nice");
    assert_eq!(reply.chat_id, "42");
    assert_eq!(reply.reply_to.as_deref(), Some("777"));
    assert_eq!(
        reply.session_key.as_ref().map(|k| k.as_str()),
        Some("telegram:42")
    );
    let json = serde_json::to_string(&m).unwrap();
    let back: InboundMessage = serde_json::from_str(&json).unwrap();
    assert_eq!(back, m);
}

#[tokio::test]
async fn order_is_preserved() {
    let (bus, mut rx) = MessageBus::new(16);
    let producer = tokio::spawn(async move {
        for i in 0..1000 {
            bus.publish_inbound(msg(i)).await.unwrap();
        }
    });
    for i in 0..1000 {
        assert_eq!(
            rx.inbound.recv().await.unwrap().content,
            format!("message {i}")
        );
    }
    producer.await.unwrap();
    assert!(
        rx.inbound.recv().await.is_none(),
        "all producers gone → end of queue"
    );
}

#[tokio::test]
async fn a_full_queue_pushes_back_and_loses_nothing() {
    let (bus, mut rx) = MessageBus::new(2);
    bus.try_publish_inbound(msg(0)).unwrap();
    bus.try_publish_inbound(msg(1)).unwrap();
    assert_eq!(bus.inbound_len(), 2);
    let err = bus.try_publish_inbound(msg(2)).unwrap_err();
    assert!(err.is_full());
    assert!(err.to_string().contains("inbound queue is full"), "{err}");
    assert_eq!(
        err.into_message().content,
        "message 2",
        "the message comes back"
    );

    // publish waits until the consumer takes one.
    let bus2 = bus.clone();
    let waiting = tokio::spawn(async move { bus2.publish_inbound(msg(3)).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !waiting.is_finished(),
        "publish must wait while the queue is full"
    );
    assert_eq!(rx.inbound.recv().await.unwrap().content, "message 0");
    waiting.await.unwrap().unwrap();
    assert_eq!(rx.inbound.recv().await.unwrap().content, "message 1");
    assert_eq!(rx.inbound.recv().await.unwrap().content, "message 3");
}

#[tokio::test]
async fn a_closed_bus_says_so() {
    let (bus, rx) = MessageBus::new(4);
    drop(rx);
    let err = bus.publish_inbound(msg(7)).await.unwrap_err();
    assert!(matches!(
        err,
        PublishError::Closed {
            queue: Queue::Inbound,
            ..
        }
    ));
    assert_eq!(
        err.into_message().content,
        "message 7",
        "the message comes back"
    );
    let err = bus
        .try_publish_outbound(OutboundMessage::new("cli", "x", "hi"))
        .unwrap_err();
    assert!(!err.is_full());
    assert!(err.to_string().contains("outbound queue is closed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_producers_one_consumer() {
    let (bus, mut rx) = MessageBus::new(64);
    let mut producers = Vec::new();
    for p in 0..8 {
        let bus = bus.clone();
        producers.push(tokio::spawn(async move {
            for i in 0..500 {
                bus.publish_outbound(OutboundMessage::new(
                    "slack",
                    format!("{p}"),
                    format!("{i}"),
                ))
                .await
                .unwrap();
            }
        }));
    }
    drop(bus);
    let mut per_producer = [0usize; 8];
    let mut last = [-1i64; 8];
    let mut buf = Vec::new();
    while rx.outbound.recv_many(&mut buf, 32).await > 0 {
        for m in buf.drain(..) {
            let p: usize = m.chat_id.parse().unwrap();
            let i: i64 = m.content.parse().unwrap();
            assert!(i > last[p], "per-producer order kept");
            last[p] = i;
            per_producer[p] += 1;
        }
    }
    assert_eq!(per_producer, [500; 8]);
}
