//! The deployment's asymmetric signing keys: ed25519 for Standard Webhooks `v1a`
//! signatures, and RSA for body signatures in SHA512withRSA and MD5withRSA (the entity
//! feed's `fluent-signature` and `flex.signature`). Private keys come from configuration
//! and are never shown; the public keys are served by `GET /v1/signing-keys`.
//!
//! `v1a` signatures are bound to the tenant: each tenant's deliveries are signed with an
//! ed25519 key of its own, derived from the deployment's key (HKDF-SHA256, RFC 5869), and
//! each tenant is told only its own public key. A tenant that replays a request signed
//! for its own endpoint to another tenant's receiver fails that receiver's check. The
//! RSA key is the deployment's (docs/SECURITY.md says what binds those signatures).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::Signer as _;
use hmac::{Hmac, KeyInit, Mac};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
use rsa::signature::{RandomizedSigner as _, SignatureEncoding};
use serde::Serialize;
use sha2::Sha256;
use thiserror::Error;

use crate::ids::TenantId;

/// HKDF's salt for a tenant's `v1a` key: names what the derived key is for.
const TENANT_KEY_SALT: &[u8] = b"herald v1a tenant signing key";

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

#[derive(Clone)]
pub(crate) struct RsaKeys {
    sha512: rsa::pkcs1v15::SigningKey<sha2_legacy::Sha512>,
    md5: rsa::pkcs1v15::SigningKey<md5_legacy::Md5>,
    public_der: Vec<u8>,
    pub(crate) sha512_header: String,
    pub(crate) md5_header: String,
}

/// An ed25519 key that signs `v1a` entries.
#[derive(Clone)]
pub(crate) enum Ed25519Key {
    /// The deployment's: each tenant's entry is signed with a key derived from it.
    Deployment(ed25519_dalek::SigningKey),
    /// One of a tenant's own keys (`super::tenant_keys`), used as it is.
    Tenant(ed25519_dalek::SigningKey),
}

#[derive(Clone, Default)]
pub struct SigningKeys {
    /// Every key whose `v1a` entry goes out, each in its own entry.
    pub(crate) ed25519: Vec<Ed25519Key>,
    pub(crate) rsa: Option<RsaKeys>,
}

impl fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeys")
            .field("ed25519", &!self.ed25519.is_empty())
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
    /// A tenant's own key pairs, newest first, with when each signs and retires
    /// (`super::tenant_keys`): empty where none were made.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<super::tenant_keys::PublicKeyPair>,
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
                // At least 2048 bits of modulus (its size in bytes would let 2041 through).
                if rsa::traits::PublicKeyParts::n(&key).bits() < 2048 {
                    return Err(KeyError::Rsa);
                }
                let public_der = key
                    .to_public_key()
                    .to_public_key_der()
                    .map_err(|_| KeyError::Rsa)?
                    .into_vec();
                Some(RsaKeys::of(key, public_der, sha512_header, md5_header))
            }
        };
        Ok(Self {
            ed25519: ed25519.map(Ed25519Key::Deployment).into_iter().collect(),
            rsa,
        })
    }

    pub fn has_ed25519(&self) -> bool {
        !self.ed25519.is_empty()
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

    /// `v1a,<base64 ed25519 signature of "{id}.{timestamp}.{body}">`, with `tenant`'s key;
    /// with several keys (a tenant's during a rotation), their entries space-separated.
    pub fn ed25519_entry(
        &self,
        tenant: &TenantId,
        id: &str,
        timestamp: i64,
        body: &[u8],
    ) -> Option<String> {
        if self.ed25519.is_empty() {
            return None;
        }
        let mut message = Vec::with_capacity(id.len() + body.len() + 24);
        message.extend_from_slice(format!("{id}.{timestamp}.").as_bytes());
        message.extend_from_slice(body);
        let entries: Vec<String> = self
            .ed25519
            .iter()
            .map(|key| {
                let signature = match key {
                    Ed25519Key::Deployment(k) => tenant_key(k, tenant).sign(&message),
                    Ed25519Key::Tenant(k) => k.sign(&message),
                };
                format!("v1a,{}", B64.encode(signature.to_bytes()))
            })
            .collect();
        Some(entries.join(" "))
    }

    /// Whether `name` (lowercase) is one of the RSA signature headers these keys add.
    pub fn sets_header(&self, name: &str) -> bool {
        self.rsa
            .as_ref()
            .is_some_and(|keys| keys.sha512_header == name || keys.md5_header == name)
    }

    /// `(header, base64 signature of the body)` for SHA512withRSA and MD5withRSA.
    pub fn rsa_headers(&self, body: &[u8]) -> Vec<(String, String)> {
        let Some(keys) = &self.rsa else {
            return Vec::new();
        };
        // Blinded (the operating system's randomness): a tenant's key signs bodies built
        // from the events the tenant publishes, and the private-key step of rsa 0.9 is
        // not constant-time (RUSTSEC-2023-0071, .cargo/audit.toml). PKCS#1 v1.5 is
        // deterministic, so the signature is the same either way.
        let mut rng = rsa::rand_core::OsRng;
        vec![
            (
                keys.sha512_header.clone(),
                B64.encode(keys.sha512.sign_with_rng(&mut rng, body).to_vec()),
            ),
            (
                keys.md5_header.clone(),
                B64.encode(keys.md5.sign_with_rng(&mut rng, body).to_vec()),
            ),
        ]
    }

    /// The deployment's key, for a tenant without keys of its own: what `tenant`'s
    /// receivers verify with, its derived `v1a` key and the deployment's RSA key.
    pub fn public_for(&self, tenant: &TenantId) -> PublicKeys {
        PublicKeys {
            ed25519: self
                .deployment_ed25519()
                .map(|k| whpk(&tenant_key(k, tenant))),
            ..self.public()
        }
    }

    /// The deployment's own public keys (its `v1a` key signs no tenant's deliveries): for
    /// checking which key is loaded, never served.
    pub fn public(&self) -> PublicKeys {
        PublicKeys {
            ed25519: self.deployment_ed25519().map(whpk),
            rsa: self.rsa.as_ref().map(|k| B64.encode(&k.public_der)),
            rsa_sha512_header: self.rsa.as_ref().map(|k| k.sha512_header.clone()),
            rsa_md5_header: self.rsa.as_ref().map(|k| k.md5_header.clone()),
            keys: Vec::new(),
        }
    }

    fn deployment_ed25519(&self) -> Option<&ed25519_dalek::SigningKey> {
        self.ed25519.iter().find_map(|k| match k {
            Ed25519Key::Deployment(k) => Some(k),
            Ed25519Key::Tenant(_) => None,
        })
    }
}

impl RsaKeys {
    pub(crate) fn of(
        key: rsa::RsaPrivateKey,
        public_der: Vec<u8>,
        sha512_header: String,
        md5_header: String,
    ) -> Self {
        Self {
            sha512: rsa::pkcs1v15::SigningKey::new(key.clone()),
            md5: rsa::pkcs1v15::SigningKey::new(key),
            public_der,
            sha512_header,
            md5_header,
        }
    }

    /// The same key signing under other header names.
    pub(crate) fn named(&self, sha512_header: &str, md5_header: &str) -> Self {
        Self {
            sha512_header: sha512_header.to_owned(),
            md5_header: md5_header.to_owned(),
            ..self.clone()
        }
    }
}

pub(crate) fn whpk(key: &ed25519_dalek::SigningKey) -> String {
    format!("whpk_{}", B64.encode(key.verifying_key().to_bytes()))
}

/// HKDF-SHA256 (RFC 5869) of `ikm` with `salt` and `info`, for one 32-byte output block:
/// PRK = HMAC(salt, IKM), OKM = T(1) = HMAC(PRK, info ‖ 0x01).
fn hkdf_sha256_32(salt: &[u8], ikm: &[u8], info: &[u8]) -> [u8; 32] {
    let mut extract = Hmac::<Sha256>::new_from_slice(salt).expect("HMAC takes keys of any length");
    extract.update(ikm);
    let prk = extract.finalize().into_bytes();
    let mut expand = Hmac::<Sha256>::new_from_slice(&prk).expect("HMAC takes keys of any length");
    expand.update(info);
    expand.update(&[1]);
    expand.finalize().into_bytes().into()
}

/// `tenant`'s `v1a` key: the seed is HKDF-SHA256 of the deployment key's seed, with the
/// tenant id as info. Nothing is stored per tenant; rotating the deployment's key rotates
/// every tenant's.
fn tenant_key(
    deployment: &ed25519_dalek::SigningKey,
    tenant: &TenantId,
) -> ed25519_dalek::SigningKey {
    let seed = hkdf_sha256_32(
        TENANT_KEY_SALT,
        deployment.as_bytes(),
        tenant.as_str().as_bytes(),
    );
    ed25519_dalek::SigningKey::from_bytes(&seed)
}

pub(crate) fn parse_ed25519(raw: &str) -> Result<ed25519_dalek::SigningKey, KeyError> {
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

    /// At least 2048 bits: a 2047-bit key is 256 bytes long too, and refused.
    #[test]
    fn an_rsa_key_under_2048_bits_is_refused() {
        use rsa::pkcs8::EncodePrivateKey;
        let short = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2047).unwrap();
        assert_eq!(rsa::traits::PublicKeyParts::size(&short), 256);
        let pem = short.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).unwrap();
        assert!(matches!(
            SigningKeys::new(None, Some(&pem), "a", "b"),
            Err(KeyError::Rsa)
        ));
        assert!(SigningKeys::new(None, Some(RSA_PEM), "a", "b").is_ok());
    }

    fn tenant(name: &str) -> TenantId {
        TenantId::parse(name).unwrap()
    }

    /// Whether `entry` (`v1a,…`) verifies `message` with the `whpk_` key `public`.
    fn verifies(public: &str, entry: &str, message: &[u8]) -> bool {
        let signature = B64.decode(entry.strip_prefix("v1a,").unwrap()).unwrap();
        let public = B64.decode(public.strip_prefix("whpk_").unwrap()).unwrap();
        let verifying =
            ed25519_dalek::VerifyingKey::from_bytes(&public.try_into().unwrap()).unwrap();
        let signature = ed25519_dalek::Signature::from_slice(&signature).unwrap();
        verifying.verify(message, &signature).is_ok()
    }

    #[test]
    fn ed25519_signatures_verify_with_the_key_published_to_their_tenant() {
        let keys =
            SigningKeys::new(Some(&generate_ed25519(&mut rand::rng())), None, "a", "b").unwrap();
        let acme = tenant("acme");
        let entry = keys
            .ed25519_entry(&acme, "msg_1", 1700000000, b"{}")
            .unwrap();
        let public = keys.public_for(&acme).ed25519.unwrap();
        assert!(verifies(&public, &entry, b"msg_1.1700000000.{}"));
        assert!(!verifies(&public, &entry, b"msg_1.1700000001.{}"));
    }

    #[test]
    fn a_tenants_v1a_signature_fails_with_any_other_tenants_key() {
        let keys =
            SigningKeys::new(Some(&generate_ed25519(&mut rand::rng())), None, "a", "b").unwrap();
        let entry = keys
            .ed25519_entry(&tenant("acme"), "msg_1", 1700000000, b"{}")
            .unwrap();
        let message = b"msg_1.1700000000.{}";
        for other in ["globex", "acme2", "Acme", "acm"] {
            let theirs = keys.public_for(&tenant(other)).ed25519.unwrap();
            assert!(!verifies(&theirs, &entry, message), "{other}");
        }
        // Nor with the deployment's own key, which is never served.
        assert!(!verifies(&keys.public().ed25519.unwrap(), &entry, message));
        // The same deployment key derives the same tenant key every time (every container
        // signs alike); another deployment key derives another.
        let again = keys.public_for(&tenant("acme"));
        assert_eq!(again, keys.public_for(&tenant("acme")));
        let other_deployment =
            SigningKeys::new(Some(&generate_ed25519(&mut rand::rng())), None, "a", "b").unwrap();
        assert_ne!(
            other_deployment.public_for(&tenant("acme")).ed25519,
            again.ed25519
        );
    }

    #[test]
    fn hkdf_matches_rfc_5869_test_case_1() {
        let ikm = [0x0b; 22];
        let salt: Vec<u8> = (0x00..=0x0c).collect();
        let info: Vec<u8> = (0xf0..=0xf9).collect();
        // The first 32 of the case's 42 bytes of OKM: T(1).
        let okm = "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf";
        assert_eq!(hex::encode(hkdf_sha256_32(&salt, &ikm, &info)), okm);
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
