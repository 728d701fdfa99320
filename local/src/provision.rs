//! Creates the tables and queues that `template.yaml` declares, against whatever endpoint
//! the SDK points at (moto, locally), so the template is the one definition of them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
};
use aws_sdk_sqs::types::QueueAttributeName;
use yaml_serde::Value;

/// What was created, by the template's logical ids.
#[derive(Clone, Debug, Default)]
pub struct Provisioned {
    pub tables: HashMap<String, String>,
    /// Logical id to (queue URL, queue ARN).
    pub queues: HashMap<String, (String, String)>,
    /// Logical id to KMS key ARN.
    pub keys: HashMap<String, String>,
}

impl Provisioned {
    fn table(&self, logical: &str) -> &str {
        self.tables
            .get(logical)
            .map(String::as_str)
            .unwrap_or_default()
    }
    fn queue(&self, logical: &str) -> &str {
        self.queues
            .get(logical)
            .map(|(url, _)| url.as_str())
            .unwrap_or_default()
    }
    pub fn subscriptions_table(&self) -> &str {
        self.table("SubscriptionsTable")
    }
    pub fn deliveries_table(&self) -> &str {
        self.table("DeliveriesTable")
    }
    pub fn events_table(&self) -> &str {
        self.table("EventsTable")
    }
    pub fn portal_sessions_table(&self) -> &str {
        self.table("PortalSessionsTable")
    }
    pub fn delivery_queue_url(&self) -> &str {
        self.queue("DeliveryQueue")
    }
    pub fn dead_letter_queue_url(&self) -> &str {
        self.queue("DeadLetterQueue")
    }
    pub fn ordered_queue_url(&self) -> &str {
        self.queue("OrderedDeliveryQueue")
    }
    pub fn ordered_dead_letter_queue_url(&self) -> &str {
        self.queue("OrderedDeadLetterQueue")
    }
    pub fn slow_queue_url(&self) -> &str {
        self.queue("SlowDeliveryQueue")
    }

    /// The variables the functions read, as the template's `Globals` would set them.
    pub fn environment(&self) -> HashMap<String, String> {
        HashMap::from([
            (
                "HERALD_SUBSCRIPTIONS_TABLE".into(),
                self.subscriptions_table().into(),
            ),
            (
                "HERALD_DELIVERIES_TABLE".into(),
                self.deliveries_table().into(),
            ),
            ("HERALD_EVENTS_TABLE".into(), self.events_table().into()),
            (
                "HERALD_PORTAL_SESSIONS_TABLE".into(),
                self.portal_sessions_table().into(),
            ),
            (
                "HERALD_DELIVERY_QUEUE_URL".into(),
                self.delivery_queue_url().into(),
            ),
            (
                "HERALD_DEAD_LETTER_QUEUE_URL".into(),
                self.dead_letter_queue_url().into(),
            ),
            (
                "HERALD_ORDERED_QUEUE_URL".into(),
                self.ordered_queue_url().into(),
            ),
            (
                "HERALD_ORDERED_DEAD_LETTER_QUEUE_URL".into(),
                self.ordered_dead_letter_queue_url().into(),
            ),
            ("HERALD_SLOW_QUEUE_URL".into(), self.slow_queue_url().into()),
            (
                "HERALD_SECRETS_KEY".into(),
                self.keys.get("SecretsKey").cloned().unwrap_or_default(),
            ),
        ])
    }
}

/// One of the deliver function's SQS event sources, as the template maps it.
#[derive(Clone, Debug, PartialEq)]
pub struct EventSource {
    /// The queue's logical id.
    pub queue: String,
    /// `BatchSize`: the most records an invocation is handed (10 when unset).
    pub batch_size: i32,
    /// The template parameter `BatchSize` names (`!Ref`), if it names one: a deployment
    /// that sets the parameter sets this source's batch.
    pub batch_parameter: Option<String>,
    /// `MaximumBatchingWindowInSeconds`: how long a batch is gathered (0 when unset).
    pub batching_window: Duration,
}

impl EventSource {
    /// The batch this source hands over in a deployment that sets `DeliveryBatchSize` to
    /// `delivery_batch_size` (None: the parameter's default): the sources the template
    /// sizes by that parameter take it, the others (the ordered lines') keep their own.
    pub fn batch_size_with(&self, delivery_batch_size: Option<i32>) -> i32 {
        match delivery_batch_size {
            Some(size) if self.batch_parameter.as_deref() == Some("DeliveryBatchSize") => size,
            _ => self.batch_size,
        }
    }
}

/// The deliver function's SQS event sources in the template, their parameters resolved
/// to their defaults.
pub fn event_sources(template: &Value) -> Vec<EventSource> {
    let events = template
        .get("Resources")
        .and_then(|r| r.get("DeliverFunction"))
        .and_then(|f| f.get("Properties"))
        .and_then(|p| p.get("Events"))
        .and_then(Value::as_mapping);
    events
        .into_iter()
        .flatten()
        .filter(|(_, event)| event.get("Type").and_then(Value::as_str) == Some("SQS"))
        .filter_map(|(_, event)| {
            let properties = event.get("Properties")?;
            let queue = match properties.get("Queue")? {
                Value::Tagged(t) if t.tag == "GetAtt" => {
                    t.value.as_str()?.strip_suffix(".Arn")?.to_owned()
                }
                _ => return None,
            };
            let number = |name: &str| {
                properties
                    .get(name)
                    .and_then(|b| scalar(b, template))
                    .and_then(|b| b.parse::<i32>().ok())
            };
            let batch_parameter = match properties.get("BatchSize") {
                Some(Value::Tagged(t)) if t.tag == "Ref" => t.value.as_str().map(str::to_owned),
                _ => None,
            };
            Some(EventSource {
                queue,
                batch_size: number("BatchSize").unwrap_or(10),
                batch_parameter,
                batching_window: Duration::from_secs(
                    number("MaximumBatchingWindowInSeconds").unwrap_or(0).max(0) as u64,
                ),
            })
        })
        .collect()
}

/// The deliver function's `Timeout` (or the template's `Globals`), in seconds; Lambda's
/// default of 3 when neither sets one.
pub fn deliver_timeout(template: &Value) -> Duration {
    let own = template
        .get("Resources")
        .and_then(|r| r.get("DeliverFunction"))
        .and_then(|f| f.get("Properties"))
        .and_then(|p| p.get("Timeout"));
    let global = template
        .get("Globals")
        .and_then(|g| g.get("Function"))
        .and_then(|f| f.get("Timeout"));
    let seconds = own
        .or(global)
        .and_then(|t| scalar(t, template))
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(3);
    Duration::from_secs(seconds)
}

/// `template.yaml` at the root of the workspace, or `HERALD_TEMPLATE`.
pub fn template_path() -> PathBuf {
    std::env::var_os("HERALD_TEMPLATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml"))
}

/// Properties of a resource that declares none.
static NO_PROPERTIES: Value = Value::Null;

/// The template's resources of one type, by logical id, with their properties.
fn resources<'a>(template: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    template
        .get("Resources")
        .and_then(Value::as_mapping)
        .into_iter()
        .flatten()
        .filter(|(_, r)| r.get("Type").and_then(Value::as_str) == Some(kind))
        .filter_map(|(id, r)| Some((id.as_str()?, r.get("Properties").unwrap_or(&NO_PROPERTIES))))
        .collect()
}

fn text<'a>(value: &'a Value, field: &str) -> anyhow::Result<&'a str> {
    value
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("`{field}` is missing or not text"))
}

/// A scalar property as text: a literal, or `!Ref <Parameter>` resolved to the parameter's
/// default (the values a plain `sam deploy` would use).
fn scalar(value: &Value, template: &Value) -> Option<String> {
    let parameter = match value {
        Value::Number(n) => return Some(n.to_string()),
        Value::String(s) => return Some(s.clone()),
        Value::Bool(b) => return Some(b.to_string()),
        Value::Tagged(tagged) if tagged.tag == "Ref" => tagged.value.as_str()?,
        Value::Mapping(m) => m.get("Ref")?.as_str()?,
        _ => return None,
    };
    let default = template.get("Parameters")?.get(parameter)?.get("Default")?;
    scalar(default, template)
}

fn key_schema(value: &Value) -> anyhow::Result<Vec<KeySchemaElement>> {
    value
        .get("KeySchema")
        .and_then(Value::as_sequence)
        .ok_or_else(|| anyhow!("KeySchema is missing"))?
        .iter()
        .map(|k| {
            Ok(KeySchemaElement::builder()
                .attribute_name(text(k, "AttributeName")?)
                .key_type(KeyType::from(text(k, "KeyType")?))
                .build()?)
        })
        .collect()
}

pub async fn provision(
    sdk: &SdkConfig,
    prefix: &str,
    template: &Path,
) -> anyhow::Result<Provisioned> {
    let source = std::fs::read_to_string(template)
        .with_context(|| format!("reading {}", template.display()))?;
    let template: Value =
        yaml_serde::from_str(&source).with_context(|| format!("parsing {}", template.display()))?;
    let mut provisioned = Provisioned::default();
    let dynamo = aws_sdk_dynamodb::Client::new(sdk);
    for (logical, properties) in resources(&template, "AWS::DynamoDB::Table") {
        let name = format!("{prefix}-{logical}");
        create_table(&dynamo, &name, properties, &template)
            .await
            .with_context(|| format!("creating table {logical}"))?;
        provisioned.tables.insert(logical.to_owned(), name);
    }
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let mut queues = resources(&template, "AWS::SQS::Queue");
    // Dead-letter targets first, so a redrive policy can name their ARN.
    queues.sort_by_key(|(_, p)| p.get("RedrivePolicy").is_some());
    for (logical, properties) in queues {
        // A FIFO queue's name ends in `.fifo`, as CloudFormation names one.
        let fifo = properties
            .get("FifoQueue")
            .and_then(|v| scalar(v, &template))
            == Some("true".into());
        let name = format!("{prefix}-{logical}{}", if fifo { ".fifo" } else { "" });
        let (url, arn) = create_queue(&sqs, &name, properties, &template, &provisioned)
            .await
            .with_context(|| format!("creating queue {logical}"))?;
        provisioned.queues.insert(logical.to_owned(), (url, arn));
    }
    let kms = aws_sdk_kms::Client::new(sdk);
    for (logical, properties) in resources(&template, "AWS::KMS::Key") {
        let arn = provision_key(&kms, &format!("{prefix}-{logical}"), properties, &template)
            .await
            .with_context(|| format!("creating KMS key {logical}"))?;
        provisioned.keys.insert(logical.to_owned(), arn);
    }
    Ok(provisioned)
}

/// The key under the alias `alias/<name>`, made (with the alias) the first time: a runner
/// started again on the same prefix opens what it sealed before.
async fn provision_key(
    kms: &aws_sdk_kms::Client,
    name: &str,
    properties: &Value,
    template: &Value,
) -> anyhow::Result<String> {
    let alias = format!("alias/{name}");
    match kms.describe_key().key_id(&alias).send().await {
        Ok(found) => {
            return found
                .key_metadata()
                .map(|m| m.arn().unwrap_or(m.key_id()).to_owned())
                .ok_or_else(|| anyhow!("KMS describes {alias} without its key"));
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_not_found_exception()) => {}
        Err(e) => return Err(e).context(format!("looking for {alias}")),
    }
    let description = properties
        .get("Description")
        .and_then(|v| scalar(v, template))
        .unwrap_or_default();
    let made = kms
        .create_key()
        .description(format!("{name}: {description}"))
        .send()
        .await?;
    let metadata = made
        .key_metadata()
        .ok_or_else(|| anyhow!("KMS made a key without describing it"))?;
    kms.create_alias()
        .alias_name(&alias)
        .target_key_id(metadata.key_id())
        .send()
        .await
        .with_context(|| format!("naming the key {alias}"))?;
    Ok(metadata.arn().unwrap_or(metadata.key_id()).to_owned())
}

async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
    p: &Value,
    template: &Value,
) -> anyhow::Result<()> {
    let attributes = p
        .get("AttributeDefinitions")
        .and_then(Value::as_sequence)
        .ok_or_else(|| anyhow!("AttributeDefinitions is missing"))?
        .iter()
        .map(|a| {
            Ok(AttributeDefinition::builder()
                .attribute_name(text(a, "AttributeName")?)
                .attribute_type(ScalarAttributeType::from(text(a, "AttributeType")?))
                .build()?)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut request = client
        .create_table()
        .table_name(name)
        // Locally the parameter's default, on-demand: moto does not meter capacity.
        .billing_mode(BillingMode::from(
            p.get("BillingMode")
                .and_then(|b| scalar(b, template))
                .as_deref()
                .unwrap_or("PAY_PER_REQUEST"),
        ))
        .set_attribute_definitions(Some(attributes))
        .set_key_schema(Some(key_schema(p)?));
    for index in p
        .get("GlobalSecondaryIndexes")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
    {
        let projection = index
            .get("Projection")
            .and_then(|v| v.get("ProjectionType"))
            .and_then(Value::as_str);
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(text(index, "IndexName")?)
                .set_key_schema(Some(key_schema(index)?))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(projection.unwrap_or("ALL")))
                        .build(),
                )
                .build()?,
        );
    }
    match request.send().await {
        Ok(_) => {}
        // Made by an earlier run with this prefix.
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception()) => {}
        Err(e) => return Err(e.into()),
    }
    if let Some(ttl) = p.get("TimeToLiveSpecification") {
        wait_until_active(client, name).await?;
        enable_ttl(client, name, ttl).await?;
    }
    Ok(())
}

/// DynamoDB refuses changes to a table still being created (moto creates at once).
async fn wait_until_active(client: &aws_sdk_dynamodb::Client, name: &str) -> anyhow::Result<()> {
    for _ in 0..120 {
        let described = client.describe_table().table_name(name).send().await?;
        if described.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("table {name} did not become active within a minute")
}

/// Turns TTL on unless it is on already: DynamoDB refuses to enable it twice.
async fn enable_ttl(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
    ttl: &Value,
) -> anyhow::Result<()> {
    let attribute = text(ttl, "AttributeName")?;
    let enabled = ttl.get("Enabled").and_then(Value::as_bool).unwrap_or(true);
    let current = client
        .describe_time_to_live()
        .table_name(name)
        .send()
        .await?;
    let current = current.time_to_live_description();
    let on = matches!(
        current.and_then(|d| d.time_to_live_status()),
        Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
    );
    if on == enabled && (!on || current.and_then(|d| d.attribute_name()) == Some(attribute)) {
        return Ok(());
    }
    client
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name(attribute)
                .enabled(enabled)
                .build()?,
        )
        .send()
        .await?;
    Ok(())
}

/// A template value that may be a `!GetAtt Queue.Arn` of a queue made already.
fn resolve_arn(value: &Value, provisioned: &Provisioned) -> anyhow::Result<String> {
    let target = match value {
        Value::Tagged(tagged) if tagged.tag == "GetAtt" => tagged.value.as_str().map(str::to_owned),
        Value::Mapping(m) => m
            .get("Fn::GetAtt")
            .and_then(Value::as_sequence)
            .and_then(|s| s.first())
            .and_then(Value::as_str)
            .map(|s| format!("{s}.Arn")),
        Value::String(s) => return Ok(s.clone()),
        _ => None,
    }
    .ok_or_else(|| anyhow!("deadLetterTargetArn must be `!GetAtt <Queue>.Arn`"))?;
    let logical = target.strip_suffix(".Arn").unwrap_or(&target);
    provisioned
        .queues
        .get(logical)
        .map(|(_, arn)| arn.clone())
        .ok_or_else(|| anyhow!("{logical} is not a queue of the template"))
}

/// The queue attributes the template sets, as SQS names them.
fn queue_attributes(
    p: &Value,
    template: &Value,
    provisioned: &Provisioned,
) -> anyhow::Result<HashMap<QueueAttributeName, String>> {
    let mut attributes = HashMap::new();
    for (field, attribute) in [
        ("VisibilityTimeout", QueueAttributeName::VisibilityTimeout),
        (
            "MessageRetentionPeriod",
            QueueAttributeName::MessageRetentionPeriod,
        ),
        ("DelaySeconds", QueueAttributeName::DelaySeconds),
        (
            "ReceiveMessageWaitTimeSeconds",
            QueueAttributeName::ReceiveMessageWaitTimeSeconds,
        ),
        ("MaximumMessageSize", QueueAttributeName::MaximumMessageSize),
        ("FifoQueue", QueueAttributeName::FifoQueue),
        (
            "ContentBasedDeduplication",
            QueueAttributeName::ContentBasedDeduplication,
        ),
        ("DeduplicationScope", QueueAttributeName::DeduplicationScope),
        (
            "FifoThroughputLimit",
            QueueAttributeName::FifoThroughputLimit,
        ),
    ] {
        if let Some(value) = p.get(field) {
            let value = scalar(value, template)
                .ok_or_else(|| anyhow!("{field} is neither a literal nor a parameter"))?;
            attributes.insert(attribute, value);
        }
    }
    if let Some(redrive) = p.get("RedrivePolicy") {
        let target = resolve_arn(
            redrive
                .get("deadLetterTargetArn")
                .ok_or_else(|| anyhow!("no deadLetterTargetArn"))?,
            provisioned,
        )?;
        let max = redrive
            .get("maxReceiveCount")
            .and_then(|v| scalar(v, template))
            .ok_or_else(|| anyhow!("no maxReceiveCount"))?;
        let max: u32 = max
            .parse()
            .with_context(|| format!("maxReceiveCount `{max}` is not a number"))?;
        let policy = serde_json::json!({"deadLetterTargetArn": target, "maxReceiveCount": max});
        attributes.insert(QueueAttributeName::RedrivePolicy, policy.to_string());
    }
    Ok(attributes)
}

async fn create_queue(
    client: &aws_sdk_sqs::Client,
    name: &str,
    p: &Value,
    template: &Value,
    provisioned: &Provisioned,
) -> anyhow::Result<(String, String)> {
    let attributes = queue_attributes(p, template, provisioned)?;
    let created = client
        .create_queue()
        .queue_name(name)
        .set_attributes(Some(attributes.clone()))
        .send()
        .await;
    let url = match created {
        Ok(output) => output
            .queue_url()
            .ok_or_else(|| anyhow!("no queue URL returned"))?
            .to_owned(),
        // Made by an earlier run with other settings: bring it in line with the template.
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_queue_name_exists()) =>
        {
            let url = client
                .get_queue_url()
                .queue_name(name)
                .send()
                .await?
                .queue_url()
                .ok_or_else(|| anyhow!("no queue URL returned"))?
                .to_owned();
            client
                .set_queue_attributes()
                .queue_url(&url)
                .set_attributes(Some(attributes))
                .send()
                .await?;
            url
        }
        Err(e) => return Err(e.into()),
    };
    let attributes = client
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?;
    let arn = attributes
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| anyhow!("no queue ARN returned"))?;
    if arn.is_empty() {
        bail!("empty queue ARN");
    }
    Ok((url, arn))
}

#[cfg(test)]
mod tests {

    use super::*;

    fn template() -> Value {
        yaml_serde::from_str(&std::fs::read_to_string(template_path()).unwrap()).unwrap()
    }

    #[test]
    fn the_event_sources_and_timeout_are_the_templates_with_its_parameters_defaults() {
        let template = template();
        let mut sources = event_sources(&template);
        sources.sort_by(|a, b| a.queue.cmp(&b.queue));
        let second = Duration::from_secs(1);
        assert_eq!(
            sources,
            vec![
                EventSource {
                    queue: "DeliveryQueue".into(),
                    // `!Ref DeliveryBatchSize`, resolved to its default.
                    batch_size: 10,
                    batch_parameter: Some("DeliveryBatchSize".into()),
                    batching_window: second,
                },
                EventSource {
                    queue: "OrderedDeliveryQueue".into(),
                    batch_size: 1,
                    batch_parameter: None,
                    batching_window: Duration::ZERO,
                },
                EventSource {
                    queue: "SlowDeliveryQueue".into(),
                    batch_size: 10,
                    batch_parameter: Some("DeliveryBatchSize".into()),
                    batching_window: second,
                },
            ]
        );
        assert_eq!(deliver_timeout(&template), Duration::from_secs(60));
        // A deployment's `DeliveryBatchSize` sizes the two it names, not the ordered lines.
        let sized: Vec<i32> = sources
            .iter()
            .map(|s| s.batch_size_with(Some(100)))
            .collect();
        assert_eq!(sized, [100, 1, 100]);
        let default: Vec<i32> = sources.iter().map(|s| s.batch_size_with(None)).collect();
        assert_eq!(default, [10, 1, 10]);
    }

    #[test]
    fn a_function_without_a_timeout_has_lambdas_default() {
        let template: Value =
            yaml_serde::from_str("Resources:\n  DeliverFunction:\n    Properties: {}\n").unwrap();
        assert_eq!(deliver_timeout(&template), Duration::from_secs(3));
        let global: Value = yaml_serde::from_str(
            "Globals:\n  Function:\n    Timeout: 20\nResources:\n  DeliverFunction:\n    Properties: {}\n",
        )
        .unwrap();
        assert_eq!(deliver_timeout(&global), Duration::from_secs(20));
    }
}
