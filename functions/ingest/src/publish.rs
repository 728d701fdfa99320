//! `POST /v1/events`: one event, or `{"events": [...]}` of up to 100. An event is
//! answered 202 only once all its tasks are on the queue; the flow itself is
//! `herald_core::flow::publish`.

use herald_aws::lambda::api::{self, ApiError};
use herald_aws::lambda::gateway::SCOPE_PUBLISH;
use herald_aws::lambda::metrics::{Metrics, Unit};
use herald_core::event::{EventError, parse_publish_body};
use herald_core::flow::publish::{Audience, PublishError, publish};
use herald_core::ports::{Clock, Ports};
use herald_core::trace::{Span, TraceHeader};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use serde_json::Value;

use crate::IngestDeps;

/// Every route this function serves, as `openapi.yaml` names them.
pub const ROUTES: &[(&str, &str)] = &[("POST", "/v1/events")];

#[derive(Debug, Serialize, PartialEq)]
struct Published {
    id: String,
    deliveries: u32,
    duplicate: bool,
}

/// Answers one API Gateway request. Never fails: every error is a JSON answer.
pub async fn handle<P: Ports>(deps: &IngestDeps<P>, request: Request) -> Response<Body> {
    api::answer(answer(deps, &request).await)
}

async fn answer<P: Ports>(
    deps: &IngestDeps<P>,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    if api::route_path(request).trim_end_matches('/') != "/v1/events" {
        return Err(ApiError::not_found("route"));
    }
    if request.method() != Method::POST {
        return Err(ApiError::method_not_allowed());
    }
    let caller = api::caller_of(request, &deps.tenant_claim)?;
    caller.require(&[SCOPE_PUBLISH])?;
    let tenant = caller.tenant;
    let now = deps.ports.clock.now();
    api::within_tenant_rate(
        &deps.ports.ledger,
        &tenant,
        deps.max_requests_per_second,
        now,
    )
    .await?;
    let body: Value = api::json_body(request)?;
    let batched = body.get("events").is_some();
    let events = parse_publish_body(body, now, &mut rand::rng()).map_err(|e| match e {
        EventError::TooLarge { .. } => ApiError::too_large(e.to_string()),
        EventError::Invalid { .. } => ApiError::unprocessable(e.to_string()),
    })?;
    let audience = Audience::Matching {
        max_deliveries: deps.max_deliveries_per_publish,
    };
    // A sampled invocation's publish is a span under it, and every task carries a header
    // naming that span, so deliver continues the trace (herald_core::trace).
    let invocation = deps
        .xray
        .is_on()
        .then(|| invocation_trace(request))
        .flatten()
        .filter(|h| deps.xray.records(Some(h)));
    let mut span = invocation
        .as_ref()
        .map(|_| Span::begin("publish", now, &mut rand::rng()));
    let carried = invocation
        .as_ref()
        .zip(span.as_ref())
        .map(|(header, span)| header.under(&span.id));
    let result = publish(
        &deps.ports,
        &tenant,
        &events,
        audience,
        now,
        carried.as_ref(),
    )
    .await;
    if let (Some(header), Some(span)) = (&invocation, &mut span) {
        span.end(deps.ports.clock.now())
            .annotate("tenant", tenant.as_str())
            .annotate("events", events.len());
        if let Ok(published) = &result {
            let deliveries: u32 = published.iter().map(|p| p.deliveries).sum();
            span.annotate("deliveries", deliveries);
        } else {
            span.set("fault", true.into());
        }
        deps.xray.send_subsegment(span, header);
    }
    let published = result.map_err(|e| match e {
            PublishError::Conflict(_) => ApiError::conflict(e.to_string()),
            PublishError::TooManyDeliveries { .. } => ApiError::unprocessable(e.to_string()),
            PublishError::Store(e) => ApiError::from(e),
            PublishError::Queue(e) => {
                tracing::error!(tenant = %tenant, error = %e, source = ?std::error::Error::source(&e), "queuing deliveries failed");
                ApiError::unavailable()
            }
        })?;
    let answers: Vec<Published> = published
        .into_iter()
        .map(|p| Published {
            id: p.id.to_string(),
            deliveries: p.deliveries,
            duplicate: p.duplicate,
        })
        .collect();
    tracing::info!(tenant = %tenant, events = answers.len(), deliveries = answers.iter().map(|a| a.deliveries).sum::<u32>(), "published");
    let counted: Vec<(u32, bool)> = answers
        .iter()
        .map(|a| (a.deliveries, a.duplicate))
        .collect();
    publish_metrics(&counted).emit();
    Ok(if batched {
        api::json_response(
            StatusCode::ACCEPTED,
            &serde_json::json!({ "events": answers }),
        )
    } else {
        api::json_response(StatusCode::ACCEPTED, &answers[0])
    })
}

/// The invocation's trace header, as Lambda hands it to the runtime
/// (`Lambda-Runtime-Trace-Id`, the context's `xray_trace_id`). One that cannot be read is
/// not traced.
fn invocation_trace(request: &Request) -> Option<TraceHeader> {
    request
        .lambda_context_ref()?
        .xray_trace_id
        .as_deref()?
        .parse()
        .ok()
}

/// A publish's metrics (docs/OPERATIONS.md), from each event's deliveries and whether it
/// was a repeat: events accepted, repeats, the deliveries they made, each new event's
/// fan-out.
pub fn publish_metrics(events: &[(u32, bool)]) -> Metrics {
    let mut metrics = Metrics::new("ingest");
    let fresh: Vec<u64> = events
        .iter()
        .filter(|(_, duplicate)| !duplicate)
        .map(|(deliveries, _)| u64::from(*deliveries))
        .collect();
    metrics
        .count("Events", fresh.len() as u64)
        .count("DuplicateEvents", (events.len() - fresh.len()) as u64)
        .count("Deliveries", fresh.iter().sum())
        .values("FanOut", Unit::Count, fresh.iter().copied());
    metrics
}
