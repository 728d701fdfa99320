//! Standard Webhooks signatures: `v1,<base64 HMAC-SHA256("{id}.{timestamp}.{body}")>` with
//! the subscription's `whsec_` secret; one entry per live secret during a rotation.

use std::fmt;
use std::io::Write as _;

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use hmac::{Hmac, KeyInit, Mac};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use thiserror::Error;

const SECRET_PREFIX: &str = "whsec_";
const SECRET_BYTES: usize = 24;

/// Where a stored secret or header value is sealed (AES-256-GCM under a KMS data key,
/// docs/SECURITY.md): such text is opaque to everything but deliver's unsealing, which
/// turns it back into the value before anything is signed or sent.
pub const SEALED_PREFIX: &str = "sealed:v1:";

/// Whether `text` is a sealed value rather than the value itself.
pub fn is_sealed(text: &str) -> bool {
    text.starts_with(SEALED_PREFIX)
}

/// A signing secret, in the clear or as stored sealed. Its `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WebhookSecret {
    /// The `whsec_…` text, or the sealed text.
    encoded: String,
    /// Empty for a sealed secret: it signs nothing until unsealed.
    key: Vec<u8>,
}

#[derive(Debug, Error, PartialEq)]
#[error("a signing secret is `whsec_` followed by base64 of 16 to 64 bytes")]
pub struct SecretError;

impl WebhookSecret {
    pub fn generate(rng: &mut impl Rng) -> Self {
        let mut key = vec![0u8; SECRET_BYTES];
        rng.fill(&mut key[..]);
        Self {
            encoded: format!("{SECRET_PREFIX}{}", B64.encode(&key)),
            key,
        }
    }

    pub fn parse(raw: &str) -> Result<Self, SecretError> {
        let body = raw.strip_prefix(SECRET_PREFIX).ok_or(SecretError)?;
        let key = B64.decode(body).map_err(|_| SecretError)?;
        if !(16..=64).contains(&key.len()) {
            return Err(SecretError);
        }
        Ok(Self {
            encoded: raw.to_owned(),
            key,
        })
    }

    /// A secret as stored sealed (`SEALED_PREFIX`): carried as it is, signing nothing.
    pub fn sealed(text: String) -> Result<Self, SecretError> {
        if !is_sealed(&text) {
            return Err(SecretError);
        }
        Ok(Self {
            encoded: text,
            key: Vec::new(),
        })
    }

    /// Whether this is the sealed form, which must be unsealed before it signs.
    pub fn is_sealed(&self) -> bool {
        self.key.is_empty()
    }

    /// The `whsec_…` text, for the one answer that shows it to its owner (the sealed text
    /// of a sealed secret, which reveals nothing of it).
    pub fn expose(&self) -> &str {
        &self.encoded
    }

    /// `v1,<base64 signature>` of this message. A sealed secret signs with no key: callers
    /// unseal first (`signature_header` passes sealed secrets by).
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut signature = String::with_capacity(SIGNATURE_LEN);
        self.sign_into(id, timestamp, body, &mut signature);
        signature
    }

    /// [`Self::sign`], appended to `out`.
    fn sign_into(&self, id: &str, timestamp: i64, body: &[u8], out: &mut String) {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        // An i64 in decimal is at most 20 bytes: written on the stack, not allocated.
        let mut digits = [0u8; 20];
        let mut cursor = std::io::Cursor::new(&mut digits[..]);
        write!(cursor, "{timestamp}").expect("an i64 fits in 20 bytes");
        let written = cursor.position() as usize;
        mac.update(&digits[..written]);
        mac.update(b".");
        mac.update(body);
        out.push_str("v1,");
        B64.encode_string(mac.finalize().into_bytes(), out);
    }
}

/// `v1,` and the base64 of a SHA-256 HMAC.
const SIGNATURE_LEN: usize = 3 + 44;

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(redacted)")
    }
}

impl TryFrom<String> for WebhookSecret {
    type Error = SecretError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        if is_sealed(&value) {
            Self::sealed(value)
        } else {
            Self::parse(&value)
        }
    }
}

impl From<WebhookSecret> for String {
    fn from(value: WebhookSecret) -> Self {
        value.encoded
    }
}

/// The `webhook-signature` header value: one `v1,` entry per secret, space-separated.
pub fn signature_header<'a>(
    secrets: impl IntoIterator<Item = &'a WebhookSecret>,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    // One entry is the common case; a rotation's second grows it once.
    let mut header = String::with_capacity(SIGNATURE_LEN);
    for secret in secrets.into_iter().filter(|secret| !secret.is_sealed()) {
        if !header.is_empty() {
            header.push(' ');
        }
        secret.sign_into(id, timestamp, body, &mut header);
    }
    header
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{SeedableRng, rngs::StdRng};

    #[test]
    fn standard_webhooks_test_vector() {
        let secret = WebhookSecret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let body = br#"{"email":"test@example.com","username":"test_user"}"#;
        assert_eq!(
            secret.sign("msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", 1649367553, body),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn every_live_secret_signs() {
        let mut rng = StdRng::seed_from_u64(9);
        let (a, b) = (
            WebhookSecret::generate(&mut rng),
            WebhookSecret::generate(&mut rng),
        );
        let header = signature_header([&a, &b], "msg_1", 10, b"{}");
        assert_eq!(
            header,
            format!(
                "{} {}",
                a.sign("msg_1", 10, b"{}"),
                b.sign("msg_1", 10, b"{}")
            )
        );
        assert_ne!(a.sign("msg_1", 10, b"{}"), a.sign("msg_1", 11, b"{}"));
    }

    #[test]
    fn a_sealed_secret_is_carried_as_stored_and_signs_nothing() {
        let stored: WebhookSecret = serde_json::from_str(r#""sealed:v1:a2V5.Ym9keQ""#).unwrap();
        assert!(stored.is_sealed());
        assert_eq!(
            serde_json::to_string(&stored).unwrap(),
            r#""sealed:v1:a2V5.Ym9keQ""#
        );
        assert_eq!(signature_header([&stored], "msg_1", 10, b"{}"), "");
        let clear = WebhookSecret::generate(&mut StdRng::seed_from_u64(3));
        assert_eq!(
            signature_header([&stored, &clear], "msg_1", 10, b"{}"),
            clear.sign("msg_1", 10, b"{}")
        );
        assert!(WebhookSecret::sealed("whsec_abc".into()).is_err());
        assert!(WebhookSecret::parse("sealed:v1:x").is_err());
    }

    #[test]
    fn generated_secrets_round_trip_and_never_print() {
        let secret = WebhookSecret::generate(&mut StdRng::seed_from_u64(1));
        assert!(secret.expose().starts_with("whsec_"));
        assert_eq!(WebhookSecret::parse(secret.expose()).unwrap(), secret);
        assert_eq!(format!("{secret:?}"), "WebhookSecret(redacted)");
        assert!(WebhookSecret::parse("whsec_!!").is_err());
        assert!(WebhookSecret::parse("C2FVsBQIhrscChlQIMV+b5sSYspob7oD").is_err());
    }
}
