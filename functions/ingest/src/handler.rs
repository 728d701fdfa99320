//! `POST /v1/events`: one event, or `{"events": [...]}` of up to 100.
//!
//! Every event is first recorded under (tenant, id). Only when all of a request's events
//! are recorded does fan-out start, so a conflicting id refuses the whole request with
//! nothing queued. An event is answered 202 only once all its tasks are on the queue;
//! when queuing fails the record stays incomplete and a retry of the publish finishes it
//! (delivery ids are derived, so nothing is delivered twice).

use futures::{StreamExt, TryStreamExt};
use herald_shared::api::{self, ApiError};
use herald_shared::delivery::DeliveryTask;
use herald_shared::event::{Event, EventError, parse_publish_body};
use herald_shared::ids::TenantId;
use herald_shared::ports::{Acceptance, Clock, DeliveryQueue, EventLog, SubscriptionStore};
use herald_shared::subscription::Subscription;
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
    pub tenant_claim: String,
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

/// Records one event, answering with what was known of it.
async fn accept<'a, E: EventLog>(
    log: &E,
    tenant: &TenantId,
    event: &'a Event,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(&'a Event, String, Acceptance), herald_shared::ports::StoreError> {
    let fingerprint = event.fingerprint();
    let acceptance = log.accept(tenant, event, &fingerprint, now).await?;
    Ok((event, fingerprint, acceptance))
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
    if request.uri().path().trim_end_matches('/') != "/v1/events" {
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

    // Record every event; remember which still need their fan-out.
    let mut results = Vec::with_capacity(events.len());
    let mut to_fan_out: Vec<&Event> = Vec::new();
    let mut conflicts = Vec::new();
    // The records are independent writes: a batch of 100 costs a few round trips of
    // DynamoDB's latency instead of 100 (and less billed time).
    // (The futures are collected first: a closure inside the stream would not be Send.)
    let accepts: Vec<_> = events
        .iter()
        .map(|event| accept(&deps.events, &tenant, event, now))
        .collect();
    let acceptances: Vec<(&Event, String, Acceptance)> = futures::stream::iter(accepts)
        .buffered(WRITE_CONCURRENCY)
        .try_collect()
        .await?;
    for (event, fingerprint, acceptance) in acceptances {
        match acceptance {
            Acceptance::New => {
                to_fan_out.push(event);
                results.push(None);
            }
            Acceptance::Seen {
                fingerprint: seen, ..
            } if seen != fingerprint => {
                conflicts.push(event.id.to_string());
                results.push(None);
            }
            Acceptance::Seen {
                deliveries: None, ..
            } => {
                to_fan_out.push(event);
                results.push(None);
            }
            Acceptance::Seen {
                deliveries: Some(n),
                ..
            } => {
                results.push(Some(Published {
                    id: event.id.to_string(),
                    deliveries: n,
                    duplicate: true,
                }));
            }
        }
    }
    if !conflicts.is_empty() {
        return Err(ApiError::conflict(format!(
            "event id already published with different content: {}",
            conflicts.join(", ")
        )));
    }

    let fanned_out = fan_out(deps, &tenant, &to_fan_out).await?;
    let completions: Vec<_> = to_fan_out
        .iter()
        .zip(&fanned_out)
        .map(|(event, deliveries)| deps.events.complete(&tenant, &event.id, *deliveries))
        .collect();
    futures::stream::iter(completions)
        .buffer_unordered(WRITE_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    let mut fresh = to_fan_out.iter().zip(fanned_out);
    let answers: Vec<Published> = results
        .into_iter()
        .map(|known| {
            known.unwrap_or_else(|| {
                let (event, deliveries) = fresh
                    .next()
                    .expect("one fan-out per event without an answer");
                Published {
                    id: event.id.to_string(),
                    deliveries,
                    duplicate: false,
                }
            })
        })
        .collect();
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

/// Queues one task per matching subscription and event; returns each event's count.
async fn fan_out<S, E, Q, C>(
    deps: &IngestDeps<S, E, Q, C>,
    tenant: &TenantId,
    events: &[&Event],
) -> Result<Vec<u32>, ApiError>
where
    S: SubscriptionStore,
    E: EventLog,
    Q: DeliveryQueue,
    C: Clock,
{
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let subscriptions: Vec<Subscription> = deps.subscriptions.active(tenant).await?;
    let mut tasks = Vec::new();
    let mut counts = Vec::with_capacity(events.len());
    for event in events {
        let before = tasks.len();
        tasks.extend(
            subscriptions
                .iter()
                .filter(|s| s.wants(event))
                .map(|s| DeliveryTask::new(tenant, &s.id, event)),
        );
        counts.push((tasks.len() - before) as u32);
    }
    // Subscriptions that want only the newest event about a subject learn of it before
    // anything is queued, so no older delivery can slip out after a newer one.
    for event in events.iter().filter(|e| e.subject.is_some()) {
        for subscription in subscriptions.iter().filter(|s| s.supersede) {
            if subscription.wants(event) {
                deps.events
                    .note_latest(tenant, &subscription.id, event, deps.clock.now())
                    .await?;
            }
        }
    }
    deps.queue.enqueue(&tasks).await.map_err(|e| {
        tracing::error!(tenant = %tenant, error = %e, source = ?std::error::Error::source(&e), "queuing deliveries failed");
        ApiError::unavailable()
    })?;
    Ok(counts)
}
