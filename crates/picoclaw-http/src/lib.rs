//! picoclaw's HTTPS clients: a [`reqwest::ClientBuilder`] whose TLS is a `rustls::ClientConfig`
//! built here, from a crypto provider chosen explicitly, with the certificate verification
//! reqwest itself would use (rustls-platform-verifier: on Linux and the BSDs the system's
//! certificate store, honouring `SSL_CERT_FILE` and `SSL_CERT_DIR`; the OS verifier on macOS,
//! iOS, Windows and Android).
//!
//! Nothing here installs process-global state: no `CryptoProvider::install_default`. The
//! provider is, in order,
//! 1. the one the caller passes ([`client_builder_with_provider`], [`tls_config`]);
//! 2. else the process default, when the application installed one (read, never set);
//! 3. else rustls' ring provider, with the `ring` feature (on by default);
//! 4. else [`HttpError::NoCryptoProvider`].
//!
//! So an embedder that cannot build ring (no C compiler, or a FIPS requirement) turns the
//! feature off and brings its own provider, a pure-Rust one for example.
//!
//! ```no_run
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = picoclaw_http::client_builder()?
//!     .timeout(std::time::Duration::from_secs(30))
//!     .build()?;
//! # let _ = client; Ok(()) }
//! ```
//!
//! A builder from here must not be given reqwest's own TLS settings (`tls_certs_only`,
//! `tls_backend_rustls`, `tls_danger_accept_invalid_certs`...): they replace or are ignored by
//! the preconfigured TLS. Choose the trusted roots with [`Roots`] instead.
//!
//! With the `provider` feature, the `provider` module holds what every model client shares (the
//! client built from a base URL, HTTP failures as picoclaw-api's `ProviderError`, SSE answers).

use std::sync::Arc;

#[cfg(feature = "provider")]
pub mod provider;

pub use rustls::crypto::CryptoProvider;
pub use rustls::pki_types::CertificateDer;

/// Why a client's TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// No crypto provider: none was passed, the application installed no process default and
    /// the `ring` feature is off.
    #[error(
        "no TLS crypto provider: pass one, install a process default in the application, or \
         build with the `ring` feature"
    )]
    NoCryptoProvider,
    /// rustls refused the configuration (the provider lacks TLS 1.2 and 1.3 suites, a root
    /// certificate does not parse, no certificate authority could be loaded from the system).
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] rustls::Error),
}

/// Which certificate authorities a client trusts.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub enum Roots {
    /// The platform's, as reqwest trusts by default (rustls-platform-verifier).
    #[default]
    Platform,
    /// The platform's and these (a company's own authority, a test's).
    PlatformAnd(Vec<CertificateDer<'static>>),
    /// These only. Empty, no server certificate is trusted: for a client that only speaks plain
    /// HTTP, which then never reads the system's store (some 150 files on Linux).
    Only(Vec<CertificateDer<'static>>),
}

impl Roots {
    /// The roots for a client of one endpoint: none for a plain-HTTP base URL reached without
    /// a proxy (a local model server, a test's loopback fake), so the system's store is not
    /// read for a client that never uses it (a redirect to HTTPS then fails with a
    /// certificate error instead of being followed); the platform's otherwise.
    pub fn for_endpoint(base_url: &str, proxy: Option<&str>) -> Self {
        let plain = base_url
            .trim_start()
            .get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case("http://"));
        if plain && proxy.is_none() {
            Roots::Only(Vec::new())
        } else {
            Roots::Platform
        }
    }
}

/// The provider used when the caller passes none: the process default if the application
/// installed one, else ring (feature `ring`), else [`HttpError::NoCryptoProvider`]. Never
/// installs anything.
pub fn default_crypto_provider() -> Result<Arc<CryptoProvider>, HttpError> {
    if let Some(installed) = CryptoProvider::get_default() {
        return Ok(Arc::clone(installed));
    }
    #[cfg(feature = "ring")]
    {
        Ok(Arc::new(rustls::crypto::ring::default_provider()))
    }
    #[cfg(not(feature = "ring"))]
    {
        Err(HttpError::NoCryptoProvider)
    }
}

/// A TLS client configuration over `provider` trusting `roots`: TLS 1.2 and 1.3, SNI, ALPN
/// `h2` then `http/1.1` (what reqwest offers with its `http2` feature; `http/1.1` alone without
/// this crate's `http2` feature).
pub fn tls_config(
    provider: Arc<CryptoProvider>,
    roots: Roots,
) -> Result<rustls::ClientConfig, HttpError> {
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?;
    let builder = match roots {
        Roots::Platform => {
            let verifier = rustls_platform_verifier::Verifier::new(provider)?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
        }
        Roots::PlatformAnd(extra) => {
            let verifier = platform_verifier_with(extra, provider)?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
        }
        Roots::Only(certs) => {
            let mut store = rustls::RootCertStore::empty();
            for cert in certs {
                store.add(cert)?;
            }
            builder.with_root_certificates(store)
        }
    };
    let mut config = builder.with_no_client_auth();
    #[cfg(feature = "http2")]
    let alpn = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    #[cfg(not(feature = "http2"))]
    let alpn = vec![b"http/1.1".to_vec()];
    config.alpn_protocols = alpn;
    Ok(config)
}

#[cfg(any(all(unix, not(target_os = "android")), target_os = "windows"))]
fn platform_verifier_with(
    extra: Vec<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
) -> Result<rustls_platform_verifier::Verifier, HttpError> {
    Ok(rustls_platform_verifier::Verifier::new_with_extra_roots(
        extra, provider,
    )?)
}

#[cfg(not(any(all(unix, not(target_os = "android")), target_os = "windows")))]
fn platform_verifier_with(
    _extra: Vec<CertificateDer<'static>>,
    _provider: Arc<CryptoProvider>,
) -> Result<rustls_platform_verifier::Verifier, HttpError> {
    Err(HttpError::Tls(rustls::Error::General(
        "extra root certificates are not supported beside this platform's verifier".into(),
    )))
}

/// Gives `builder` the TLS configuration `config` (reqwest's preconfigured rustls backend).
pub fn with_tls(
    builder: reqwest::ClientBuilder,
    config: rustls::ClientConfig,
) -> reqwest::ClientBuilder {
    builder.tls_backend_preconfigured(config)
}

/// A client builder over the default provider ([`default_crypto_provider`]) trusting the
/// platform's certificate authorities. Set timeouts, proxies and headers on it as usual.
pub fn client_builder() -> Result<reqwest::ClientBuilder, HttpError> {
    client_builder_with_provider(default_crypto_provider()?)
}

/// The same over the caller's crypto provider (a pure-Rust one, a FIPS one).
pub fn client_builder_with_provider(
    provider: Arc<CryptoProvider>,
) -> Result<reqwest::ClientBuilder, HttpError> {
    Ok(with_tls(
        reqwest::Client::builder(),
        tls_config(provider, Roots::Platform)?,
    ))
}

/// A client builder for one endpoint (a model provider's base URL): over `provider`, or the
/// default one when `None`, trusting [`Roots::for_endpoint`] (nothing for plain HTTP without
/// a proxy). The caller still sets the proxy itself.
pub fn client_builder_for_endpoint(
    base_url: &str,
    proxy: Option<&str>,
    provider: Option<Arc<CryptoProvider>>,
) -> Result<reqwest::ClientBuilder, HttpError> {
    let provider = match provider {
        Some(p) => p,
        None => default_crypto_provider()?,
    };
    Ok(with_tls(
        reqwest::Client::builder(),
        tls_config(provider, Roots::for_endpoint(base_url, proxy))?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_without_a_proxy_trusts_nothing() {
        assert!(matches!(
            Roots::for_endpoint("http://127.0.0.1:11434/v1", None),
            Roots::Only(c) if c.is_empty()
        ));
        assert!(matches!(
            Roots::for_endpoint("  HTTP://localhost/v1", None),
            Roots::Only(c) if c.is_empty()
        ));
        // Through a proxy the client may well meet TLS (CONNECT to an HTTPS proxy).
        assert!(matches!(
            Roots::for_endpoint("http://127.0.0.1/v1", Some("http://proxy:3128")),
            Roots::Platform
        ));
        assert!(matches!(
            Roots::for_endpoint("https://api.openai.com/v1", None),
            Roots::Platform
        ));
    }

    #[cfg(all(feature = "ring", feature = "http2"))]
    #[test]
    fn configs_offer_h2_and_http1() {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = tls_config(provider, Roots::Only(Vec::new())).unwrap();
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }

    /// Without HTTP/2 in reqwest, TLS must not offer it: a server taking h2 would get HTTP/1.1.
    #[cfg(all(feature = "ring", not(feature = "http2")))]
    #[test]
    fn without_http2_configs_offer_http1_only() {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = tls_config(provider, Roots::Only(Vec::new())).unwrap();
        assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
    }
}
