//! `EntraTokenEndpoint`: a Microsoft Entra ID token endpoint (`POST /{tenant}/oauth2/v2.0/token`,
//! the client-credentials flow) served over HTTPS on 127.0.0.1 with a freshly generated
//! certificate. Point `AZURE_AUTHORITY_HOST` at [`EntraTokenEndpoint::authority_host`] and
//! `SSL_CERT_FILE` at a file holding [`EntraTokenEndpoint::ca_pem`] and the real credential code
//! talks to it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A TLS token endpoint on loopback; stops when dropped.
#[derive(Debug)]
pub struct EntraTokenEndpoint {
    addr: SocketAddr,
    ca_pem: String,
    requests: Arc<Mutex<Vec<(String, String)>>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl EntraTokenEndpoint {
    /// Issues `token` (valid for an hour) to every client-credentials request.
    pub fn spawn(token: &str) -> Self {
        let certified = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
        ])
        .expect("generate a test certificate");
        let ca_pem = certified.cert.pem();
        let cert_der = certified.cert.der().clone();
        let key_der =
            rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert_der], key_der)
        .expect("server certificate");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let token = token.to_owned();
        let log = Arc::clone(&requests);
        std::thread::Builder::new()
            .name("entra-endpoint".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                    loop {
                        let accepted = tokio::select! {
                            a = listener.accept() => a,
                            _ = &mut rx => return,
                        };
                        let Ok((tcp, _)) = accepted else { continue };
                        let acceptor = acceptor.clone();
                        let token = token.clone();
                        let log = Arc::clone(&log);
                        tokio::spawn(async move {
                            if let Ok(tls) = acceptor.accept(tcp).await {
                                let _ = serve(tls, &token, &log).await;
                            }
                        });
                    }
                });
            })
            .expect("spawn the token endpoint");
        Self {
            addr,
            ca_pem,
            requests,
            shutdown: Some(tx),
        }
    }

    /// The value for `AZURE_AUTHORITY_HOST`.
    pub fn authority_host(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    /// The endpoint's certificate (trust it through `SSL_CERT_FILE`).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// (request line, form body) of every request received.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for EntraTokenEndpoint {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

async fn serve<S>(
    mut stream: S,
    token: &str,
    log: &Mutex<Vec<(String, String)>>,
) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
    let length = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    while buf.len() < header_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[header_end..]).into_owned();
    let request_line = head.lines().next().unwrap_or_default().to_owned();
    log.lock()
        .unwrap()
        .push((request_line.clone(), body.clone()));
    let (status, json) = if request_line.starts_with("POST ")
        && request_line.contains("/oauth2/v2.0/token")
        && body.contains("grant_type=client_credentials")
    {
        (
            "200 OK",
            serde_json::json!({"token_type": "Bearer", "expires_in": 3599,
                               "ext_expires_in": 3599, "access_token": token})
            .to_string(),
        )
    } else {
        (
            "400 Bad Request",
            serde_json::json!({"error": "invalid_request",
                               "error_description": "unexpected request"})
            .to_string(),
        )
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
        json.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
