//! Plays API Gateway's HTTP API: turns an HTTP request into the payload-v2 event a Lambda
//! function receives, with the tenant as the JWT claim the authorizer would have checked.

use std::collections::BTreeMap;

use base64::Engine;
use lambda_http::Request;
use serde_json::{Value, json};

use crate::routes::Matched;

/// A synchronous Lambda invocation carries at most 6 MB, so a deployed Herald never sees a
/// larger request; refusing it here keeps the local runner from accepting what AWS would not.
pub const MAX_BODY_BYTES: usize = 6 * 1024 * 1024;

/// `Authorization: Bearer <tenant>`; None when absent or not that shape.
pub fn bearer_tenant(header: Option<&str>) -> Option<String> {
    let (scheme, token) = header?.trim().split_once(' ')?;
    let token = token.trim();
    let usable = scheme.eq_ignore_ascii_case("bearer")
        && !token.is_empty()
        && !token.contains(char::is_whitespace);
    usable.then(|| token.to_owned())
}

/// One HTTP call as the gateway received it.
pub struct Call<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    /// Lower-case names; a repeated header is one entry, values joined with commas.
    pub headers: &'a BTreeMap<String, String>,
    pub body: &'a [u8],
}

/// Who the authorizer says is calling: the claim's name and the tenant in it.
pub struct Caller<'a> {
    pub claim: &'a str,
    pub tenant: &'a str,
}

/// The payload-v2 event for this call, as API Gateway would build it.
pub fn event_for(call: &Call<'_>, route: &Matched<'_>, caller: &Caller<'_>) -> Value {
    let (body, encoded) = match std::str::from_utf8(call.body) {
        Ok(text) => (text.to_owned(), false),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(call.body),
            true,
        ),
    };
    // API Gateway moves cookies out of the headers into their own list.
    let mut headers = call.headers.clone();
    let cookies: Option<Vec<String>> = headers
        .remove("cookie")
        .map(|c| c.split(';').map(|s| s.trim().to_owned()).collect());
    let route_key = route.route.key();
    let mut event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": call.path,
        "rawQueryString": call.query,
        "headers": headers,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": call.headers.get("host").map_or("127.0.0.1", String::as_str),
            "domainPrefix": "local",
            "http": {
                "method": call.method,
                "path": call.path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": call.headers.get("user-agent").map_or("", String::as_str),
            },
            "requestId": format!("local-{:032x}", rand::random::<u128>()),
            "routeKey": route_key,
            "stage": "$default",
            "time": chrono::Utc::now().format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            "timeEpoch": chrono::Utc::now().timestamp_millis(),
            "authorizer": {"jwt": {"claims": {caller.claim: caller.tenant}, "scopes": null}},
        },
        "isBase64Encoded": encoded,
    });
    if !call.body.is_empty() {
        event["body"] = Value::String(body);
    }
    if let Some(cookies) = cookies {
        event["cookies"] = json!(cookies);
    }
    if !route.path_parameters.is_empty() {
        event["pathParameters"] = json!(route.path_parameters);
    }
    if !call.query.is_empty() {
        event["queryStringParameters"] = json!(query_parameters(call.query));
    }
    event
}

/// The request lambda_http hands a function for this event.
pub fn request_for(event: &Value) -> Result<Request, serde_json::Error> {
    lambda_http::request::from_str(&event.to_string())
}

/// Repeated names are joined with commas, as API Gateway does in payload v2.
fn query_parameters(query: &str) -> BTreeMap<String, String> {
    let mut parameters: BTreeMap<String, String> = BTreeMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        parameters
            .entry(name.to_owned())
            .and_modify(|v| {
                v.push(',');
                v.push_str(value);
            })
            .or_insert_with(|| value.to_owned());
    }
    parameters
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::Routes;
    use lambda_http::RequestExt;
    use lambda_http::request::RequestContext;

    #[test]
    fn bearer_tokens_name_the_tenant() {
        assert_eq!(bearer_tenant(Some("Bearer acme")), Some("acme".into()));
        assert_eq!(bearer_tenant(Some("bearer  acme ")), Some("acme".into()));
        assert_eq!(bearer_tenant(Some("Basic abc")), None);
        assert_eq!(bearer_tenant(Some("Bearer ")), None);
        assert_eq!(bearer_tenant(Some("Bearer a b")), None);
        assert_eq!(bearer_tenant(Some("acme")), None);
        assert_eq!(bearer_tenant(None), None);
    }

    #[test]
    fn a_call_becomes_the_request_a_function_gets_with_the_claim() {
        let routes = Routes::parse(
            "Resources:
  M:
    Type: AWS::Serverless::Function
    Metadata: { BuildProperties: { Binary: manage } }
    Properties:
      Events:
        E: { Type: HttpApi, Properties: { Method: ANY, Path: '/v1/subscriptions/{proxy+}' } }
",
        )
        .unwrap();
        let matched = routes.find("GET", "/v1/subscriptions/sub_1").unwrap();
        let headers = BTreeMap::from([
            ("content-type".to_owned(), "application/json".to_owned()),
            ("cookie".to_owned(), "a=1; b=2".to_owned()),
        ]);
        let call = Call {
            method: "GET",
            path: "/v1/subscriptions/sub_1",
            query: "limit=5&state=failed&state=delivered",
            headers: &headers,
            body: b"",
        };
        let caller = Caller {
            claim: "tenant",
            tenant: "acme",
        };
        let event = event_for(&call, &matched, &caller);
        assert_eq!(event["queryStringParameters"]["state"], "failed,delivered");
        assert_eq!(event["cookies"], json!(["a=1", "b=2"]));

        let request = request_for(&event).unwrap();
        assert_eq!(request.method(), "GET");
        assert_eq!(request.uri().path(), "/v1/subscriptions/sub_1");
        assert_eq!(
            request.uri().query(),
            Some("limit=5&state=failed&state=delivered")
        );
        assert_eq!(
            request.path_parameters().first("proxy"),
            Some("sub_1"),
            "{event}"
        );
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
    fn a_binary_body_arrives_intact() {
        let routes = Routes::parse(
            "Resources:
  I:
    Type: AWS::Serverless::Function
    Metadata: { BuildProperties: { Binary: ingest } }
    Properties:
      Events:
        E: { Type: HttpApi, Properties: { Method: POST, Path: /v1/events } }
",
        )
        .unwrap();
        let matched = routes.find("POST", "/v1/events").unwrap();
        let headers = BTreeMap::new();
        let body = [0xff, 0x00, 0xfe];
        let call = Call {
            method: "POST",
            path: "/v1/events",
            query: "",
            headers: &headers,
            body: &body,
        };
        let caller = Caller {
            claim: "tenant",
            tenant: "acme",
        };
        let request = request_for(&event_for(&call, &matched, &caller)).unwrap();
        assert_eq!(request.body().as_ref(), &body);
    }
}
