//! `KeyVaultFake`: Azure Key Vault's "Get Secret" (`GET /secrets/{name}[/{version}]?api-version=`)
//! on 127.0.0.1 over plain HTTP, answering as Key Vault does (its JSON documents and errors),
//! with secrets a test sets and rotates.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

#[derive(Debug)]
struct Version {
    id: String,
    value: String,
    created: u64,
}

#[derive(Debug, Default)]
struct Store {
    /// Each secret's versions, oldest first.
    secrets: HashMap<String, Vec<Version>>,
    next_version: u64,
    /// Path and query of every request.
    requests: Vec<String>,
}

#[derive(Debug)]
struct Inner {
    bearer: String,
    addr: SocketAddr,
    store: Mutex<Store>,
}

/// A Key Vault on loopback; stops when dropped.
#[derive(Debug)]
pub struct KeyVaultFake {
    inner: Arc<Inner>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl KeyVaultFake {
    /// Serves callers presenting `Authorization: Bearer <bearer>`.
    pub fn spawn(bearer: &str) -> Self {
        let (listener, addr) = crate::serve::listen();
        let inner = Arc::new(Inner {
            bearer: bearer.to_owned(),
            addr,
            store: Mutex::new(Store::default()),
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&inner));
        let tx = crate::serve::spawn(listener, app, std::future::pending);
        Self {
            inner,
            shutdown: Some(tx),
        }
    }

    /// Creates the secret `name` or rotates it: each call makes a new current version, whose
    /// id it returns.
    pub fn set(&self, name: &str, value: &str) -> String {
        let mut store = self.inner.store.lock().unwrap();
        store.next_version += 1;
        let id = format!("{:032x}", 0xa0b1_c2d3_u64 * 1_000 + store.next_version);
        store
            .secrets
            .entry(name.to_owned())
            .or_default()
            .push(Version {
                id: id.clone(),
                value: value.to_owned(),
                created: now(),
            });
        id
    }

    /// The vault's base URL (for `KeyVault::with_endpoint` / `AZURE_KEYVAULT_ENDPOINT`).
    pub fn url(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    /// The path and query of every request received.
    pub fn requests(&self) -> Vec<String> {
        self.inner.store.lock().unwrap().requests.clone()
    }
}

impl Drop for KeyVaultFake {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        json!({"error": {"code": code, "message": message}}).to_string(),
    )
        .into_response()
}

async fn handle(State(inner): State<Arc<Inner>>, uri: Uri, headers: HeaderMap) -> Response {
    let path_and_query = uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    inner
        .store
        .lock()
        .unwrap()
        .requests
        .push(path_and_query.clone());
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if presented != Some(inner.bearer.as_str()) {
        let mut response = error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "AKV10000: Request is missing a Bearer or PoP token.",
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static(
                "Bearer authorization=\"https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000\", resource=\"https://vault.azure.net\"",
            ),
        );
        return response;
    }
    let has_version = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .any(|kv| kv.starts_with("api-version=") && kv.len() > "api-version=".len());
    if !has_version {
        return error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            "The 'api-version' query parameter is missing.",
        );
    }
    let parts: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let (name, version) = match parts.as_slice() {
        ["secrets", name] => (*name, None),
        ["secrets", name, version] => (*name, Some(*version)),
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "BadParameter",
                "The request URI is not a secret's.",
            );
        }
    };
    let store = inner.store.lock().unwrap();
    let found = store.secrets.get(name).and_then(|versions| match version {
        None => versions.last(),
        Some(v) => versions.iter().find(|x| x.id == v),
    });
    let Some(found) = found else {
        let what = match version {
            Some(v) => format!("{name}/{v}"),
            None => name.to_owned(),
        };
        return error(
            StatusCode::NOT_FOUND,
            "SecretNotFound",
            &format!(
                "A secret with (name/id) {what} was not found in this key vault. If you recently \
                 deleted this secret you may be able to recover it using the correct recovery \
                 command. For help resolving this issue, please see \
                 https://go.microsoft.com/fwlink/?linkid=2125182"
            ),
        );
    };
    let base = format!("http://{}", inner.addr);
    let body = json!({
        "value": found.value,
        "id": format!("{base}/secrets/{name}/{}", found.id),
        "attributes": {
            "enabled": true,
            "created": found.created,
            "updated": found.created,
            "recoveryLevel": "Recoverable+Purgeable",
        },
        "tags": {},
    });
    (
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}
