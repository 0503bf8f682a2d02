//! What the platform fakes share: a loopback listener, a thread that serves an axum app (and a
//! side task: a WebSocket accept loop, a webhook pusher) until the fake is dropped, waiting for
//! a condition, and sending a frame to the newest live WebSocket client.

use axum::Router;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// A non-blocking listener on a free loopback port, and its address.
pub(crate) fn listen() -> (std::net::TcpListener, SocketAddr) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let addr = listener.local_addr().expect("listener address");
    (listener, addr)
}

/// Serves `app` on `listener`, with `side` (started inside the runtime) beside it, on a thread
/// of its own; both stop when the returned sender fires or is dropped.
pub(crate) fn spawn<F, Fut>(
    listener: std::net::TcpListener,
    app: Router,
    side: F,
) -> tokio::sync::oneshot::Sender<()>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            tokio::select! {
                _ = axum::serve(listener, app) => {}
                () = side() => {}
                _ = rx => {}
            }
        });
    });
    tx
}

/// Serves `app` on `listener` and WebSocket connections on `ws_listener`, each connection
/// handled by `socket(state, stream)` (the Slack and Discord fakes).
pub(crate) fn spawn_with_ws<S, H, Fut>(
    listener: std::net::TcpListener,
    app: Router,
    ws_listener: std::net::TcpListener,
    state: std::sync::Arc<S>,
    socket: H,
) -> tokio::sync::oneshot::Sender<()>
where
    S: Send + Sync + 'static,
    H: Fn(std::sync::Arc<S>, tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    spawn(listener, app, move || {
        accept_all(ws_listener, move |stream| {
            socket(std::sync::Arc::clone(&state), stream)
        })
    })
}

/// Accepts connections on `listener` for ever, each handled by `handle` in a task of its own.
pub(crate) async fn accept_all<H, Fut>(listener: std::net::TcpListener, handle: H)
where
    H: Fn(tokio::net::TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(handle(stream));
    }
}

/// Waits up to 30 s for `done` to hold (a gateway starting on a loaded 2-core CI machine can
/// take seconds; a wait that passes returns as soon as it holds); panics naming `what`
/// otherwise.
pub(crate) fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends `make()` to the newest live client in `sockets`, waiting up to 10 s for one.
pub(crate) fn send_to_newest<T>(
    sockets: &Mutex<Vec<UnboundedSender<T>>>,
    make: impl Fn() -> T,
    what: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        {
            let mut sockets = sockets.lock().unwrap();
            sockets.retain(|s| !s.is_closed());
            if let Some(s) = sockets.last()
                && s.send(make()).is_ok()
            {
                return;
            }
        }
        assert!(Instant::now() < deadline, "no {what} within 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}
