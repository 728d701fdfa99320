//! Where the deployment's signing keys come from. Deployed, they are Secrets Manager
//! secrets read when a signature first needs them and read again once `refresh` has
//! passed: a new value (`aws secretsmanager put-secret-value`) signs within that time, with
//! no deploy, and the keys never sit in the function's configuration. Locally and in tests
//! they may be given directly (`HERALD_ED25519_SIGNING_KEY`, `HERALD_RSA_SIGNING_KEY`).

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use futures::FutureExt;
use thiserror::Error;
use tokio::sync::Mutex;

use herald_core::ports::{KeyStore, KeysUnavailable};
use herald_core::subscription::Offer;
use herald_core::webhook::keys::{KeyError, SigningKeys};

/// After a failed read with keys in hand, the wait before the next try: the keys in hand
/// keep signing meanwhile.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

#[derive(Debug, Error)]
pub enum KeyLoadError {
    #[error("reading secret {secret} failed: {reason}")]
    Unavailable { secret: String, reason: String },
    #[error("secret {secret} holds no usable key: {source}")]
    Invalid {
        secret: String,
        #[source]
        source: KeyError,
    },
}

/// The secrets that hold the keys, and the RSA headers' names.
#[derive(Clone, Debug, PartialEq)]
pub struct SecretNames {
    /// A secret whose string is a `whsk_` key.
    pub ed25519: Option<String>,
    /// A secret whose string is an RSA private key (PEM).
    pub rsa: Option<String>,
    pub sha512_header: String,
    pub md5_header: String,
    /// How long keys read are used before they are read again.
    pub refresh: Duration,
}

/// Cloning shares the keys, and the secrets' cache.
#[derive(Clone)]
pub enum KeySource {
    /// Keys given at start-up.
    Fixed(Arc<SigningKeys>),
    /// Keys in Secrets Manager.
    Secrets(Arc<SecretKeys>),
}

/// Names which secrets, never what a key is.
impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fixed(keys) => f.debug_tuple("Fixed").field(keys).finish(),
            Self::Secrets(secrets) => f.debug_tuple("Secrets").field(&secrets.names).finish(),
        }
    }
}

pub struct SecretKeys {
    sdk: Box<aws_config::SdkConfig>,
    client: OnceLock<Client>,
    names: SecretNames,
    cached: Mutex<Option<Cached>>,
}

struct Cached {
    /// When these keys are next read again.
    until: Instant,
    keys: Arc<SigningKeys>,
}

/// No keys: HMAC signatures only.
impl Default for KeySource {
    fn default() -> Self {
        Self::Fixed(Arc::new(SigningKeys::default()))
    }
}

impl KeySource {
    /// Keys from Secrets Manager; the client is built on the first read.
    pub fn secrets(sdk: &aws_config::SdkConfig, names: SecretNames) -> Self {
        Self::Secrets(Arc::new(SecretKeys {
            sdk: Box::new(sdk.clone()),
            client: OnceLock::new(),
            names,
            cached: Mutex::new(None),
        }))
    }

    /// The keys to sign with now, or why there are none.
    pub async fn read(&self) -> Result<Arc<SigningKeys>, KeyLoadError> {
        match self {
            Self::Fixed(keys) => Ok(Arc::clone(keys)),
            Self::Secrets(secrets) => secrets.current().await,
        }
    }
}

impl KeyStore for KeySource {
    fn offer(&self) -> Offer {
        match self {
            Self::Fixed(keys) => keys.offer(),
            Self::Secrets(secrets) => Offer {
                ed25519: secrets.names.ed25519.is_some(),
                rsa: secrets.names.rsa.is_some(),
                reserved_headers: vec![
                    secrets.names.sha512_header.to_ascii_lowercase(),
                    secrets.names.md5_header.to_ascii_lowercase(),
                ],
                max_attempts: None,
                max_timeout: None,
            },
        }
    }

    async fn current(&self) -> Result<Arc<SigningKeys>, KeysUnavailable> {
        self.read()
            .await
            .map_err(|e| KeysUnavailable(e.to_string()))
    }
}

impl SecretKeys {
    async fn current(&self) -> Result<Arc<SigningKeys>, KeyLoadError> {
        // One read at a time: the records of a batch that all need keys wait for one read.
        let mut cached = self.cached.lock().await;
        let now = Instant::now();
        if let Some(held) = cached.as_ref().filter(|c| now < c.until) {
            return Ok(Arc::clone(&held.keys));
        }
        match self.read().await {
            Ok(keys) => {
                let keys = Arc::new(keys);
                *cached = Some(Cached {
                    until: now + self.names.refresh,
                    keys: Arc::clone(&keys),
                });
                Ok(keys)
            }
            Err(e) => match cached.as_mut() {
                // Signing goes on with the keys in hand; a rotation waits for the next read.
                Some(held) => {
                    tracing::warn!(error = %e, "re-reading the signing keys failed; the keys in hand sign meanwhile");
                    held.until = now
                        + RETRY_AFTER_FAILURE.min(self.names.refresh.max(Duration::from_secs(1)));
                    Ok(Arc::clone(&held.keys))
                }
                None => Err(e),
            },
        }
    }

    async fn read(&self) -> Result<SigningKeys, KeyLoadError> {
        let ed25519 = match &self.names.ed25519 {
            Some(secret) => Some((secret, self.secret_string(secret).await?)),
            None => None,
        };
        let rsa = match &self.names.rsa {
            Some(secret) => Some((secret, self.secret_string(secret).await?)),
            None => None,
        };
        SigningKeys::new(
            ed25519.as_ref().map(|(_, value)| value.trim()),
            rsa.as_ref().map(|(_, value)| value.as_str()),
            &self.names.sha512_header,
            &self.names.md5_header,
        )
        .map_err(|source| {
            let secret = match source {
                KeyError::Ed25519 => ed25519.map(|(s, _)| s.clone()),
                _ => rsa.map(|(s, _)| s.clone()),
            };
            KeyLoadError::Invalid {
                secret: secret.unwrap_or_default(),
                source,
            }
        })
    }

    async fn secret_string(&self, secret: &str) -> Result<String, KeyLoadError> {
        let client = self.client.get_or_init(|| Client::new(&self.sdk));
        secret_string(client, secret)
            .await
            .map_err(|reason| KeyLoadError::Unavailable {
                secret: secret.to_owned(),
                reason,
            })
    }
}

/// A secret's string value, or why it could not be read.
pub(crate) async fn secret_string(client: &Client, secret: &str) -> Result<String, String> {
    let output = client
        .get_secret_value()
        .secret_id(secret)
        .send()
        .boxed()
        .await
        .map_err(|e| DisplayErrorContext(&e).to_string())?;
    output
        .secret_string()
        .map(str::to_owned)
        .ok_or_else(|| "the secret has no string value".into())
}
