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
    /// `Retry-After` in seconds, when the answer gave one (a 429 does).
    pub retry_after: Option<u64>,
}

/// Whether `url` names this machine.
fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
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
        // The token goes with every call: in the clear only to this machine (`make run`,
        // `sam local start-api`).
        if parsed.scheme() == "http" && !is_loopback(&parsed) {
            anyhow::bail!(
                "`{base}` is plain http to another machine, which would send the token in the \
                 clear: use its https URL (plain http is for 127.0.0.1 and localhost)"
            );
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(35))
            // Herald's API never redirects: an answer that does is not followed with the
            // token and the request's body, and is reported as it came.
            .redirect(reqwest::redirect::Policy::none())
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

    /// The tenant calls act for (`Herald-Tenant`), when one is named.
    pub fn tenant(&self) -> Option<&str> {
        self.tenant.as_deref()
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
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let text = response
            .text()
            .await
            .with_context(|| format!("reading the answer to {method} {url}"))?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Answer {
            status,
            body,
            retry_after,
        })
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

    #[test]
    fn plain_http_is_for_this_machine_alone() {
        for local in [
            "http://127.0.0.1:3000",
            "http://localhost:3000/dev",
            "http://[::1]:3000",
            "https://abc.execute-api.us-east-1.amazonaws.com/dev",
        ] {
            assert!(Client::new(local, "t").is_ok(), "{local}");
        }
        for remote in [
            "http://abc.execute-api.us-east-1.amazonaws.com/dev",
            "http://192.168.1.20:3000",
            "http://localhost.example.com",
        ] {
            let refused = Client::new(remote, "t").err().unwrap().to_string();
            assert!(refused.contains("in the clear"), "{remote}: {refused}");
        }
    }

    /// A 429's `Retry-After` comes with its answer.
    #[tokio::test]
    async fn an_answers_retry_after_is_read() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", api.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut stream, _) = api.accept().await.unwrap();
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request).await;
            let answer =
                "HTTP/1.1 429 Too Many Requests\r\nretry-after: 17\r\ncontent-length: 2\r\n\r\n{}";
            stream.write_all(answer.as_bytes()).await.unwrap();
        });
        let answer = Client::new(&base, "t")
            .unwrap()
            .call(reqwest::Method::POST, "/v1/x", None)
            .await
            .unwrap();
        assert_eq!((answer.status, answer.retry_after), (429, Some(17)));
    }

    /// A redirect is reported, never followed: the token and the body stay where they
    /// were sent.
    #[tokio::test]
    async fn a_redirect_is_not_followed() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let elsewhere = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = format!("http://{}/stolen", elsewhere.local_addr().unwrap());
        let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", api.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut stream, _) = api.accept().await.unwrap();
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request).await;
            let answer = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nlocation: {target}\r\ncontent-length: 0\r\n\r\n"
            );
            stream.write_all(answer.as_bytes()).await.unwrap();
        });
        let client = Client::new(&base, "secret-token").unwrap();
        let answer = client
            .call(reqwest::Method::POST, "/v1/events", Some(&json!({"a": 1})))
            .await
            .unwrap();
        assert_eq!(answer.status, 307);
        let followed = tokio::time::timeout(Duration::from_millis(300), elsewhere.accept()).await;
        assert!(followed.is_err(), "the redirect was followed");
    }

    fn answer(status: u16, body: Value) -> Answer {
        Answer {
            status,
            body,
            retry_after: None,
        }
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
