//! The AWS SDK configuration, loaded once per container. `AWS_ENDPOINT_URL` (the local
//! runner's moto) is honoured by the SDK itself.

use aws_config::{BehaviorVersion, SdkConfig};

pub async fn load_sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}
