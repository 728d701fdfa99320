//! The moto endpoint that `make test` starts (`HERALD_TEST_MOTO_URL`), and a fresh,
//! uniquely named set of the template's tables and queues for each test.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use herald_local::{Provisioned, provision, template_path};

pub fn moto_url() -> String {
    std::env::var("HERALD_TEST_MOTO_URL").expect(
        "HERALD_TEST_MOTO_URL is not set: run the tests with `make test`, which starts moto",
    )
}

/// An SDK configuration for moto, built without touching the process environment.
pub fn sdk_config() -> SdkConfig {
    sdk_config_for(&moto_url())
}

/// The same, for another endpoint in front of moto (the fault-injecting proxy).
pub fn sdk_config_for(endpoint: &str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(
            Credentials::new("testing", "testing", None, None, "herald-tests"),
        ))
        .build()
}

/// A prefix no other test uses.
pub fn unique_prefix() -> String {
    format!("t{:016x}", rand::random::<u64>())
}

pub struct TestAws {
    pub sdk: SdkConfig,
    pub prefix: String,
    pub provisioned: Provisioned,
    pub dynamo: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
}

impl TestAws {
    pub async fn new() -> Self {
        let sdk = sdk_config();
        let prefix = unique_prefix();
        let provisioned = provision(&sdk, &prefix, &template_path())
            .await
            .expect("provisioning on moto");
        Self {
            dynamo: aws_sdk_dynamodb::Client::new(&sdk),
            sqs: aws_sdk_sqs::Client::new(&sdk),
            sdk,
            prefix,
            provisioned,
        }
    }

    /// Every message visible on a queue right now. They are received (hidden) until all
    /// are seen, then made visible again, so the receipt handles returned stay valid.
    pub async fn peek_queue(&self, url: &str) -> Vec<aws_sdk_sqs::types::Message> {
        let mut all = Vec::new();
        loop {
            let output = self
                .sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .visibility_timeout(60)
                .message_attribute_names("All")
                .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
                .wait_time_seconds(0)
                .send()
                .await
                .expect("receiving");
            if output.messages().is_empty() {
                break;
            }
            all.extend(output.messages().iter().cloned());
        }
        for message in &all {
            self.sqs
                .change_message_visibility()
                .queue_url(url)
                .receipt_handle(message.receipt_handle().unwrap_or_default())
                .visibility_timeout(0)
                .send()
                .await
                .expect("making a message visible again");
        }
        all
    }
}

/// How many messages wait on a queue (SQS's approximate count; exact on moto).
pub async fn queue_depth(sqs: &aws_sdk_sqs::Client, url: &str) -> usize {
    use aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages;
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(ApproximateNumberOfMessages)
        .send()
        .await
        .expect("reading the queue's attributes");
    attributes
        .attributes()
        .and_then(|a| a.get(&ApproximateNumberOfMessages))
        .and_then(|n| n.parse().ok())
        .expect("the queue's message count")
}
