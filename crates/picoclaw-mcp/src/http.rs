//! The HTTP clients of the MCP transports, built by picoclaw-http (TLS over an explicit crypto
//! provider; nothing installed process-wide), never by rmcp's or reqwest's defaults.

/// How many redirects one request may follow.
const MAX_REDIRECTS: usize = 10;

/// A client builder with picoclaw's TLS.
pub(crate) fn builder() -> Result<reqwest::ClientBuilder, String> {
    picoclaw_http::client_builder().map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// The client of a streamable-HTTP server, set up as rmcp sets up its own: no idle connections
/// kept (reusing one whose previous body was not read to the end stalls on delayed ACKs), and
/// only same-origin 307/308 redirects followed.
pub(crate) fn streamable_client() -> Result<reqwest::Client, String> {
    builder()?
        .pool_max_idle_per_host(0)
        .redirect(same_origin_redirects())
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// Follows a redirect only when it keeps the request as it was: a 307 or 308 (method and body,
/// the JSON-RPC message, kept) to the origin first asked (so the session id and the configured
/// headers never go to another host). Anything else comes back to rmcp as the response.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let keeps_body = matches!(attempt.status().as_u16(), 307 | 308);
        let origin = attempt.previous().first().map(|url| url.origin());
        if !keeps_body || origin != Some(attempt.url().origin()) {
            attempt.stop()
        } else if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
        } else {
            attempt.follow()
        }
    })
}
