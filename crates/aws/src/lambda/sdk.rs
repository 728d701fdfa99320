//! The AWS SDK configuration, loaded once per container. `AWS_ENDPOINT_URL` (the local
//! runner's moto) is honoured by the SDK itself; `HERALD_AWS_ENDPOINT_URL` does the same
//! for `sam local`, which passes a function only the variables the template declares.

use aws_config::environment::{
    EnvironmentVariableCredentialsProvider, EnvironmentVariableRegionProvider,
};
use aws_config::{BehaviorVersion, SdkConfig};

/// The SDK's configuration with Herald's HTTP client (crate::http::tls: AWS endpoints' roots
/// compiled in, no certificate files read at start-up).
///
/// Lambda hands every function its region and its role's credentials as environment
/// variables, which are the first places the SDK's default chains look. When they are
/// there, they are taken from there directly: the chains would return the same, and
/// building their other providers (profile files, web identity, the container and
/// instance metadata endpoints) was about 0.3 ms of every cold start. When they are not
/// (a developer's profile, say), the default chains run as usual.
pub async fn load_sdk_config() -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(crate::http::tls::aws_http_client());
    let from_env = FromEnvironment::read(|name| std::env::var(name).ok());
    if from_env.region {
        loader = loader.region(EnvironmentVariableRegionProvider::new());
    }
    if from_env.credentials {
        loader = loader.credentials_provider(EnvironmentVariableCredentialsProvider::new());
    }
    if let Some(endpoint) = from_env.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    loader.load().await
}

/// Which of the SDK's settings the environment alone provides, as the first link of the
/// SDK's default chain would find them.
#[derive(Debug, PartialEq, Eq)]
struct FromEnvironment {
    /// `AWS_REGION` or `AWS_DEFAULT_REGION`.
    region: bool,
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (the session token, when there is
    /// one, is read by the same provider).
    credentials: bool,
    /// `HERALD_AWS_ENDPOINT_URL`: every AWS API at this URL (a local stand-in for AWS).
    endpoint: Option<String>,
}

impl FromEnvironment {
    fn read(get: impl Fn(&str) -> Option<String>) -> Self {
        let set = |name: &str| get(name).is_some_and(|v| !v.trim().is_empty());
        Self {
            region: set("AWS_REGION") || set("AWS_DEFAULT_REGION"),
            credentials: set("AWS_ACCESS_KEY_ID") && set("AWS_SECRET_ACCESS_KEY"),
            endpoint: get("HERALD_AWS_ENDPOINT_URL").filter(|v| !v.trim().is_empty()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(vars: &[(&str, &str)]) -> FromEnvironment {
        FromEnvironment::read(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn lambdas_environment_provides_region_and_credentials() {
        let lambda = read(&[
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "ASIA…"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_SESSION_TOKEN", "token"),
        ]);
        assert_eq!(
            lambda,
            FromEnvironment {
                region: true,
                credentials: true,
                endpoint: None,
            }
        );
        assert!(read(&[("AWS_DEFAULT_REGION", "eu-west-1")]).region);
        // As the template sets it when deployed, and as `sam local` overrides it.
        assert_eq!(read(&[("HERALD_AWS_ENDPOINT_URL", "")]).endpoint, None);
        assert_eq!(
            read(&[("HERALD_AWS_ENDPOINT_URL", "http://127.0.0.1:5000")]).endpoint,
            Some("http://127.0.0.1:5000".to_owned())
        );
    }

    #[test]
    fn anything_missing_or_empty_leaves_it_to_the_default_chain() {
        assert_eq!(
            read(&[]),
            FromEnvironment {
                region: false,
                credentials: false,
                endpoint: None,
            }
        );
        // A key id without its secret (or a blank one) is not credentials.
        assert!(!read(&[("AWS_ACCESS_KEY_ID", "AKIA…")]).credentials);
        assert!(
            !read(&[
                ("AWS_ACCESS_KEY_ID", "AKIA…"),
                ("AWS_SECRET_ACCESS_KEY", " ")
            ])
            .credentials
        );
        assert!(!read(&[("AWS_REGION", "")]).region);
    }
}
