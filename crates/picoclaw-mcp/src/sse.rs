//! The legacy HTTP+SSE transport (MCP 2024-11-05), which rmcp 3 no longer has a client for:
//! `GET url` opens an event stream whose first `endpoint` event names where to POST messages;
//! the server's messages arrive as `message` events on the stream.

use futures::StreamExt;
use rmcp::service::{RoleClient, RxJsonRpcMessage, TxJsonRpcMessage};
use std::collections::BTreeMap;

type Incoming = std::pin::Pin<Box<dyn futures::Stream<Item = RxJsonRpcMessage<RoleClient>> + Send>>;
type Outgoing = std::pin::Pin<
    Box<dyn futures::Sink<TxJsonRpcMessage<RoleClient>, Error = std::io::Error> + Send>,
>;

/// Opens the event stream and waits for the endpoint; returns the (sink, stream) pair rmcp takes
/// as a transport.
pub(crate) async fn open(
    url: &str,
    headers: &BTreeMap<String, String>,
) -> Result<(Outgoing, Incoming), String> {
    let mut map = reqwest::header::HeaderMap::new();
    for (k, v) in headers {
        let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
            .map_err(|e| format!("header '{k}': {e}"))?;
        let value =
            reqwest::header::HeaderValue::from_str(v).map_err(|e| format!("header '{k}': {e}"))?;
        map.insert(name, value);
    }
    let client = crate::http::builder()?
        .default_headers(map)
        .build()
        .map_err(|e| e.to_string())?;
    let base = url::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
    let response = client
        .get(base.clone())
        .header("Accept", "text/event-stream")
        .send()
        .await
        .map_err(|e| format!("cannot reach {url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("{url} answered HTTP {}", response.status()));
    }
    let mut events = picoclaw_http::provider::sse_events_from(Box::pin(response.bytes_stream()));
    // The first event names the endpoint to POST to (relative to the stream's URL).
    let endpoint = loop {
        match events.next().await {
            Some(Ok(event)) if event.event == "endpoint" => {
                break base
                    .join(event.data.trim())
                    .map_err(|e| format!("the server named a bad endpoint: {e}"))?;
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(format!("the event stream broke: {e}")),
            None => return Err("the event stream ended before naming its endpoint".into()),
        }
    };
    let incoming = events.filter_map(|event| async move {
        match event {
            Ok(e) if e.event == "message" || e.event.is_empty() => {
                match serde_json::from_str::<RxJsonRpcMessage<RoleClient>>(&e.data) {
                    Ok(msg) => Some(msg),
                    Err(err) => {
                        tracing::warn!(error = %err, "an MCP SSE message that is not JSON-RPC was skipped");
                        None
                    }
                }
            }
            _ => None,
        }
    });
    let outgoing = futures::sink::unfold(
        (client, endpoint),
        |(client, endpoint), msg: TxJsonRpcMessage<RoleClient>| async move {
            let response = client
                .post(endpoint.clone())
                .json(&msg)
                .send()
                .await
                .map_err(std::io::Error::other)?;
            if !response.status().is_success() {
                return Err(std::io::Error::other(format!(
                    "the server refused a message: HTTP {}",
                    response.status()
                )));
            }
            Ok((client, endpoint))
        },
    );
    Ok((Box::pin(outgoing), Box::pin(incoming)))
}
