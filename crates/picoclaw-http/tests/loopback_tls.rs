//! Real HTTPS to a TLS server on loopback with clients from picoclaw-http, in a test binary of
//! its own where nothing installs rustls' process-wide crypto provider: the clients work
//! without one, and none of them installs one.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn ring() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS server on 127.0.0.1 with a fresh self-signed certificate for `localhost`, answering
/// every request `200 hello` over HTTP/1.1. Returns its address and its certificate.
async fn server() -> (SocketAddr, CertificateDer<'static>) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    // The server's provider is explicit too: `ServerConfig::builder()` would install one.
    let config = rustls::ServerConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut seen = Vec::new();
                let mut buf = [0u8; 1024];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello",
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (addr, cert)
}

fn assert_no_process_provider() {
    assert!(
        CryptoProvider::get_default().is_none(),
        "a process-wide crypto provider was installed"
    );
}

#[tokio::test]
async fn a_client_over_an_explicit_provider_speaks_https_without_a_process_provider() {
    assert_no_process_provider();
    let (addr, cert) = server().await;
    let tls = picoclaw_http::tls_config(ring(), picoclaw_http::Roots::PlatformAnd(vec![cert]))
        .expect("TLS config");
    let client = picoclaw_http::with_tls(reqwest::Client::builder(), tls)
        .resolve("localhost", addr)
        .build()
        .expect("client");
    let response = client
        .get(format!("https://localhost:{}/", addr.port()))
        .send()
        .await
        .expect("HTTPS request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "hello");
    assert_no_process_provider();
}

#[tokio::test]
async fn the_default_builder_verifies_certificates_against_the_platform() {
    assert_no_process_provider();
    let (addr, _cert) = server().await;
    // ring (the `ring` feature) without installing it; the platform's roots do not know the
    // test's self-signed certificate, so the handshake must fail.
    let client = picoclaw_http::client_builder()
        .expect("builder")
        .resolve("localhost", addr)
        .build()
        .expect("client");
    let err = client
        .get(format!("https://localhost:{}/", addr.port()))
        .send()
        .await
        .expect_err("an unknown certificate authority is refused");
    assert!(err.is_connect(), "{err:?}");
    assert_no_process_provider();
}

#[tokio::test]
async fn only_the_given_roots_are_trusted_and_none_for_plain_http() {
    let (addr, cert) = server().await;
    let only = picoclaw_http::tls_config(ring(), picoclaw_http::Roots::Only(vec![cert]))
        .expect("TLS config");
    let client = picoclaw_http::with_tls(reqwest::Client::builder(), only)
        .resolve("localhost", addr)
        .build()
        .expect("client");
    let url = format!("https://localhost:{}/", addr.port());
    assert_eq!(client.get(&url).send().await.expect("HTTPS").status(), 200);

    // A plain-HTTP endpoint's client trusts nothing: HTTPS through it fails.
    let plain = picoclaw_http::client_builder_for_endpoint("http://127.0.0.1:1/v1", None, None)
        .expect("builder")
        .resolve("localhost", addr)
        .build()
        .expect("client");
    assert!(plain.get(&url).send().await.is_err());
    assert_no_process_provider();
}
