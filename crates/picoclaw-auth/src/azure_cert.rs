//! The certificate half of Azure's environment credential: a client assertion (a JWT signed with
//! the service principal's RSA key, RS256) built with ring from a PEM file holding the
//! certificate (leaf first, then any chain) and an unencrypted private key.

use azure_core::error::{Error, ErrorKind};
use azure_core::http::ClientMethodOptions;
use azure_identity::ClientAssertion;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use rustls::pki_types::pem::{PemObject, SectionKind};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// How to turn a PKCS#12 file into the PEM this credential reads.
const PFX_HINT: &str = "convert it to PEM with `openssl pkcs12 -in cert.pfx -out cert.pem -nodes` \
                        (keep the result chmod 600)";

/// The DER encoding of the rsaEncryption algorithm identifier's OID (1.2.840.113549.1.1.1).
const RSA_OID: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];

/// A certificate and its RSA key, read from one PEM file.
pub(crate) struct CertificateKey {
    /// DER of each certificate, the leaf first.
    chain: Vec<Vec<u8>>,
    key: RsaKeyPair,
}

impl std::fmt::Debug for CertificateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateKey")
            .field("certificates", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl CertificateKey {
    /// Reads `path`; `password` is `AZURE_CLIENT_CERTIFICATE_PASSWORD` (encrypted keys are
    /// refused with how to convert them).
    pub(crate) fn load(path: &Path, password: Option<&str>) -> Result<Self, String> {
        let shown = path.display();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        if matches!(ext.as_deref(), Some("pfx" | "p12")) {
            return Err(format!(
                "{shown} is a PKCS#12 (PFX) file, which is not supported; {PFX_HINT}"
            ));
        }
        let bytes = std::fs::read(path)
            .map_err(|e| format!("cannot read the client certificate {shown}: {e}"))?;
        let text = match std::str::from_utf8(&bytes) {
            Ok(t) if t.contains("-----BEGIN ") => t,
            _ => {
                return Err(format!(
                    "{shown} is not a PEM file (a binary PKCS#12/PFX or DER file?); {PFX_HINT}"
                ));
            }
        };
        if password.is_some() || text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
            return Err(format!(
                "{shown}: encrypted private keys are not supported (AZURE_CLIENT_CERTIFICATE_PASSWORD \
                 is set or the key is encrypted); convert it to an unencrypted PKCS#8 PEM with \
                 `openssl pkcs8 -topk8 -nocrypt -in key.pem -out key-plain.pem`, keep that file \
                 chmod 600 and unset AZURE_CLIENT_CERTIFICATE_PASSWORD"
            ));
        }
        let mut chain = Vec::new();
        let mut key: Option<(SectionKind, Vec<u8>)> = None;
        for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(text.as_bytes()) {
            let (kind, der) = section.map_err(|e| format!("{shown}: malformed PEM: {e}"))?;
            match kind {
                SectionKind::Certificate => chain.push(der),
                SectionKind::PrivateKey
                | SectionKind::RsaPrivateKey
                | SectionKind::EcPrivateKey
                    if key.is_none() =>
                {
                    key = Some((kind, der));
                }
                _ => {}
            }
        }
        if chain.is_empty() {
            return Err(format!(
                "{shown} holds no certificate (a `-----BEGIN CERTIFICATE-----` block is needed, \
                 the leaf first)"
            ));
        }
        let key = match key {
            None => {
                return Err(format!(
                    "{shown} holds no private key (an unencrypted `-----BEGIN PRIVATE KEY-----` \
                     PKCS#8 block is needed beside the certificate)"
                ));
            }
            Some((SectionKind::EcPrivateKey, _)) => {
                return Err(format!(
                    "{shown} holds an EC private key; only RSA keys are supported"
                ));
            }
            Some((SectionKind::RsaPrivateKey, der)) => RsaKeyPair::from_der(&der)
                .map_err(|e| format!("{shown}: the RSA (PKCS#1) private key is refused: {e}"))?,
            Some((_, der)) => {
                let head = &der[..der.len().min(40)];
                if !head.windows(RSA_OID.len()).any(|w| w == RSA_OID) {
                    return Err(format!(
                        "{shown} holds a private key that is not RSA (EC or Ed25519?); only RSA \
                         keys are supported"
                    ));
                }
                RsaKeyPair::from_pkcs8(&der)
                    .map_err(|e| format!("{shown}: the RSA private key is refused: {e}"))?
            }
        };
        // The leaf is the certificate holding the key's public half (its RSAPublicKey DER sits
        // whole in the certificate's subjectPublicKeyInfo); tools do not all write it first.
        let public = key.public().as_ref();
        let Some(leaf) = chain
            .iter()
            .position(|c| c.windows(public.len()).any(|w| w == public))
        else {
            return Err(format!(
                "{shown}: no certificate in the file matches the private key"
            ));
        };
        let leaf = chain.remove(leaf);
        chain.insert(0, leaf);
        Ok(Self { chain, key })
    }

    /// A signed client assertion for `client_id` at the token endpoint `audience`.
    fn assertion(
        &self,
        client_id: &str,
        audience: &str,
        send_chain: bool,
    ) -> Result<String, String> {
        let leaf = self.chain.first().map(Vec::as_slice).unwrap_or_default();
        let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, leaf);
        let sha256 = ring::digest::digest(&ring::digest::SHA256, leaf);
        let mut header = serde_json::json!({
            "alg": "RS256",
            "typ": "JWT",
            "x5t": URL_SAFE_NO_PAD.encode(sha1.as_ref()),
            "x5t#S256": URL_SAFE_NO_PAD.encode(sha256.as_ref()),
        });
        if send_chain {
            header["x5c"] = self.chain.iter().map(|c| STANDARD.encode(c)).collect();
        }
        let rng = SystemRandom::new();
        let mut jti = [0u8; 16];
        rng.fill(&mut jti)
            .map_err(|_| "no randomness for the assertion's jti".to_owned())?;
        let jti: String = jti.iter().map(|b| format!("{b:02x}")).collect();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let claims = serde_json::json!({
            "aud": audience,
            "iss": client_id,
            "sub": client_id,
            "jti": jti,
            "nbf": now,
            "iat": now,
            "exp": now + 600,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &rng,
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| "signing the client assertion failed".to_owned())?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}

/// The assertion [`azure_identity::ClientAssertionCredential`] sends: the PEM file is read
/// again for every new token, so a certificate rotated on disk is picked up.
#[derive(Debug)]
pub(crate) struct CertificateAssertion {
    pub(crate) path: PathBuf,
    pub(crate) client_id: String,
    /// `{authority}/{tenant}/oauth2/v2.0/token`.
    pub(crate) audience: String,
    pub(crate) send_chain: bool,
}

#[async_trait::async_trait]
impl ClientAssertion for CertificateAssertion {
    async fn secret(&self, _: Option<ClientMethodOptions<'_>>) -> azure_core::Result<String> {
        CertificateKey::load(&self.path, None)
            .and_then(|k| k.assertion(&self.client_id, &self.audience, self.send_chain))
            .map_err(|e| Error::with_message(ErrorKind::Credential, e))
    }
}
