//! Secrets at rest: a subscription's `whsec_` secrets and custom header values are sealed
//! in its item, each value on its own, with AES-256-GCM under a data key from KMS
//! (envelope encryption, `HERALD_SECRETS_KEY`).
//!
//! A sealed value is `sealed:v1:<wrapped data key>.<nonce, ciphertext and tag>`, both parts
//! base64url: it carries the KMS-encrypted data key it was sealed under, so any container
//! allowed `kms:Decrypt` can open it and no item needs a key table. The associated data
//! binds each value to its tenant, subscription and field: a sealed secret copied into
//! another subscription's item does not open.
//!
//! Who holds what (the template's IAM): manage seals what it is given (`kms:GenerateDataKey`,
//! one call per container and day) and never opens anything, since a secret is shown only
//! when it is made and header values are write-only; deliver opens what it signs and sends
//! with (`kms:Decrypt`, one call per data key and container); ingest neither. A value is
//! carried sealed through every other read and write, so the writes deliver makes
//! (health, disable, the slow mark) keep the sealed text as it is.
//!
//! KMS keys are bound by the encryption context `herald=subscription-secrets`, which the
//! template's policies require, so these grants open nothing else sealed under the key.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_sdk_kms::Client;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use aws_smithy_types::error::display::DisplayErrorContext;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::FutureExt;
use herald_core::webhook::sign::SEALED_PREFIX;

/// The encryption context every data key is made and opened with.
const CONTEXT_KEY: &str = "herald";
const CONTEXT_VALUE: &str = "subscription-secrets";
/// How long one container seals under one data key before asking KMS for another.
const DATA_KEY_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Data keys a container keeps opened; more start the cache afresh.
const MAX_OPENED: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// KMS did not answer or refused.
    #[error("KMS: {0}")]
    Unavailable(String),
    /// The sealed text is not one this vault made, or not for this place.
    #[error("a sealed value does not open: {0}")]
    Corrupt(String),
}

struct DataKey {
    key: [u8; 32],
    wrapped: Vec<u8>,
    made: Instant,
}

/// Seals and opens values under data keys of one KMS key.
pub struct Vault {
    /// Built on the first call that needs a data key (unless [`Vault::with_client_built`]):
    /// manage's requests seldom do (most read, and a container keeps the keys it made or
    /// opened), and building a KMS client at every cold start parsed its endpoint
    /// partitions and compiled their region patterns for nothing.
    kms: std::sync::OnceLock<Client>,
    sdk: Box<SdkConfig>,
    key_id: String,
    sealing: tokio::sync::Mutex<Option<DataKey>>,
    opened: Mutex<HashMap<Vec<u8>, [u8; 32]>>,
    random: SystemRandom,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never a key.
        f.debug_struct("Vault")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

fn cipher(key: &[u8; 32]) -> Result<LessSafeKey, VaultError> {
    UnboundKey::new(&AES_256_GCM, key)
        .map(LessSafeKey::new)
        .map_err(|_| VaultError::Corrupt("a data key of the wrong length".into()))
}

fn to_key(bytes: &[u8]) -> Result<[u8; 32], VaultError> {
    bytes
        .try_into()
        .map_err(|_| VaultError::Corrupt("KMS gave a data key of the wrong length".into()))
}

impl Vault {
    /// Data keys of `key_id` (an id, ARN or alias), through `sdk`'s KMS endpoint.
    pub fn new(sdk: &SdkConfig, key_id: String) -> Self {
        Self {
            kms: std::sync::OnceLock::new(),
            sdk: Box::new(sdk.clone()),
            key_id,
            sealing: tokio::sync::Mutex::new(None),
            opened: Mutex::new(HashMap::new()),
            random: SystemRandom::new(),
        }
    }

    fn kms(&self) -> &Client {
        self.kms.get_or_init(|| Client::new(&self.sdk))
    }

    /// The KMS client built now rather than on first use: deliver's first batch opens
    /// a sealed secret whenever its subscriptions' secrets are sealed, so building it at
    /// start-up moves nothing off its cold start but into its first batch.
    pub fn with_client_built(self) -> Self {
        self.kms();
        self
    }

    /// The key this vault's data keys come from.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// `clear` sealed for `place` (what it is and whose: tenant, subscription, field).
    pub async fn seal(&self, place: &str, clear: &str) -> Result<String, VaultError> {
        let (key, wrapped) = self.sealing_key().await?;
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| VaultError::Unavailable("no randomness for a nonce".into()))?;
        let mut sealed = clear.as_bytes().to_vec();
        cipher(&key)?
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(place.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| VaultError::Corrupt("sealing failed".into()))?;
        let mut body = nonce.to_vec();
        body.extend_from_slice(&sealed);
        Ok(format!(
            "{SEALED_PREFIX}{}.{}",
            URL_SAFE_NO_PAD.encode(&wrapped),
            URL_SAFE_NO_PAD.encode(&body)
        ))
    }

    /// The value `sealed` holds, if it was sealed for `place`.
    pub async fn open(&self, place: &str, sealed: &str) -> Result<String, VaultError> {
        let corrupt = |why: &str| VaultError::Corrupt(why.to_owned());
        let (wrapped, body) = sealed
            .strip_prefix(SEALED_PREFIX)
            .and_then(|rest| rest.split_once('.'))
            .ok_or_else(|| corrupt("not `sealed:v1:<key>.<body>`"))?;
        let wrapped = URL_SAFE_NO_PAD
            .decode(wrapped)
            .map_err(|_| corrupt("its data key is not base64url"))?;
        let mut body = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| corrupt("its body is not base64url"))?;
        if body.len() < NONCE_LEN {
            return Err(corrupt("too short"));
        }
        let key = self.opened_key(&wrapped).await?;
        let mut text = body.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&body).map_err(|_| corrupt("its nonce"))?;
        let clear = cipher(&key)?
            .open_in_place(nonce, Aad::from(place.as_bytes()), &mut text)
            .map_err(|_| corrupt("not sealed for this place, or altered"))?;
        String::from_utf8(clear.to_vec()).map_err(|_| corrupt("not text"))
    }

    /// The data key this container seals under, made on first use and after a day.
    async fn sealing_key(&self) -> Result<([u8; 32], Vec<u8>), VaultError> {
        let mut current = self.sealing.lock().await;
        if let Some(key) = current.as_ref()
            && key.made.elapsed() < DATA_KEY_LIFETIME
        {
            return Ok((key.key, key.wrapped.clone()));
        }
        let made = self
            .kms()
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256)
            .encryption_context(CONTEXT_KEY, CONTEXT_VALUE)
            .send()
            .boxed()
            .await
            .map_err(|e| VaultError::Unavailable(DisplayErrorContext(&e).to_string()))?;
        let key = to_key(
            made.plaintext()
                .ok_or_else(|| VaultError::Unavailable("no data key in KMS's answer".into()))?
                .as_ref(),
        )?;
        let wrapped = made
            .ciphertext_blob()
            .ok_or_else(|| VaultError::Unavailable("no wrapped data key in KMS's answer".into()))?
            .as_ref()
            .to_vec();
        self.remember(&wrapped, key);
        *current = Some(DataKey {
            key,
            wrapped: wrapped.clone(),
            made: Instant::now(),
        });
        Ok((key, wrapped))
    }

    /// The data key `wrapped` holds, opened by KMS once per container.
    async fn opened_key(&self, wrapped: &[u8]) -> Result<[u8; 32], VaultError> {
        if let Some(key) = self.opened.lock().expect("opened keys").get(wrapped) {
            return Ok(*key);
        }
        let opened = self
            .kms()
            .decrypt()
            .ciphertext_blob(Blob::new(wrapped))
            .key_id(&self.key_id)
            .encryption_context(CONTEXT_KEY, CONTEXT_VALUE)
            .send()
            .boxed()
            .await
            .map_err(|e| {
                let text = DisplayErrorContext(&e).to_string();
                match e.as_service_error() {
                    Some(service) if service.is_invalid_ciphertext_exception() => {
                        VaultError::Corrupt(format!("its data key: {text}"))
                    }
                    _ => VaultError::Unavailable(text),
                }
            })?;
        let key = to_key(
            opened
                .plaintext()
                .ok_or_else(|| VaultError::Unavailable("no data key in KMS's answer".into()))?
                .as_ref(),
        )?;
        self.remember(wrapped, key);
        Ok(key)
    }

    fn remember(&self, wrapped: &[u8], key: [u8; 32]) {
        let mut opened = self.opened.lock().expect("opened keys");
        if opened.len() >= MAX_OPENED {
            opened.clear();
        }
        opened.insert(wrapped.to_vec(), key);
    }
}
