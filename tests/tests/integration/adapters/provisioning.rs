use aws_sdk_dynamodb::types::{KeyType, TimeToLiveStatus};
use aws_sdk_sqs::types::QueueAttributeName;
use herald_local::{provision, template_path};
use herald_tests::aws::TestAws;

/// (attribute, key type) pairs of a key schema.
fn keys(schema: &[aws_sdk_dynamodb::types::KeySchemaElement]) -> Vec<(&str, KeyType)> {
    schema
        .iter()
        .map(|k| (k.attribute_name(), k.key_type().clone()))
        .collect()
}

#[tokio::test]
async fn tables_have_the_templates_keys_and_ttl() {
    let aws = TestAws::new().await;
    let p = &aws.provisioned;
    assert_eq!(
        p.deliveries_table(),
        format!("{}-DeliveriesTable", aws.prefix)
    );
    for table in [p.subscriptions_table(), p.events_table()] {
        let described = aws
            .dynamo
            .describe_table()
            .table_name(table)
            .send()
            .await
            .unwrap();
        let described = described.table().unwrap();
        assert_eq!(
            keys(described.key_schema()),
            vec![("tenant", KeyType::Hash), ("id", KeyType::Range)]
        );
    }

    let described = aws
        .dynamo
        .describe_table()
        .table_name(p.deliveries_table())
        .send()
        .await
        .unwrap();
    let table = described.table().unwrap();
    assert_eq!(
        keys(table.key_schema()),
        vec![("subscription_key", KeyType::Hash), ("id", KeyType::Range)],
        "deliveries are keyed by subscription, so the attempt log needs no index"
    );
    assert!(table.global_secondary_indexes().is_empty());

    for table in [p.deliveries_table(), p.events_table()] {
        let ttl = aws
            .dynamo
            .describe_time_to_live()
            .table_name(table)
            .send()
            .await
            .unwrap();
        let ttl = ttl.time_to_live_description().unwrap();
        assert_eq!(ttl.attribute_name(), Some("expires_at"));
        assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));
    }
}

#[tokio::test]
async fn the_delivery_queue_redrives_to_the_dead_letter_queue() {
    let aws = TestAws::new().await;
    let attributes = aws
        .sqs
        .get_queue_attributes()
        .queue_url(aws.provisioned.delivery_queue_url())
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let attributes = attributes.attributes().unwrap();
    let redrive: serde_json::Value =
        serde_json::from_str(&attributes[&QueueAttributeName::RedrivePolicy]).unwrap();
    assert_eq!(
        redrive["deadLetterTargetArn"].as_str().unwrap(),
        aws.provisioned.queues["DeadLetterQueue"].1
    );
    assert_eq!(
        redrive["maxReceiveCount"].to_string().trim_matches('"'),
        "50"
    );
    assert_eq!(attributes[&QueueAttributeName::VisibilityTimeout], "360");
    assert_eq!(
        attributes[&QueueAttributeName::MessageRetentionPeriod],
        "1209600"
    );
}

#[tokio::test]
async fn provisioning_twice_with_one_prefix_finds_what_is_there() {
    let aws = TestAws::new().await;
    let again = provision(&aws.sdk, &aws.prefix, &template_path())
        .await
        .unwrap();
    assert_eq!(again.tables, aws.provisioned.tables);
    assert_eq!(again.queues, aws.provisioned.queues);
    // The same secrets key: what the first run sealed still opens.
    assert!(aws.provisioned.keys["SecretsKey"].starts_with("arn:aws:kms:"));
    assert_eq!(again.keys, aws.provisioned.keys);
}

#[tokio::test]
async fn the_ordered_queue_is_fifo_and_redrives_to_a_fifo_dead_letter_queue_as_the_other_does() {
    let aws = TestAws::new().await;
    let read = |url: String| {
        let sqs = aws.sqs.clone();
        async move {
            sqs.get_queue_attributes()
                .queue_url(url)
                .attribute_names(QueueAttributeName::All)
                .send()
                .await
                .unwrap()
                .attributes()
                .unwrap()
                .clone()
        }
    };
    let ordered = read(aws.provisioned.ordered_queue_url().to_owned()).await;
    let standard = read(aws.provisioned.delivery_queue_url().to_owned()).await;
    let dead = read(aws.provisioned.ordered_dead_letter_queue_url().to_owned()).await;
    assert!(aws.provisioned.ordered_queue_url().ends_with(".fifo"));
    assert_eq!(ordered[&QueueAttributeName::FifoQueue], "true");
    assert_eq!(dead[&QueueAttributeName::FifoQueue], "true");
    assert_eq!(
        ordered[&QueueAttributeName::ContentBasedDeduplication],
        "false"
    );
    let redrive = |attributes: &std::collections::HashMap<QueueAttributeName, String>| {
        serde_json::from_str::<serde_json::Value>(&attributes[&QueueAttributeName::RedrivePolicy])
            .unwrap()
    };
    assert_eq!(
        redrive(&ordered)["deadLetterTargetArn"].as_str().unwrap(),
        aws.provisioned.queues["OrderedDeadLetterQueue"].1
    );
    // The same receive limit as the other lane: deliver reads one HERALD_MAX_RECEIVE_COUNT.
    assert_eq!(
        redrive(&ordered)["maxReceiveCount"],
        redrive(&standard)["maxReceiveCount"]
    );
    assert_eq!(
        ordered[&QueueAttributeName::VisibilityTimeout],
        standard[&QueueAttributeName::VisibilityTimeout]
    );
}
