//! A tenant's own signing keys (`herald_core::webhook::tenant_keys`), one item in the
//! subscriptions table under a partition of its own, `#signing-keys#<tenant>` (tenant ids
//! hold no `#`, so it meets no tenant's subscriptions): `version`, and the set as `doc`.
//! Where the store seals (manage), the private halves are sealed before they are written;
//! where it opens (deliver), they are opened when read.

use aws_sdk_dynamodb::types::ReturnValue;
use futures::FutureExt;

use super::attributes::{Item, from_doc, n, s, to_doc};
use super::subscriptions::{DynamoSubscriptionStore, VaultUse, vault_error};
use super::{condition_failed, read_consistent, unavailable};
use herald_core::ids::TenantId;
use herald_core::ports::StoreError;
use herald_core::webhook::sign::is_sealed;
use herald_core::webhook::tenant_keys::{TenantKeyPair, TenantKeySet};

const SET_ID: &str = "set";

fn key(tenant: &TenantId) -> Item {
    Item::from([
        ("tenant".to_owned(), s(format!("#signing-keys#{tenant}"))),
        ("id".to_owned(), s(SET_ID)),
    ])
}

/// Each private half of a pair, with the field it is sealed under.
fn halves(pair: &mut TenantKeyPair) -> [(&'static str, &mut String); 2] {
    [
        ("ed25519", &mut pair.ed25519_private),
        ("rsa", &mut pair.rsa_private),
    ]
}

impl DynamoSubscriptionStore {
    pub(super) async fn read_signing_keys(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<TenantKeySet>, StoreError> {
        let Some(item) = read_consistent(&self.client, &self.table, key(tenant)).await? else {
            return Ok(None);
        };
        let mut set: TenantKeySet = from_doc(&item)?;
        if set.tenant != *tenant {
            return Err(StoreError::Corrupt(
                "a signing key set under another tenant".into(),
            ));
        }
        if let Some((vault, VaultUse::Open)) = &self.vault {
            for pair in &mut set.keys {
                let kid = pair.kid.clone();
                for (half, value) in halves(pair) {
                    if is_sealed(value) {
                        *value = vault
                            .open(&TenantKeyPair::place(tenant, &kid, half), value)
                            .await
                            .map_err(vault_error)?;
                    }
                }
            }
        }
        Ok(Some(set))
    }

    pub(super) async fn write_signing_keys(
        &self,
        set: &TenantKeySet,
        expected: Option<u64>,
    ) -> Result<(), StoreError> {
        let mut stored = set.clone();
        if let Some((vault, VaultUse::Seal)) = &self.vault {
            for pair in &mut stored.keys {
                let kid = pair.kid.clone();
                for (half, value) in halves(pair) {
                    if !is_sealed(value) {
                        *value = vault
                            .seal(&TenantKeyPair::place(&set.tenant, &kid, half), value)
                            .await
                            .map_err(vault_error)?;
                    }
                }
            }
        }
        let mut item = key(&set.tenant);
        item.insert("version".to_owned(), n(set.version));
        item.insert("doc".to_owned(), to_doc(&stored)?);
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .expression_attribute_names("#version", "version");
        request = match expected {
            None => request.condition_expression("attribute_not_exists(#version)"),
            Some(version) => request
                .condition_expression("#version = :expected")
                .expression_attribute_values(":expected", n(version)),
        };
        match request.send().boxed().await {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e) => Err(StoreError::Conflict),
            Err(e) => Err(unavailable(e)),
        }
    }

    pub(super) async fn remove_signing_keys(&self, tenant: &TenantId) -> Result<bool, StoreError> {
        let output = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(tenant)))
            .return_values(ReturnValue::AllOld)
            .send()
            .boxed()
            .await
            .map_err(unavailable)?;
        Ok(output.attributes().is_some_and(|a| !a.is_empty()))
    }
}
