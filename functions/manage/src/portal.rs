//! The consumer portal, served by manage itself: the page's three files (built into the
//! binary), the route a producer opens a session with, and the portal's API, which is the
//! management API for the session's tenant with the session's token in place of a JWT.
//!
//! - `POST /v1/portal/sessions` (scope `herald/manage`): a session for the caller's tenant,
//!   answered with the page's URL carrying its token in the fragment (never sent to a
//!   server, so never in an access log).
//! - `GET /portal/index.html` (and `portal.css`, `portal.js`): public, no data in them.
//! - `/portal/api/session`, `/portal/api/event-types`, `/portal/api/v1/…`: need
//!   `Authorization: Bearer hps_…` of an open session.

use herald_aws::lambda::api::{self, ApiError, Caller};
use herald_aws::lambda::gateway::{self, SCOPE_MANAGE, SCOPE_READ};
use herald_core::delivery::retry::parse_duration;
use herald_core::event::EventType;
use herald_core::ids::TenantId;
use herald_core::portal::{
    MAX_LIFETIME, MAX_SUGGESTED_TYPES, MIN_LIFETIME, PortalSession, TOKEN_PREFIX, token_hash,
};
use herald_core::ports::{Clock, Ports, SessionStore};
use lambda_http::http::{HeaderValue, Method, StatusCode, header};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Deserialize;
use serde_json::json;

use crate::ManageDeps;
use crate::router::{Route, dispatch};
use crate::routes::subscriptions;

const INDEX: &str = include_str!("../portal/index.html");
const STYLE: &str = include_str!("../portal/portal.css");
const SCRIPT: &str = include_str!("../portal/portal.js");

/// The page's path under the API, as a session's URL names it.
pub const PAGE: &str = "/portal/index.html";
/// The longest session token taken (a real one is 47 characters).
const MAX_TOKEN_LEN: usize = 128;

/// The part of `path` under `/portal`, if it is the portal's.
pub fn page_path(path: &str) -> Option<&str> {
    match path.strip_prefix("/portal") {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => Some(rest),
        _ => None,
    }
}

/// Answers a request under `/portal`: a file of the page or a call of its API.
pub async fn handle<P: Ports>(
    deps: &ManageDeps<P>,
    request: &Request,
    rest: &str,
) -> Response<Body> {
    if let Some(call) = rest.strip_prefix("/api") {
        let mut response = api::answer(portal_api(deps, request, call).await);
        // The answers hold secrets; no cache may keep them.
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return response;
    }
    let method = request.method();
    if method != Method::GET && method != Method::HEAD {
        return ApiError::method_not_allowed().into_response();
    }
    match rest {
        // Relative, so it holds on every stage and custom domain: `/dev/portal` →
        // `/dev/portal/index.html`, the fragment kept by the browser.
        "" => redirect("portal/index.html"),
        "/" => redirect("index.html"),
        "/index.html" => file(deps, "text/html; charset=utf-8", INDEX),
        "/portal.css" => file(deps, "text/css; charset=utf-8", STYLE),
        "/portal.js" => file(deps, "text/javascript; charset=utf-8", SCRIPT),
        _ => ApiError::not_found("page").into_response(),
    }
}

fn redirect(location: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = StatusCode::FOUND;
    response
        .headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(location));
    response
}

/// One of the page's files, with a policy that lets it load only itself and be framed only
/// by the producer's origins.
fn file<P: Ports>(
    deps: &ManageDeps<P>,
    content_type: &'static str,
    text: &'static str,
) -> Response<Body> {
    // Never served without its policy: the origins were checked at start, so a policy
    // that cannot be a header is a fault, answered as one.
    let Ok(policy) = HeaderValue::from_str(&content_security_policy(&deps.portal.frame_ancestors))
    else {
        tracing::error!("the portal's content security policy is not a valid header value");
        return ApiError::unavailable().into_response();
    };
    let mut response = Response::new(Body::Text(text.to_owned()));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The page loads its own script and style and calls its own API; images may be inline
/// (the producer's logo); only the producer's origins may frame it.
pub fn content_security_policy(frame_ancestors: &[String]) -> String {
    let mut ancestors = vec!["'self'".to_owned()];
    ancestors.extend(frame_ancestors.iter().cloned());
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors {}",
        ancestors.join(" ")
    )
}

/// The portal's API: the session's tenant may read and manage its subscriptions and
/// deliveries, and nothing else (no portal sessions of its own).
async fn portal_api<P: Ports>(
    deps: &ManageDeps<P>,
    request: &Request,
    path: &str,
) -> Result<Response<Body>, ApiError> {
    let method = request.method();
    let session = match path {
        "/session" | "/event-types" if method != Method::GET => {
            return Err(ApiError::method_not_allowed());
        }
        "/session" | "/event-types" => session_of(deps, request).await?,
        _ => {
            let route = Route::of(path, method)?;
            if !open_to_sessions(&route) {
                return Err(ApiError::not_found("route"));
            }
            let session = session_of(deps, request).await?;
            let caller = Caller {
                tenant: session.tenant,
                scopes: vec![SCOPE_READ.to_owned(), SCOPE_MANAGE.to_owned()],
            };
            return dispatch(deps, request, route, &caller).await;
        }
    };
    match path {
        "/session" => Ok(api::json_response(
            StatusCode::OK,
            &json!({
                "tenant": session.tenant.as_str(),
                "expires_at": session.expires_at,
                "brand": {
                    "name": deps.portal.name,
                    "color": deps.portal.color,
                    "logo": deps.portal.logo,
                },
            }),
        )),
        _ => event_types(deps, &session).await,
    }
}

/// Whether a portal session may take `route`: what the page does with one tenant's
/// endpoints and their attempt log, and reading the tenant's public keys. Whatever acts
/// on the whole tenant stays with the producer, so a leaked link reaches no further than
/// the page: opening sessions, erasing, sealing, and rotating the tenant's signing keys
/// (which every one of its receivers verifies with). Every route is named here, so a new
/// one is closed to sessions until it is added.
fn open_to_sessions(route: &Route<'_>) -> bool {
    match route {
        Route::CreateSubscription
        | Route::ListSubscriptions
        | Route::GetSubscription(_)
        | Route::PatchSubscription(_)
        | Route::DeleteSubscription(_)
        | Route::RotateSecret(_)
        | Route::SendTest(_)
        | Route::ListDeliveries(_)
        | Route::Feed(_)
        | Route::Replay(_)
        | Route::GetDelivery(_)
        | Route::RetryDelivery(_)
        | Route::GetEvent(_)
        | Route::SigningKeys => true,
        Route::TenantSigningKeys(_)
        | Route::RotateSigningKeys
        | Route::OpenPortal
        | Route::EraseHistory(_)
        | Route::EraseTenant
        | Route::SealTenant => false,
    }
}

/// The open session the request's token names, or 401.
async fn session_of<P: Ports>(
    deps: &ManageDeps<P>,
    request: &Request,
) -> Result<PortalSession, ApiError> {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(gateway::bearer_token)
        .filter(|t| t.starts_with(TOKEN_PREFIX) && t.len() <= MAX_TOKEN_LEN)
        .ok_or_else(session_ended)?;
    deps.ports
        .sessions
        .get(&token_hash(token), deps.ports.clock.now())
        .await?
        .ok_or_else(session_ended)
}

fn session_ended() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "no open portal session: open the portal again from the application",
    )
}

/// The most of a tenant's subscriptions whose event types are suggested, as the page lists
/// at most this many endpoints: the most any deployment lets a tenant have
/// (`HERALD_MAX_SUBSCRIPTIONS_PER_TENANT` is at most 10,000).
const MOST_SUBSCRIPTIONS_READ: usize = 10_000;

/// The event types to suggest: those the producer named for the session and those the
/// tenant's endpoints take (every page of them, up to [`MOST_SUBSCRIPTIONS_READ`]), sorted.
async fn event_types<P: Ports>(
    deps: &ManageDeps<P>,
    session: &PortalSession,
) -> Result<Response<Body>, ApiError> {
    let mut types: Vec<String> = session.event_types.clone();
    let mut read = 0;
    subscriptions::each_page(deps, &session.tenant, |items| {
        read += items.len();
        types.extend(
            items
                .iter()
                .flat_map(|s| s.event_types.iter().map(|p| p.as_str().to_owned())),
        );
        read < MOST_SUBSCRIPTIONS_READ
    })
    .await?;
    types.sort();
    types.dedup();
    Ok(api::json_response(StatusCode::OK, &json!({"data": types})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionRequest {
    /// How long the session lasts (`30m`, `2h`); the deployment's default when absent.
    lifetime: Option<String>,
    /// Event types to suggest on the page.
    #[serde(default)]
    event_types: Vec<String>,
}

/// `POST /v1/portal/sessions`: a session for the caller's tenant.
pub async fn open_session<P: Ports>(
    deps: &ManageDeps<P>,
    tenant: &TenantId,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let input: SessionRequest = if request.body().is_empty() {
        SessionRequest::default()
    } else {
        api::json_body(request)?
    };
    let lifetime = match input.lifetime {
        None => deps.portal.default_lifetime,
        Some(raw) => {
            parse_duration(&raw).map_err(|e| ApiError::unprocessable(format!("lifetime: {e}")))?
        }
    };
    if !(MIN_LIFETIME..=MAX_LIFETIME).contains(&lifetime) {
        return Err(ApiError::unprocessable(format!(
            "lifetime: from {}s to {}s",
            MIN_LIFETIME.as_secs(),
            MAX_LIFETIME.as_secs()
        )));
    }
    if input.event_types.len() > MAX_SUGGESTED_TYPES {
        return Err(ApiError::unprocessable(format!(
            "event_types: at most {MAX_SUGGESTED_TYPES}"
        )));
    }
    for (i, raw) in input.event_types.iter().enumerate() {
        EventType::parse(raw)
            .map_err(|e| ApiError::unprocessable(format!("event_types[{i}]: {e}")))?;
    }
    let now = deps.ports.clock.now();
    let (session, token) = PortalSession::open(
        tenant.clone(),
        input.event_types,
        lifetime,
        now,
        &mut rand::rng(),
    );
    deps.ports.sessions.create(&session).await?;
    tracing::info!(tenant = %tenant, expires_at = %session.expires_at, "portal session opened");
    let url = format!("{}#token={token}", page_url(deps, request));
    Ok(api::json_response(
        StatusCode::CREATED,
        &json!({
            "url": url,
            "token": token,
            "tenant": tenant.as_str(),
            "expires_at": session.expires_at,
        }),
    ))
}

/// Where the page is: `HERALD_PORTAL_URL` if set, else beside this API as the request
/// reached it (scheme, domain and the stage or base path before the route).
fn page_url<P: Ports>(deps: &ManageDeps<P>, request: &Request) -> String {
    if let Some(base) = &deps.portal.base_url {
        return base.clone();
    }
    let domain = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.domain_name.clone(),
        _ => None,
    }
    .or_else(|| header_text(request, header::HOST.as_str()))
    .unwrap_or_else(|| "localhost".to_owned());
    let scheme = header_text(request, "x-forwarded-proto")
        .filter(|p| p == "http" || p == "https")
        .unwrap_or_else(|| "https".to_owned());
    // The port the client used, unless it is the scheme's own.
    let port = header_text(request, "x-forwarded-port")
        .filter(|p| p.parse::<u16>().is_ok())
        .filter(|p| {
            !matches!(
                (scheme.as_str(), p.as_str()),
                ("https", "443") | ("http", "80")
            )
        })
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    let raw = request.raw_http_path();
    let route = api::route_path(request);
    let prefix = raw.strip_suffix(route.as_str()).unwrap_or("");
    format!("{scheme}://{domain}{port}{prefix}{PAGE}")
}

fn header_text(request: &Request, name: &str) -> Option<String> {
    request
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}
