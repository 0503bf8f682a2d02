//! A provider's client speaks real HTTPS (TLS on loopback, its certificate trusted the way an
//! operator would: `SSL_CERT_FILE`) with no rustls crypto provider installed process-wide, and
//! installs none. One test in a binary of its own, so nothing else installs one first.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use picoclaw_api::ChatMessage;
use picoclaw_provider_openai::{ChatRequest, LlmProvider, OpenAiCompatConfig, OpenAiCompatible};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::PrivateKeyDer;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const COMPLETION: &str = r#"{"id":"c1","object":"chat.completion","model":"gpt-test","choices":[{"index":0,"message":{"role":"assistant","content":"over TLS"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#;

/// Reads one HTTP/1.1 request (headers, then `content-length` bytes of body); returns its head.
async fn read_request<S: AsyncReadExt + Unpin>(s: &mut S) -> Option<String> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&seen[..head_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while seen.len() < head_end + length {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    Some(head)
}

#[test]
fn an_openai_compatible_client_speaks_https_without_a_process_crypto_provider() {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("certificate");
    let dir = tempfile_dir();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, certified.cert.pem()).expect("write the CA file");
    #[allow(unsafe_code)]
    // SAFETY: the first thing this test binary does, before any other thread exists (the
    // runtime is built below); rustls-platform-verifier reads it when the client is built.
    unsafe {
        std::env::set_var("SSL_CERT_FILE", &ca);
        std::env::remove_var("SSL_CERT_DIR");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        assert!(CryptoProvider::get_default().is_none());
        // The server's provider is explicit: `ServerConfig::builder()` would install one.
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![certified.cert.der().clone()],
            PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into()),
        )
        .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let (heads_tx, mut heads) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let heads_tx = heads_tx.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Some(head) = read_request(&mut tls).await else {
                        return;
                    };
                    let _ = heads_tx.send(head);
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n{COMPLETION}",
                        COMPLETION.len()
                    );
                    let _ = tls.write_all(reply.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });

        let provider = OpenAiCompatible::new(
            OpenAiCompatConfig::new("openai", format!("https://127.0.0.1:{port}/v1"))
                .with_api_key("sk-test"),
        )
        .expect("provider");
        let response = provider
            .chat(ChatRequest::new(
                "gpt-test",
                vec![ChatMessage::user("hello over TLS")],
            ))
            .await
            .expect("a chat completion over HTTPS");
        assert_eq!(response.message.text(), "over TLS");
        let head = heads.recv().await.expect("the request reached the server");
        assert!(head.starts_with("POST /v1/chat/completions "), "{head}");
        assert!(
            CryptoProvider::get_default().is_none(),
            "the provider installed a process-wide crypto provider"
        );
    });
    let _ = std::fs::remove_dir_all(dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("picoclaw-tls-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
