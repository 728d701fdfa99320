//! Subscriptions: create, read, list, change, delete, and rotate their secrets.

use herald_aws::graphql::SourceError;
use herald_aws::lambda::api::{self, ApiError};
use herald_core::delivery::retry::parse_duration;
use herald_core::ids::{SubscriptionId, TenantId};
use herald_core::ports::{Clock, Ports, StoreError, SubscriptionStore};
use herald_core::subscription::transitions::{DEFAULT_GRACE, MAX_GRACE};
use herald_core::subscription::url::{SubscriptionUrl, resolve_checked};
use herald_core::subscription::{
    NewSubscription, SignatureOptions, Subscription, SubscriptionStatus, check_signatures,
    moves_origin, one_payload, parse_description, parse_filter, parse_headers, parse_ordering,
    parse_patterns, parse_query, parse_rate_limit, parse_retry, parse_selection, parse_timeout,
    unmask_headers,
};
use herald_core::webhook::graphql::PayloadQuery;
use herald_core::webhook::render::BodyFormat;
use lambda_http::http::{StatusCode, header};
use lambda_http::{Body, Request, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::ManageDeps;
use crate::http::{limit_param, offer, owned_subscription, page_response};
use crate::routes::signing_keys;
use crate::views::SubscriptionView;

/// Most items one list call returns.
pub const MAX_PAGE: usize = 100;
const DEFAULT_PAGE: usize = 20;

async fn check_url<P: Ports>(deps: &ManageDeps<P>, raw: &str) -> Result<SubscriptionUrl, ApiError> {
    let url = SubscriptionUrl::parse(raw, &deps.url_policy)
        .map_err(|e| ApiError::unprocessable(format!("url: {e}")))?;
    resolve_checked(&deps.ports.resolver, &url, &deps.url_policy)
        .await
        .map_err(|e| ApiError::unprocessable(format!("url: {e}")))?;
    Ok(url)
}

/// A subscription's query checked against the source's schema: 422 with the reason
/// when the schema refuses it or there is no source, 503 when the source cannot be asked.
async fn check_query<P: Ports>(deps: &ManageDeps<P>, query: &PayloadQuery) -> Result<(), ApiError> {
    let schema = match deps.graphql.schema().await {
        Ok(schema) => schema,
        Err(SourceError::NotConfigured) => {
            return Err(ApiError::unprocessable(
                "query: this deployment has no GraphQL source to run queries against",
            ));
        }
        Err(e) => {
            tracing::warn!(error = %e, "the GraphQL source's schema could not be read");
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "graphql_source_unavailable",
                format!(
                    "query: the GraphQL source's schema could not be read to check the query ({e}); retry the request"
                ),
            ));
        }
    };
    query
        .validate(&schema)
        .map_err(|e| ApiError::unprocessable(format!("query: {e}")))
}

pub async fn create<P: Ports>(
    deps: &ManageDeps<P>,
    tenant: &TenantId,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let input: NewSubscription = api::json_body(request)?;
    let url = input.url.clone();
    let subscription = input
        .into_subscription(
            tenant.clone(),
            &deps.url_policy,
            &offer(deps),
            deps.ports.clock.now(),
            &mut rand::rng(),
        )
        .map_err(|e| ApiError::unprocessable(e.to_string()))?;
    check_url(deps, &url).await?;
    if let Some(query) = &subscription.query {
        check_query(deps, query).await?;
    }
    within_cap(deps, tenant).await?;
    if subscription.signatures.ed25519 || subscription.signatures.rsa {
        // Its first asymmetric signature is the tenant's keys' first use.
        signing_keys::ensure(deps, tenant).await?;
    }
    deps.ports.subscriptions.create(&subscription).await?;
    tracing::info!(tenant = %tenant, subscription = %subscription.id, "subscription created");
    Ok(api::json_response(
        StatusCode::CREATED,
        &SubscriptionView::with_secret(&subscription),
    ))
}

/// 422 when the tenant has its deployment's most subscriptions already. Counted by
/// listing (a page of 100 at a time, up to the cap): creates are rare, and two at once
/// may both pass, so the cap can be passed by the few made at the same moment.
async fn within_cap<P: Ports>(deps: &ManageDeps<P>, tenant: &TenantId) -> Result<(), ApiError> {
    let mut count = 0;
    each_page(deps, tenant, |items| {
        count += items.len();
        count < deps.max_subscriptions
    })
    .await?;
    if count >= deps.max_subscriptions {
        return Err(ApiError::unprocessable(format!(
            "the tenant has {} subscriptions, the most this deployment allows one tenant; \
             delete one first",
            deps.max_subscriptions
        )));
    }
    Ok(())
}

/// Reads the tenant's subscriptions a page of [`MAX_PAGE`] at a time, handing each page to
/// `each`, until none are left or `each` answers false.
pub(crate) async fn each_page<P: Ports>(
    deps: &ManageDeps<P>,
    tenant: &TenantId,
    mut each: impl FnMut(&[Subscription]) -> bool,
) -> Result<(), StoreError> {
    let mut cursor = None::<String>;
    loop {
        let page = deps
            .ports
            .subscriptions
            .list(tenant, MAX_PAGE, cursor.as_deref())
            .await?;
        if !each(&page.items) {
            return Ok(());
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(()),
        }
    }
}

pub async fn list<P: Ports>(
    deps: &ManageDeps<P>,
    tenant: &TenantId,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let limit = limit_param(request, DEFAULT_PAGE, MAX_PAGE)?;
    let cursor = api::query_param(request, "cursor");
    let page = deps
        .ports
        .subscriptions
        .list(tenant, limit, cursor.as_deref())
        .await?;
    Ok(page_response(&page, SubscriptionView::of))
}

pub async fn get<P: Ports>(
    deps: &ManageDeps<P>,
    tenant: &TenantId,
    id: &SubscriptionId,
) -> Result<Response<Body>, ApiError> {
    let subscription = owned_subscription(&deps.ports.subscriptions, tenant, id).await?;
    Ok(api::json_response(
        StatusCode::OK,
        &SubscriptionView::of(&subscription),
    ))
}

pub async fn delete<P: Ports>(
    deps: &ManageDeps<P>,
    tenant: &TenantId,
    id: &SubscriptionId,
) -> Result<Response<Body>, ApiError> {
    if !deps.ports.subscriptions.delete(tenant, id).await? {
        return Err(ApiError::not_found("subscription"));
    }
    tracing::info!(tenant = %tenant, subscription = %id, "subscription deleted");
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}

/// Stores a changed subscription as the next version of the one read; a change made
/// meanwhile by someone else is a 409, never overwritten.
async fn save<P: Ports>(
    deps: &ManageDeps<P>,
    subscription: &mut herald_core::subscription::Subscription,
    read_version: u64,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), ApiError> {
    subscription.version = read_version;
    subscription.changed(now);
    match deps
        .ports
        .subscriptions
        .update(subscription, read_version)
        .await
    {
        Ok(()) => Ok(()),
        Err(StoreError::Conflict) => Err(ApiError::conflict(
            "the subscription changed meanwhile; read it again",
        )),
        Err(e) => Err(e.into()),
    }
}

/// Absent means "leave as is"; `null` means "clear".
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscriptionPatch {
    url: Option<String>,
    description: Option<String>,
    event_types: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    filter: Option<Value>,
    format: Option<BodyFormat>,
    /// A selection set; `null` or `""` removes it.
    #[serde(default, deserialize_with = "present")]
    selection: Option<Value>,
    /// Replaces every custom header; `{}` removes them.
    headers: Option<std::collections::BTreeMap<String, String>>,
    signatures: Option<SignatureOptions>,
    supersede: Option<bool>,
    /// A retry policy of its own; `null` returns to the deployment's.
    #[serde(default, deserialize_with = "present")]
    retry: Option<Value>,
    /// A limit on an attempt of its own; `null` returns to the deployment's.
    #[serde(default, deserialize_with = "present")]
    timeout: Option<Value>,
    /// Deliveries a second at most; `null` removes the limit.
    #[serde(default, deserialize_with = "present")]
    rate_limit: Option<Value>,
    /// `"subscription"` or `"subject"`; `null` for none. Deliveries already queued keep
    /// the line they were queued in.
    #[serde(default, deserialize_with = "present")]
    ordering: Option<Value>,
    /// A GraphQL query for the body's `data`; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    query: Option<Value>,
    status: Option<SubscriptionStatus>,
    /// The version the change is based on; `If-Match` may say it instead.
    version: Option<u64>,
}

/// The version named by `If-Match` (`3` or `"3"`), if any.
fn if_match(request: &Request) -> Result<Option<u64>, ApiError> {
    let Some(value) = request.headers().get(header::IF_MATCH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .map(|v| v.trim().trim_start_matches("W/").trim_matches('"'))
        .and_then(|v| v.parse().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::bad_request("If-Match: must be the subscription's version, like \"3\"")
        })
}

pub async fn patch<P: Ports>(
    deps: &ManageDeps<P>,
    tenant: &TenantId,
    id: &SubscriptionId,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let input: SubscriptionPatch = api::json_body(request)?;
    let expected = if_match(request)?.or(input.version);
    let mut subscription = owned_subscription(&deps.ports.subscriptions, tenant, id).await?;
    let read_version = subscription.version;
    if expected.is_some_and(|v| v != read_version) {
        return Err(ApiError::conflict(format!(
            "the subscription is at version {read_version}"
        )));
    }
    let mut moved = false;
    if let Some(url) = &input.url {
        let url = check_url(deps, url).await?;
        moved = moves_origin(&subscription.url, &url);
        subscription.url = url;
    }
    if let Some(description) = input.description {
        subscription.description = parse_description(Some(description))
            .map_err(|e| ApiError::unprocessable(e.to_string()))?;
    }
    if let Some(patterns) = &input.event_types {
        subscription.event_types =
            parse_patterns(patterns).map_err(|e| ApiError::unprocessable(e.to_string()))?;
    }
    if let Some(filter) = input.filter {
        subscription.filter =
            parse_filter(Some(filter)).map_err(|e| ApiError::unprocessable(e.to_string()))?;
    }
    if let Some(format) = input.format {
        subscription.format = format;
    }
    match input.selection {
        None => {}
        Some(Value::Null) => subscription.selection = None,
        Some(Value::String(text)) => {
            subscription.selection =
                parse_selection(Some(text)).map_err(|e| ApiError::unprocessable(e.to_string()))?
        }
        Some(_) => {
            return Err(ApiError::unprocessable(
                "selection: must be a selection set like `{ id status }`, or null",
            ));
        }
    }
    if let Some(raw) = input.query {
        subscription.query =
            parse_query(Some(&raw)).map_err(|e| ApiError::unprocessable(e.to_string()))?;
        if let Some(query) = &subscription.query {
            check_query(deps, query).await?;
        }
    }
    one_payload(&subscription).map_err(|e| ApiError::unprocessable(e.to_string()))?;
    let offered = offer(deps);
    match input.headers {
        Some(headers) => {
            // Checked as sent (the placeholder is a plain value), then each placeholder
            // takes the stored value back, sealed as it is stored (not to another origin).
            let headers = parse_headers(headers, &offered)
                .map_err(|e| ApiError::unprocessable(e.to_string()))?;
            subscription.headers = unmask_headers(headers, &subscription.headers, moved)
                .map_err(|e| ApiError::unprocessable(e.to_string()))?;
        }
        // Stored values go only where they were given: a URL moved to another origin
        // takes them along only when they are sent again.
        None if moved && !subscription.headers.is_empty() => {
            return Err(ApiError::unprocessable(
                "headers: the URL moves to another origin; send the custom headers' values again (or {} for none), since a stored value is only ever sent where it was given",
            ));
        }
        None => {}
    }
    if let Some(supersede) = input.supersede {
        subscription.supersede = supersede;
    }
    match input.retry {
        None => {}
        Some(Value::Null) => subscription.retry = None,
        Some(raw) => {
            let spec = serde_json::from_value(raw)
                .map_err(|e| ApiError::unprocessable(format!("retry: {e}")))?;
            subscription.retry = parse_retry(Some(spec), &offered)
                .map_err(|e| ApiError::unprocessable(e.to_string()))?;
        }
    }
    match input.timeout {
        None => {}
        Some(Value::Null) => subscription.timeout = None,
        Some(Value::String(raw)) => {
            subscription.timeout = parse_timeout(Some(&raw), &offered)
                .map_err(|e| ApiError::unprocessable(e.to_string()))?;
        }
        Some(_) => {
            return Err(ApiError::unprocessable(
                "timeout: a duration such as \"10s\", or null",
            ));
        }
    }
    if let Some(raw) = input.rate_limit {
        subscription.rate_limit =
            parse_rate_limit(Some(&raw)).map_err(|e| ApiError::unprocessable(e.to_string()))?;
    }
    if let Some(raw) = input.ordering {
        subscription.ordering =
            parse_ordering(Some(&raw)).map_err(|e| ApiError::unprocessable(e.to_string()))?;
    }
    if let Some(signatures) = input.signatures {
        subscription.signatures = check_signatures(signatures, &offered)
            .map_err(|e| ApiError::unprocessable(e.to_string()))?;
        // As on create: the tenant's first asymmetric signature is its keys' first use.
        // Without them deliver would sign with the deployment's keys, which sign only
        // for tenants from before tenants had keys of their own.
        if subscription.signatures.ed25519 || subscription.signatures.rsa {
            signing_keys::ensure(deps, tenant).await?;
        }
    }
    let now = deps.ports.clock.now();
    match input.status {
        Some(SubscriptionStatus::Active) => {
            subscription.enable();
        }
        Some(SubscriptionStatus::Disabled) => {
            subscription.disable("disabled through the API", now);
        }
        None => {}
    }
    save(deps, &mut subscription, read_version, now).await?;
    tracing::info!(tenant = %tenant, subscription = %id, version = subscription.version, "subscription changed");
    Ok(api::json_response(
        StatusCode::OK,
        &SubscriptionView::of(&subscription),
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rotation {
    /// How long the current secret keeps signing beside the new one (`24h`, `3600s`…).
    grace_period: Option<String>,
}

pub async fn rotate<P: Ports>(
    deps: &ManageDeps<P>,
    tenant: &TenantId,
    id: &SubscriptionId,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let input: Rotation = if request.body().is_empty() {
        Rotation::default()
    } else {
        api::json_body(request)?
    };
    let grace = match input.grace_period {
        None => DEFAULT_GRACE,
        Some(raw) => parse_duration(&raw)
            .map_err(|e| ApiError::unprocessable(format!("grace_period: {e}")))?,
    };
    if grace > MAX_GRACE {
        return Err(ApiError::unprocessable("grace_period: at most 7d"));
    }
    let mut subscription = owned_subscription(&deps.ports.subscriptions, tenant, id).await?;
    let read_version = subscription.version;
    let now = deps.ports.clock.now();
    let rotated = subscription.rotate_secret(grace, now, &mut rand::rng());
    save(deps, &mut subscription, read_version, now).await?;
    tracing::info!(tenant = %tenant, subscription = %id, "secret rotated");
    Ok(api::json_response(
        StatusCode::OK,
        &json!({"secret": rotated.secret.expose(), "previous_secret_expires_at": rotated.previous_until, "version": subscription.version, "rotated_at": now}),
    ))
}
