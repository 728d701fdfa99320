//! Herald on AWS: the ports of `herald-core` implemented on DynamoDB, SQS, Secrets Manager
//! and HTTP, and what a Lambda function needs to start (the SDK's configuration, the
//! runtime, telemetry, configuration read from the environment, API Gateway's requests).

pub mod cache;
pub mod dynamo;
pub mod graphql;
pub mod http;
pub mod lambda;
pub mod seal;
pub mod secrets;
pub mod sqs;
pub mod xray;
