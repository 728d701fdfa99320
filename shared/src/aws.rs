//! The AWS SDK configuration, loaded once per container. `AWS_ENDPOINT_URL` (the local
//! runner's moto) is honoured by the SDK itself.

use aws_config::{BehaviorVersion, SdkConfig};

/// The SDK's configuration with Herald's HTTP client (crate::tls: AWS endpoints' roots
/// compiled in, no certificate files read at start-up).
pub async fn load_sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(crate::tls::aws_http_client())
        .load()
        .await
}
