//! Replay: a time range of one subscription's deliveries queued again, a page a call.
//!
//! A replay walks the range as the attempt log lists it (newest first) and queues at most
//! [`MAX_REPLAY`] deliveries a call. While deliveries remain, the answer's `cursor`
//! continues the walk after the last one it read: sent back with the same `since`,
//! `until` and `state`, each call takes the next page, so following the cursor until it is
//! null reads every matching delivery of the range once. The cursor is the attempt log's
//! own (rebuilt inside the caller's tenant and subscription, `DeliveryLedger::list`) with
//! a tag of the range and state it walks, so it cannot continue another walk.

use chrono::{DateTime, SecondsFormat, Utc};
use herald_aws::lambda::api::{self, ApiError};
use herald_core::delivery::{DeliveryState, MAX_ATTEMPTS_KEPT};
use herald_core::ids::{SubscriptionId, TenantId};
use herald_core::ports::{Clock, DeliveryLedger, DeliveryQuery, Ports};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::Deserialize;
use serde_json::json;

use crate::ManageDeps;
use crate::http::{
    enqueue, forced_task, owned_subscription, parse_state, parse_time, spend_redeliveries,
};

/// Most deliveries one replay call reads and queues; the answer's `cursor` continues.
pub const MAX_REPLAY: usize = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Replay {
    since: String,
    until: Option<String>,
    state: Option<String>,
    /// The previous answer's `cursor`, to continue the same walk; none to begin.
    cursor: Option<String>,
}

pub async fn replay<P: Ports>(
    deps: &ManageDeps<P>,
    tenant: &TenantId,
    id: &SubscriptionId,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let input: Replay = api::json_body(request)?;
    let since =
        parse_time("since", &input.since).map_err(|e| ApiError::unprocessable(e.message))?;
    let until = input
        .until
        .as_deref()
        .map(|u| parse_time("until", u))
        .transpose()
        .map_err(|e| ApiError::unprocessable(e.message))?;
    if until.is_some_and(|u| u <= since) {
        return Err(ApiError::unprocessable("until: must be after since"));
    }
    let state = match input.state.as_deref() {
        None => DeliveryState::Failed,
        Some(raw) => parse_state("state", raw).map_err(|e| ApiError::unprocessable(e.message))?,
    };
    owned_subscription(&deps.ports.subscriptions, tenant, id).await?;
    let walk = walk_tag(since, until, state);
    let cursor = input
        .cursor
        .as_deref()
        .map(|cursor| resume(cursor, &walk))
        .transpose()?;
    // Newest first, as the attempt log lists them: deliveries made while a replay is
    // walked are newer than where it is, so the walk ends. A page is never more than the
    // tenant may queue a minute, so each page can be queued.
    let query = DeliveryQuery {
        state: Some(state),
        since: Some(since),
        until,
        limit: MAX_REPLAY.min(deps.max_redeliveries_per_minute).max(1),
        cursor,
        oldest_first: false,
        number: None,
    };
    let page = deps
        .ports
        .ledger
        .list(tenant, id, &query, deps.ports.clock.now())
        .await?;
    let mut tasks = Vec::with_capacity(page.items.len());
    let mut skipped = 0usize;
    for record in &page.items {
        // A delivery at the most attempts a record keeps is not sent again.
        if record.attempt_count() >= MAX_ATTEMPTS_KEPT {
            skipped += 1;
            continue;
        }
        match forced_task(deps, tenant, record).await? {
            Some(task) => tasks.push(task),
            // Its event is no longer kept.
            None => skipped += 1,
        }
    }
    // Refused (429) before anything is queued: the same call may be made again.
    spend_redeliveries(deps, tenant, tasks.len()).await?;
    enqueue(deps, &tasks).await?;
    let next = page.next.map(|next| format!("{next}{TAG_MARK}{walk}"));
    tracing::info!(
        tenant = %tenant,
        subscription = %id,
        queued = tasks.len(),
        skipped,
        more = next.is_some(),
        "replay queued"
    );
    Ok(api::json_response(
        StatusCode::ACCEPTED,
        &json!({
            "queued": tasks.len(),
            "skipped": skipped,
            "more": next.is_some(),
            "cursor": next,
            "state": state,
        }),
    ))
}

/// Between the attempt log's cursor and the walk's tag in a replay's cursor (neither holds
/// it: the log's cursors are URL-safe base64 or ids).
const TAG_MARK: char = '.';

/// The attempt log's cursor inside a replay's `cursor`, if it continues this walk.
fn resume(cursor: &str, walk: &str) -> Result<String, ApiError> {
    match cursor.rsplit_once(TAG_MARK) {
        Some((log, tag)) if !log.is_empty() && tag == walk => Ok(log.to_owned()),
        Some((log, tag)) if !log.is_empty() && is_tag(tag) => Err(ApiError::bad_request(
            "cursor: it continues a replay of another since, until or state; send them as \
             in the call that answered it, or leave the cursor out to begin",
        )),
        _ => Err(ApiError::bad_request(
            "cursor: not a cursor this API returned",
        )),
    }
}

fn is_tag(tag: &str) -> bool {
    tag.len() == 16 && tag.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A short, stable name of what a replay walks: its range and state (FNV-1a, 64 bits). It
/// keeps a cursor to its own walk; it guards nothing secret (the log's cursor is rebuilt
/// inside the caller's tenant).
fn walk_tag(since: DateTime<Utc>, until: Option<DateTime<Utc>>, state: DeliveryState) -> String {
    let time = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Nanos, true);
    let text = format!(
        "{}|{}|{}",
        time(since),
        until.map(time).unwrap_or_default(),
        state.as_str()
    );
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(raw: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(raw).unwrap().to_utc()
    }

    #[test]
    fn a_cursor_continues_its_own_walk_alone() {
        let since = at("2026-12-01T00:00:00Z");
        let walk = walk_tag(since, None, DeliveryState::Failed);
        assert_eq!(
            walk,
            walk_tag(at("2026-12-01T01:00:00+01:00"), None, DeliveryState::Failed)
        );
        let cursor = format!("bXNnXzAx{TAG_MARK}{walk}");
        assert_eq!(resume(&cursor, &walk).unwrap(), "bXNnXzAx");
        for other in [
            walk_tag(
                since,
                Some(at("2026-12-02T00:00:00Z")),
                DeliveryState::Failed,
            ),
            walk_tag(since, None, DeliveryState::Delivered),
            walk_tag(at("2026-12-01T00:00:00.001Z"), None, DeliveryState::Failed),
        ] {
            assert_ne!(other, walk);
            let refused = resume(&cursor, &other).unwrap_err();
            assert_eq!(refused.status, StatusCode::BAD_REQUEST);
            assert!(
                refused.message.contains("another since"),
                "{}",
                refused.message
            );
        }
        for bad in ["", "bogus", ".", &format!("{TAG_MARK}{walk}"), "bXNn.xyz"] {
            let refused = resume(bad, &walk).unwrap_err();
            assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{bad}");
            assert!(refused.message.contains("not a cursor"), "{bad}");
        }
    }
}
