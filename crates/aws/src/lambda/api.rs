//! What the two HTTP functions share: the caller's tenant from the authorizer context,
//! JSON bodies in and out, and errors as `{"error": {"code", "message"}}`.

use lambda_http::http::{StatusCode, header};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::lambda::gateway;
use herald_core::ids::TenantId;

/// Largest request body read, in bytes; a batch of 100 events at the `data` limit would
/// not fit, and API Gateway itself stops at 10 MB.
pub const MAX_BODY_BYTES: usize = 6 * 1024 * 1024;

use herald_core::ports::{DeliveryLedger, StoreError};

/// An error answer. `message` is for the caller; causes worth an operator's time are
/// logged where they happen, never put here.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header (a 429).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    /// 429: a tenant's budget is spent until `retry_after` seconds from now.
    pub fn too_many(message: impl Into<String>, retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", message)
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    }
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "no tenant in the authorization context",
        )
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed on this route",
        )
    }
    /// A dependency failed in a way a retry may fix: 503, so clients retry.
    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "a dependency is unavailable; retry the request",
        )
    }

    pub fn into_response(self) -> Response<Body> {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        let mut response = json_response(self.status, &body);
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        }
        response
    }
}

pub fn json_response(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(Body::Binary(bytes));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// Where a function finds the caller's tenant: a claim of the JWT that API Gateway's
/// authorizer checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantClaim {
    /// The claim's name (`HERALD_TENANT_CLAIM`, `tenant` by default).
    pub name: String,
    /// Under `sam local` (which sets `AWS_SAM_LOCAL=true` in its containers; Lambda never
    /// does), where no JWT authorizer runs: the claim is read from the `Authorization`
    /// header's token without checking it, as the local runner does.
    pub unverified_under_sam_local: bool,
}

impl From<&str> for TenantClaim {
    fn from(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            unverified_under_sam_local: false,
        }
    }
}

/// The answer to a request: the route's, or its error as JSON.
pub fn answer(result: Result<Response<Body>, ApiError>) -> Response<Body> {
    result.unwrap_or_else(ApiError::into_response)
}

/// Who is calling: the tenant the token names, and the scopes it carries.
#[derive(Clone, Debug, PartialEq)]
pub struct Caller {
    pub tenant: TenantId,
    pub scopes: Vec<String>,
}

impl Caller {
    /// 403 unless the token carries one of `scopes` (as API Gateway checks a route's
    /// scopes: any one of them will do).
    pub fn require(&self, scopes: &[&str]) -> Result<(), ApiError> {
        if scopes
            .iter()
            .any(|s| self.scopes.iter().any(|held| held == s))
        {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "the token needs the scope {}",
                scopes.join(" or ")
            )))
        }
    }
}

/// The caller, from the HTTP API authorizer context: the tenant claim and the token's
/// scopes (see [`TenantClaim`] for `sam local`, where they come from the token itself).
///
/// A token with `herald/operator` acts for the tenant its call names in the
/// [`TENANT_HEADER`] header, with every tenant scope; its tenant claim, if any, is not
/// used. Every such call is logged with the operator's subject and the tenant. Any other
/// token naming a tenant there other than its own is refused (403).
pub fn caller_of(request: &Request, claim: &TenantClaim) -> Result<Caller, ApiError> {
    let jwt = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => {
            ctx.authorizer.as_ref().and_then(|a| a.jwt.clone())
        }
        _ => None,
    };
    let checked = jwt.as_ref().map(|jwt| {
        let tenant = jwt.claims.get(&claim.name).cloned();
        let subject = ["sub", "client_id"]
            .iter()
            .find_map(|name| jwt.claims.get(*name).cloned());
        // `scopes` is the authorizer's reading of the token's `scope` (or `scp`) claim;
        // where it is null, the claim (a string in the context) says the same.
        let scopes = jwt
            .scopes
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(|| {
                let claims = jwt
                    .claims
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                    .collect();
                gateway::scopes_of(&claims)
            })
            .unwrap_or_default();
        Token {
            tenant,
            subject,
            scopes,
        }
    });
    let token = checked
        .or_else(|| {
            claim
                .unverified_under_sam_local
                .then(|| unverified_caller(request, &claim.name))
                .flatten()
        })
        .ok_or_else(ApiError::unauthorized)?;
    let named = request
        .headers()
        .get(TENANT_HEADER)
        .map(|v| v.to_str().unwrap_or("").trim().to_owned());
    if token.scopes.iter().any(|s| s == gateway::SCOPE_OPERATOR) {
        let named = named.filter(|n| !n.is_empty()).ok_or_else(|| {
            ApiError::bad_request(
                "an operator's call names the tenant it acts for in the Herald-Tenant header",
            )
        })?;
        let tenant = TenantId::parse(&named)
            .ok_or_else(|| ApiError::bad_request("Herald-Tenant: not a tenant id"))?;
        let operator = token.subject.or(token.tenant).unwrap_or_default();
        tracing::info!(operator = %operator, tenant = %tenant, "operator call");
        let mut scopes: Vec<String> = gateway::TENANT_SCOPES
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        scopes.push(gateway::SCOPE_OPERATOR.to_owned());
        return Ok(Caller { tenant, scopes });
    }
    let tenant = token
        .tenant
        .as_deref()
        .and_then(TenantId::parse)
        .ok_or_else(ApiError::unauthorized)?;
    if let Some(named) = named.filter(|n| n != tenant.as_str()) {
        tracing::warn!(tenant = %tenant, named = %named.chars().take(64).collect::<String>(), "a tenant's token named another tenant");
        return Err(ApiError::forbidden(format!(
            "Herald-Tenant names another tenant: acting for another tenant needs the {} scope",
            gateway::SCOPE_OPERATOR
        )));
    }
    Ok(Caller {
        tenant,
        scopes: token.scopes,
    })
}

/// The header an operator names the tenant it acts for in (`Herald-Tenant`).
pub const TENANT_HEADER: &str = "herald-tenant";

/// What a token says about its caller.
struct Token {
    tenant: Option<String>,
    subject: Option<String>,
    scopes: Vec<String>,
}

/// The tenant named by the tenant claim, whatever the token's scopes.
pub fn tenant_of(request: &Request, claim: &TenantClaim) -> Result<TenantId, ApiError> {
    caller_of(request, claim).map(|c| c.tenant)
}

/// The claim and scopes from the `Authorization` header's token: a JWT's, or the local
/// shorthand's (`Bearer acme`, `Bearer acme:read`), as the local runner reads them.
fn unverified_caller(request: &Request, claim: &str) -> Option<Token> {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let token = gateway::bearer_token(header)?;
    match gateway::unverified_claims(token) {
        Some(claims) => Some(Token {
            tenant: claims.get(claim).map(gateway::claim_string),
            subject: claims.get("sub").map(gateway::claim_string),
            scopes: gateway::scopes_of(&claims).unwrap_or_default(),
        }),
        None => {
            let (tenant, scopes) = gateway::shorthand(token);
            Some(Token {
                tenant: Some(tenant),
                subject: None,
                scopes,
            })
        }
    }
}

/// The path of the route API Gateway matched this request to (`/v1/subscriptions/sub_1`),
/// the same on every stage and custom domain ([`gateway::route_path`]).
pub fn route_path(request: &Request) -> String {
    let path = request.uri().path();
    let parameters = request.path_parameters();
    let (route_key, stage) = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => (ctx.route_key.as_deref(), ctx.stage.as_deref()),
        _ => (None, None),
    };
    gateway::route_path(route_key, |name| parameters.first(name), stage, path).into_owned()
}

fn body_bytes(request: &Request) -> &[u8] {
    match request.body() {
        Body::Empty => &[],
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => &[],
    }
}

/// Reads a JSON body: 415 unless `Content-Type` is JSON, 413 over the limit, 400 when it
/// does not parse, 422 when it parses but does not fit `T`.
pub fn json_body<T: DeserializeOwned>(request: &Request) -> Result<T, ApiError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = gateway::media_type(content_type);
    if media != "application/json" && !media.ends_with("+json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as application/json",
        ));
    }
    let bytes = body_bytes(request);
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ApiError::too_large(format!(
            "the body is larger than {MAX_BODY_BYTES} bytes"
        )));
    }
    // Straight into `T`: through a `serde_json::Value` first, a large body was built
    // twice (for a publish of five 1 MiB events, a tenth of ingest's CPU).
    serde_json::from_slice(bytes).map_err(|e| {
        // A body that is not JSON anywhere is 400, even where `T` would have been refused
        // first; one that is JSON but not a `T` is 422.
        let not_json = match e.classify() {
            serde_json::error::Category::Data => {
                match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                    Ok(_) => return ApiError::unprocessable(e.to_string()),
                    Err(syntax) => syntax,
                }
            }
            _ => e,
        };
        ApiError::bad_request(format!("the body is not valid JSON: {not_json}"))
    })
}

/// The query string's value for `name`, if present. Read from the URI, which both API
/// Gateway's payload and the local runner fill.
pub fn query_param(request: &Request, name: &str) -> Option<String> {
    let query = request.uri().query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::InvalidCursor => {
                ApiError::bad_request("cursor: not a cursor this API returned")
            }
            other => {
                tracing::error!(error = %other, source = ?std::error::Error::source(&other), "store failed");
                ApiError::unavailable()
            }
        }
    }
}

/// Spends one of `tenant`'s API requests in the current second: one counter a tenant a
/// second in the deliveries table, shared by every container (`DeliveryLedger::spend`),
/// so one tenant cannot take a route's whole throttle from the others. 429 with
/// `Retry-After: 1` past `per_second`; 0 sets no limit. A counter that cannot be written
/// lets the request through (logged): the throttle protects the others, it is not worth
/// refusing a request DynamoDB could still serve.
pub async fn within_tenant_rate(
    ledger: &impl DeliveryLedger,
    tenant: &TenantId,
    per_second: u32,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), ApiError> {
    if per_second == 0 {
        return Ok(());
    }
    match ledger
        .spend(
            tenant,
            "requests",
            now.timestamp(),
            1,
            u64::from(per_second),
        )
        .await
    {
        Ok(true) => Ok(()),
        Ok(false) => Err(ApiError::too_many(
            format!("a tenant may make at most {per_second} API requests a second"),
            1,
        )),
        Err(e) => {
            tracing::warn!(error = %e, "counting the tenant's requests failed; let through");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Shape {
        count: u32,
    }

    fn read(content_type: &str, body: &str) -> Result<Shape, StatusCode> {
        let mut request = Request::new(Body::Text(body.to_owned()));
        request.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_str(content_type).unwrap(),
        );
        json_body::<Shape>(&request).map_err(|e| e.status)
    }

    #[test]
    fn a_json_body_is_read_into_its_type_or_refused_with_the_status_that_says_why() {
        assert!(read("application/json", r#"{"count": 3}"#).is_ok());
        // JSON, but not the shape asked for: 422.
        assert_eq!(
            read("application/json", r#"{"count": "three"}"#).unwrap_err(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            read("application/json", r#"{"count": 3, "count": 4}"#).unwrap_err(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        // Not JSON at all: 400, also where the shape would have been refused first.
        assert_eq!(
            read("application/json", "count=3").unwrap_err(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            read("application/json", r#"{"count": "three", "#).unwrap_err(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            read("text/plain", r#"{"count": 3}"#).unwrap_err(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
    }
}
