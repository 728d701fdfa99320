//! Erasure on request: everything Herald keeps about a tenant, or one subscription's
//! history, deleted in bounded steps. Each call does a bounded amount of work and answers
//! where it stands as an opaque cursor; the caller repeats with it until done, so an
//! erasure interrupted anywhere resumes where it stopped, and one repeated from the start
//! deletes what is left (deleting is idempotent).
//!
//! A tenant's erasure deletes its subscriptions first, so nothing new fans out to them
//! and deliver lets the tasks still queued for them go without a record
//! (docs/DECISIONS.md, "Erasure"); then the attempt log of every subscription it has or
//! had, its events with the newest-about-a-subject records, and its portal sessions.
//! Last, once deliver can no longer hold a subscription it read before (its cache, and a
//! batch that began before, both end within the settle time), a sweep of the attempt
//! log removes any delivery recorded in between.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{SubscriptionId, TenantId};
use crate::ports::{
    Adapters, Clock, DeliveryLedger, Erased, EventLog, Ports, SessionStore, StoreError,
    SubscriptionStore,
};

/// Records a store step looks at, at most.
pub const STEP: usize = 250;
/// Store steps one call takes, at most: a call looks at no more than `STEP × STEPS`
/// records, within API Gateway's 29 s.
pub const STEPS: usize = 8;
/// Subscriptions listed and deleted a step (a listing page's most).
const SUBSCRIPTIONS_STEP: usize = 100;

/// What is erased: a whole tenant, or one subscription's history (its attempt log and
/// its newest-about-a-subject records; the subscription itself and the events, which
/// other subscriptions may share, stay).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope<'a> {
    Tenant,
    History(&'a SubscriptionId),
}

/// The stages of an erasure, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// First: an open portal tab could otherwise add a subscription or make signing keys
    /// after their stage, and nothing later would delete them.
    PortalSessions,
    Subscriptions,
    Deliveries,
    Events,
    /// The attempt log once more, after the settle time.
    Sweep,
}

impl Stage {
    fn order(scope: Scope<'_>) -> &'static [Stage] {
        match scope {
            Scope::Tenant => &[
                Stage::PortalSessions,
                Stage::Subscriptions,
                Stage::Deliveries,
                Stage::Events,
                Stage::Sweep,
            ],
            Scope::History(_) => &[Stage::Deliveries, Stage::Events],
        }
    }
}

/// What an erasure deleted so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub subscriptions: u64,
    pub deliveries: u64,
    /// Events and newest-about-a-subject records.
    pub events: u64,
    pub portal_sessions: u64,
}

impl Totals {
    fn add(&mut self, stage: Stage, count: u64) {
        let total = match stage {
            Stage::Subscriptions => &mut self.subscriptions,
            Stage::Deliveries | Stage::Sweep => &mut self.deliveries,
            Stage::Events => &mut self.events,
            Stage::PortalSessions => &mut self.portal_sessions,
        };
        *total += count;
    }
}

/// Where an erasure stands: the stage it is in (none once done), the store's cursor
/// within it, and the totals so far. It travels as an opaque cursor and names its scope,
/// so it resumes only the erasure it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The subscription whose history is erased; none for a tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subscription: Option<String>,
    pub stage: Option<Stage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cursor: Option<String>,
    pub erased: Totals,
    /// When the sweep may begin: the settle time after the subscriptions were gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep_after: Option<DateTime<Utc>>,
}

/// A cursor that is not one this erasure handed out.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the cursor does not continue this erasure")]
pub struct ForeignCursor;

impl Progress {
    /// An erasure of `scope` not yet begun.
    pub fn start(scope: Scope<'_>) -> Self {
        Self {
            subscription: scope_subscription(scope),
            stage: Some(Stage::order(scope)[0]),
            cursor: None,
            erased: Totals::default(),
            sweep_after: None,
        }
    }

    /// The erasure a cursor continues, if it is one of `scope`.
    pub fn resume(cursor: &str, scope: Scope<'_>) -> Result<Self, ForeignCursor> {
        let progress: Self = URL_SAFE_NO_PAD
            .decode(cursor)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or(ForeignCursor)?;
        let in_scope = progress.subscription == scope_subscription(scope)
            && progress
                .stage
                .is_none_or(|stage| Stage::order(scope).contains(&stage));
        in_scope.then_some(progress).ok_or(ForeignCursor)
    }

    /// The opaque cursor that resumes this erasure.
    pub fn cursor(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn done(&self) -> bool {
        self.stage.is_none()
    }
}

fn scope_subscription(scope: Scope<'_>) -> Option<String> {
    match scope {
        Scope::Tenant => None,
        Scope::History(id) => Some(id.to_string()),
    }
}

/// Runs an erasure on for at most `STEPS` store steps, or until its sweep must wait for
/// `sweep_after`; answers where it then stands. `settle` is how long after the
/// subscriptions are gone deliver may still record a delivery of theirs. A failing store
/// ends the call with the error; the caller repeats with its last cursor (what was
/// deleted stays so).
pub async fn run<P: Ports>(
    ports: &Adapters<P>,
    tenant: &TenantId,
    scope: Scope<'_>,
    mut progress: Progress,
    settle: Duration,
) -> Result<Progress, StoreError> {
    for _ in 0..STEPS {
        let Some(stage) = progress.stage else {
            break;
        };
        let now = ports.clock.now();
        if stage == Stage::Sweep && progress.sweep_after.is_some_and(|after| now < after) {
            break;
        }
        let step = step(ports, tenant, scope, stage, progress.cursor.as_deref()).await?;
        progress.erased.add(stage, step.count);
        progress.cursor = step.next;
        if progress.cursor.is_none() {
            if stage == Stage::Subscriptions {
                let settle = chrono::Duration::from_std(settle).unwrap_or(chrono::Duration::MAX);
                progress.sweep_after = Some(ports.clock.now() + settle);
            }
            let order = Stage::order(scope);
            let at = order
                .iter()
                .position(|s| *s == stage)
                .unwrap_or(order.len());
            progress.stage = order.get(at + 1).copied();
        }
    }
    Ok(progress)
}

/// One store step of `stage`.
async fn step<P: Ports>(
    ports: &Adapters<P>,
    tenant: &TenantId,
    scope: Scope<'_>,
    stage: Stage,
    cursor: Option<&str>,
) -> Result<Erased, StoreError> {
    let subscription = match scope {
        Scope::Tenant => None,
        Scope::History(id) => Some(id),
    };
    match stage {
        // Listed from the start each time: the page before was deleted.
        Stage::Subscriptions => {
            let page = ports
                .subscriptions
                .list(tenant, SUBSCRIPTIONS_STEP, None)
                .await?;
            let deleted = futures::future::try_join_all(
                page.items
                    .iter()
                    .map(|s| ports.subscriptions.delete(tenant, &s.id)),
            )
            .await?;
            // The tenant's own signing keys go with its last subscriptions (not counted:
            // the count is of subscriptions).
            if page.next.is_none() && scope == Scope::Tenant {
                ports.subscriptions.delete_signing_keys(tenant).await?;
            }
            Ok(Erased {
                count: deleted.into_iter().filter(|d| *d).count() as u64,
                next: page.next.map(|_| String::new()),
            })
        }
        Stage::Deliveries | Stage::Sweep => {
            ports.ledger.erase(tenant, subscription, cursor, STEP).await
        }
        Stage::Events => ports.events.erase(tenant, subscription, cursor, STEP).await,
        Stage::PortalSessions => ports.sessions.erase(tenant, cursor, STEP).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_resumes_only_the_erasure_it_came_from() {
        let a = SubscriptionId::parse("sub_01JD5Q8Z6X0000000000000000").unwrap();
        let b = SubscriptionId::parse("sub_01JD5Q8Z6X0000000000000001").unwrap();
        let mut progress = Progress::start(Scope::History(&a));
        assert_eq!(progress.stage, Some(Stage::Deliveries));
        progress.erased.deliveries = 7;
        progress.cursor = Some("abc".into());
        let cursor = progress.cursor();
        assert_eq!(Progress::resume(&cursor, Scope::History(&a)), Ok(progress));
        assert_eq!(
            Progress::resume(&cursor, Scope::History(&b)),
            Err(ForeignCursor)
        );
        assert_eq!(Progress::resume(&cursor, Scope::Tenant), Err(ForeignCursor));
        let tenant = Progress::start(Scope::Tenant).cursor();
        assert_eq!(
            Progress::resume(&tenant, Scope::History(&a)),
            Err(ForeignCursor),
            "a tenant's stages are not a history's"
        );
        for bogus in ["", "!!", "e30", "bm90IGpzb24"] {
            assert!(Progress::resume(bogus, Scope::Tenant).is_err(), "{bogus}");
        }
    }
}
