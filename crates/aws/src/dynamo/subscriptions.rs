//! Subscriptions keyed by (`tenant`, `id`). Ids sort by creation time, so a descending
//! query is a newest-first listing.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::ReturnValue;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use futures::FutureExt;

use std::borrow::Cow;
use std::sync::Arc;

use super::attributes::{Item, from_doc, n, s, to_doc};
use super::unavailable;
use crate::seal::{Vault, VaultError};
use herald_core::ids::{DeliveryId, SubscriptionId, TenantId};
use herald_core::ports::{Disabling, Page, StoreError, SubscriptionStore};
use herald_core::subscription::{Subscription, SubscriptionStatus};
use herald_core::webhook::sign::{WebhookSecret, is_sealed};
use herald_core::webhook::tenant_keys::TenantKeySet;

/// The most a listing returns at once, whatever the caller asks for.
const MAX_PAGE: usize = 1000;

#[derive(Clone, Debug)]
pub struct DynamoSubscriptionStore {
    pub(super) client: Client,
    pub(super) table: String,
    /// What this store does with secrets and header values (`crate::seal`); without a
    /// vault they are read and written as they are.
    pub(super) vault: Option<(Arc<Vault>, VaultUse)>,
}

/// A function's use of the secrets key: one or the other, as its IAM grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VaultUse {
    /// Manage: every value not yet sealed is sealed on write; reads carry them sealed.
    Seal,
    /// Deliver: reads open what is sealed; writes carry every value as read (sealed, or
    /// in the clear if stored before the deployment had a key), sealing nothing.
    Open,
}

/// Where a subscription's sealed values belong, their associated data without the
/// field: `<place>secret`, `<place>header/<name>`.
fn place(subscription: &Subscription) -> String {
    format!(
        "herald/subscription/{}/{}/",
        subscription.tenant, subscription.id
    )
}

pub(super) fn vault_error(e: VaultError) -> StoreError {
    match e {
        VaultError::Unavailable(why) => StoreError::Unavailable(why.into()),
        VaultError::Corrupt(why) => StoreError::Corrupt(why),
    }
}

impl DynamoSubscriptionStore {
    pub fn new(client: Client, table: String) -> Self {
        Self {
            client,
            table,
            vault: None,
        }
    }

    /// Secrets and header values sealed or opened by `vault`, as `role` says.
    pub fn with_vault(mut self, vault: Arc<Vault>, role: VaultUse) -> Self {
        self.vault = Some((vault, role));
        self
    }

    /// `subscription` as this store writes it: when it seals, every value not yet sealed
    /// is sealed.
    async fn sealed<'a>(
        &self,
        subscription: &'a Subscription,
    ) -> Result<Cow<'a, Subscription>, StoreError> {
        let Some((vault, VaultUse::Seal)) = &self.vault else {
            return Ok(Cow::Borrowed(subscription));
        };
        let at = place(subscription);
        let mut stored = subscription.clone();
        for kept in &mut stored.secrets {
            if !kept.secret.is_sealed() {
                let text = vault
                    .seal(&format!("{at}secret"), kept.secret.expose())
                    .await
                    .map_err(vault_error)?;
                kept.secret = WebhookSecret::sealed(text)
                    .map_err(|_| StoreError::Corrupt("a sealed secret".into()))?;
            }
        }
        for (name, value) in &mut stored.headers {
            if !is_sealed(value) {
                *value = vault
                    .seal(&format!("{at}header/{name}"), value)
                    .await
                    .map_err(vault_error)?;
            }
        }
        Ok(Cow::Owned(stored))
    }

    /// `subscription` as this store reads it: when it opens, every sealed value opened.
    async fn opened(&self, mut subscription: Subscription) -> Result<Subscription, StoreError> {
        let Some((vault, VaultUse::Open)) = &self.vault else {
            return Ok(subscription);
        };
        let at = place(&subscription);
        for kept in &mut subscription.secrets {
            if kept.secret.is_sealed() {
                let clear = vault
                    .open(&format!("{at}secret"), kept.secret.expose())
                    .await
                    .map_err(vault_error)?;
                kept.secret = WebhookSecret::parse(&clear)
                    .map_err(|_| StoreError::Corrupt("a sealed secret is no secret".into()))?;
            }
        }
        for (name, value) in &mut subscription.headers {
            if is_sealed(value) {
                *value = vault
                    .open(&format!("{at}header/{name}"), value)
                    .await
                    .map_err(vault_error)?;
            }
        }
        Ok(subscription)
    }

    async fn all_opened(&self, items: Vec<Subscription>) -> Result<Vec<Subscription>, StoreError> {
        let mut opened = Vec::with_capacity(items.len());
        for item in items {
            opened.push(self.opened(item).await?);
        }
        Ok(opened)
    }

    fn item(subscription: &Subscription) -> Result<Item, StoreError> {
        let status = match subscription.status {
            SubscriptionStatus::Active => "active",
            SubscriptionStatus::Disabled => "disabled",
        };
        Ok(Item::from([
            ("tenant".to_owned(), s(subscription.tenant.as_str())),
            ("id".to_owned(), s(subscription.id.as_str())),
            ("status".to_owned(), s(status)),
            ("version".to_owned(), n(subscription.version)),
            ("doc".to_owned(), to_doc(subscription)?),
        ]))
    }

    fn key(tenant: &TenantId, id: &SubscriptionId) -> Item {
        Item::from([
            ("tenant".to_owned(), s(tenant.as_str())),
            ("id".to_owned(), s(id.as_str())),
        ])
    }

    /// One Query page of the tenant's subscriptions, newest first, and where the next
    /// page starts. A page also ends at 1 MB read, so fewer than `limit` says nothing.
    async fn page(
        &self,
        tenant: &TenantId,
        limit: Option<usize>,
        start: Option<Item>,
        only_active: bool,
    ) -> Result<(Vec<Subscription>, Option<Item>), StoreError> {
        let mut request = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("tenant = :tenant")
            .expression_attribute_values(":tenant", s(tenant.as_str()))
            .scan_index_forward(false)
            .consistent_read(true)
            .set_limit(limit.map(|l| l.min(i32::MAX as usize) as i32))
            .set_exclusive_start_key(start);
        if only_active {
            request = request
                .filter_expression("#status = :active")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":active", s("active"));
        }
        let output = request.send().boxed().await.map_err(unavailable)?;
        let items = output
            .items()
            .iter()
            .map(from_doc)
            .filter(|read| {
                read.as_ref()
                    .map_or(true, |s: &Subscription| &s.tenant == tenant)
            })
            .collect::<Result<Vec<Subscription>, _>>()?;
        Ok((items, output.last_evaluated_key().cloned()))
    }

    /// Writes the whole item if `condition` holds; a failed condition is a conflict.
    async fn put(
        &self,
        subscription: &Subscription,
        condition: &str,
        expected_version: Option<u64>,
    ) -> Result<(), StoreError> {
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::item(&*self.sealed(subscription).await?)?))
            .condition_expression(condition);
        if let Some(expected) = expected_version {
            request = request
                .expression_attribute_names("#version", "version")
                .expression_attribute_values(":expected", n(expected));
        }
        match request.send().boxed().await {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(PutItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Err(StoreError::Conflict)
            }
            Err(e) => Err(unavailable(e)),
        }
    }
}

impl DynamoSubscriptionStore {
    /// The subscription as stored: sealed values stay sealed.
    async fn stored(
        &self,
        tenant: &TenantId,
        id: &SubscriptionId,
    ) -> Result<Option<Subscription>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(tenant, id)))
            .consistent_read(true)
            .send()
            .boxed()
            .await
            .map_err(unavailable)?;
        // A document that names another tenant or id than its key is never handed out as
        // the caller's: every write builds the key from the document, so only a hand-made
        // item could, but the deliveries and signing keys hold to the same.
        let read: Option<Subscription> = output.item().map(from_doc).transpose()?;
        Ok(read.filter(|s| &s.tenant == tenant && &s.id == id))
    }
}

/// The listing cursor: the last id handed out. It cannot reach another tenant's items,
/// since it only ever becomes a start key inside the caller's own partition.
fn encode_cursor(id: &SubscriptionId) -> String {
    URL_SAFE_NO_PAD.encode(id.as_str())
}

/// A cursor from a caller; anything this store did not hand out is `InvalidCursor`.
fn parse_cursor(cursor: &str) -> Result<SubscriptionId, StoreError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| SubscriptionId::parse(&text))
        .ok_or(StoreError::InvalidCursor)
}

impl SubscriptionStore for DynamoSubscriptionStore {
    async fn signing_keys(&self, tenant: &TenantId) -> Result<Option<TenantKeySet>, StoreError> {
        self.read_signing_keys(tenant).await
    }

    async fn put_signing_keys(
        &self,
        set: &TenantKeySet,
        expected: Option<u64>,
    ) -> Result<(), StoreError> {
        self.write_signing_keys(set, expected).await
    }

    async fn delete_signing_keys(&self, tenant: &TenantId) -> Result<bool, StoreError> {
        self.remove_signing_keys(tenant).await
    }

    fn seals(&self) -> bool {
        matches!(self.vault, Some((_, VaultUse::Seal)))
    }

    async fn create(&self, subscription: &Subscription) -> Result<(), StoreError> {
        self.put(subscription, "attribute_not_exists(id)", None)
            .await
    }

    async fn get(
        &self,
        tenant: &TenantId,
        id: &SubscriptionId,
    ) -> Result<Option<Subscription>, StoreError> {
        match self.stored(tenant, id).await? {
            Some(subscription) => Ok(Some(self.opened(subscription).await?)),
            None => Ok(None),
        }
    }

    async fn list(
        &self,
        tenant: &TenantId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Subscription>, StoreError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let mut start = cursor
            .map(|c| parse_cursor(c).map(|id| Self::key(tenant, &id)))
            .transpose()?;
        // One more than asked tells whether another page exists.
        let mut items = Vec::new();
        loop {
            let wanted = limit + 1 - items.len();
            let (page, last) = self.page(tenant, Some(wanted), start, false).await?;
            items.extend(page);
            match last {
                Some(last) if items.len() <= limit => start = Some(last),
                _ => break,
            }
        }
        let next = (items.len() > limit).then(|| encode_cursor(&items[limit - 1].id));
        items.truncate(limit);
        let items = self.all_opened(items).await?;
        Ok(Page { items, next })
    }

    async fn update(
        &self,
        subscription: &Subscription,
        expected_version: u64,
    ) -> Result<(), StoreError> {
        self.put(
            subscription,
            "attribute_exists(id) AND #version = :expected",
            Some(expected_version),
        )
        .await
    }

    async fn active(&self, tenant: &TenantId) -> Result<Vec<Subscription>, StoreError> {
        let mut all = Vec::new();
        let mut start = None;
        loop {
            let (items, last) = self.page(tenant, None, start, true).await?;
            all.extend(items);
            match last {
                Some(last) => start = Some(last),
                None => return self.all_opened(all).await,
            }
        }
    }

    async fn delete(&self, tenant: &TenantId, id: &SubscriptionId) -> Result<bool, StoreError> {
        let output = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(tenant, id)))
            .return_values(ReturnValue::AllOld)
            .send()
            .boxed()
            .await
            .map_err(unavailable)?;
        Ok(output.attributes().is_some_and(|a| !a.is_empty()))
    }

    async fn disable(
        &self,
        tenant: &TenantId,
        id: &SubscriptionId,
        reason: &str,
        at: DateTime<Utc>,
        by: &DeliveryId,
    ) -> Result<Disabling, StoreError> {
        // The document is the source of truth, so this reads, changes and writes back on
        // the version read (optimistic concurrency) rather than patching attributes. The
        // write holds only if nothing changed since the read, when it was active: of two
        // racing disables, the second is refused, reads the first's and answers it.
        for _ in 0..5 {
            // As stored: what is sealed is written back sealed, as it was read.
            let Some(mut subscription) = self.stored(tenant, id).await? else {
                return Ok(Disabling::Missing);
            };
            let read_version = subscription.version;
            if !subscription.disable_by(reason, at, Some(by)) {
                return Ok(Disabling::AlreadyDisabled(subscription));
            }
            subscription.changed(at);
            match self.update(&subscription, read_version).await {
                Ok(()) => return Ok(Disabling::Disabled(subscription)),
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Conflict)
    }

    async fn set_failing_since(
        &self,
        tenant: &TenantId,
        id: &SubscriptionId,
        since: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        self.keep_version(tenant, id, |s| s.record_health(since))
            .await
    }

    async fn mark_slow(
        &self,
        tenant: &TenantId,
        id: &SubscriptionId,
        until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.keep_version(tenant, id, |s| s.mark_slow(until)).await
    }
}

impl DynamoSubscriptionStore {
    /// Changes what `change` changes (it answers whether it did) on the version read, and
    /// keeps the version: health and slowness are not changes a tenant's concurrent edit
    /// should be refused for. A no-op when the subscription is gone or nothing changes.
    async fn keep_version(
        &self,
        tenant: &TenantId,
        id: &SubscriptionId,
        change: impl Fn(&mut Subscription) -> bool,
    ) -> Result<(), StoreError> {
        for _ in 0..5 {
            // As stored: what is sealed is written back sealed, as it was read.
            let Some(mut subscription) = self.stored(tenant, id).await? else {
                return Ok(());
            };
            let read_version = subscription.version;
            if !change(&mut subscription) {
                return Ok(());
            }
            match self.update(&subscription, read_version).await {
                Err(StoreError::Conflict) => continue,
                other => return other,
            }
        }
        Err(StoreError::Conflict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let id = SubscriptionId::parse("sub_01JD5Q8Z6X0000000000000000").unwrap();
        assert_eq!(parse_cursor(&encode_cursor(&id)).unwrap(), id);
        assert!(matches!(
            parse_cursor("garbage"),
            Err(StoreError::InvalidCursor)
        ));
        assert!(matches!(
            parse_cursor(&URL_SAFE_NO_PAD.encode("sub_../x")),
            Err(StoreError::InvalidCursor)
        ));
    }
}
