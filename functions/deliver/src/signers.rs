//! Tenants' own signing keys as this container holds them: a tenant's set is read (its
//! private halves opened by the store) and parsed once, then kept for the subscription
//! cache's time, so a rotation reaches every container within it. A tenant without a
//! set is kept as such for as long: its deliveries are signed with the deployment's keys.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_core::ids::TenantId;
use herald_core::ports::SubscriptionStore;
use herald_core::webhook::tenant_keys::TenantSigner;

/// At most this many tenants' sets are kept; past it the container starts afresh.
const MAX_KEPT: usize = 4096;

pub struct Signers {
    ttl: Duration,
    kept: Mutex<HashMap<TenantId, Kept>>,
}

struct Kept {
    read_at: Instant,
    signer: Option<Arc<TenantSigner>>,
}

impl Default for Signers {
    /// Kept for 5 s, as deliver's subscriptions are by default
    /// (`HERALD_SUBSCRIPTION_CACHE_SECONDS`).
    fn default() -> Self {
        Self::new(Duration::from_secs(5))
    }
}

impl Signers {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            kept: Mutex::new(HashMap::new()),
        }
    }

    /// The tenant's own keys, opened; None when it has none (the deployment's keys sign).
    /// An error says why nothing can sign: the set could not be read, or does not open
    /// (still sealed, or not a key).
    pub async fn signer<S: SubscriptionStore>(
        &self,
        store: &S,
        tenant: &TenantId,
    ) -> Result<Option<Arc<TenantSigner>>, String> {
        if let Some(kept) = self.kept(tenant) {
            return Ok(kept);
        }
        let signer = match store.signing_keys(tenant).await {
            Ok(None) => None,
            Ok(Some(set)) => {
                Some(Arc::new(set.open().map_err(|e| {
                    format!("the tenant's signing keys do not open: {e}")
                })?))
            }
            Err(e) => return Err(format!("reading the tenant's signing keys: {e}")),
        };
        self.keep(tenant, signer.clone());
        Ok(signer)
    }

    /// The kept set (`Some(None)`: kept as having none), while fresh.
    fn kept(&self, tenant: &TenantId) -> Option<Option<Arc<TenantSigner>>> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.get(tenant)
            .filter(|k| k.read_at.elapsed() < self.ttl)
            .map(|k| k.signer.clone())
    }

    fn keep(&self, tenant: &TenantId, signer: Option<Arc<TenantSigner>>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() >= MAX_KEPT {
            kept.clear();
        }
        kept.insert(
            tenant.clone(),
            Kept {
                read_at: Instant::now(),
                signer,
            },
        );
    }
}
