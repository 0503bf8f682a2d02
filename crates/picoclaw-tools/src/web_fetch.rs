//! `web_fetch(url, max_chars)`: a web page as readable Markdown (HTML converted with `htmd`), or
//! a text/JSON body as it is — with size and time caps and SSRF protection:
//!
//! - only `http` and `https`; no credentials in the URL;
//! - the host is resolved once, every address checked, and the connection goes to a checked
//!   address (pinned in the client), so DNS cannot answer differently between the check and the
//!   connect;
//! - refused: loopback, private (RFC 1918, IPv6 unique-local), link-local (which covers the
//!   169.254.169.254 cloud metadata service), CGNAT 100.64.0.0/10, multicast, broadcast,
//!   unspecified, documentation and benchmarking ranges, IPv4-mapped/compatible IPv6 and NAT64
//!   forms of those, and the IPv6 metadata address fd00:ec2::254; numeric spellings of IPv4
//!   (`2130706433`, `0x7f.1`, `017700000001`) are normalised by the URL parser before the check;
//! - redirects are followed by hand (at most 5), each hop checked the same way.
//!
//! `WebFetchConfig::allow_private` lifts the address rule for an operator who wants intranet
//! pages (and for tests on loopback).

use crate::args::{parse, schema};
use crate::{Tool, ToolContext, ToolOutput};
use async_trait::async_trait;
use picoclaw_types::ToolSpec;
use serde::Deserialize;
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// Limits of `web_fetch`.
#[derive(Clone, Debug)]
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
        }
    }
}

impl WebFetchConfig {
    /// Reads `tools.web.fetch`: `allow_private` (an operator opening intranet addresses to the
    /// model, knowingly), `timeout_seconds`, `max_chars` (returned by default). Anything absent
    /// keeps its default.
    pub fn from_json(web: &serde_json::Value) -> Self {
        let mut config = Self::default();
        let fetch = &web["fetch"];
        if let Some(on) = fetch["allow_private"].as_bool() {
            config.allow_private = on;
        }
        if let Some(secs) = fetch["timeout_seconds"].as_u64().filter(|s| *s > 0) {
            config.timeout = Duration::from_secs(secs);
        }
        if let Some(chars) = fetch["max_chars"].as_u64().filter(|c| *c > 0) {
            config.default_max_chars = (chars as usize).min(config.max_chars_cap);
        }
        config
    }

    pub fn allow_private(mut self, on: bool) -> Self {
        self.allow_private = on;
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
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

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return forbidden_v4(v4);
    }
    // IPv4-compatible (::a.b.c.d, deprecated) and NAT64 (64:ff9b::a.b.c.d) carry an IPv4 address.
    if (s[0..6] == [0, 0, 0, 0, 0, 0] && !ip.is_loopback() && !ip.is_unspecified())
        || (s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0])
    {
        let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
        return forbidden_v4(v4);
    }
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_unspecified() {
        Some("an unspecified address")
    } else if ip.is_multicast() {
        Some("a multicast address")
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

/// A URL checked for scheme and credentials, with the addresses its host resolves to — all of
/// them allowed.
async fn check_url(url: &url::Url, allow_private: bool) -> Result<Vec<SocketAddr>, String> {
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
            if !allow_private && (lower == "localhost" || lower.ends_with(".localhost")) {
                return Err(format!("{name} is this machine; it is not fetched"));
            }
            tokio::net::lookup_host((name, port))
                .await
                .map_err(|e| format!("cannot resolve {name}: {e}"))?
                .collect()
        }
        None => return Err("the URL has no host".into()),
    };
    if addrs.is_empty() {
        return Err("the host resolves to no address".into());
    }
    if !allow_private {
        for addr in &addrs {
            if let Some(why) = forbidden_ip(addr.ip()) {
                return Err(format!(
                    "{} resolves to {}, {why}: not fetched (internal addresses are off limits)",
                    url.host_str().unwrap_or_default(),
                    addr.ip()
                ));
            }
        }
    }
    Ok(addrs)
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
        // The process's TLS crypto provider (ring), as every HTTPS client here installs it.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut current =
            url::Url::parse(url.trim()).map_err(|e| format!("'{url}' is not a URL: {e}"))?;
        let started = std::time::Instant::now();
        for _hop in 0..=self.config.max_redirects {
            let addrs = check_url(&current, self.config.allow_private).await?;
            let mut builder = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(self.config.timeout.saturating_sub(started.elapsed()))
                .user_agent(concat!(
                    "picoclaw/",
                    env!("CARGO_PKG_VERSION"),
                    " (web_fetch)"
                ));
            // Connect to the checked address, whatever DNS says a moment later.
            if let Some(url::Host::Domain(name)) = current.host() {
                builder = builder.resolve(name, addrs[0]);
            }
            let client = builder
                .build()
                .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
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
        ] {
            let parsed = url::Url::parse(url).unwrap();
            let err = check_url(&parsed, false).await.unwrap_err();
            assert!(err.contains("not fetched"), "{url}: {err}");
        }
        for (url, want) in [
            ("file:///etc/passwd", "only http and https"),
            ("ftp://example.com/x", "only http and https"),
            ("http://user:pw@example.com/", "credentials"),
        ] {
            let err = check_url(&url::Url::parse(url).unwrap(), false)
                .await
                .unwrap_err();
            assert!(err.contains(want), "{url}: {err}");
        }
    }
}
