//! The batch's queue calls, made once every record is done: the dead letters first, then
//! the visibility changes of every record SQS should hand back. A batch of 10 costs at
//! most two SQS requests instead of up to ten (docs/DECISIONS.md, "Deliver's queue calls").
//! A delivery whose retry window is spent is recorded failed with its dead letter owed,
//! and marked sent once SQS took it: a copy of its message that comes back after the dead
//! letter was refused sends it then.

use std::time::Duration;

use herald_core::delivery::Lane;
use herald_core::ids::{DeliveryId, TenantId};
use herald_core::ports::{Clock, DeliveryLedger, DeliveryQueue, Ports, VisibilityChange};

use crate::DeliverDeps;
use crate::batch::Settling;
use crate::report::{Disposition, RecordReport};

/// How long a message stays hidden after Herald's own storage failed.
const INTERRUPTED_DELAY: Duration = Duration::from_secs(10);

/// The batch's queue calls, made once every record is done. Dead letters go first: a
/// message is let go only once its copy is in the dead-letter queue, and a copy that
/// could not be sent leaves its message interrupted, which needs its visibility
/// shortened. Then the visibility changes of every record SQS should hand back, and
/// beside them the marks that the dead letters sent are no longer owed.
pub(crate) async fn settle<P: Ports>(
    deps: &DeliverDeps<P>,
    records: Vec<Settling>,
) -> Vec<RecordReport> {
    let mut reports = Vec::with_capacity(records.len());
    let mut receipts = Vec::with_capacity(records.len());
    let mut lanes = Vec::with_capacity(records.len());
    let (mut letters, mut lettered) = (Vec::new(), Vec::new());
    for (i, record) in records.into_iter().enumerate() {
        if let Some(letter) = record.dead_letter {
            letters.push(letter);
            lettered.push((i, record.owed_by));
        }
        reports.push(record.report);
        receipts.push(record.receipt);
        lanes.push(record.lane);
    }

    let mut sent = Vec::new();
    if !letters.is_empty() {
        let mut results = deps.ports.queue.dead_letter(&letters).await.into_iter();
        for (i, owed_by) in lettered {
            let why = match results.next() {
                Some(Ok(())) => {
                    if let Some((tenant, id)) = owed_by {
                        sent.push((reports[i].message_id.clone(), tenant, id));
                    }
                    continue;
                }
                Some(Err(e)) => e.to_string(),
                None => "no answer for the message".to_owned(),
            };
            reports[i].disposition = interrupted(format!("dead-letter queue: {why}"));
        }
    }

    futures::future::join(
        change_visibility(deps, &mut reports, &receipts, &lanes),
        mark_dead_letters_sent(deps, sent),
    )
    .await;
    reports
}

/// Records each dead letter sent as no longer owed. A mark that cannot be written is
/// only logged: the message is let go all the same, since its copy is in the dead-letter
/// queue; should SQS hand it back once more, that copy sends a second dead letter.
async fn mark_dead_letters_sent<P: Ports>(
    deps: &DeliverDeps<P>,
    sent: Vec<(String, TenantId, DeliveryId)>,
) {
    if sent.is_empty() {
        return;
    }
    let now = deps.ports.clock.now();
    let results = futures::future::join_all(
        sent.iter()
            .map(|(_, tenant, id)| deps.ports.ledger.dead_lettered(tenant, id, now)),
    )
    .await;
    for ((message_id, _, id), result) in sent.iter().zip(results) {
        if let Err(e) = result {
            tracing::warn!(message_id = %message_id, delivery_id = %id, error = %e, "could not mark a dead letter sent; it stays owed");
        }
    }
}

/// Hides each record SQS should hand back for its delay, in the batch's visibility
/// changes; a record whose change failed becomes an interruption.
async fn change_visibility<P: Ports>(
    deps: &DeliverDeps<P>,
    reports: &mut [RecordReport],
    receipts: &[String],
    lanes: &[Lane],
) {
    let (hidden, changes): (Vec<usize>, Vec<VisibilityChange>) = reports
        .iter()
        .enumerate()
        .filter_map(|(i, report)| {
            let delay = hide_for(&report.disposition)?;
            let receipt_handle = receipts[i].clone();
            Some((
                i,
                VisibilityChange {
                    receipt_handle,
                    delay,
                    lane: lanes[i],
                },
            ))
        })
        .unzip();
    if !changes.is_empty() {
        let mut results = deps.ports.queue.retry_later(&changes).await.into_iter();
        for i in hidden {
            let why = match results.next() {
                Some(Ok(())) => continue,
                Some(Err(e)) => e.to_string(),
                None => "no answer for the message".to_owned(),
            };
            let report = &mut reports[i];
            if let Disposition::Interrupted(_) = report.disposition {
                // It comes back after the queue's visibility timeout instead: late, not lost.
                tracing::warn!(message_id = %report.message_id, error = %why, "could not shorten the visibility of an interrupted message");
            } else {
                report.disposition = Disposition::Interrupted(format!("queue: {why}"));
            }
        }
    }
}

/// How long SQS keeps a message hidden before handing it back, for the records it
/// should hand back (`Disposition::keeps_message`).
fn hide_for(disposition: &Disposition) -> Option<Duration> {
    match disposition {
        Disposition::RetryIn(delay)
        | Disposition::Leased(delay)
        | Disposition::RateLimited(delay) => Some(*delay),
        Disposition::Interrupted(_) => Some(INTERRUPTED_DELAY),
        // Visible again at once: its line holds it until the delivery ahead is done.
        Disposition::Behind => Some(Duration::ZERO),
        // Visible again at once, for an invocation with time for it.
        Disposition::Deferred => Some(Duration::ZERO),
        _ => None,
    }
}

/// A failure of Herald's own: the message's visibility is shortened to
/// `INTERRUPTED_DELAY` with the batch's visibility changes, so SQS hands it back shortly.
pub(crate) fn interrupted(why: String) -> Disposition {
    tracing::error!(reason = %why, "delivery interrupted by a failure of Herald's own");
    Disposition::Interrupted(why)
}
