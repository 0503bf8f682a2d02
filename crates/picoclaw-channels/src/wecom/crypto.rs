//! WeCom's callback security: `msg_signature` (hex SHA-1 of the sorted token, timestamp, nonce
//! and encrypted text) and the AES-256-CBC envelope (key from the 43-character EncodingAESKey,
//! IV its first 16 bytes, PKCS#7 padding to 32-byte blocks; plaintext = 16 random bytes, the
//! message length as 4 bytes big-endian, the message, the receive id).

use aes::cipher::{BlockDecryptMut, KeyIvInit, block_padding::NoPadding};
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use subtle::ConstantTimeEq;

/// WeCom pads to 32-byte blocks, not AES's 16.
const PAD_BLOCK: usize = 32;

/// Standard base64 that takes the EncodingAESKey's last character, whose low bits WeCom's
/// generator does not always leave zero.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The callback token and AES key of one WeCom app or bot.
pub(crate) struct Crypto {
    token: String,
    key: [u8; 32],
}

impl std::fmt::Debug for Crypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Crypto { .. }")
    }
}

impl Crypto {
    /// From `token` and `encoding_aes_key`; the error names what is wrong with the key.
    pub(crate) fn new(token: &str, encoding_aes_key: &str) -> Result<Self, String> {
        let encoded = encoding_aes_key.trim();
        if encoded.len() != 43 {
            return Err(format!(
                "must be the 43 characters the console shows (it has {})",
                encoded.len()
            ));
        }
        let bytes = LENIENT
            .decode(format!("{encoded}="))
            .map_err(|e| format!("is not base64: {e}"))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "does not decode to 32 bytes".to_owned())?;
        Ok(Self {
            token: token.to_owned(),
            key,
        })
    }

    /// `msg_signature` of `data` (the encrypted text or `echostr`).
    pub(crate) fn signature(&self, timestamp: &str, nonce: &str, data: &str) -> String {
        let mut parts = [self.token.as_str(), timestamp, nonce, data];
        parts.sort_unstable();
        let digest = ring::digest::digest(
            &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            parts.concat().as_bytes(),
        );
        digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether `given` is the signature of `data`, compared in constant time.
    pub(crate) fn verify(&self, given: &str, timestamp: &str, nonce: &str, data: &str) -> bool {
        let expected = self.signature(timestamp, nonce, data);
        let given = given.trim().to_ascii_lowercase();
        given.len() == expected.len() && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
    }

    /// AES-256-CBC with the key's first 16 bytes as IV, then WeCom's 32-byte PKCS#7 removed.
    pub(crate) fn decrypt_raw(&self, cipher: &[u8]) -> Result<Vec<u8>, String> {
        if cipher.is_empty() || !cipher.len().is_multiple_of(16) {
            return Err("the ciphertext is not whole AES blocks".into());
        }
        let iv: [u8; 16] = self.key[..16].try_into().map_err(|_| "no IV".to_owned())?;
        let mut plain = cbc::Decryptor::<aes::Aes256>::new(&self.key.into(), &iv.into())
            .decrypt_padded_vec_mut::<NoPadding>(cipher)
            .map_err(|e| format!("cannot decrypt: {e}"))?;
        let pad = usize::from(*plain.last().unwrap_or(&0));
        if pad == 0 || pad > PAD_BLOCK || pad > plain.len() {
            return Err("bad padding".into());
        }
        let body = plain.len() - pad;
        if plain[body..].iter().any(|b| usize::from(*b) != pad) {
            return Err("bad padding".into());
        }
        plain.truncate(body);
        Ok(plain)
    }

    /// The message and receive id inside an encrypted text (base64).
    pub(crate) fn decrypt(&self, encrypted: &str) -> Result<(Vec<u8>, String), String> {
        let cipher = base64::engine::general_purpose::STANDARD
            .decode(encrypted.trim())
            .map_err(|e| format!("not base64: {e}"))?;
        let plain = self.decrypt_raw(&cipher)?;
        let Some(len) = plain.get(16..20) else {
            return Err("the plaintext is too short".into());
        };
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let Some(message) = plain.get(20..20usize.saturating_add(len)) else {
            return Err("the message length is wrong".into());
        };
        let receive_id = String::from_utf8_lossy(&plain[20 + len..]).into_owned();
        Ok((message.to_vec(), receive_id))
    }

    /// The encrypted text of `message` for `receive_id` (the unit tests' round trip).
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn encrypt(&self, message: &[u8], receive_id: &str) -> String {
        use aes::cipher::BlockEncryptMut;
        let mut plain = b"0123456789abcdef".to_vec();
        plain.extend_from_slice(&(message.len() as u32).to_be_bytes());
        plain.extend_from_slice(message);
        plain.extend_from_slice(receive_id.as_bytes());
        let pad = PAD_BLOCK - plain.len() % PAD_BLOCK;
        plain.extend(std::iter::repeat_n(pad as u8, pad));
        let iv: [u8; 16] = self.key[..16].try_into().unwrap_or_default();
        let cipher = cbc::Encryptor::<aes::Aes256>::new(&self.key.into(), &iv.into())
            .encrypt_padded_vec_mut::<NoPadding>(&plain);
        base64::engine::general_purpose::STANDARD.encode(cipher)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    // WeCom's published sample (the WXBizMsgCrypt libraries' test values): its key's last
    // character carries padding bits.
    const TOKEN: &str = "QDG6eK";
    const KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
    const CORP: &str = "wx5823bf96d3bd56c7";

    #[test]
    fn the_published_url_verification_sample_checks_and_decrypts() {
        let crypto = Crypto::new(TOKEN, KEY).unwrap();
        let echo = "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ==";
        assert!(crypto.verify(
            "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3",
            "1409659589",
            "263014780",
            echo
        ));
        assert!(!crypto.verify(
            "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd4",
            "1409659589",
            "263014780",
            echo
        ));
        let (message, receive_id) = crypto.decrypt(echo).unwrap();
        assert_eq!(String::from_utf8(message).unwrap(), "1616140317555161061");
        assert_eq!(receive_id, CORP);
    }

    #[test]
    fn round_trips_and_refuses_what_is_malformed() {
        let crypto = Crypto::new(TOKEN, KEY).unwrap();
        let enc = crypto.encrypt("<xml>héllo</xml>".as_bytes(), "ww1");
        let (message, receive_id) = crypto.decrypt(&enc).unwrap();
        assert_eq!(message, "<xml>héllo</xml>".as_bytes());
        assert_eq!(receive_id, "ww1");
        assert!(crypto.decrypt("not base64 !").is_err());
        assert!(crypto.decrypt("AAAA").is_err());
        let other = Crypto::new(TOKEN, &"A".repeat(43)).unwrap();
        assert!(other.decrypt(&enc).is_err(), "another key: bad padding");
        assert!(Crypto::new(TOKEN, "short").is_err());
        assert!(Crypto::new(TOKEN, &"*".repeat(43)).is_err());
    }
}
