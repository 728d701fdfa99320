//! A tenant's own signing keys: ed25519 for `v1a` entries and RSA for the body signature
//! headers, made for the tenant on first use and rotated with an overlap. Every tenant's
//! deliveries are signed with keys no other tenant's receivers are told to trust, so a
//! request signed for one tenant's endpoint, replayed to another's receiver, fails its
//! check (docs/SECURITY.md).
//!
//! A set holds at most [`MAX_LIVE_KEYS`] live pairs. A pair's `v1a` entry goes out from
//! the moment it is made until it retires (a request carries one entry per live pair), so
//! a receiver trusting either the old or the new key verifies throughout a rotation. The
//! RSA headers carry one signature: the newest pair in force signs (`signs_from` passed),
//! so a new pair is announced an overlap before its RSA signatures begin, and the pairs
//! before it retire then.
//!
//! Private halves are carried as strings the store may seal (`herald_aws::seal`): what is
//! made here is in the clear, and only a set whose private halves are clear can sign.

use std::fmt;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Utc};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use rsa::rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::keys::{Ed25519Key, KeyError, RsaKeys, SigningKeys, parse_ed25519, whpk};
use crate::ids::TenantId;

/// The operating system's randomness, which keys are made from.
pub use rsa::rand_core::OsRng;

/// At most this many pairs live at once: a rotation beyond it waits for one to retire.
pub const MAX_LIVE_KEYS: usize = 3;

/// The size of a tenant's RSA keys.
const RSA_BITS: usize = 2048;

/// One pair as stored. The private halves are `whsk_…` and base64 of the PKCS#8 DER, or
/// the store's sealed text of those.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantKeyPair {
    pub kid: String,
    pub created_at: DateTime<Utc>,
    /// From when its RSA signatures go out (its `v1a` entries go out from `created_at`).
    pub signs_from: DateTime<Utc>,
    /// From when it signs nothing and is no longer served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retires_at: Option<DateTime<Utc>>,
    /// `whpk_…`.
    pub ed25519_public: String,
    /// Base64 of the X.509 SubjectPublicKeyInfo (DER).
    pub rsa_public: String,
    pub ed25519_private: String,
    pub rsa_private: String,
}

/// Names the pair and its times, never a key.
impl fmt::Debug for TenantKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantKeyPair")
            .field("kid", &self.kid)
            .field("created_at", &self.created_at)
            .field("signs_from", &self.signs_from)
            .field("retires_at", &self.retires_at)
            .finish_non_exhaustive()
    }
}

/// A tenant's pairs, oldest first, and the set's version (a write is conditional on it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TenantKeySet {
    pub tenant: TenantId,
    pub version: u64,
    pub keys: Vec<TenantKeyPair>,
}

/// One pair as `GET /v1/signing-keys` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PublicKeyPair {
    pub kid: String,
    /// `whpk_…`: verifies `v1a,` entries.
    pub ed25519: String,
    /// Base64 of the X.509 SubjectPublicKeyInfo (DER): verifies the RSA headers.
    pub rsa: String,
    pub created_at: DateTime<Utc>,
    pub signs_from: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Error, PartialEq)]
pub enum RotateError {
    #[error(
        "the tenant already has {MAX_LIVE_KEYS} live signing keys; rotate again after {0} when the oldest retires"
    )]
    TooMany(DateTime<Utc>),
    #[error(transparent)]
    Key(#[from] KeyError),
}

impl TenantKeyPair {
    /// A fresh pair, made now; its RSA signatures begin at `signs_from`.
    pub fn generate(
        now: DateTime<Utc>,
        signs_from: DateTime<Utc>,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let ed25519 = ed25519_dalek::SigningKey::from_bytes(&seed);
        let rsa = rsa::RsaPrivateKey::new(rng, RSA_BITS).map_err(|_| KeyError::Rsa)?;
        let rsa_public = rsa
            .to_public_key()
            .to_public_key_der()
            .map_err(|_| KeyError::Rsa)?;
        let rsa_private = rsa.to_pkcs8_der().map_err(|_| KeyError::Rsa)?;
        let mut kid = [0u8; 9];
        rng.fill_bytes(&mut kid);
        Ok(Self {
            kid: format!(
                "key_{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(kid)
            ),
            created_at: now,
            signs_from,
            retires_at: None,
            ed25519_public: whpk(&ed25519),
            rsa_public: B64.encode(rsa_public.as_bytes()),
            ed25519_private: format!("whsk_{}", B64.encode(seed)),
            rsa_private: B64.encode(rsa_private.as_bytes()),
        })
    }

    /// Signs and is served until it retires.
    pub fn live(&self, now: DateTime<Utc>) -> bool {
        self.retires_at.is_none_or(|at| now < at)
    }

    /// Its RSA signatures go out.
    pub fn in_force(&self, now: DateTime<Utc>) -> bool {
        self.signs_from <= now && self.live(now)
    }

    /// Where the store seals each private half: the associated data binds the sealed text
    /// to this tenant's pair.
    pub fn place(tenant: &TenantId, kid: &str, half: &str) -> String {
        format!("herald/signing-keys/{tenant}/{kid}/{half}")
    }
}

impl TenantKeySet {
    /// A tenant's first set, version 1. Its pair's RSA signatures begin at `signs_from`:
    /// at once for a tenant whose receivers were never told a key, later (by the overlap)
    /// for one whose receivers still trust the deployment's keys, which sign until then.
    pub fn first(
        tenant: TenantId,
        now: DateTime<Utc>,
        signs_from: DateTime<Utc>,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Self, KeyError> {
        Ok(Self {
            tenant,
            version: 1,
            keys: vec![TenantKeyPair::generate(now, signs_from, rng)?],
        })
    }

    /// A new pair, served now, its RSA signatures from `now + overlap`, when every pair
    /// before it retires. Retired pairs are dropped. Refused while the set has
    /// [`MAX_LIVE_KEYS`] live pairs.
    pub fn rotate(
        &mut self,
        now: DateTime<Utc>,
        overlap: Duration,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(), RotateError> {
        self.keys.retain(|k| k.live(now));
        if self.keys.len() >= MAX_LIVE_KEYS {
            let next = self
                .keys
                .iter()
                .filter_map(|k| k.retires_at)
                .min()
                .unwrap_or(now);
            return Err(RotateError::TooMany(next));
        }
        // Past chrono's range (never, for an overlap the configuration allows) would be no
        // overlap at all rather than an overflow.
        let switch = now + chrono::Duration::from_std(overlap).unwrap_or_default();
        // Made before anything changes: were it to fail, the set is left as it was.
        let pair = TenantKeyPair::generate(now, switch, rng)?;
        for key in &mut self.keys {
            key.retires_at = Some(key.retires_at.map_or(switch, |at| at.min(switch)));
        }
        self.keys.push(pair);
        self.version += 1;
        Ok(())
    }

    /// What its receivers verify with now: every live pair, newest first, and at the top
    /// the newest pair's `v1a` key and the RSA key in force (none while the deployment's
    /// still signs). `rsa_headers` are the deployment's header names, when it signs RSA.
    pub fn public(
        &self,
        now: DateTime<Utc>,
        rsa_headers: Option<(&str, &str)>,
    ) -> super::keys::PublicKeys {
        let live: Vec<&TenantKeyPair> = self.keys.iter().rev().filter(|k| k.live(now)).collect();
        super::keys::PublicKeys {
            ed25519: live.first().map(|k| k.ed25519_public.clone()),
            rsa: rsa_headers.and(
                live.iter()
                    .find(|k| k.in_force(now))
                    .map(|k| k.rsa_public.clone()),
            ),
            rsa_sha512_header: rsa_headers.map(|(h, _)| h.to_owned()),
            rsa_md5_header: rsa_headers.map(|(_, h)| h.to_owned()),
            keys: live
                .into_iter()
                .map(|k| PublicKeyPair {
                    kid: k.kid.clone(),
                    ed25519: k.ed25519_public.clone(),
                    rsa: k.rsa_public.clone(),
                    created_at: k.created_at,
                    signs_from: k.signs_from,
                    retires_at: k.retires_at,
                })
                .collect(),
        }
    }

    /// The private halves parsed, for signing; refused while one is still sealed.
    pub fn open(&self) -> Result<TenantSigner, KeyError> {
        let pairs = self
            .keys
            .iter()
            .map(|k| {
                let ed25519 = parse_ed25519(&k.ed25519_private)?;
                let der = B64.decode(&k.rsa_private).map_err(|_| KeyError::Rsa)?;
                let key = rsa::RsaPrivateKey::from_pkcs8_der(&der).map_err(|_| KeyError::Rsa)?;
                let public_der = B64.decode(&k.rsa_public).map_err(|_| KeyError::Rsa)?;
                Ok(OpenedPair {
                    signs_from: k.signs_from,
                    retires_at: k.retires_at,
                    ed25519,
                    rsa: RsaKeys::of(key, public_der, String::new(), String::new()),
                })
            })
            .collect::<Result<_, KeyError>>()?;
        Ok(TenantSigner {
            version: self.version,
            pairs,
        })
    }
}

struct OpenedPair {
    signs_from: DateTime<Utc>,
    retires_at: Option<DateTime<Utc>>,
    ed25519: ed25519_dalek::SigningKey,
    rsa: RsaKeys,
}

/// A tenant's set opened: what deliver keeps per container and signs with.
pub struct TenantSigner {
    version: u64,
    pairs: Vec<OpenedPair>,
}

impl fmt::Debug for TenantSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantSigner")
            .field("version", &self.version)
            .field("pairs", &self.pairs.len())
            .finish()
    }
}

impl TenantSigner {
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Whether the deployment's keys sign beside the tenant's at `now`: until one of its
    /// pairs is in force.
    pub fn needs_deployment(&self, now: DateTime<Utc>) -> bool {
        self.in_force(now).is_none()
    }

    /// The newest pair in force at `now`.
    fn in_force(&self, now: DateTime<Utc>) -> Option<&OpenedPair> {
        self.pairs
            .iter()
            .filter(|p| p.live(now))
            .rfind(|p| p.signs_from <= now)
    }

    /// The keys to sign with at `now`: a `v1a` entry for every live pair, and the RSA
    /// headers (named `rsa_headers`, the deployment's names) from the newest pair in
    /// force. Until one of the tenant's pairs is in force, `deployment`'s keys sign beside
    /// them (its derived `v1a` entry and its RSA headers), so receivers told the
    /// deployment's keys keep verifying through the overlap.
    pub fn keys(
        &self,
        now: DateTime<Utc>,
        deployment: Option<&SigningKeys>,
        rsa_headers: (&str, &str),
    ) -> SigningKeys {
        let mut ed25519: Vec<Ed25519Key> = self
            .pairs
            .iter()
            .filter(|p| p.live(now))
            .map(|p| Ed25519Key::Tenant(p.ed25519.clone()))
            .collect();
        let rsa = match self.in_force(now) {
            Some(pair) => Some(pair.rsa.named(rsa_headers.0, rsa_headers.1)),
            None => {
                if let Some(d) = deployment {
                    ed25519.extend(d.ed25519.iter().cloned());
                }
                deployment.and_then(|d| d.rsa.clone())
            }
        };
        SigningKeys { ed25519, rsa }
    }
}

impl OpenedPair {
    fn live(&self, now: DateTime<Utc>) -> bool {
        self.retires_at.is_none_or(|at| now < at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use ed25519_dalek::Verifier as _;
    use rsa::signature::Verifier as _;

    const RSA_PEM: &str = include_str!("../../../testkit/testdata/rsa-2048.pem");

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + seconds, 0).unwrap()
    }

    const HEADERS: (&str, &str) = ("fluent-signature", "flex.signature");

    fn acme() -> TenantId {
        TenantId::parse("acme").unwrap()
    }

    fn deployment() -> SigningKeys {
        SigningKeys::new(
            Some(&super::super::keys::generate_ed25519(&mut rand::rng())),
            Some(RSA_PEM),
            "fluent-signature",
            "flex.signature",
        )
        .unwrap()
    }

    /// The `v1a` entries of `keys` that verify with the `whpk_` key `public`.
    fn v1a_verifies(keys: &SigningKeys, public: &str) -> bool {
        let entries = keys.ed25519_entry(&acme(), "msg_1", 1, b"{}").unwrap();
        let public = B64.decode(public.strip_prefix("whpk_").unwrap()).unwrap();
        let public = ed25519_dalek::VerifyingKey::from_bytes(&public.try_into().unwrap()).unwrap();
        entries.split(' ').any(|entry| {
            let signature = B64.decode(entry.strip_prefix("v1a,").unwrap()).unwrap();
            let signature = ed25519_dalek::Signature::from_slice(&signature).unwrap();
            public.verify(b"msg_1.1.{}", &signature).is_ok()
        })
    }

    /// Whether the SHA512withRSA header of `keys` verifies with the X.509 key `public`.
    fn rsa_verifies(keys: &SigningKeys, public: &str) -> bool {
        let headers = keys.rsa_headers(b"{}");
        let der = B64.decode(public).unwrap();
        let public =
            <rsa::RsaPublicKey as rsa::pkcs8::DecodePublicKey>::from_public_key_der(&der).unwrap();
        let verifier = rsa::pkcs1v15::VerifyingKey::<sha2_legacy::Sha512>::new(public);
        let signature =
            rsa::pkcs1v15::Signature::try_from(B64.decode(&headers[0].1).unwrap().as_slice())
                .unwrap();
        headers[0].0 == "fluent-signature" && verifier.verify(b"{}", &signature).is_ok()
    }

    #[test]
    fn a_first_set_signs_at_once_with_keys_of_its_own_and_serves_their_public_halves() {
        let mut rng = rsa::rand_core::OsRng;
        let set = TenantKeySet::first(acme(), at(0), at(0), &mut rng).unwrap();
        let deployment = deployment();
        let keys = set.open().unwrap().keys(at(1), Some(&deployment), HEADERS);
        let public = set.public(at(1), Some(("fluent-signature", "flex.signature")));
        assert_eq!(public.keys.len(), 1);
        assert!(v1a_verifies(&keys, public.ed25519.as_deref().unwrap()));
        assert!(rsa_verifies(&keys, public.rsa.as_deref().unwrap()));
        // The deployment's keys sign nothing for it: neither its derived v1a key nor its RSA key.
        assert_eq!(
            keys.ed25519_entry(&acme(), "msg_1", 1, b"{}")
                .unwrap()
                .split(' ')
                .count(),
            1
        );
        assert!(!v1a_verifies(
            &keys,
            &deployment.public_for(&acme()).ed25519.unwrap()
        ));
        assert!(!rsa_verifies(&keys, &deployment.public().rsa.unwrap()));
        // Nothing private is printed or served.
        let printed = format!("{set:?} {:?}", set.open().unwrap());
        assert!(!printed.contains("whsk_") && !printed.contains(&set.keys[0].rsa_private[..40]));
        let served = serde_json::to_string(&public).unwrap();
        assert!(!served.contains("whsk_") && !served.contains(&set.keys[0].rsa_private[..40]));
    }

    #[test]
    fn a_rotation_overlaps_old_and_new_keys_then_retires_the_old() {
        let mut rng = rsa::rand_core::OsRng;
        let mut set = TenantKeySet::first(acme(), at(0), at(0), &mut rng).unwrap();
        let old = set.public(at(0), Some(("fluent-signature", "flex.signature")));
        set.rotate(at(100), Duration::from_secs(60), &mut rng)
            .unwrap();
        assert_eq!(set.version, 2);
        let headers = Some(("fluent-signature", "flex.signature"));
        let new = set.public(at(100), headers);
        assert_eq!(new.keys.len(), 2);
        let (old_v1a, old_rsa) = (old.ed25519.unwrap(), old.rsa.unwrap());
        let (new_v1a, new_rsa) = (new.keys[0].ed25519.clone(), new.keys[0].rsa.clone());
        assert_eq!(new.ed25519.as_deref(), Some(new_v1a.as_str()));
        assert_eq!(
            new.rsa.as_deref(),
            Some(old_rsa.as_str()),
            "the old RSA key is in force"
        );
        let deployment = deployment();
        let signer = set.open().unwrap();
        // During the overlap: v1a verifies with either key, RSA with the old one.
        let during = signer.keys(at(130), Some(&deployment), HEADERS);
        assert!(v1a_verifies(&during, &old_v1a) && v1a_verifies(&during, &new_v1a));
        assert!(rsa_verifies(&during, &old_rsa) && !rsa_verifies(&during, &new_rsa));
        // After it: the new key alone.
        let after = signer.keys(at(160), Some(&deployment), HEADERS);
        assert!(!v1a_verifies(&after, &old_v1a) && v1a_verifies(&after, &new_v1a));
        assert!(!rsa_verifies(&after, &old_rsa) && rsa_verifies(&after, &new_rsa));
        let served = set.public(at(160), headers);
        assert_eq!(served.keys.len(), 1, "a retired key is not served");
        assert_eq!(served.rsa.as_deref(), Some(new_rsa.as_str()));
    }

    #[test]
    fn rotations_stop_at_the_live_key_cap_until_one_retires() {
        let mut rng = rsa::rand_core::OsRng;
        let mut set = TenantKeySet::first(acme(), at(0), at(0), &mut rng).unwrap();
        let overlap = Duration::from_secs(60);
        set.rotate(at(10), overlap, &mut rng).unwrap();
        set.rotate(at(20), overlap, &mut rng).unwrap();
        assert_eq!(
            set.rotate(at(30), overlap, &mut rng),
            Err(RotateError::TooMany(at(70)))
        );
        assert_eq!(set.keys.len(), MAX_LIVE_KEYS);
        // Once the first two retired they are dropped, and a rotation goes through.
        set.rotate(at(90), overlap, &mut rng).unwrap();
        assert_eq!(set.keys.len(), 2);
    }

    #[test]
    fn until_a_pair_is_in_force_the_deployments_keys_sign_beside_it() {
        let mut rng = rsa::rand_core::OsRng;
        let set = TenantKeySet::first(acme(), at(0), at(60), &mut rng).unwrap();
        let deployment = deployment();
        let own = set.public(at(0), Some(("fluent-signature", "flex.signature")));
        assert_eq!(own.rsa, None, "no RSA key of its own is in force yet");
        let signer = set.open().unwrap();
        assert!(signer.needs_deployment(at(30)) && !signer.needs_deployment(at(60)));
        let before = signer.keys(at(30), Some(&deployment), HEADERS);
        let derived = deployment.public_for(&acme()).ed25519.unwrap();
        assert!(v1a_verifies(&before, &derived) && v1a_verifies(&before, &own.keys[0].ed25519));
        assert!(rsa_verifies(&before, &deployment.public().rsa.unwrap()));
        let after = signer.keys(at(60), Some(&deployment), HEADERS);
        assert!(!v1a_verifies(&after, &derived));
        assert!(rsa_verifies(&after, &own.keys[0].rsa));
    }

    #[test]
    fn a_set_still_sealed_does_not_open() {
        let mut rng = rsa::rand_core::OsRng;
        let mut set = TenantKeySet::first(acme(), at(0), at(0), &mut rng).unwrap();
        set.keys[0].ed25519_private = "sealed:v1:abc.def".into();
        assert!(set.open().is_err());
    }
}
