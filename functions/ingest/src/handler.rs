//! `POST /v1/events`: one event, or `{"events": [...]}` of up to 100.
//!
//! The tenant's subscriptions are read once, each event is matched, and every event is
//! recorded under (tenant, id) with its delivery count: one conditional write per event.
//! Only when all of a request's events are recorded does fan-out start, so a conflicting
//! id refuses the whole request with nothing queued. An event is answered 202 only once
//! all its tasks are on the queue. An event seen before (a producer's retry, or the retry
//! of a publish answered 503) fans out again to the subscriptions that existed when it
//! was first accepted: delivery ids are derived from the event, the subscription and the
//! acceptance time, so the tasks are the same ones and the claim makes a second copy a
//! no-op. That costs an extra SQS message per repeated task instead of a second write per
//! event to mark the fan-out done (docs/DECISIONS.md, "Writes per delivery").

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use herald_aws::lambda::api::{self, ApiError};
use herald_core::delivery::DeliveryTask;
use herald_core::event::{Event, EventError, parse_publish_body};
use herald_core::ids::TenantId;
use herald_core::ports::{Acceptance, Clock, DeliveryQueue, EventLog, SubscriptionStore};
use herald_core::subscription::Subscription;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::Serialize;
use serde_json::Value;

/// Every route this function serves, as `openapi.yaml` names them.
pub const ROUTES: &[(&str, &str)] = &[("POST", "/v1/events")];

/// Event records written at once for one publish call.
const WRITE_CONCURRENCY: usize = 16;

pub struct IngestDeps<S, E, Q, C> {
    pub subscriptions: S,
    pub events: E,
    pub queue: Q,
    pub clock: C,
    pub tenant_claim: herald_aws::lambda::api::TenantClaim,
}

#[derive(Debug, Serialize, PartialEq)]
struct Published {
    id: String,
    deliveries: u32,
    duplicate: bool,
}

/// Answers one API Gateway request. Never fails: every error is a JSON answer.
pub async fn handle<S, E, Q, C>(deps: &IngestDeps<S, E, Q, C>, request: Request) -> Response<Body>
where
    S: SubscriptionStore,
    E: EventLog,
    Q: DeliveryQueue,
    C: Clock,
{
    match publish(deps, &request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// One event of a publish and the subscriptions that want it now.
struct Matched<'a> {
    event: &'a Event,
    subscriptions: Vec<&'a Subscription>,
}

/// Records one event with its delivery count, answering with what was known of it.
async fn accept<'a, E: EventLog>(
    log: &E,
    tenant: &TenantId,
    matched: Matched<'a>,
    now: DateTime<Utc>,
) -> Result<(Matched<'a>, String, Acceptance), herald_core::ports::StoreError> {
    let fingerprint = matched.event.fingerprint();
    let count = matched.subscriptions.len() as u32;
    let acceptance = log
        .accept(tenant, matched.event, &fingerprint, count, now)
        .await?;
    Ok((matched, fingerprint, acceptance))
}

async fn publish<S, E, Q, C>(
    deps: &IngestDeps<S, E, Q, C>,
    request: &Request,
) -> Result<Response<Body>, ApiError>
where
    S: SubscriptionStore,
    E: EventLog,
    Q: DeliveryQueue,
    C: Clock,
{
    if api::route_path(request).trim_end_matches('/') != "/v1/events" {
        return Err(ApiError::not_found("route"));
    }
    if request.method() != Method::POST {
        return Err(ApiError::method_not_allowed());
    }
    let tenant = api::tenant_of(request, &deps.tenant_claim)?;
    let body: Value = api::json_body(request)?;
    let now = deps.clock.now();
    let events = parse_publish_body(&body, now, &mut rand::rng()).map_err(|e| match e {
        EventError::TooLarge { .. } => ApiError::too_large(e.to_string()),
        EventError::Invalid { .. } => ApiError::unprocessable(e.to_string()),
    })?;

    // One read of the tenant's subscriptions serves every event of the request.
    let subscriptions: Vec<Subscription> = deps.subscriptions.active(&tenant).await?;
    // The records are independent writes: a batch of 100 costs a few round trips of
    // DynamoDB's latency instead of 100 (and less billed time).
    // (The futures are collected first: a closure inside the stream would not be Send.)
    let accepts: Vec<_> = events
        .iter()
        .map(|event| Matched {
            event,
            subscriptions: subscriptions.iter().filter(|s| s.wants(event)).collect(),
        })
        .map(|matched| accept(&deps.events, &tenant, matched, now))
        .collect();
    let acceptances: Vec<(Matched, String, Acceptance)> = futures::stream::iter(accepts)
        .buffered(WRITE_CONCURRENCY)
        .try_collect()
        .await?;

    let mut conflicts = Vec::new();
    let mut answers = Vec::with_capacity(acceptances.len());
    let mut tasks = Vec::new();
    let mut fanned_out: Vec<&Matched> = Vec::new();
    for (matched, fingerprint, acceptance) in &acceptances {
        let event = matched.event;
        // A subscription created after the event's first acceptance never had it coming.
        let (accepted_at, recorded, since) = match acceptance {
            Acceptance::New => (now, None, None),
            Acceptance::Seen {
                fingerprint: seen, ..
            } if seen != fingerprint => {
                conflicts.push(event.id.to_string());
                continue;
            }
            Acceptance::Seen {
                deliveries,
                accepted_at,
                ..
            } => (*accepted_at, *deliveries, Some(*accepted_at)),
        };
        let before = tasks.len();
        tasks.extend(
            matched
                .subscriptions
                .iter()
                .filter(|s| since.is_none_or(|at| s.created_at <= at))
                .map(|s| DeliveryTask::new(&tenant, &s.id, event, accepted_at)),
        );
        fanned_out.push(matched);
        answers.push(Published {
            id: event.id.to_string(),
            // The count the event was first accepted with (records older than counts have
            // none: then the tasks made now).
            deliveries: recorded.unwrap_or((tasks.len() - before) as u32),
            duplicate: since.is_some(),
        });
    }
    if !conflicts.is_empty() {
        return Err(ApiError::conflict(format!(
            "event id already published with different content: {}",
            conflicts.join(", ")
        )));
    }
    fan_out(deps, &tenant, &fanned_out, &tasks).await?;
    tracing::info!(tenant = %tenant, events = answers.len(), deliveries = answers.iter().map(|a| a.deliveries).sum::<u32>(), "published");

    let batch = body.get("events").is_some();
    Ok(if batch {
        api::json_response(
            StatusCode::ACCEPTED,
            &serde_json::json!({ "events": answers }),
        )
    } else {
        api::json_response(StatusCode::ACCEPTED, &answers[0])
    })
}

/// Queues the tasks of a publish, after telling subscriptions that want only the newest
/// event about a subject which one that is.
async fn fan_out<S, E, Q, C>(
    deps: &IngestDeps<S, E, Q, C>,
    tenant: &TenantId,
    events: &[&Matched<'_>],
    tasks: &[DeliveryTask],
) -> Result<(), ApiError>
where
    S: SubscriptionStore,
    E: EventLog,
    Q: DeliveryQueue,
    C: Clock,
{
    // Subscriptions that want only the newest event about a subject learn of it before
    // anything is queued, so no older delivery can slip out after a newer one.
    for matched in events.iter().filter(|m| m.event.subject.is_some()) {
        for subscription in matched.subscriptions.iter().filter(|s| s.supersede) {
            deps.events
                .note_latest(tenant, &subscription.id, matched.event, deps.clock.now())
                .await?;
        }
    }
    if tasks.is_empty() {
        return Ok(());
    }
    deps.queue.enqueue(tasks).await.map_err(|e| {
        tracing::error!(tenant = %tenant, error = %e, source = ?std::error::Error::source(&e), "queuing deliveries failed");
        ApiError::unavailable()
    })
}
