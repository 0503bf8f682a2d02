//! Message bus throughput: messages per second through one bounded queue, with one producer and
//! with four, each message a real `InboundMessage` built by the producer.
//!
//! Run with: cargo bench -p picoclaw-benches --bench bus

use picoclaw_bus::{InboundMessage, MessageBus};

fn main() {
    divan::main();
}

const MESSAGES: usize = 100_000;

fn runtime(threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("runtime")
}

async fn pump(producers: usize, capacity: usize) -> usize {
    let (bus, mut rx) = MessageBus::new(capacity);
    let per = MESSAGES / producers;
    for _ in 0..producers {
        let bus = bus.clone();
        tokio::spawn(async move {
            for _ in 0..per {
                let msg = InboundMessage::new("telegram", "42", "user", "hi");
                if bus.publish_inbound(msg).await.is_err() {
                    return;
                }
            }
        });
    }
    drop(bus);
    let mut received = 0;
    let mut buf = Vec::with_capacity(256);
    while rx.inbound.recv_many(&mut buf, 256).await > 0 {
        received += buf.len();
        buf.clear();
    }
    received
}

/// 100 000 messages, one producer, queue of 1024.
#[divan::bench(counter = divan::counter::ItemsCount::new(MESSAGES))]
fn one_producer(bencher: divan::Bencher<'_, '_>) {
    let rt = runtime(2);
    bencher.bench_local(|| {
        let n = rt.block_on(pump(1, 1024));
        assert_eq!(n, MESSAGES);
    });
}

/// 100 000 messages from four producers, queue of 1024.
#[divan::bench(counter = divan::counter::ItemsCount::new(MESSAGES))]
fn four_producers(bencher: divan::Bencher<'_, '_>) {
    let rt = runtime(2);
    bencher.bench_local(|| {
        let n = rt.block_on(pump(4, 1024));
        assert_eq!(n, MESSAGES);
    });
}
