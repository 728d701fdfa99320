//! A subscription's health: the first failure after a success starts its clock and a
//! success stops it; failing for longer than `auto_disable_after` disables it and tells
//! the tenant with a `subscription.disabled` event. The clock is best effort (the
//! delivery's own outcome is already recorded, so a failure to keep it is only logged);
//! the telling is not.
//!
//! Each disabling is announced once, never twice and never not at all:
//! - its event id is made of the subscription and the disabling's time as the store
//!   recorded it (`SubscriptionDisabled::event`), so an announcement made again is the
//!   same event, whose repeat queues the same tasks, which the claim makes harmless;
//! - of deliveries racing to disable a subscription, only the one whose disable the
//!   store took announces it (`Disabling::Disabled`);
//! - the disabling keeps the delivery that made it (`Subscription::disabled_by`): when
//!   an announcement could not be made, the record is handed back, and that delivery's
//!   message, seen again, announces it again whatever became of the first try
//!   (`announce_own`).

use chrono::{DateTime, Utc};
use herald_core::delivery::DeliveryTask;
use herald_core::flow::publish::{Audience, PublishError, publish};
use herald_core::ports::{Clock, Disabling, Ports, SubscriptionStore};
use herald_core::subscription::{Subscription, SubscriptionStatus};
use herald_core::system_events::SubscriptionDisabled;

use crate::DeliverDeps;
use crate::attempt::to_chrono;

/// `subscription` may be a few seconds old (the cache in front of the store), so it only
/// says whether to look further: a disable is decided on a fresh read, since another
/// worker may have had a success meanwhile, and the store keeps an earlier start when a
/// stale copy that looked healthy marks it failing. An error only when a disabling made
/// by this delivery could not be announced: the record is then handed back.
pub(crate) async fn track<P: Ports>(
    deps: &DeliverDeps<P>,
    task: &DeliveryTask,
    subscription: &Subscription,
    succeeded: bool,
    now: DateTime<Utc>,
) -> Result<(), String> {
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
                        return disable_for_failing(deps, task, &current, since, now).await;
                    }
                    Some(_) => Ok(()),
                    // Healthy again elsewhere: this failure starts the clock anew.
                    None => store.set_failing_since(tenant, id, Some(now)).await,
                }
            }
            // Disabled already, perhaps by this delivery: its message seen again, the copy
            // in hand read before that disable.
            Ok(Some(current)) => return announce_own(deps, task, &current).await,
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        },
        (false, Some(_)) => Ok(()),
    };
    if let Err(e) = result {
        tracing::warn!(subscription = %id, error = %e, "could not record the subscription's health");
    }
    Ok(())
}

async fn disable_for_failing<P: Ports>(
    deps: &DeliverDeps<P>,
    task: &DeliveryTask,
    subscription: &Subscription,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), String> {
    let (tenant, id) = (&subscription.tenant, &subscription.id);
    let why = format!(
        "no successful delivery since {}",
        since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let disabling = match deps
        .ports
        .subscriptions
        .disable(tenant, id, &why, now, &task.delivery_id)
        .await
    {
        Ok(disabling) => disabling,
        // Nothing disabled, so nothing to announce: the next failure decides again.
        Err(e) => {
            tracing::warn!(subscription = %id, error = %e, "could not disable the failing subscription");
            return Ok(());
        }
    };
    if let Disabling::Disabled(_) = disabling {
        tracing::warn!(tenant = %tenant, subscription = %id, "subscription disabled for failing");
    }
    announce_disabling(deps, task, &disabling).await
}

/// Whether `subscription`, as read, was disabled by `task`'s delivery: the disabling
/// keeps the delivery that made it (`Subscription::disabled_by`).
pub(crate) fn disabled_by(subscription: &Subscription, task: &DeliveryTask) -> bool {
    subscription.status == SubscriptionStatus::Disabled
        && subscription.disabled_by.as_ref() == Some(&task.delivery_id)
}

/// What a disable made by `task`'s delivery owes: the announcement, when this call
/// disabled the subscription or an earlier one of the same delivery did (its message
/// seen again); nothing when another delivery did (that one announces it) or the tenant.
pub(crate) async fn announce_disabling<P: Ports>(
    deps: &DeliverDeps<P>,
    task: &DeliveryTask,
    disabling: &Disabling,
) -> Result<(), String> {
    match disabling {
        Disabling::Disabled(subscription) => announce(deps, subscription).await,
        Disabling::AlreadyDisabled(subscription) => announce_own(deps, task, subscription).await,
        Disabling::Missing => Ok(()),
    }
}

/// Announces the disabling `subscription` (as read) shows, if `task`'s delivery made it:
/// its message is seen again, perhaps because the announcement failed, perhaps after it
/// was made, which makes this a repeat of the same event.
pub(crate) async fn announce_own<P: Ports>(
    deps: &DeliverDeps<P>,
    task: &DeliveryTask,
    subscription: &Subscription,
) -> Result<(), String> {
    if !disabled_by(subscription, task) {
        return Ok(());
    }
    announce(deps, subscription).await
}

/// The same, for a delivery that ended failed and whose message is seen again while the
/// batch's copy of its subscription says it is active: a copy kept from before a disable
/// that delivery made, for all the batch knows, so the store is asked.
pub(crate) async fn announce_own_as_stored<P: Ports>(
    deps: &DeliverDeps<P>,
    task: &DeliveryTask,
) -> Result<(), String> {
    match deps
        .ports
        .subscriptions
        .get_fresh(&task.tenant, &task.subscription_id)
        .await
    {
        Ok(Some(stored)) => announce_own(deps, task, &stored).await,
        Ok(None) => Ok(()),
        Err(e) => Err(format!("subscriptions: {e}")),
    }
}

/// Tells the tenant a subscription was disabled (for failing too long, or a `410 Gone`):
/// `subscription.disabled` to the tenant's own subscriptions for that type, made of the
/// disabling as stored. Made before (perhaps only in part): the same event, whose repeat
/// queues the same tasks again, which the claim makes harmless. An error when the event
/// may not have reached every task's queue: the caller hands its record back, and the
/// message seen again announces once more.
async fn announce<P: Ports>(deps: &DeliverDeps<P>, disabled: &Subscription) -> Result<(), String> {
    let Some(announcement) = SubscriptionDisabled::of(disabled) else {
        return Ok(());
    };
    let event = announcement.event();
    match publish(
        &deps.ports,
        &disabled.tenant,
        &[event],
        // Herald's own event: one per disable, to the tenant's listeners for it.
        Audience::Matching {
            max_deliveries: usize::MAX,
        },
        deps.ports.clock.now(),
        None,
    )
    .await
    {
        Ok(_) => Ok(()),
        // Its id taken with other content: announced before, and the subscription (its
        // URL) changed since; the first announcement stands.
        Err(PublishError::Conflict(_)) => Ok(()),
        Err(e) => Err(format!("announcing subscription.disabled: {e}")),
    }
}
