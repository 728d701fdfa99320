//! Plays API Gateway's HTTP API: turns an HTTP request into the payload-v2 event a Lambda
//! function receives, with the tenant as the JWT claim the authorizer would have checked.

use std::collections::BTreeMap;

use base64::Engine;
use lambda_http::Request;
use serde_json::{Value, json};

/// API Gateway's own limit on a request body.
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// `Authorization: Bearer <tenant>`; None when absent or not that shape.
pub fn bearer_tenant(header: Option<&str>) -> Option<String> {
    let token = header?.strip_prefix("Bearer ")?.trim();
    (!token.is_empty()).then(|| token.to_owned())
}

/// The payload-v2 event for this request, as API Gateway would build it.
pub fn event_for(
    method: &str,
    path: &str,
    query: &str,
    headers: &BTreeMap<String, String>,
    body: &[u8],
    tenant_claim: &str,
    tenant: &str,
) -> Value {
    let (body_field, encoded) = match std::str::from_utf8(body) {
        Ok(text) => (text.to_owned(), false),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(body), true),
    };
    let mut event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": "127.0.0.1",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": headers.get("user-agent").cloned().unwrap_or_default()},
            "requestId": format!("local-{:032x}", rand::random::<u128>()),
            "routeKey": "$default",
            "stage": "$default",
            "timeEpoch": chrono::Utc::now().timestamp_millis(),
            "authorizer": {"jwt": {"claims": {tenant_claim: tenant}, "scopes": null}}
        },
        "isBase64Encoded": encoded,
    });
    if !body.is_empty() {
        event["body"] = Value::String(body_field);
    }
    if !query.is_empty() {
        let params: BTreeMap<String, String> = url_pairs(query);
        event["queryStringParameters"] = json!(params);
    }
    event
}

pub fn request_for(event: &Value) -> Result<Request, String> {
    lambda_http::request::from_str(&event.to_string()).map_err(|e| e.to_string())
}

fn url_pairs(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_name_the_tenant() {
        assert_eq!(bearer_tenant(Some("Bearer acme")), Some("acme".into()));
        assert_eq!(bearer_tenant(Some("Basic abc")), None);
        assert_eq!(bearer_tenant(Some("Bearer ")), None);
        assert_eq!(bearer_tenant(None), None);
    }

    #[test]
    fn events_become_lambda_requests_with_the_claim() {
        let headers = BTreeMap::from([("content-type".to_owned(), "application/json".to_owned())]);
        let event = event_for(
            "POST",
            "/v1/events",
            "a=1",
            &headers,
            b"{}",
            "tenant",
            "acme",
        );
        let request = request_for(&event).unwrap();
        assert_eq!(request.uri().path(), "/v1/events");
        assert_eq!(request.uri().query(), Some("a=1"));
    }
}
