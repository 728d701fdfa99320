//! What API Gateway's HTTP API tells a function about a request, read the way AWS
//! documents it rather than the way one endpoint happens to show it.
//!
//! The payload (format 2.0) is described at
//! <https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html>;
//! the JWT authorizer at
//! <https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-jwt-authorizer.html>.

use std::borrow::Cow;

use base64::Engine;
use serde_json::{Map, Value};

/// The path of the route a request was matched to, as the template declares it with the
/// variables filled in (`/v1/subscriptions/sub_1/deliveries`), whatever stage or domain
/// the call came through.
///
/// API Gateway matches a request to a route before it invokes the function and says which
/// in `routeKey` (`ANY /v1/subscriptions/{proxy+}`), with the variables in
/// `pathParameters`. The path itself depends on how the API was called: on the
/// `execute-api` endpoint `rawPath` begins with `/{stage}` for any stage but `$default`;
/// through a custom domain's API mapping it has neither the stage nor the mapping's path
/// ("rawPath won't provide the API mapping value", the page above); and lambda_http puts
/// `/{stage}` in front of it for a named stage either way. So the route's path is rebuilt
/// from the route key and its parameters. Only a `$default` route (no path of its own)
/// or a request that is not API Gateway's falls back to the path, without the stage.
///
/// `parameter` looks a path parameter up by name.
pub fn route_path<'a>(
    route_key: Option<&str>,
    parameter: impl Fn(&str) -> Option<&'a str>,
    stage: Option<&str>,
    path: &'a str,
) -> Cow<'a, str> {
    if let Some(rebuilt) = route_key.and_then(|key| path_of_route(key, &parameter)) {
        return Cow::Owned(rebuilt);
    }
    Cow::Borrowed(without_stage(path, stage))
}

/// `POST /v1/events` → `/v1/events`; `ANY /v1/subscriptions/{proxy+}` with `proxy` =
/// `sub_1/test` → `/v1/subscriptions/sub_1/test`. None for `$default` or a variable
/// without its value.
fn path_of_route<'a>(
    route_key: &str,
    parameter: &impl Fn(&str) -> Option<&'a str>,
) -> Option<String> {
    let (_method, template) = route_key.split_once(' ')?;
    if !template.starts_with('/') {
        return None;
    }
    let mut path = String::with_capacity(template.len() + 32);
    for segment in template.split('/').skip(1) {
        path.push('/');
        match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => path.push_str(parameter(name.trim_end_matches('+'))?),
            None => path.push_str(segment),
        }
    }
    Some(path)
}

/// `path` without a leading `/{stage}` (a named stage's prefix on the default endpoint).
fn without_stage<'a>(path: &'a str, stage: Option<&str>) -> &'a str {
    let Some(stage) = stage.filter(|s| !s.is_empty() && *s != "$default") else {
        return path;
    };
    match path.strip_prefix('/').and_then(|p| p.strip_prefix(stage)) {
        Some("") => "/",
        Some(rest) if rest.starts_with('/') => rest,
        _ => path,
    }
}

/// A claim's value as the HTTP API's JWT authorizer hands it to a function: every claim
/// is a string in `requestContext.authorizer.jwt.claims` (the payload's example above; the
/// `aws_lambda_events` type is a map of strings). Numbers and booleans become their JSON
/// text; arrays and objects become Go's rendering of them, `[a b]` and `map[k:v]` with
/// the keys sorted, as observed of API Gateway (not documented by AWS).
pub fn claim_string(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(claim_string).collect();
            format!("[{}]", items.join(" "))
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let entries: Vec<String> = entries
                .into_iter()
                .map(|(k, v)| format!("{k}:{}", claim_string(v)))
                .collect();
            format!("map[{}]", entries.join(" "))
        }
        Value::Null => "null".to_owned(),
        other => other.to_string(),
    }
}

/// The authorizer's `scopes`: the token's `scope` claim split at spaces (OAuth 2.0), or
/// its `scp` claim (a list or a string); None (JSON `null`) when it has neither.
pub fn scopes_of(claims: &Map<String, Value>) -> Option<Vec<String>> {
    let split = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    match (claims.get("scope"), claims.get("scp")) {
        (Some(Value::String(s)), _) => Some(split(s)),
        (_, Some(Value::String(s))) => Some(split(s)),
        (_, Some(Value::Array(items))) => Some(items.iter().map(claim_string).collect()),
        _ => None,
    }
}

/// The token of an `Authorization` header: `Bearer <token>` or the bare token, as the
/// authorizer's identity source accepts either ("The identitySource can include only the
/// token, or the token prefixed with Bearer", the JWT page above).
pub fn bearer_token(header: &str) -> Option<&str> {
    let header = header.trim();
    let token = match header.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        Some(_) => return None,
        None if header.eq_ignore_ascii_case("bearer") => return None,
        None => header,
    };
    (!token.is_empty() && !token.contains(char::is_whitespace)).then_some(token)
}

/// The scopes a token may carry for Herald's routes (resource server `herald`): what each
/// route asks for is in `template.yaml` (`AuthorizationScopes`) and checked again by the
/// functions.
pub const SCOPE_PUBLISH: &str = "herald/publish";
pub const SCOPE_READ: &str = "herald/read";
pub const SCOPE_MANAGE: &str = "herald/manage";
/// Acts for any tenant, named in each call's `Herald-Tenant` header (support, back
/// offices); never given to a tenant's own tokens.
pub const SCOPE_OPERATOR: &str = "herald/operator";
/// Every scope a tenant's token may have.
pub const TENANT_SCOPES: [&str; 3] = [SCOPE_PUBLISH, SCOPE_READ, SCOPE_MANAGE];

/// The local shorthand for a token that is no JWT: `acme` names tenant `acme` with every
/// scope; `acme:read,manage` names it with `herald/read` and `herald/manage` only. For the
/// local runner and `sam local`, where no issuer is at hand.
pub fn shorthand(token: &str) -> (String, Vec<String>) {
    match token.split_once(':') {
        None => (
            token.to_owned(),
            TENANT_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
        ),
        Some((tenant, scopes)) => (
            tenant.to_owned(),
            scopes
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| format!("herald/{s}"))
                .collect(),
        ),
    }
}

/// The media type of a `Content-Type` value, lower case, without its parameters
/// (`application/json; charset=utf-8` → `application/json`).
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The claims of a JWT, read without checking its signature: for places where API
/// Gateway's authorizer, which checks it, is not there (the local runner, `sam local`).
/// None when the token is not a JWT whose payload is a JSON object.
pub fn unverified_claims(token: &str) -> Option<Map<String, Value>> {
    let mut parts = token.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(claims) => Some(claims),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }

    #[test]
    fn the_route_is_the_same_on_every_stage_and_domain() {
        let proxy = [("proxy", "sub_1/deliveries")];
        // execute-api with a named stage (rawPath and lambda_http's path carry /dev),
        // a custom domain (no stage in rawPath, lambda_http adds it), and $default.
        for (stage, path) in [
            ("dev", "/dev/v1/subscriptions/sub_1/deliveries"),
            ("prod", "/prod/v1/subscriptions/sub_1/deliveries"),
            ("$default", "/v1/subscriptions/sub_1/deliveries"),
            ("v1", "/v1/v1/subscriptions/sub_1/deliveries"),
        ] {
            assert_eq!(
                route_path(
                    Some("ANY /v1/subscriptions/{proxy+}"),
                    params(&proxy),
                    Some(stage),
                    path
                ),
                "/v1/subscriptions/sub_1/deliveries",
                "{stage} {path}"
            );
        }
        assert_eq!(
            route_path(
                Some("POST /v1/events"),
                params(&[]),
                Some("dev"),
                "/dev/v1/events"
            ),
            "/v1/events"
        );
        assert_eq!(
            route_path(
                Some("GET /v1/keys/{id}/{part}"),
                params(&[("id", "k1"), ("part", "pem")]),
                Some("dev"),
                "/anything"
            ),
            "/v1/keys/k1/pem"
        );
    }

    #[test]
    fn without_a_route_template_the_stage_comes_off_the_path() {
        for (route_key, stage, path, expected) in [
            (
                Some("$default"),
                Some("dev"),
                "/dev/v1/events",
                "/v1/events",
            ),
            (Some("$default"), Some("dev"), "/dev", "/"),
            (
                Some("$default"),
                Some("dev"),
                "/development/v1",
                "/development/v1",
            ),
            (
                Some("$default"),
                Some("$default"),
                "/v1/events",
                "/v1/events",
            ),
            (None, None, "/v1/events", "/v1/events"),
            // A variable without its value cannot be rebuilt.
            (
                Some("GET /v1/x/{id}"),
                Some("dev"),
                "/dev/v1/x/1",
                "/v1/x/1",
            ),
        ] {
            assert_eq!(
                route_path(route_key, params(&[]), stage, path),
                expected,
                "{route_key:?} {stage:?} {path}"
            );
        }
    }

    #[test]
    fn claims_take_the_string_forms_the_authorizer_gives_them() {
        assert_eq!(claim_string(&json!("acme")), "acme");
        assert_eq!(claim_string(&json!(1795348800)), "1795348800");
        assert_eq!(claim_string(&json!(true)), "true");
        assert_eq!(claim_string(&json!(["admins", "ops"])), "[admins ops]");
        assert_eq!(claim_string(&json!({"z": 1, "a": ["x"]})), "map[a:[x] z:1]");
    }

    #[test]
    fn scopes_come_from_scope_or_scp() {
        let claims = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(
            scopes_of(&claims(json!({"scope": "herald/publish herald/read"}))),
            Some(vec!["herald/publish".into(), "herald/read".into()])
        );
        assert_eq!(
            scopes_of(&claims(json!({"scp": ["a", "b"]}))),
            Some(vec!["a".into(), "b".into()])
        );
        assert_eq!(scopes_of(&claims(json!({"sub": "x"}))), None);
    }

    #[test]
    fn tokens_come_with_or_without_bearer() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer a b"), None);
        assert_eq!(bearer_token(""), None);
    }

    #[test]
    fn the_shorthand_names_a_tenant_and_its_scopes() {
        assert_eq!(shorthand("acme").0, "acme");
        assert_eq!(shorthand("acme").1, TENANT_SCOPES);
        assert_eq!(
            shorthand("acme:read,manage"),
            (
                "acme".to_owned(),
                vec![SCOPE_READ.to_owned(), SCOPE_MANAGE.to_owned()]
            )
        );
        assert_eq!(shorthand("acme:"), ("acme".to_owned(), vec![]));
    }

    #[test]
    fn a_jwt_payload_is_read_and_anything_else_is_not() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"tenant":"acme","scope":"a b"}"#);
        let token = format!("eyJhbGciOiJub25lIn0.{payload}.sig");
        let claims = unverified_claims(&token).unwrap();
        assert_eq!(claims["tenant"], "acme");
        assert!(unverified_claims("acme").is_none());
        assert!(unverified_claims("a.b.c").is_none());
        assert!(unverified_claims(&format!("x.{payload}.y.z")).is_none());
        let not_an_object = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b"[1]");
        assert!(unverified_claims(&format!("x.{not_an_object}.y")).is_none());
    }
}
