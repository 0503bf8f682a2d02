//! Who may use the HTTP API, decided before any handler runs: the `Host` a request names (a
//! web page that rebinds its own DNS name to 127.0.0.1 still sends its name), the `Origin` of
//! the page that sent it (browsers send cross-site "simple" requests without asking), and the
//! bearer key (compared in constant time).

use picoclaw_api::Secret;
use picoclaw_config::GatewayConfig;
use std::net::{IpAddr, SocketAddr};

/// The gateway's access rules, from its config, its key and the address it listens on.
#[derive(Clone, Debug)]
pub struct Access {
    key: Secret<String>,
    /// The port the gateway listens on (the config may say 0: any free one).
    port: u16,
    /// The configured bind host, lower-cased, without brackets; None for a wildcard bind
    /// (0.0.0.0, ::), which no client names.
    bind_host: Option<String>,
    /// `gateway.allowed_hosts`: names with the port they must come with, if one was given.
    allowed_hosts: Vec<(String, Option<u16>)>,
    /// `gateway.allowed_origins`, normalised (lower case, no trailing slash).
    allowed_origins: Vec<String>,
    /// `gateway.metrics_public`.
    pub metrics_public: bool,
}

impl Access {
    /// The rules for a gateway with `settings`, requiring `key`, listening on `bound`.
    pub fn new(key: Secret<String>, settings: &GatewayConfig, bound: SocketAddr) -> Self {
        let bind = settings.host.trim();
        let bind_host = split_host_port(bind)
            .map(|(h, _)| h)
            .or_else(|| (!bind.is_empty()).then(|| unbracket(bind).to_ascii_lowercase()))
            .filter(|h| !h.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified()));
        Self {
            key,
            port: bound.port(),
            bind_host,
            allowed_hosts: settings
                .allowed_hosts
                .iter()
                .filter_map(|h| split_host_port(h))
                .collect(),
            allowed_origins: settings
                .allowed_origins
                .iter()
                .map(|o| normalise_origin(o))
                .filter(|o| !o.is_empty())
                .collect(),
            metrics_public: settings.metrics_public,
        }
    }

    /// Whether `host` (a `Host` header: `name`, `name:port`, `[v6]:port`) names this gateway: a
    /// loopback name, the bind address, or one of `gateway.allowed_hosts`. The port is not
    /// checked against the listening port (a proxy may forward the name without it), except
    /// for an allowed host written with a port.
    pub fn host_allowed(&self, host: &str) -> bool {
        let Some((name, port)) = split_host_port(host) else {
            return false;
        };
        is_loopback_name(&name)
            || self
                .bind_host
                .as_deref()
                .is_some_and(|b| same_host(b, &name))
            || self
                .allowed_hosts
                .iter()
                .any(|(h, p)| same_host(h, &name) && p.is_none_or(|p| Some(p) == port))
    }

    /// Whether a request with this `Origin` header (sent to `host`, the request's `Host`) comes
    /// from the gateway's own pages or from an origin listed in `gateway.allowed_origins`.
    /// Own means: http(s) on a name [`Access::host_allowed`] accepts, on the gateway's port or
    /// on exactly the host and port the request was sent to (a reverse proxy's public name).
    pub fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        let origin = normalise_origin(origin);
        if self.allowed_origins.contains(&origin) {
            return true;
        }
        let Some((scheme, authority)) = origin.split_once("://") else {
            return false;
        };
        let default_port = match scheme {
            "http" => 80,
            "https" => 443,
            _ => return false,
        };
        let Some((name, port)) = split_host_port(authority) else {
            return false;
        };
        if !self.host_allowed(authority) {
            return false;
        }
        let port = port.unwrap_or(default_port);
        if port == self.port {
            return true;
        }
        host.and_then(split_host_port)
            .is_some_and(|(h, p)| same_host(&h, &name) && p.unwrap_or(default_port) == port)
    }

    /// Whether `given` (the bearer token a request sent) is the key, compared in constant time.
    pub fn key_matches(&self, given: &str) -> bool {
        constant_time_eq(given.trim().as_bytes(), self.key.expose().as_bytes())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(a.ct_eq(b))
}

/// Whether `name` (lower case, no brackets) always means this machine.
fn is_loopback_name(name: &str) -> bool {
    name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The same host name, or the same IP address however it is written.
fn same_host(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
        || matches!((a.parse::<IpAddr>(), b.parse::<IpAddr>()), (Ok(x), Ok(y)) if x == y)
}

fn unbracket(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// `name[:port]` or `[v6][:port]` as (lower-case name without brackets, port); None when it is
/// not a host (a path, user info, spaces, a bad port). An unbracketed IPv6 address (as the
/// config may write the bind host) is a name without a port.
fn split_host_port(text: &str) -> Option<(String, Option<u16>)> {
    let text = text.trim();
    if text.is_empty() || text.contains(['/', '@', '?', '#', ' ', '\t', ',', '*']) {
        return None;
    }
    let (name, port) = if let Some(rest) = text.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        v6.parse::<std::net::Ipv6Addr>().ok()?;
        match after {
            "" => (v6, None),
            _ => (v6, Some(after.strip_prefix(':')?)),
        }
    } else if text.matches(':').count() > 1 {
        text.parse::<std::net::Ipv6Addr>().ok()?;
        (text, None)
    } else {
        match text.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (text, None),
        }
    };
    let port = match port {
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse().ok()?),
        Some(_) => return None,
        None => None,
    };
    if name.is_empty() || name.contains(['[', ']']) {
        return None;
    }
    Some((name.to_ascii_lowercase(), port))
}

fn normalise_origin(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(host: &str, port: u16, hosts: &[&str], origins: &[&str]) -> Access {
        let mut settings = GatewayConfig::default();
        settings.host = host.into();
        settings.allowed_hosts = hosts.iter().map(|s| (*s).to_owned()).collect();
        settings.allowed_origins = origins.iter().map(|s| (*s).to_owned()).collect();
        let bound = SocketAddr::from(([127, 0, 0, 1], port));
        Access::new(Secret::new("the-key-0123456789".into()), &settings, bound)
    }

    #[test]
    fn hosts_are_loopback_names_the_bind_address_or_allowed() {
        let a = access(
            "127.0.0.1",
            18790,
            &["pico.example.com", "box.lan:8443"],
            &[],
        );
        for ok in [
            "localhost",
            "LOCALHOST:18790",
            "127.0.0.1",
            "127.0.0.1:18790",
            "127.0.0.2:1",
            "[::1]",
            "[::1]:18790",
            "pico.example.com",
            "Pico.Example.com:443",
            "box.lan:8443",
        ] {
            assert!(a.host_allowed(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:18790",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "box.lan",
            "box.lan:18790",
            "",
            "[::1",
            "localhost:port",
            "user@localhost",
            "0.0.0.0:18790",
        ] {
            assert!(!a.host_allowed(bad), "{bad}");
        }
        // A bind address clients can name is the gateway's own; a wildcard bind is not a name.
        let lan = access("192.168.1.5", 18790, &[], &[]);
        assert!(lan.host_allowed("192.168.1.5:18790"));
        assert!(!lan.host_allowed("192.168.1.6:18790"));
        let v6 = access("fd00::5", 18790, &[], &[]);
        assert!(v6.host_allowed("[fd00:0::5]:18790"));
        for wildcard in ["0.0.0.0", "::", "[::]"] {
            let any = access(wildcard, 18790, &[], &[]);
            assert!(any.host_allowed("localhost:18790"), "{wildcard}");
            assert!(!any.host_allowed("0.0.0.0:18790"), "{wildcard}");
            assert!(!any.host_allowed("[::]:18790"), "{wildcard}");
            assert!(!any.host_allowed("192.168.1.5:18790"), "{wildcard}");
        }
    }

    #[test]
    fn origins_are_the_gateways_own_or_listed() {
        let a = access(
            "127.0.0.1",
            18790,
            &["pico.example.com"],
            &["https://App.Example.com/"],
        );
        let own = Some("127.0.0.1:18790");
        for ok in [
            "http://127.0.0.1:18790",
            "http://localhost:18790",
            "http://[::1]:18790",
            "http://pico.example.com:18790",
            "https://app.example.com",
        ] {
            assert!(a.origin_allowed(ok, own), "{ok}");
        }
        for bad in [
            "https://evil.example",
            "http://evil.example:18790",
            "http://localhost:3000",
            "http://127.0.0.1",
            "https://app.example.com:8443",
            "null",
            "file://",
            "ws://localhost:18790",
            "http://localhost:18790/path",
            "",
        ] {
            assert!(!a.origin_allowed(bad, own), "{bad}");
        }
        // Behind a TLS proxy that forwards the public name, the page's origin is that name.
        assert!(a.origin_allowed("https://pico.example.com", Some("pico.example.com")));
        assert!(!a.origin_allowed("https://pico.example.com", Some("127.0.0.1:18790")));
        // A foreign name stays foreign even when the request names it as its Host.
        assert!(!a.origin_allowed("https://evil.example", Some("evil.example")));
    }

    #[test]
    fn the_key_is_compared_whole() {
        let a = access("127.0.0.1", 1, &[], &[]);
        assert!(a.key_matches("the-key-0123456789"));
        assert!(a.key_matches(" the-key-0123456789 "));
        for bad in [
            "",
            "the-key-012345678",
            "the-key-0123456789x",
            "THE-KEY-0123456789",
        ] {
            assert!(!a.key_matches(bad), "{bad}");
        }
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b""));
    }
}
