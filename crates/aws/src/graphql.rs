//! The deployment's GraphQL source: where a subscription's query is checked (its schema,
//! read by introspection and kept for a while) and run at each attempt
//! (`herald_core::webhook::graphql`). Requests are GraphQL over HTTP: a POST of
//! `{"query", "variables"}` as JSON, answered with `{"data", "errors"}`
//! (<https://graphql.org/learn/serving-over-http/>).
//!
//! The source's credentials are a Secrets Manager secret read when first needed and again
//! after `refresh` (a rotation reaches Herald without a deploy); its string is either a
//! JSON object of header names and values, or the value of `Authorization`. Every request
//! names the tenant it is for in `herald-tenant`, for the source to scope its answer.
//! The URL is the operator's (a template parameter), not a tenant's: it may be inside the
//! VPC, so the webhook guard against private addresses does not apply; redirects are not
//! followed and the scheme must be HTTPS unless the deployment allows HTTP.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::Client;
use herald_core::ids::TenantId;
use herald_core::webhook::graphql::{INTROSPECTION_QUERY, Schema, clip, payload_of};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value, json};
use tokio::sync::Mutex;

/// Longest answer read from the source: a payload must still fit a webhook.
const MAX_ANSWER: usize = 1024 * 1024;
/// How long a schema read is used before it is read again.
const SCHEMA_REFRESH: Duration = Duration::from_secs(300);

/// The header that names the tenant a query runs for.
pub const TENANT_HEADER: &str = "herald-tenant";

/// What a deployment says of its source (`HERALD_GRAPHQL_*`).
#[derive(Clone, Debug, PartialEq)]
pub struct GraphqlConfig {
    pub url: url::Url,
    /// A Secrets Manager secret (name or ARN) holding the credentials, if it needs any.
    pub secret: Option<String>,
    /// Limit on one request to the source.
    pub timeout: Duration,
    /// How long credentials read are used before they are read again.
    pub refresh: Duration,
}

/// Why a query got no payload.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum SourceError {
    #[error("this deployment has no GraphQL source (HERALD_GRAPHQL_URL)")]
    NotConfigured,
    #[error("the GraphQL source did not answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Failed(String),
}

/// The source, or none. Cloning shares its client and caches.
#[derive(Clone, Default)]
pub struct GraphqlSource(Option<Arc<Source>>);

pub struct Source {
    config: GraphqlConfig,
    http: reqwest::Client,
    sdk: Option<Box<aws_config::SdkConfig>>,
    secrets: OnceLock<Client>,
    credentials: Mutex<Option<(Instant, Arc<HeaderMap>)>>,
    schema: Mutex<Option<(Instant, Arc<Schema>)>>,
}

/// Names the source, never its credentials.
impl std::fmt::Debug for GraphqlSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            None => f.write_str("GraphqlSource(off)"),
            Some(source) => write!(f, "GraphqlSource({})", source.config.url),
        }
    }
}

impl GraphqlSource {
    /// No source: subscriptions may not have queries.
    pub fn off() -> Self {
        Self(None)
    }

    /// The source `config` names; its secret is read through `sdk` when first needed.
    pub fn new(config: GraphqlConfig, sdk: Option<&aws_config::SdkConfig>) -> Result<Self, String> {
        let tls = crate::http::tls::webhook_client_config().map_err(|e| e.to_string())?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .no_proxy()
            .user_agent(herald_core::USER_AGENT)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self(Some(Arc::new(Source {
            config,
            http,
            sdk: sdk.map(|s| Box::new(s.clone())),
            secrets: OnceLock::new(),
            credentials: Mutex::new(None),
            schema: Mutex::new(None),
        }))))
    }

    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// The limit on one request to the source (zero without one): the time an attempt
    /// may spend before its POST.
    pub fn timeout(&self) -> Duration {
        self.0.as_ref().map_or(Duration::ZERO, |s| s.config.timeout)
    }

    fn source(&self) -> Result<&Source, SourceError> {
        self.0.as_deref().ok_or(SourceError::NotConfigured)
    }

    /// The source's schema, read by introspection at most every five minutes.
    pub async fn schema(&self) -> Result<Arc<Schema>, SourceError> {
        let source = self.source()?;
        let mut held = source.schema.lock().await;
        if let Some((until, schema)) = held.as_ref()
            && Instant::now() < *until
        {
            return Ok(Arc::clone(schema));
        }
        let answer = source.post(None, INTROSPECTION_QUERY, &Map::new()).await?;
        let schema = Arc::new(
            Schema::from_introspection(&answer)
                .map_err(|e| SourceError::Failed(format!("the source's schema: {e}")))?,
        );
        *held = Some((Instant::now() + SCHEMA_REFRESH, Arc::clone(&schema)));
        Ok(schema)
    }

    /// Runs `query` for `tenant` with `variables`; the payload is the answer's `data`.
    pub async fn execute(
        &self,
        tenant: &TenantId,
        query: &str,
        variables: &Map<String, Value>,
    ) -> Result<Map<String, Value>, SourceError> {
        let answer = self.source()?.post(Some(tenant), query, variables).await?;
        payload_of(&answer).map_err(SourceError::Failed)
    }
}

impl Source {
    async fn post(
        &self,
        tenant: Option<&TenantId>,
        query: &str,
        variables: &Map<String, Value>,
    ) -> Result<Value, SourceError> {
        // One limit for the secret's read (when it is due) and the request together: an
        // attempt reserves `timeout` for its query, and a read that hangs would hold every
        // record of the batch waiting on the same credentials.
        let limit = self.config.timeout;
        let deadline = tokio::time::Instant::now() + limit;
        let credentials = tokio::time::timeout_at(deadline, self.credentials())
            .await
            .map_err(|_| SourceError::Timeout(limit))??;
        let mut request = self
            .http
            .post(self.config.url.clone())
            .timeout(deadline.saturating_duration_since(tokio::time::Instant::now()))
            .headers(credentials.as_ref().clone())
            .header(
                "accept",
                "application/graphql-response+json, application/json",
            )
            .header("content-type", "application/json")
            .body(json!({"query": query, "variables": variables}).to_string());
        if let Some(tenant) = tenant {
            request = request.header(TENANT_HEADER, tenant.as_str());
        }
        let failed = |e: reqwest::Error| {
            if e.is_timeout() {
                SourceError::Timeout(self.config.timeout)
            } else {
                // Without the URL: the source is the operator's, and its path may hold a key.
                SourceError::Failed(clip(format!(
                    "the GraphQL source could not be reached: {}",
                    e.without_url()
                )))
            }
        };
        let mut response = request.send().await.map_err(failed)?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(SourceError::Failed(format!(
                    "the GraphQL source answered more than {MAX_ANSWER} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        // GraphQL over HTTP answers errors with a JSON body on 4xx too; read it if it is one.
        match serde_json::from_slice::<Value>(&body) {
            Ok(answer) if answer.get("data").is_some() || answer.get("errors").is_some() => {
                Ok(answer)
            }
            _ => Err(SourceError::Failed(format!(
                "the GraphQL source answered {status} without a GraphQL response"
            ))),
        }
    }

    /// The headers the source's secret holds, read again after `refresh`.
    async fn credentials(&self) -> Result<Arc<HeaderMap>, SourceError> {
        let Some(secret) = &self.config.secret else {
            return Ok(Arc::default());
        };
        let mut held = self.credentials.lock().await;
        let now = Instant::now();
        if let Some((until, headers)) = held.as_ref()
            && now < *until
        {
            return Ok(Arc::clone(headers));
        }
        let Some(sdk) = &self.sdk else {
            return Err(SourceError::Failed(
                "no AWS configuration to read the source's secret".into(),
            ));
        };
        let client = self.secrets.get_or_init(|| Client::new(sdk));
        let read = crate::secrets::secret_string(client, secret)
            .await
            .and_then(|value| credential_headers(&value));
        match (read, held.as_mut()) {
            (Ok(headers), _) => {
                let headers = Arc::new(headers);
                *held = Some((now + self.config.refresh, Arc::clone(&headers)));
                Ok(headers)
            }
            // The credentials in hand go on serving; the next read is tried in 30 s.
            (Err(e), Some((until, headers))) => {
                tracing::warn!(error = %e, "re-reading the GraphQL source's secret failed; the credentials in hand serve meanwhile");
                *until = now + Duration::from_secs(30);
                Ok(Arc::clone(headers))
            }
            // The attempt log and manage's answer, which tenants read, say only that the
            // secret could not be read: AWS's error names the account, the role and the
            // secret. The operator finds it in the log.
            (Err(e), None) => {
                tracing::error!(error = %e, "reading the GraphQL source's secret failed");
                Err(SourceError::Failed(
                    "the GraphQL source's secret could not be read (the deployment's logs say why)"
                        .into(),
                ))
            }
        }
    }
}

/// The headers a secret's string stands for: a JSON object of names and values, or the
/// value of `Authorization`. Never echoes the value in an error.
fn credential_headers(value: &str) -> Result<HeaderMap, String> {
    let value = value.trim();
    let pairs: Vec<(String, String)> = match serde_json::from_str::<Value>(value) {
        Ok(Value::Object(map)) => map
            .into_iter()
            .map(|(name, v)| match v {
                Value::String(v) => Ok((name, v)),
                _ => Err(format!("the value of `{name}` is not a string")),
            })
            .collect::<Result<_, _>>()?,
        _ => vec![("authorization".to_owned(), value.to_owned())],
    };
    let mut headers = HeaderMap::new();
    for (name, v) in pairs {
        let name = HeaderName::try_from(name.as_str())
            .map_err(|_| format!("`{name}` is not a header name"))?;
        let mut v = HeaderValue::try_from(v)
            .map_err(|_| format!("the value of `{name}` is not a header value"))?;
        v.set_sensitive(true);
        headers.insert(name, v);
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A secret read that never answers (Secrets Manager unreachable, no operation
    /// timeout in the SDK) ends at the query's limit, like a source that never answers.
    #[tokio::test]
    async fn a_secret_read_that_hangs_ends_at_the_querys_limit() {
        use aws_config::{BehaviorVersion, Region, SdkConfig};
        use aws_sdk_secretsmanager::config::{Credentials, SharedCredentialsProvider};
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", silent.local_addr().unwrap());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = silent.accept().await {
                held.push(socket);
            }
        });
        let sdk = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "testing", "testing", None, None, "herald",
            )))
            .build();
        let limit = Duration::from_millis(300);
        let source = GraphqlSource::new(
            GraphqlConfig {
                url: "http://127.0.0.1:9/graphql".parse().unwrap(),
                secret: Some("herald/graphql".into()),
                timeout: limit,
                refresh: Duration::from_secs(300),
            },
            Some(&sdk),
        )
        .unwrap();
        let tenant = TenantId::parse("acme").unwrap();
        let asked = tokio::time::timeout(
            Duration::from_secs(10),
            source.execute(&tenant, "query { shop { name } }", &Map::new()),
        )
        .await
        .expect("the query ends at its own limit, not the test's");
        assert_eq!(asked, Err(SourceError::Timeout(limit)));
    }

    #[test]
    fn a_secret_is_an_authorization_value_or_an_object_of_headers() {
        let headers = credential_headers("Bearer t0ken\n").unwrap();
        assert_eq!(headers["authorization"], "Bearer t0ken");
        let headers = credential_headers(r#"{"x-api-key": "k", "X-Shop": "s"}"#).unwrap();
        assert_eq!(headers["x-api-key"], "k");
        assert_eq!(headers["x-shop"], "s");
        let err = credential_headers(r#"{"bad name": "very-secret"}"#).unwrap_err();
        assert!(!err.contains("very-secret"), "{err}");
        let err = credential_headers(r#"{"x": "line\nbreak-secret"}"#).unwrap_err();
        assert!(!err.contains("secret"), "{err}");
        assert!(credential_headers(r#"{"x": 1}"#).is_err());
    }
}
