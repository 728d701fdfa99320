//! Plays API Gateway's HTTP API as AWS documents it: matches a call to the template's
//! routes on the template's stage, checks for a bearer token where the JWT authorizer
//! would, and builds the payload-format-2.0 event a Lambda function receives.
//!
//! The shapes come from:
//! - the event: "Create AWS Lambda proxy integrations for HTTP APIs",
//!   <https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html>
//!   (`version`, `routeKey`, `rawPath`, `rawQueryString`, `cookies`, `headers` with
//!   lower-case names and repeated ones joined by commas, `queryStringParameters` joined
//!   the same way, `requestContext` with `http`, `stage`, `routeKey`, `time`, `timeEpoch`
//!   and `authorizer.jwt`, `pathParameters`, `body` and `isBase64Encoded`);
//! - the stage in the path: "Invoke an API" for HTTP APIs,
//!   <https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-call.html>
//!   (`https://{api-id}.execute-api.{region}.amazonaws.com/{stage}/…`, the stage left
//!   out for `$default`), and "API mappings for custom domain names",
//!   <https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-mappings.html>
//!   (a domain mapped to a stage serves it without the stage in the path);
//! - the limits: HTTP API's 10 MB payload and Lambda's 6 MB on the whole event
//!   ([`MAX_BODY_BYTES`], [`MAX_EVENT_BYTES`]); the function's `Timeout` and its failures
//!   (`server::invoke_within`), answered as "Troubleshooting issues with HTTP API Lambda
//!   integrations" has it;
//! - the authorizer: "Control access to HTTP APIs with JWT authorizers",
//!   <https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-jwt-authorizer.html>
//!   (the token from `Authorization`, with or without `Bearer `; `exp`, `nbf` and `iat`
//!   checked against the time; the claims passed to the integration).
//!
//! Three details AWS does not document are as observed of the service and noted where
//! they are made: claims as strings (arrays as `[a b]`), `scopes` `null` without a scope
//! claim, and the gateway's own answers (`{"message":"Not Found"}`,
//! `{"message":"Unauthorized"}`). Bodies are passed as text for textual media types and
//! base64-encoded otherwise, as the service does.
//!
//! Locally no signature is checked: `Bearer <tenant>` names the tenant directly, and a JWT
//! (any signature) is read for its claims, so tokens shaped like a real issuer's work.

use std::collections::BTreeMap;

use base64::Engine;
use herald_aws::lambda::gateway::{
    bearer_token, claim_string, scopes_of, shorthand, unverified_claims,
};
use lambda_http::Request;
use serde_json::{Value, json};

use crate::routes::{Matched, Routes};

/// HTTP API's quota on a request's payload ("Payload size: 10 MB",
/// <https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-quotas.html>).
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// A synchronous Lambda invocation carries at most 6 MB ("For synchronous invocations, the
/// maximum payload size is 6 MB", <https://docs.aws.amazon.com/lambda/latest/dg/API_Invoke.html>):
/// the whole event, so a body base64-encoded or escaped in it counts at its size there. A
/// deployed Herald never sees a larger one, so the local runner does not pass it on.
pub const MAX_EVENT_BYTES: usize = 6 * 1024 * 1024;

/// One HTTP call as the gateway received it.
pub struct Call<'a> {
    pub method: &'a str,
    /// The path as called, e.g. `/dev/v1/events` or `/v1/events`.
    pub path: &'a str,
    pub query: &'a str,
    /// Lower-case names; a repeated header is one entry, values joined with commas.
    pub headers: &'a BTreeMap<String, String>,
    pub body: &'a [u8],
    /// The caller's address.
    pub source_ip: &'a str,
}

/// What the JWT authorizer hands the function: the claims as strings, and the scopes.
#[derive(Clone, Debug, PartialEq)]
pub struct Authorized {
    pub claims: BTreeMap<String, String>,
    pub scopes: Option<Vec<String>>,
}

/// An answer API Gateway gives itself, without invoking a function.
#[derive(Debug, PartialEq)]
pub struct Refusal {
    pub status: u16,
    pub body: Value,
    pub www_authenticate: Option<String>,
}

impl Refusal {
    /// The token lacks every scope the route asks for (observed body).
    pub fn forbidden() -> Self {
        Self {
            status: 403,
            body: json!({"message": "Forbidden"}),
            www_authenticate: None,
        }
    }

    /// No route for the call (observed body).
    pub fn not_found() -> Self {
        Self {
            status: 404,
            body: json!({"message": "Not Found"}),
            www_authenticate: None,
        }
    }

    /// No token, or one the authorizer refuses (observed body and challenge).
    fn unauthorized(error: Option<&str>) -> Self {
        Self {
            status: 401,
            body: json!({"message": "Unauthorized"}),
            www_authenticate: Some(match error {
                None => "Bearer".to_owned(),
                Some(description) => format!(
                    "Bearer scope=\"\" error=\"invalid_token\" error_description=\"{description}\""
                ),
            }),
        }
    }
}

/// The API as one stage of it is deployed: its routes and the stage's name.
pub struct Gateway {
    pub routes: Routes,
    /// The template's stage (`Stage`'s default, `dev`), or `$default`.
    pub stage: String,
}

/// A call matched to a route, with the path as API Gateway reports it.
#[derive(Debug)]
pub struct Routed<'a> {
    pub matched: Matched<'a>,
    /// `rawPath`: on the `execute-api` form, with `/{stage}` in front.
    pub raw_path: String,
}

impl Gateway {
    /// The route for a call made either the way the stage's `execute-api` URL is called
    /// (`/{stage}/v1/events`, the stack's `ApiUrl`), or the way a custom domain mapped to
    /// the stage at its root is (`/v1/events`), which is also how `sam local start-api`
    /// serves the template. The first form is tried first.
    pub fn route(&self, method: &str, path: &str) -> Result<Routed<'_>, Refusal> {
        let stage_prefix = (self.stage != "$default").then(|| format!("/{}", self.stage));
        if let Some(prefix) = &stage_prefix {
            let inner = path
                .strip_prefix(prefix.as_str())
                .filter(|rest| rest.starts_with('/'));
            if let Some(matched) = inner.and_then(|inner| self.routes.find(method, inner)) {
                return Ok(Routed {
                    matched,
                    raw_path: path.to_owned(),
                });
            }
        }
        match self.routes.find(method, path) {
            Some(matched) => Ok(Routed {
                matched,
                raw_path: path.to_owned(),
            }),
            None => Err(Refusal::not_found()),
        }
    }

    /// The authorizer's verdict on the `Authorization` header, at `now` (Unix seconds).
    pub fn authorize(
        &self,
        header: Option<&str>,
        tenant_claim: &str,
        now: i64,
    ) -> Result<Authorized, Refusal> {
        let token = header
            .and_then(bearer_token)
            .ok_or_else(|| Refusal::unauthorized(None))?;
        let Some(claims) = unverified_claims(token) else {
            // `Bearer acme` (every scope) or `Bearer acme:read`: the local shorthand.
            let (tenant, scopes) = shorthand(token);
            return Ok(Authorized {
                claims: BTreeMap::from([(tenant_claim.to_owned(), tenant)]),
                scopes: Some(scopes),
            });
        };
        let time = |name: &str| claims.get(name).and_then(Value::as_i64);
        if time("exp").is_some_and(|exp| exp <= now) {
            return Err(Refusal::unauthorized(Some("the token has expired")));
        }
        if time("nbf").is_some_and(|nbf| nbf > now) {
            return Err(Refusal::unauthorized(Some("the token is not valid yet")));
        }
        if time("iat").is_some_and(|iat| iat > now) {
            return Err(Refusal::unauthorized(Some(
                "the token is issued in the future",
            )));
        }
        Ok(Authorized {
            scopes: scopes_of(&claims),
            claims: claims
                .iter()
                .map(|(name, value)| (name.clone(), claim_string(value)))
                .collect(),
        })
    }

    /// The authorizer's verdict on a routed call: none asked for on a public route;
    /// otherwise a token, carrying one of the route's scopes when it names any.
    pub fn authorize_route(
        &self,
        routed: &Routed<'_>,
        header: Option<&str>,
        tenant_claim: &str,
        now: i64,
    ) -> Result<Option<Authorized>, Refusal> {
        let route = routed.matched.route;
        if route.public {
            return Ok(None);
        }
        let caller = self.authorize(header, tenant_claim, now)?;
        let held = caller.scopes.as_deref().unwrap_or_default();
        if !route.scopes.is_empty() && !route.scopes.iter().any(|s| held.contains(s)) {
            return Err(Refusal::forbidden());
        }
        Ok(Some(caller))
    }

    /// The payload-v2 event for this call, as API Gateway would build it.
    pub fn event_for(
        &self,
        call: &Call<'_>,
        routed: &Routed<'_>,
        caller: Option<&Authorized>,
    ) -> Value {
        let textual = call
            .headers
            .get("content-type")
            .is_none_or(|media| is_textual(media));
        let (body, encoded) = match std::str::from_utf8(call.body) {
            Ok(text) if textual => (text.to_owned(), false),
            _ => (
                base64::engine::general_purpose::STANDARD.encode(call.body),
                true,
            ),
        };
        // API Gateway moves cookies out of the headers into their own list.
        let mut headers = call.headers.clone();
        let cookies: Option<Vec<String>> = headers.remove("cookie").map(|c| {
            c.split(';')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        });
        let route_key = routed.matched.route.key();
        let host = call.headers.get("host").map_or("127.0.0.1", String::as_str);
        let (domain, port) = host.split_once(':').unwrap_or((host, "80"));
        // How the client reached the gateway, as the service tells the function (observed
        // of it; AWS's pages do not list these headers) and `sam local start-api` does
        // (`X-Forwarded-Proto` and `-Port`, samcli/local/apigw/event_constructor.py); this
        // gateway is plain HTTP.
        headers.insert("x-forwarded-for".into(), call.source_ip.to_string());
        headers.insert("x-forwarded-port".into(), port.to_owned());
        headers.insert("x-forwarded-proto".into(), "http".into());
        let now = chrono::Utc::now();
        let mut event = json!({
            "version": "2.0",
            "routeKey": route_key,
            "rawPath": routed.raw_path,
            "rawQueryString": call.query,
            "headers": headers,
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "local",
                "domainName": domain,
                "domainPrefix": domain.split('.').next().unwrap_or(domain),
                "http": {
                    "method": call.method,
                    "path": routed.raw_path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": call.source_ip,
                    "userAgent": call.headers.get("user-agent").map_or("", String::as_str),
                },
                "requestId": request_id(),
                "routeKey": route_key,
                "stage": self.stage,
                "time": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
                "timeEpoch": now.timestamp_millis(),
            },
            "isBase64Encoded": encoded,
        });
        if let Some(caller) = caller {
            event["requestContext"]["authorizer"] =
                json!({"jwt": {"claims": caller.claims, "scopes": caller.scopes}});
        }
        if !call.body.is_empty() {
            event["body"] = Value::String(body);
        }
        if let Some(cookies) = cookies.filter(|c| !c.is_empty()) {
            event["cookies"] = json!(cookies);
        }
        if !routed.matched.path_parameters.is_empty() {
            event["pathParameters"] = json!(routed.matched.path_parameters);
        }
        if !call.query.is_empty() {
            event["queryStringParameters"] = json!(query_parameters(call.query));
        }
        event
    }
}

/// API Gateway's request ids are 16 characters of base64 (e.g. `JKJaXmPLvHcESHA=`).
fn request_id() -> String {
    let bytes: [u8; 11] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Media types passed to the function as text; others arrive base64-encoded.
fn is_textual(content_type: &str) -> bool {
    let media = herald_aws::lambda::gateway::media_type(content_type);
    media.starts_with("text/")
        || media.ends_with("+json")
        || media.ends_with("+xml")
        || matches!(
            media.as_str(),
            "application/json"
                | "application/xml"
                | "application/javascript"
                | "application/x-www-form-urlencoded"
                | "application/graphql"
        )
}

/// The request lambda_http hands a function for this event.
pub fn request_for(event: &Value) -> Result<Request, serde_json::Error> {
    request_from(&event.to_string())
}

/// The same, from the event as Lambda would carry it.
pub fn request_from(event: &str) -> Result<Request, serde_json::Error> {
    lambda_http::request::from_str(event)
}

/// Repeated names are joined with commas, as API Gateway does in payload v2, and names and
/// values are URL-decoded ("API Gateway decodes URL-encoded request parameters before
/// passing them to your backend integration",
/// <https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-routes.html>),
/// a `+` as a space, as `sam local start-api` decodes them (Flask's `request.args`).
/// `rawQueryString` keeps the query as sent.
fn query_parameters(query: &str) -> BTreeMap<String, String> {
    let decoded = |text: &str| {
        percent_encoding::percent_decode_str(&text.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    let mut parameters: BTreeMap<String, String> = BTreeMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = decoded(value);
        parameters
            .entry(decoded(name))
            .and_modify(|v| {
                v.push(',');
                v.push_str(&value);
            })
            .or_insert(value);
    }
    parameters
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::RequestExt;
    use lambda_http::request::RequestContext;

    const TEMPLATE: &str = "Resources:
  M:
    Type: AWS::Serverless::Function
    Metadata: { BuildProperties: { Binary: manage } }
    Properties:
      Events:
        E: { Type: HttpApi, Properties: { Method: ANY, Path: '/v1/subscriptions/{proxy+}' } }
  I:
    Type: AWS::Serverless::Function
    Metadata: { BuildProperties: { Binary: ingest } }
    Properties:
      Events:
        E: { Type: HttpApi, Properties: { Method: POST, Path: /v1/events } }
";

    fn gateway(stage: &str) -> Gateway {
        Gateway {
            routes: Routes::parse(TEMPLATE).unwrap(),
            stage: stage.to_owned(),
        }
    }

    fn jwt(claims: Value) -> String {
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!(
            "{}.{}.{}",
            b64(br#"{"alg":"RS256","kid":"k"}"#),
            b64(claims.to_string().as_bytes()),
            b64(b"signature")
        )
    }

    #[test]
    fn a_named_stage_is_served_at_its_prefix_and_at_the_root() {
        let gateway = gateway("dev");
        let prefixed = gateway.route("POST", "/dev/v1/events").unwrap();
        assert_eq!(prefixed.raw_path, "/dev/v1/events");
        assert_eq!(prefixed.matched.route.key(), "POST /v1/events");
        let root = gateway.route("POST", "/v1/events").unwrap();
        assert_eq!(root.raw_path, "/v1/events");
        assert_eq!(
            gateway.route("POST", "/prod/v1/events").unwrap_err().status,
            404
        );
        assert_eq!(
            gateway.route("GET", "/dev/v1/events").unwrap_err(),
            Refusal::not_found()
        );
        // $default has no prefix.
        let default = self::gateway("$default");
        assert!(default.route("POST", "/v1/events").is_ok());
        assert!(default.route("POST", "/$default/v1/events").is_err());
    }

    #[test]
    fn the_authorizer_wants_a_token_and_passes_its_claims_as_strings() {
        let gateway = gateway("dev");
        let missing = gateway.authorize(None, "tenant", 0).unwrap_err();
        assert_eq!(missing.status, 401);
        assert_eq!(missing.body, json!({"message": "Unauthorized"}));
        assert!(gateway.authorize(Some("Basic x"), "tenant", 0).is_err());

        let shorthand = gateway.authorize(Some("Bearer acme"), "tenant", 0).unwrap();
        assert_eq!(shorthand.claims["tenant"], "acme");
        assert_eq!(
            shorthand.scopes.as_deref(),
            Some(&["herald/publish", "herald/read", "herald/manage"].map(String::from)[..])
        );
        let read_only = gateway
            .authorize(Some("Bearer acme:read"), "tenant", 0)
            .unwrap();
        assert_eq!(read_only.scopes, Some(vec!["herald/read".to_owned()]));

        let token = jwt(json!({
            "sub": "client-1", "tenant": "acme", "exp": 2_000_000_000_i64,
            "scope": "herald/publish herald/read", "cognito:groups": ["a", "b"]
        }));
        let full = gateway
            .authorize(Some(&format!("Bearer {token}")), "tenant", 1_800_000_000)
            .unwrap();
        assert_eq!(full.claims["tenant"], "acme");
        assert_eq!(full.claims["exp"], "2000000000");
        assert_eq!(full.claims["cognito:groups"], "[a b]");
        assert_eq!(
            full.scopes,
            Some(vec!["herald/publish".to_owned(), "herald/read".to_owned()])
        );
        // Without "Bearer " too, as the identity source allows.
        assert!(gateway.authorize(Some(&token), "tenant", 0).is_ok());

        let expired = gateway
            .authorize(Some(&format!("Bearer {token}")), "tenant", 2_000_000_001)
            .unwrap_err();
        assert!(
            expired
                .www_authenticate
                .as_deref()
                .is_some_and(|h| h.contains("invalid_token")),
            "{expired:?}"
        );
        // Not before its `nbf`, nor before it was issued.
        for early in [
            json!({"tenant": "acme", "nbf": 1_900_000_000_i64}),
            json!({"tenant": "acme", "iat": 1_900_000_000_i64}),
        ] {
            let refused = gateway
                .authorize(
                    Some(&format!("Bearer {}", jwt(early.clone()))),
                    "tenant",
                    1_800_000_000,
                )
                .unwrap_err();
            assert_eq!(refused.status, 401, "{early}");
        }
        let issued = jwt(json!({"tenant": "acme", "iat": 1_800_000_000_i64}));
        assert!(
            gateway
                .authorize(Some(&format!("Bearer {issued}")), "tenant", 1_800_000_000)
                .is_ok()
        );
    }

    #[test]
    fn a_call_becomes_the_request_a_function_gets() {
        let gateway = gateway("dev");
        let routed = gateway.route("GET", "/dev/v1/subscriptions/sub_1").unwrap();
        let headers = BTreeMap::from([
            ("content-type".to_owned(), "application/json".to_owned()),
            ("cookie".to_owned(), "a=1; b=2".to_owned()),
            ("host".to_owned(), "127.0.0.1:3000".to_owned()),
        ]);
        let call = Call {
            method: "GET",
            path: "/dev/v1/subscriptions/sub_1",
            query: "limit=5&state=failed&state=delivered&cursor=a%3Db%2Bc&q=x+y&na%6De=1",
            headers: &headers,
            body: b"",
            source_ip: "127.0.0.1",
        };
        let caller = gateway.authorize(Some("Bearer acme"), "tenant", 0).unwrap();
        let event = gateway.event_for(&call, &routed, Some(&caller));
        assert_eq!(event["queryStringParameters"]["state"], "failed,delivered");
        // Decoded, names too, where the raw query keeps what was sent.
        assert_eq!(event["queryStringParameters"]["cursor"], "a=b+c");
        assert_eq!(event["queryStringParameters"]["q"], "x y");
        assert_eq!(event["queryStringParameters"]["name"], "1");
        assert_eq!(event["rawQueryString"], call.query);
        assert_eq!(event["cookies"], json!(["a=1", "b=2"]));
        assert!(event["headers"].get("cookie").is_none());
        assert_eq!(event["rawPath"], "/dev/v1/subscriptions/sub_1");
        assert_eq!(event["requestContext"]["http"]["path"], event["rawPath"]);
        assert_eq!(event["requestContext"]["stage"], "dev");
        assert_eq!(event["requestContext"]["domainName"], "127.0.0.1");
        assert_eq!(
            event["requestContext"]["authorizer"]["jwt"]["scopes"],
            json!(["herald/publish", "herald/read", "herald/manage"])
        );

        let request = request_for(&event).unwrap();
        assert_eq!(request.method(), "GET");
        // lambda_http keeps the stage in the path: the functions route on routeKey.
        assert_eq!(request.uri().path(), "/dev/v1/subscriptions/sub_1");
        assert_eq!(
            herald_aws::lambda::api::route_path(&request),
            "/v1/subscriptions/sub_1"
        );
        assert_eq!(request.uri().query(), Some(call.query));
        assert_eq!(request.path_parameters().first("proxy"), Some("sub_1"));
        let Some(RequestContext::ApiGatewayV2(context)) = request.request_context_ref() else {
            panic!("not a payload-v2 request");
        };
        let claims = &context
            .authorizer
            .as_ref()
            .unwrap()
            .jwt
            .as_ref()
            .unwrap()
            .claims;
        assert_eq!(claims["tenant"], "acme");
        assert_eq!(
            context.route_key.as_deref(),
            Some("ANY /v1/subscriptions/{proxy+}")
        );
    }

    #[test]
    fn binary_bodies_are_base64_and_text_ones_are_not() {
        let gateway = gateway("$default");
        let routed = gateway.route("POST", "/v1/events").unwrap();
        let caller = gateway.authorize(Some("Bearer acme"), "tenant", 0).unwrap();
        for (content_type, body, encoded) in [
            ("application/json", &b"{\"a\":1}"[..], false),
            ("application/cloudevents+json; charset=utf-8", b"{}", false),
            ("text/plain", b"hello", false),
            ("application/octet-stream", b"hello", true),
            ("application/json", &[0xff, 0x00, 0xfe][..], true),
        ] {
            let headers = BTreeMap::from([("content-type".to_owned(), content_type.to_owned())]);
            let call = Call {
                method: "POST",
                path: "/v1/events",
                query: "",
                headers: &headers,
                body,
                source_ip: "127.0.0.1",
            };
            let event = gateway.event_for(&call, &routed, Some(&caller));
            assert_eq!(event["isBase64Encoded"], encoded, "{content_type}");
            let request = request_for(&event).unwrap();
            assert_eq!(request.body().as_ref(), body, "{content_type}");
        }
    }
}
