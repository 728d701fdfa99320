//! The deployment's asymmetric signing keys: ed25519 for Standard Webhooks `v1a`
//! signatures, and RSA for body signatures in SHA512withRSA and MD5withRSA (the entity
//! feed's `fluent-signature` and `flex.signature`). Private keys come from configuration
//! and are never shown; the public keys are served by `GET /v1/signing-keys`.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::Signer as _;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
use rsa::signature::{SignatureEncoding, Signer as _};
use serde::Serialize;
use thiserror::Error;

/// Default names of the RSA signature headers.
pub const DEFAULT_RSA_SHA512_HEADER: &str = "fluent-signature";
pub const DEFAULT_RSA_MD5_HEADER: &str = "flex.signature";

#[derive(Debug, Error, PartialEq)]
pub enum KeyError {
    #[error(
        "an ed25519 signing key is `whsk_` followed by base64 of its 32-byte seed (or 64-byte keypair)"
    )]
    Ed25519,
    #[error(
        "the RSA signing key must be a PEM private key (PKCS#8 or PKCS#1) of at least 2048 bits"
    )]
    Rsa,
    #[error("the RSA signature header names must be distinct header names")]
    HeaderName,
}

struct RsaKeys {
    sha512: rsa::pkcs1v15::SigningKey<sha2_legacy::Sha512>,
    md5: rsa::pkcs1v15::SigningKey<md5_legacy::Md5>,
    public_der: Vec<u8>,
    sha512_header: String,
    md5_header: String,
}

#[derive(Default)]
pub struct SigningKeys {
    ed25519: Option<ed25519_dalek::SigningKey>,
    rsa: Option<RsaKeys>,
}

impl fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeys")
            .field("ed25519", &self.ed25519.is_some())
            .field("rsa", &self.rsa.is_some())
            .finish()
    }
}

/// What `GET /v1/signing-keys` shows.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PublicKeys {
    /// `whpk_` and base64 of the 32-byte public key; verifies `v1a,` signatures.
    pub ed25519: Option<String>,
    /// Base64 of the X.509 SubjectPublicKeyInfo (DER).
    pub rsa: Option<String>,
    pub rsa_sha512_header: Option<String>,
    pub rsa_md5_header: Option<String>,
}

fn header_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether the two RSA signature headers' names are distinct header names.
pub fn rsa_header_names_ok(sha512: &str, md5: &str) -> bool {
    let (sha512, md5) = (sha512.to_ascii_lowercase(), md5.to_ascii_lowercase());
    header_name_ok(&sha512) && header_name_ok(&md5) && sha512 != md5
}

impl SigningKeys {
    pub fn new(
        ed25519: Option<&str>,
        rsa_pem: Option<&str>,
        sha512_header: &str,
        md5_header: &str,
    ) -> Result<Self, KeyError> {
        let ed25519 = ed25519.map(parse_ed25519).transpose()?;
        let rsa = match rsa_pem {
            None => None,
            Some(pem) => {
                let (sha512_header, md5_header) = (
                    sha512_header.to_ascii_lowercase(),
                    md5_header.to_ascii_lowercase(),
                );
                if !rsa_header_names_ok(&sha512_header, &md5_header) {
                    return Err(KeyError::HeaderName);
                }
                let key = rsa::RsaPrivateKey::from_pkcs8_pem(pem)
                    .or_else(|_| rsa::RsaPrivateKey::from_pkcs1_pem(pem))
                    .map_err(|_| KeyError::Rsa)?;
                if rsa::traits::PublicKeyParts::size(&key) < 256 {
                    return Err(KeyError::Rsa);
                }
                let public_der = key
                    .to_public_key()
                    .to_public_key_der()
                    .map_err(|_| KeyError::Rsa)?
                    .into_vec();
                Some(RsaKeys {
                    sha512: rsa::pkcs1v15::SigningKey::new(key.clone()),
                    md5: rsa::pkcs1v15::SigningKey::new(key),
                    public_der,
                    sha512_header,
                    md5_header,
                })
            }
        };
        Ok(Self { ed25519, rsa })
    }

    pub fn has_ed25519(&self) -> bool {
        self.ed25519.is_some()
    }

    pub fn has_rsa(&self) -> bool {
        self.rsa.is_some()
    }

    /// The header names the RSA signatures use, reserved from custom headers.
    pub fn rsa_header_names(&self) -> Vec<String> {
        match &self.rsa {
            Some(keys) => vec![keys.sha512_header.clone(), keys.md5_header.clone()],
            None => vec![
                DEFAULT_RSA_SHA512_HEADER.into(),
                DEFAULT_RSA_MD5_HEADER.into(),
            ],
        }
    }

    /// `v1a,<base64 ed25519 signature of "{id}.{timestamp}.{body}">`.
    pub fn ed25519_entry(&self, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
        let key = self.ed25519.as_ref()?;
        let mut message = Vec::with_capacity(id.len() + body.len() + 24);
        message.extend_from_slice(format!("{id}.{timestamp}.").as_bytes());
        message.extend_from_slice(body);
        Some(format!("v1a,{}", B64.encode(key.sign(&message).to_bytes())))
    }

    /// `(header, base64 signature of the body)` for SHA512withRSA and MD5withRSA.
    pub fn rsa_headers(&self, body: &[u8]) -> Vec<(String, String)> {
        let Some(keys) = &self.rsa else {
            return Vec::new();
        };
        vec![
            (
                keys.sha512_header.clone(),
                B64.encode(keys.sha512.sign(body).to_vec()),
            ),
            (
                keys.md5_header.clone(),
                B64.encode(keys.md5.sign(body).to_vec()),
            ),
        ]
    }

    pub fn public(&self) -> PublicKeys {
        PublicKeys {
            ed25519: self
                .ed25519
                .as_ref()
                .map(|k| format!("whpk_{}", B64.encode(k.verifying_key().to_bytes()))),
            rsa: self.rsa.as_ref().map(|k| B64.encode(&k.public_der)),
            rsa_sha512_header: self.rsa.as_ref().map(|k| k.sha512_header.clone()),
            rsa_md5_header: self.rsa.as_ref().map(|k| k.md5_header.clone()),
        }
    }
}

fn parse_ed25519(raw: &str) -> Result<ed25519_dalek::SigningKey, KeyError> {
    let bytes = B64
        .decode(raw.trim().strip_prefix("whsk_").ok_or(KeyError::Ed25519)?)
        .map_err(|_| KeyError::Ed25519)?;
    let seed: [u8; 32] = match bytes.len() {
        32 | 64 => bytes[..32].try_into().map_err(|_| KeyError::Ed25519)?,
        _ => return Err(KeyError::Ed25519),
    };
    Ok(ed25519_dalek::SigningKey::from_bytes(&seed))
}

/// A fresh ed25519 key as `whsk_…`, for setting up a deployment or a test.
pub fn generate_ed25519(rng: &mut impl rand::Rng) -> String {
    let mut seed = [0u8; 32];
    rng.fill(&mut seed);
    format!("whsk_{}", B64.encode(seed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Verifier;
    use rsa::signature::Verifier as _;

    const RSA_PEM: &str = include_str!("../../../testkit/testdata/rsa-2048.pem");

    #[test]
    fn ed25519_signatures_verify_with_the_published_key() {
        let keys =
            SigningKeys::new(Some(&generate_ed25519(&mut rand::rng())), None, "a", "b").unwrap();
        let entry = keys.ed25519_entry("msg_1", 1700000000, b"{}").unwrap();
        let signature = B64.decode(entry.strip_prefix("v1a,").unwrap()).unwrap();
        let public = B64
            .decode(
                keys.public()
                    .ed25519
                    .unwrap()
                    .strip_prefix("whpk_")
                    .unwrap(),
            )
            .unwrap();
        let verifying =
            ed25519_dalek::VerifyingKey::from_bytes(&public.try_into().unwrap()).unwrap();
        let signature = ed25519_dalek::Signature::from_slice(&signature).unwrap();
        assert!(verifying.verify(b"msg_1.1700000000.{}", &signature).is_ok());
        assert!(
            verifying
                .verify(b"msg_1.1700000001.{}", &signature)
                .is_err()
        );
    }

    #[test]
    fn rsa_signatures_verify_with_the_published_key() {
        let keys =
            SigningKeys::new(None, Some(RSA_PEM), "Fluent-Signature", "flex.signature").unwrap();
        let headers = keys.rsa_headers(b"{\"a\":1}");
        assert_eq!(headers[0].0, "fluent-signature");
        let der = B64.decode(keys.public().rsa.unwrap()).unwrap();
        let public =
            <rsa::RsaPublicKey as rsa::pkcs8::DecodePublicKey>::from_public_key_der(&der).unwrap();
        let verifier = rsa::pkcs1v15::VerifyingKey::<sha2_legacy::Sha512>::new(public);
        let signature =
            rsa::pkcs1v15::Signature::try_from(B64.decode(&headers[0].1).unwrap().as_slice())
                .unwrap();
        assert!(verifier.verify(b"{\"a\":1}", &signature).is_ok());
        assert!(verifier.verify(b"{\"a\":2}", &signature).is_err());
    }

    #[test]
    fn bad_keys_are_refused_and_never_printed() {
        assert_eq!(
            SigningKeys::new(Some("nope"), None, "a", "b").unwrap_err(),
            KeyError::Ed25519
        );
        assert_eq!(
            SigningKeys::new(None, Some("-----BEGIN NOTHING-----"), "a", "b").unwrap_err(),
            KeyError::Rsa
        );
        assert_eq!(
            SigningKeys::new(None, Some(RSA_PEM), "same", "same").unwrap_err(),
            KeyError::HeaderName
        );
        let keys = SigningKeys::new(
            Some(&generate_ed25519(&mut rand::rng())),
            Some(RSA_PEM),
            "a",
            "b",
        )
        .unwrap();
        assert_eq!(
            format!("{keys:?}"),
            "SigningKeys { ed25519: true, rsa: true }"
        );
    }
}
