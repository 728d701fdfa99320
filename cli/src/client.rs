//! Calls to Herald's HTTP API, and what an answer means for the person who made the call.

use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

/// The API at one base URL, called with one bearer token.
pub struct Client {
    base: String,
    token: String,
    /// The tenant an operator's token acts for (`Herald-Tenant`).
    tenant: Option<String>,
    http: reqwest::Client,
}

/// An answer: its status and its body (JSON, or the text as a JSON string).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Client {
    /// `base` is the API's URL, e.g. the stack's `ApiUrl` output (`https://…/dev`).
    pub fn new(base: &str, token: &str) -> anyhow::Result<Self> {
        let parsed = url::Url::parse(base).with_context(|| {
            format!(
                "`{base}` is not a URL like https://abc123.execute-api.us-east-1.amazonaws.com/dev"
            )
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            anyhow::bail!("`{base}` is not an http(s) URL");
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(35))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            tenant: None,
            http,
        })
    }

    /// Calls name `tenant` in `Herald-Tenant`: an operator's token (scope
    /// `herald/operator`) acts for it; a tenant's own token must name itself.
    pub fn acting_for(mut self, tenant: Option<String>) -> Self {
        self.tenant = tenant;
        self
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// One call; Err only when no answer came.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Answer> {
        let url = self.url(path);
        let mut request = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(&self.token);
        if let Some(tenant) = &self.tenant {
            request = request.header("herald-tenant", tenant);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {url} got no answer"))?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .with_context(|| format!("reading the answer to {method} {url}"))?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Answer { status, body })
    }
}

impl Answer {
    /// What this answer says to someone checking a deployment: the status, the body, and
    /// where to look.
    pub fn explain(&self) -> String {
        let gateway_message = self.body["message"].as_str();
        let herald_code = self.body["error"]["code"].as_str();
        let herald_message = self.body["error"]["message"].as_str().unwrap_or("");
        let hint = match (self.status, gateway_message, herald_code) {
            (400, _, Some("bad_request")) if herald_message.contains("Herald-Tenant") => {
                "an operator's token acts for the tenant that --tenant (or HERALD_TENANT) \
                 names"
            }
            (401, Some(_), _) => {
                "API Gateway's JWT authorizer refused the token: it must be a JWT from the \
                 stack's JwtIssuer, for one of its JwtAudience, and not expired"
            }
            (401, _, Some(_)) => {
                "Herald found no tenant in the token: it needs the claim the stack's \
                 TenantClaim names (`tenant` by default)"
            }
            (403, Some(_), _) => "API Gateway refused the token's scopes for this route",
            (403, _, Some(_)) => {
                "the token lacks the scope this needs (herald/publish, herald/read, \
                 herald/manage, or herald/operator to act for another tenant)"
            }
            (404, Some(_), _) => {
                "API Gateway has no such route: is the API URL the stack's ApiUrl output, \
                 with its stage (…/dev)?"
            }
            (404, _, Some("not_found")) if self.body.to_string().contains("route") => {
                "the function does not know this route: are its bootstraps older than the \
                 template? Build and deploy them again"
            }
            (413, ..) => "the request was over a size limit",
            (422, ..) => "Herald refused a field; the message names it",
            (500..=599, Some(_), _) => {
                "API Gateway got no answer from the function (it crashed or timed out): see \
                 the function's log group, /aws/lambda/<stack>-ingest or -manage"
            }
            (500..=599, ..) => {
                "Herald failed or a dependency is unavailable: see the function's log group, \
                 /aws/lambda/<stack>-ingest or -manage"
            }
            _ => "",
        };
        let mut text = format!("{} {}", self.status, compact(&self.body));
        if !hint.is_empty() {
            text.push_str(": ");
            text.push_str(hint);
        }
        text
    }
}

/// A body on one line, cut at 300 characters.
fn compact(body: &Value) -> String {
    let text = match body {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut short: String = text.chars().take(300).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn answer(status: u16, body: Value) -> Answer {
        Answer { status, body }
    }

    #[test]
    fn gateway_and_herald_answers_are_told_apart() {
        let gateway_404 = answer(404, json!({"message": "Not Found"})).explain();
        assert!(gateway_404.contains("ApiUrl"), "{gateway_404}");
        let herald_404 = answer(
            404,
            json!({"error": {"code": "not_found", "message": "route not found"}}),
        )
        .explain();
        assert!(herald_404.contains("bootstraps"), "{herald_404}");
        let no_tenant = answer(
            401,
            json!({"error": {"code": "unauthorized", "message": "x"}}),
        );
        assert!(no_tenant.explain().contains("TenantClaim"));
        let bad_token = answer(401, json!({"message": "Unauthorized"}));
        assert!(bad_token.explain().contains("JwtIssuer"));
        let no_tenant_named = answer(
            400,
            json!({"error": {"code": "bad_request", "message": "an operator's call names the tenant it acts for in the Herald-Tenant header"}}),
        );
        assert!(no_tenant_named.explain().contains("--tenant"));
        let fine = answer(200, json!({"ok": true})).explain();
        assert_eq!(fine, r#"200 {"ok":true}"#);
    }

    #[test]
    fn long_bodies_are_cut() {
        let long = answer(500, Value::String("x".repeat(1000))).explain();
        assert!(long.len() < 600, "{}", long.len());
        assert!(long.contains('…'));
    }

    #[test]
    fn a_base_that_is_no_url_is_refused() {
        assert!(Client::new("not a url", "t").is_err());
        assert!(Client::new("ftp://example.com", "t").is_err());
        let client = Client::new("https://x.example/dev/", "t").unwrap();
        assert_eq!(client.url("/v1/events"), "https://x.example/dev/v1/events");
    }
}
