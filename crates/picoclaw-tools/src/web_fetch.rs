//! `web_fetch(url, max_chars)`: a web page as readable Markdown (HTML converted with `htmd`), or
//! a text/JSON body as it is — with size and time caps and SSRF protection:
//!
//! - only `http` and `https`; no credentials in the URL;
//! - the host is resolved once, every address checked, and the connection goes to a checked
//!   address (pinned in the client), so DNS cannot answer differently between the check and the
//!   connect;
//! - refused: loopback, private (RFC 1918, IPv6 unique-local), link-local (which covers the
//!   169.254.169.254 cloud metadata service), CGNAT 100.64.0.0/10, multicast, broadcast,
//!   unspecified, documentation and benchmarking ranges, the IPv6 metadata address
//!   fd00:ec2::254, and every IPv6 form that carries an internal IPv4 address: IPv4-mapped
//!   (`::ffff:0:0/96`), IPv4-compatible (`::/96`), well-known NAT64 (`64:ff9b::/96`), 6to4
//!   (`2002::/16`); the local-use NAT64 prefix `64:ff9b:1::/48` is refused whole (where its IPv4
//!   sits depends on the operator's prefix length). Numeric spellings of IPv4 (`2130706433`,
//!   `0x7f.1`, `017700000001`) are normalised by the URL parser before the check;
//! - redirects are followed by hand (at most 5), each hop checked the same way;
//! - no proxy from the environment (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`): a proxy resolves
//!   names itself, so it would connect wherever DNS says after the check. Only the proxy the
//!   operator names in `tools.web.fetch.proxy` is used, and that proxy must refuse internal
//!   addresses itself (the names it resolves are not pinned here).
//!
//! `WebFetchConfig::allow_private` lifts the address rule for an operator who wants intranet
//! pages; `WebFetchConfig::allow_address` lets single addresses through (tests on loopback).

use crate::args::{parse, schema};
use crate::{Tool, ToolContext, ToolOutput};
use async_trait::async_trait;
use picoclaw_api::ToolSpec;
use serde::Deserialize;
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Looks host names up for `web_fetch`: the system's resolver unless one is given (tests; an
/// embedder with DNS of its own). Whatever it answers later, the connection goes to the
/// addresses checked after the first answer.
#[async_trait]
pub trait HostResolver: Send + Sync + std::fmt::Debug {
    async fn lookup(&self, host: &str) -> std::io::Result<Vec<IpAddr>>;
}

/// Limits of `web_fetch`.
#[derive(Clone)]
#[non_exhaustive]
pub struct WebFetchConfig {
    /// Characters returned by default (the model may ask for fewer or more, up to `max_chars_cap`).
    pub default_max_chars: usize,
    pub max_chars_cap: usize,
    /// Bytes downloaded at most.
    pub max_bytes: usize,
    /// The whole fetch, redirects included.
    pub timeout: Duration,
    pub max_redirects: usize,
    /// Allow private, loopback and link-local addresses (intranets; tests).
    pub allow_private: bool,
    /// Internal addresses allowed one by one, the rest staying refused.
    pub allowed_addresses: Vec<IpAddr>,
    /// The one proxy requests go through (`tools.web.fetch.proxy`); none from the environment.
    pub proxy: Option<url::Url>,
    /// Name lookups; `None` is the system's resolver.
    pub resolver: Option<Arc<dyn HostResolver>>,
}

impl std::fmt::Debug for WebFetchConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The proxy URL may carry a password: its host and port only.
        let proxy = self.proxy.as_ref().map(|p| {
            format!(
                "{}://{}:{}",
                p.scheme(),
                p.host_str().unwrap_or_default(),
                p.port_or_known_default().unwrap_or_default()
            )
        });
        f.debug_struct("WebFetchConfig")
            .field("default_max_chars", &self.default_max_chars)
            .field("max_chars_cap", &self.max_chars_cap)
            .field("max_bytes", &self.max_bytes)
            .field("timeout", &self.timeout)
            .field("max_redirects", &self.max_redirects)
            .field("allow_private", &self.allow_private)
            .field("allowed_addresses", &self.allowed_addresses)
            .field("proxy", &proxy)
            .field("resolver", &self.resolver)
            .finish()
    }
}

impl Default for WebFetchConfig {
    fn default() -> Self {
        Self {
            default_max_chars: 50_000,
            max_chars_cap: 200_000,
            max_bytes: 5 * 1024 * 1024,
            timeout: Duration::from_secs(30),
            max_redirects: 5,
            allow_private: false,
            allowed_addresses: Vec::new(),
            proxy: None,
            resolver: None,
        }
    }
}

impl WebFetchConfig {
    /// Reads `tools.web.fetch`: `allow_private` (an operator opening intranet addresses to the
    /// model, knowingly), `timeout_seconds`, `max_chars` (returned by default), `proxy` (an
    /// `http://` or `https://` proxy URL; the proxy must refuse internal addresses itself).
    /// Anything absent keeps its default; a proxy that is not such a URL is an error naming the
    /// key.
    pub fn from_json(web: &serde_json::Value) -> Result<Self, String> {
        let fetch = match &web["fetch"] {
            Value::Null => crate::settings::FetchSection::default(),
            fetch => serde_json::from_value(fetch.clone())
                .map_err(|e| format!("tools.web.fetch: {e}"))?,
        };
        Self::from_section(&fetch)
    }

    /// Builds from the typed `tools.web.fetch` (see [`Self::from_json`]).
    pub fn from_section(fetch: &crate::settings::FetchSection) -> Result<Self, String> {
        let mut config = Self::default();
        if let Some(on) = fetch.allow_private {
            config.allow_private = on;
        }
        if let Some(secs) = fetch.timeout_seconds.filter(|s| *s > 0) {
            config.timeout = Duration::from_secs(secs);
        }
        if let Some(chars) = fetch.max_chars.filter(|c| *c > 0) {
            config.default_max_chars = (chars as usize).min(config.max_chars_cap);
        }
        match &fetch.proxy {
            None | Some(Value::Null) => {}
            Some(Value::String(text)) if text.trim().is_empty() => {}
            Some(Value::String(text)) => config.proxy = Some(parse_proxy(text.trim())?),
            Some(other) => {
                return Err(format!(
                    "tools.web.fetch.proxy must be a URL such as \"http://proxy.internal:3128\", \
                     not {other}"
                ));
            }
        }
        Ok(config)
    }

    pub fn allow_private(mut self, on: bool) -> Self {
        self.allow_private = on;
        self
    }

    /// Lets this one internal address through (the others stay refused).
    pub fn allow_address(mut self, ip: IpAddr) -> Self {
        self.allowed_addresses.push(ip);
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Every request through this proxy (`http://` or `https://`).
    pub fn proxy(mut self, proxy: url::Url) -> Self {
        self.proxy = Some(proxy);
        self
    }

    /// Names are looked up with `resolver` instead of the system's.
    pub fn resolver(mut self, resolver: Arc<dyn HostResolver>) -> Self {
        self.resolver = Some(resolver);
        self
    }

    /// Why `ip` may not be fetched under this config, or `None` when it may.
    fn refusal(&self, ip: IpAddr) -> Option<&'static str> {
        if self.allow_private || self.allowed_addresses.contains(&ip) {
            return None;
        }
        forbidden_ip(ip)
    }
}

fn parse_proxy(text: &str) -> Result<url::Url, String> {
    // The text is not repeated: a proxy URL may carry a password.
    let url = url::Url::parse(text).map_err(|e| {
        format!(
            "tools.web.fetch.proxy is not a URL ({e}); write it like \
             \"http://proxy.internal:3128\""
        )
    })?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        scheme => Err(format!(
            "tools.web.fetch.proxy must be an http:// or https:// proxy with a host, not \
             {scheme}: (SOCKS proxies are not supported)"
        )),
    }
}

/// Why an address may not be fetched, or `None` when it may.
pub fn forbidden_ip(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_private() {
        Some("a private network address")
    } else if ip.is_link_local() {
        Some("a link-local address (cloud metadata services live there)")
    } else if ip.is_unspecified() || o[0] == 0 {
        Some("an unspecified address")
    } else if ip.is_broadcast() {
        Some("the broadcast address")
    } else if ip.is_multicast() || o[0] >= 240 {
        Some("a multicast or reserved address")
    } else if o[0] == 100 && (64..128).contains(&o[1]) {
        Some("a carrier-grade NAT address")
    } else if ip.is_documentation() || (o[0] == 198 && (o[1] == 18 || o[1] == 19)) {
        Some("a documentation or benchmarking address")
    } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
        Some("an IETF protocol assignment address")
    } else {
        None
    }
}

/// The IPv4 address in segments `hi` and `lo`.
fn v4_in(hi: u16, lo: u16) -> Ipv4Addr {
    let [a, b] = hi.to_be_bytes();
    let [c, d] = lo.to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

/// The IPv4 address an IPv6 address carries and routes to, for the forms that do: IPv4-mapped
/// `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, well-known NAT64 `64:ff9b::a.b.c.d` (the last
/// 32 bits) and 6to4 `2002:AABB:CCDD::/48` (bits 16 to 48).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    // `::` and `::1` are IPv6's own unspecified and loopback, refused as such.
    let compatible = s[0..6] == [0; 6] && !ip.is_loopback() && !ip.is_unspecified();
    let nat64 = s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4];
    if compatible || nat64 {
        return Some(v4_in(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return Some(v4_in(s[1], s[2]));
    }
    None
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if let Some(v4) = embedded_v4(ip) {
        return forbidden_v4(v4);
    }
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_unspecified() {
        Some("an unspecified address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
        // RFC 8215: the operator's own NAT64 prefix; the IPv4 inside may be any internal one.
        Some("a local-use NAT64 address (it reaches IPv4 addresses inside the network)")
    } else if (s[0] & 0xfe00) == 0xfc00 {
        Some("a private network address (unique local)")
    } else if (s[0] & 0xffc0) == 0xfe80 || (s[0] & 0xffc0) == 0xfec0 {
        Some("a link-local address")
    } else if s[0] == 0x2001 && s[1] == 0x0db8 {
        Some("a documentation address")
    } else {
        None
    }
}

/// The addresses a fetch of one URL connects to: every one checked. Empty when a configured
/// proxy resolves the name (this machine could not).
async fn check_url(config: &WebFetchConfig, url: &url::Url) -> Result<Vec<SocketAddr>, String> {
    match url.scheme() {
        "http" | "https" => {}
        other => {
            return Err(format!(
                "only http and https URLs can be fetched, not {other}:"
            ));
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("URLs with credentials are not fetched".into());
    }
    let port = url.port_or_known_default().unwrap_or(80);
    let addrs: Vec<SocketAddr> = match url.host() {
        Some(url::Host::Ipv4(ip)) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
        Some(url::Host::Ipv6(ip)) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
        Some(url::Host::Domain(name)) => {
            let lower = name.to_ascii_lowercase();
            if !config.allow_private && (lower == "localhost" || lower.ends_with(".localhost")) {
                return Err(format!("{name} is this machine; it is not fetched"));
            }
            let found = match &config.resolver {
                Some(resolver) => resolver.lookup(name).await.map(|ips| {
                    ips.into_iter()
                        .map(|ip| SocketAddr::new(ip, port))
                        .collect()
                }),
                None => tokio::net::lookup_host((name, port))
                    .await
                    .map(|addrs| addrs.collect()),
            };
            match found {
                Ok(addrs) => addrs,
                // Behind a proxy, names may resolve only there: the proxy checks them.
                Err(e) if config.proxy.is_some() => {
                    tracing::debug!(host = %name, error = %e, "not resolved here; the proxy will");
                    return Ok(Vec::new());
                }
                Err(e) => return Err(format!("cannot resolve {name}: {e}")),
            }
        }
        None => return Err("the URL has no host".into()),
    };
    if addrs.is_empty() {
        return Err("the host resolves to no address".into());
    }
    for addr in &addrs {
        if let Some(why) = config.refusal(addr.ip()) {
            return Err(format!(
                "{} resolves to {}, {why}: not fetched (internal addresses are off limits)",
                url.host_str().unwrap_or_default(),
                addr.ip()
            ));
        }
    }
    Ok(addrs)
}

/// A [`HostResolver`] as reqwest asks for one.
struct ReqwestHostResolver(Arc<dyn HostResolver>);

impl reqwest::dns::Resolve for ReqwestHostResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = Arc::clone(&self.0);
        Box::pin(async move {
            let ips = resolver.lookup(name.as_str()).await?;
            // Port 0: reqwest puts the URL's port in.
            let addrs: reqwest::dns::Addrs =
                Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// The client for one hop: no redirects, no proxy but the configured one, and `pinned` (the
/// checked addresses) as the only answer for the URL's host.
fn client_for(
    config: &WebFetchConfig,
    url: &url::Url,
    pinned: &[SocketAddr],
    timeout: Duration,
) -> Result<reqwest::Client, String> {
    let mut builder = picoclaw_http::client_builder()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .user_agent(concat!(
            "picoclaw/",
            env!("CARGO_PKG_VERSION"),
            " (web_fetch)"
        ));
    builder = match &config.proxy {
        Some(proxy) => builder.proxy(reqwest::Proxy::all(proxy.as_str()).map_err(|e| {
            format!(
                "cannot use the proxy in tools.web.fetch.proxy: {}",
                e.without_url()
            )
        })?),
        None => builder.no_proxy(),
    };
    if let Some(resolver) = &config.resolver {
        builder = builder.dns_resolver(Arc::new(ReqwestHostResolver(Arc::clone(resolver))));
    }
    // Connect to the checked addresses, whatever DNS says a moment later.
    if let Some(url::Host::Domain(name)) = url.host()
        && !pinned.is_empty()
    {
        builder = builder.resolve_to_addrs(name, pinned);
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// Fetches web pages for the agent.
#[derive(Debug, Clone, Default)]
pub struct WebFetchTool {
    config: WebFetchConfig,
}

impl WebFetchTool {
    pub fn new(config: WebFetchConfig) -> Self {
        Self { config }
    }

    async fn fetch(&self, url: &str, max_chars: usize) -> Result<String, String> {
        let mut current =
            url::Url::parse(url.trim()).map_err(|e| format!("'{url}' is not a URL: {e}"))?;
        let started = std::time::Instant::now();
        for _hop in 0..=self.config.max_redirects {
            let addrs = check_url(&self.config, &current).await?;
            let client = client_for(
                &self.config,
                &current,
                &addrs,
                self.config.timeout.saturating_sub(started.elapsed()),
            )?;
            let response = client.get(current.clone()).send().await.map_err(|e| {
                if e.is_timeout() {
                    "the page took too long".to_owned()
                } else {
                    format!("cannot fetch {current}: {e}")
                }
            })?;
            let status = response.status();
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| format!("{status} without a Location"))?;
                current = current
                    .join(location)
                    .map_err(|e| format!("bad redirect '{location}': {e}"))?;
                continue;
            }
            if !status.is_success() {
                return Err(format!("{current} answered {status}"));
            }
            let content_type = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_ascii_lowercase();
            if let Some(len) = response.content_length()
                && len as usize > self.config.max_bytes
            {
                return Err(format!(
                    "the page is {len} bytes, more than the {} allowed",
                    self.config.max_bytes
                ));
            }
            let is_html = content_type.contains("html");
            let is_text = is_html
                || content_type.starts_with("text/")
                || content_type.contains("json")
                || content_type.contains("xml")
                || content_type.is_empty();
            if !is_text {
                return Err(format!(
                    "{current} is {content_type}, not text; web_fetch reads text pages"
                ));
            }
            let body = read_capped(response, self.config.max_bytes).await?;
            let text = if is_html {
                htmd::HtmlToMarkdown::builder()
                    .skip_tags(vec!["script", "style", "noscript", "iframe", "svg", "head"])
                    .build()
                    .convert(&body)
                    .map_err(|e| format!("cannot read the page: {e}"))?
            } else {
                body
            };
            let text = text.trim();
            let total = text.chars().count();
            let mut out = format!("URL: {current}\n\n");
            if total > max_chars {
                out.extend(text.chars().take(max_chars));
                out.push_str(&format!("\n\n[... cut at {max_chars} of {total} characters; ask with a larger max_chars for more ...]"));
            } else {
                out.push_str(text);
            }
            return Ok(out);
        }
        Err(format!("more than {} redirects", self.config.max_redirects))
    }
}

/// The body as text (charset from the Content-Type), at most `max` bytes.
async fn read_capped(response: reqwest::Response, max: usize) -> Result<String, String> {
    let charset = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| {
            ct.split(';').find_map(|p| {
                p.trim()
                    .strip_prefix("charset=")
                    .map(|c| c.trim_matches('"').to_ascii_lowercase())
            })
        });
    let mut response = response;
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("the download broke off: {e}"))?
    {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > max {
            return Err(format!("the page is larger than the {max} bytes allowed"));
        }
    }
    Ok(match charset.as_deref() {
        None | Some("utf-8" | "utf8" | "us-ascii") => String::from_utf8_lossy(&bytes).into_owned(),
        // Latin-1 and its common alias: every byte is its code point.
        Some("iso-8859-1" | "latin1" | "windows-1252") => {
            bytes.iter().map(|b| *b as char).collect()
        }
        Some(_) => String::from_utf8_lossy(&bytes).into_owned(),
    })
}

#[derive(Deserialize)]
struct Args {
    url: String,
    #[serde(default)]
    max_chars: Option<usize>,
}

#[async_trait]
impl Tool for WebFetchTool {
    // Reads only.
    fn parallel_safe(&self) -> bool {
        true
    }

    fn spec(&self) -> ToolSpec {
        ToolSpec::new(
            "web_fetch",
            "Fetch a public web page as Markdown (text/JSON as is).",
            schema(
                &[
                    ("url", "string", "The http or https URL"),
                    (
                        "max_chars",
                        "integer",
                        "Most characters to return (default 50 000)",
                    ),
                ],
                &["url"],
            ),
        )
    }

    async fn call(&self, _ctx: &ToolContext, args: Value) -> ToolOutput {
        let args: Args = match parse("web_fetch", args) {
            Ok(a) => a,
            Err(e) => return e,
        };
        let max = args
            .max_chars
            .unwrap_or(self.config.default_max_chars)
            .clamp(100, self.config.max_chars_cap);
        match self.fetch(&args.url, max).await {
            Ok(text) => ToolOutput::ok(text),
            Err(e) => ToolOutput::error(format!("web_fetch: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        IpAddr::V4(s.parse().unwrap())
    }
    fn v6(s: &str) -> IpAddr {
        IpAddr::V6(s.parse().unwrap())
    }

    #[test]
    fn internal_addresses_are_refused_in_every_form() {
        for ip in [
            v4("127.0.0.1"),
            v4("127.8.9.10"),
            v4("10.0.0.1"),
            v4("172.16.5.4"),
            v4("192.168.1.1"),
            v4("169.254.169.254"),
            v4("100.64.0.1"),
            v4("100.127.255.254"),
            v4("0.0.0.0"),
            v4("0.1.2.3"),
            v4("255.255.255.255"),
            v4("224.0.0.1"),
            v4("240.0.0.1"),
            v4("192.0.2.1"),
            v4("198.18.0.1"),
            v4("192.0.0.8"),
            v6("::1"),
            v6("::"),
            v6("fe80::1"),
            v6("fc00::1"),
            v6("fd00:ec2::254"),
            v6("ff02::1"),
            v6("::ffff:127.0.0.1"),
            v6("::ffff:169.254.169.254"),
            v6("::ffff:10.1.1.1"),
            v6("::127.0.0.1"),
            v6("64:ff9b::a9fe:a9fe"),
            v6("2001:db8::1"),
            v6("fec0::1"),
        ] {
            assert!(forbidden_ip(ip).is_some(), "{ip} must be refused");
        }
        // Every IPv6 form that carries an internal IPv4 address.
        for (ip, form) in [
            ("::ffff:127.0.0.1", "IPv4-mapped ::ffff:0:0/96"),
            ("::ffff:7f00:1", "IPv4-mapped, in hex"),
            ("::ffff:192.168.0.1", "IPv4-mapped"),
            ("::127.0.0.1", "IPv4-compatible ::/96"),
            ("::10.0.0.1", "IPv4-compatible"),
            ("::a9fe:a9fe", "IPv4-compatible, metadata"),
            ("64:ff9b::127.0.0.1", "well-known NAT64 64:ff9b::/96"),
            ("64:ff9b::a9fe:a9fe", "well-known NAT64, metadata"),
            ("64:ff9b::10.1.2.3", "well-known NAT64"),
            ("64:ff9b:1::a9fe:a9fe", "local-use NAT64 64:ff9b:1::/48"),
            ("64:ff9b:1:ffff::808:808", "local-use NAT64, whole prefix"),
            ("64:ff9b:1::", "local-use NAT64, whole prefix"),
            ("2002:7f00:1::", "6to4 2002::/16 of 127.0.0.1"),
            ("2002:a9fe:a9fe::1", "6to4 of 169.254.169.254"),
            ("2002:c0a8:101:1::1", "6to4 of 192.168.1.1"),
            ("2002:a00:1::", "6to4 of 10.0.0.1"),
            ("2002:6440:1::", "6to4 of 100.64.0.1 (CGNAT)"),
            ("2002::", "6to4 of 0.0.0.0"),
        ] {
            assert!(
                forbidden_ip(v6(ip)).is_some(),
                "{ip} ({form}) must be refused"
            );
        }
        // The same forms around a public IPv4 address route to the public internet.
        for ip in [
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "64:ff9b::1.1.1.1",
            "2002:808:808::1",
            "::8.8.8.8",
        ] {
            assert_eq!(forbidden_ip(v6(ip)), None, "{ip} carries a public address");
        }
        for ip in [
            v4("93.184.216.34"),
            v4("1.1.1.1"),
            v4("100.128.0.1"),
            v6("2606:4700::1111"),
            v6("::ffff:8.8.8.8"),
        ] {
            assert_eq!(forbidden_ip(ip), None, "{ip} is public");
        }
    }

    #[test]
    fn the_proxy_comes_from_the_config_only() {
        let none = WebFetchConfig::from_json(&serde_json::json!({"fetch": {}})).unwrap();
        assert!(none.proxy.is_none());
        let blank = WebFetchConfig::from_json(&serde_json::json!({"fetch": {"proxy": " "}}));
        assert!(blank.unwrap().proxy.is_none());
        let set = WebFetchConfig::from_json(
            &serde_json::json!({"fetch": {"proxy": "http://me:s3cret@proxy.internal:3128"}}),
        )
        .unwrap();
        assert_eq!(
            set.proxy.as_ref().map(url::Url::as_str),
            Some("http://me:s3cret@proxy.internal:3128/")
        );
        let shown = format!("{set:?}");
        assert!(
            shown.contains("proxy.internal:3128") && !shown.contains("s3cret"),
            "{shown}"
        );
        for bad in [
            serde_json::json!("socks5://127.0.0.1:1080"),
            serde_json::json!("proxy.internal:3128"),
            serde_json::json!("not a url"),
            serde_json::json!(3128),
        ] {
            let err = WebFetchConfig::from_json(&serde_json::json!({"fetch": {"proxy": bad}}))
                .unwrap_err();
            assert!(err.contains("tools.web.fetch.proxy"), "{bad}: {err}");
        }
    }

    #[tokio::test]
    async fn numeric_spellings_and_odd_urls_are_caught() {
        for url in [
            "http://2130706433/", // decimal 127.0.0.1
            "http://0x7f.0.0.1/", // hex
            "http://0x7f000001/",
            "http://017700000001/", // octal
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://[::ffff:7f00:1]/",
            "http://[::1]:8080/",
            "http://localhost:3000/",
            "http://metadata.localhost/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[fd00:ec2::254]/",
            "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
            "http://[64:ff9b:1::a9fe:a9fe]/",
            "http://[2002:a9fe:a9fe::]/",
            "http://[::10.0.0.1]/",
        ] {
            let parsed = url::Url::parse(url).unwrap();
            let err = check_url(&WebFetchConfig::default(), &parsed)
                .await
                .unwrap_err();
            assert!(err.contains("not fetched"), "{url}: {err}");
        }
        for (url, want) in [
            ("file:///etc/passwd", "only http and https"),
            ("ftp://example.com/x", "only http and https"),
            ("http://user:pw@example.com/", "credentials"),
        ] {
            let err = check_url(&WebFetchConfig::default(), &url::Url::parse(url).unwrap())
                .await
                .unwrap_err();
            assert!(err.contains(want), "{url}: {err}");
        }
    }
}
