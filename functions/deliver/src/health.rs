//! A subscription's health: the first failure after a success starts its clock and a
//! success stops it; failing for longer than `auto_disable_after` disables it and tells
//! the tenant with a `subscription.disabled` event. Best effort: the delivery's own
//! outcome is already recorded, so a failure here is only logged.

use chrono::{DateTime, Utc};
use herald_core::delivery::DeliveryTask;
use herald_core::flow::publish::{Audience, publish};
use herald_core::ports::{Ports, StoreError, SubscriptionStore};
use herald_core::subscription::{Subscription, SubscriptionStatus};
use herald_core::system_events::SubscriptionDisabled;

use crate::DeliverDeps;
use crate::attempt::to_chrono;

/// `subscription` may be a few seconds old (the cache in front of the store), so it only
/// says whether to look further: a disable is decided on a fresh read, since another
/// worker may have had a success meanwhile, and the store keeps an earlier start when a
/// stale copy that looked healthy marks it failing.
pub(crate) async fn track<P: Ports>(
    deps: &DeliverDeps<P>,
    task: &DeliveryTask,
    subscription: &Subscription,
    succeeded: bool,
    now: DateTime<Utc>,
) {
    let (tenant, id) = (&task.tenant, &task.subscription_id);
    let store = &deps.ports.subscriptions;
    let limit = to_chrono(deps.settings.auto_disable_after);
    let result = match (succeeded, subscription.failing_since) {
        (true, Some(_)) => store.set_failing_since(tenant, id, None).await,
        (true, None) => Ok(()),
        (false, None) => store.set_failing_since(tenant, id, Some(now)).await,
        (false, Some(since)) if now - since >= limit => match store.get_fresh(tenant, id).await {
            Ok(Some(current)) if current.status == SubscriptionStatus::Active => {
                match current.failing_since {
                    Some(since) if now - since >= limit => {
                        disable_for_failing(deps, &current, since, now).await
                    }
                    Some(_) => Ok(()),
                    // Healthy again elsewhere: this failure starts the clock anew.
                    None => store.set_failing_since(tenant, id, Some(now)).await,
                }
            }
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        },
        (false, Some(_)) => Ok(()),
    };
    if let Err(e) = result {
        tracing::warn!(subscription = %id, error = %e, "could not record the subscription's health");
    }
}

async fn disable_for_failing<P: Ports>(
    deps: &DeliverDeps<P>,
    subscription: &Subscription,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let (tenant, id) = (&subscription.tenant, &subscription.id);
    let reason = format!(
        "no successful delivery since {}",
        since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    deps.ports
        .subscriptions
        .disable(tenant, id, &reason, now)
        .await?;
    tracing::warn!(tenant = %tenant, subscription = %id, "subscription disabled for failing");
    announce_disabled(deps, subscription, &reason, now).await
}

/// Tells the tenant a subscription was disabled (for failing too long, or a `410 Gone`):
/// `subscription.disabled` to the tenant's own subscriptions for that type. Seen already
/// (this disable was announced, perhaps only in part): the same tasks again, which the
/// claim makes harmless.
pub(crate) async fn announce_disabled<P: Ports>(
    deps: &DeliverDeps<P>,
    subscription: &Subscription,
    reason: &str,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let event = SubscriptionDisabled::of(subscription, reason, at).event();
    match publish(
        &deps.ports,
        &subscription.tenant,
        &[event],
        // Herald's own event: one per disable, to the tenant's listeners for it.
        Audience::Matching {
            max_deliveries: usize::MAX,
        },
        at,
        None,
    )
    .await
    {
        Ok(_) => Ok(()),
        Err(herald_core::flow::publish::PublishError::Store(e)) => Err(e),
        Err(e) => {
            tracing::warn!(error = %e, "could not queue subscription.disabled");
            Ok(())
        }
    }
}
