//! The release bootstraps under the Lambda Runtime Interface Emulator, against moto, fed
//! every file of `events/` as `sam local invoke -e` would feed it: each answers what a user
//! trying that file should see.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use herald_aws::dynamo::DynamoSubscriptionStore;
use herald_aws::lambda::wiring::Function;
use herald_core::ids::SubscriptionId;
use herald_core::ports::SubscriptionStore;
use herald_core::subscription::url::{SubscriptionUrl, UrlPolicy};
use herald_testkit::active_subscription;
use herald_tests::aws::{TestAws, moto_url};
use herald_tests::aws_proxy::{AwsCall, RecordingProxy};
use herald_tests::emulator::{Emulator, event_file, event_files};
use herald_tests::receiver::{Script, TestReceiver};
use serde_json::{Value, json};

/// Every events/ file, and the test below that invokes it.
const EXERCISED: [&str; 15] = [
    "deliver/batch-of-two.json",
    "deliver/ordered-line.json",
    "deliver/poison-message.json",
    "deliver/slow-lane.json",
    "ingest/bad-json.json",
    "ingest/missing-type.json",
    "ingest/no-tenant.json",
    "ingest/publish-batch.json",
    "ingest/publish-one-default-stage.json",
    "ingest/publish-one.json",
    "manage/create-subscription-private-url.json",
    "manage/create-subscription.json",
    "manage/list-subscriptions-custom-domain.json",
    "manage/list-subscriptions.json",
    "manage/signing-keys.json",
];

/// `example.com`'s public address: the name in `create-subscription.json` resolves there
/// for a user, and the registration's SSRF check asks for it.
const PUBLIC_DNS: [(&str, &str); 1] = [("example.com", "93.184.215.14")];

/// What a deployed function has: the template's variables with the provisioned names, and
/// the AWS endpoint, region and credentials the Lambda service would give it.
fn function_env(
    aws: &TestAws,
    endpoint: &RecordingProxy,
    extra: &[(&str, &str)],
) -> HashMap<String, String> {
    let mut env = aws.provisioned.environment();
    for (name, value) in [
        ("AWS_ENDPOINT_URL", endpoint.url().as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("HERALD_TENANT_CLAIM", "tenant"),
        ("HERALD_IDEMPOTENCY_KEY_PREFIX", "ffm_wh_"),
    ]
    .iter()
    .chain(extra)
    {
        env.insert((*name).to_owned(), (*value).to_owned());
    }
    env
}

/// The emulator initialised the bootstrap once and reported each invocation.
fn ran_under_the_emulator(emulator: &Emulator, invocations: usize) {
    let output = emulator.output();
    assert_eq!(
        output.matches("INIT REPORT(durationMs").count(),
        1,
        "{output}"
    );
    assert_eq!(
        output.matches("REPORT RequestId").count(),
        invocations,
        "{output}"
    );
}

fn status(answer: &Value) -> u64 {
    answer["statusCode"]
        .as_u64()
        .unwrap_or_else(|| panic!("no statusCode in {answer}"))
}

fn body(answer: &Value) -> Value {
    let text = answer["body"].as_str().unwrap_or("");
    serde_json::from_str(text).unwrap_or_else(|e| panic!("body is not JSON ({e}): {answer}"))
}

#[test]
fn every_events_file_is_invoked_by_a_test_here() {
    let on_disk: BTreeSet<String> = event_files().into_iter().collect();
    let exercised: BTreeSet<String> = EXERCISED.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(
        on_disk, exercised,
        "events/ and the files these tests invoke differ"
    );
    let source = include_str!("lambda.rs");
    for file in &on_disk {
        assert!(
            source.matches(&format!("\"{file}\"")).count() >= 2,
            "{file} is listed but no test invokes it"
        );
    }
}

#[tokio::test]
async fn manage_and_ingest_answer_their_events_files() {
    let aws = TestAws::new().await;
    let manage_calls = RecordingProxy::start(moto_url()).await;
    let ingest_calls = RecordingProxy::start(moto_url()).await;
    // The deployment offers v1a signatures: manage makes tenants' own keys, and never
    // reads the deployment's (its policy grants no GetSecretValue on the secret).
    let secret = ed25519_secret(&aws).await;
    let manage = Emulator::start(
        "manage",
        &function_env(
            &aws,
            &manage_calls,
            &[
                ("HERALD_ED25519_SIGNING_KEY_SECRET", secret.as_str()),
                ("HERALD_MAX_REQUESTS_PER_SECOND", "1000"),
            ],
        ),
        &PUBLIC_DNS,
    )
    .await;
    // Each tenant's requests a second counted, as the template deploys them: the counter's
    // writes are checked against each function's policy below.
    let ingest = Emulator::start(
        "ingest",
        &function_env(
            &aws,
            &ingest_calls,
            &[("HERALD_MAX_REQUESTS_PER_SECOND", "1000")],
        ),
        &[],
    )
    .await;

    let created = manage
        .invoke(&event_file("manage/create-subscription.json"))
        .await;
    assert_eq!(status(&created), 201, "{created}\n{}", manage.output());
    let subscription = body(&created);
    assert_eq!(subscription["url"], "https://example.com/webhooks/herald");
    assert!(
        subscription["secret"]
            .as_str()
            .is_some_and(|s| s.starts_with("whsec_")),
        "{subscription}"
    );

    let private = manage
        .invoke(&event_file("manage/create-subscription-private-url.json"))
        .await;
    assert_eq!(status(&private), 422, "{private}");
    assert!(
        body(&private).to_string().contains("169.254.169.254"),
        "{private}"
    );

    let listed = manage
        .invoke_with_cargo_lambda("manage/list-subscriptions.json")
        .await;
    assert_eq!(status(&listed), 200, "{listed}");
    let listed_body = body(&listed);
    let ids: Vec<&Value> = listed_body["data"]
        .as_array()
        .map(|items| items.iter().map(|s| &s["id"]).collect())
        .unwrap_or_default();
    assert_eq!(ids, [&subscription["id"]], "{listed}");
    // Through a custom domain whose API mapping points at the stage: the same route.
    let through_domain = manage
        .invoke(&event_file("manage/list-subscriptions-custom-domain.json"))
        .await;
    assert_eq!(status(&through_domain), 200, "{through_domain}");
    assert_eq!(body(&through_domain), listed_body);

    // The tenant's own keys, made on its first ask: a pair whose private halves manage
    // had sealed (the data key above) and whose public halves it serves.
    let keys = manage.invoke(&event_file("manage/signing-keys.json")).await;
    assert_eq!(status(&keys), 200, "{keys}\n{}", manage.output());
    let keys = body(&keys);
    assert!(
        keys["ed25519"]
            .as_str()
            .is_some_and(|k| k.starts_with("whpk_")),
        "{keys}"
    );
    assert_eq!(keys["keys"].as_array().map(Vec::len), Some(1), "{keys}");
    assert!(
        manage_calls
            .calls()
            .iter()
            .all(|c| !c.action.starts_with("secretsmanager:")),
        "manage read a secret: {:?}",
        manage_calls.calls()
    );

    // The subscription above wants order.*: publish-one fans out to it.
    let published = ingest.invoke(&event_file("ingest/publish-one.json")).await;
    assert_eq!(status(&published), 202, "{published}\n{}", ingest.output());
    let answer = body(&published);
    assert_eq!(answer["id"], "ord_1001.shipped", "{answer}");
    assert_eq!(answer["deliveries"], 1, "{answer}");
    let queued = aws.peek_queue(aws.provisioned.delivery_queue_url()).await;
    assert_eq!(queued.len(), 1);
    let task: Value = serde_json::from_str(queued[0].body().unwrap()).unwrap();
    assert_eq!(task["subscription_id"], subscription["id"]);
    assert_eq!(task["event"]["id"], "ord_1001.shipped");

    // The $default stage, whose URLs have no stage segment.
    let on_default = ingest
        .invoke(&event_file("ingest/publish-one-default-stage.json"))
        .await;
    assert_eq!(status(&on_default), 202, "{on_default}");
    assert_eq!(body(&on_default)["deliveries"], 1, "{on_default}");

    let batch = ingest
        .invoke(&event_file("ingest/publish-batch.json"))
        .await;
    assert_eq!(status(&batch), 202, "{batch}");
    assert_eq!(
        body(&batch),
        json!({"events": [
            {"id": "inv_1", "deliveries": 0, "duplicate": false},
            {"id": "inv_2", "deliveries": 0, "duplicate": false}
        ]})
    );

    for (file, expected) in [
        ("ingest/bad-json.json", 400),
        ("ingest/missing-type.json", 422),
        ("ingest/no-tenant.json", 401),
    ] {
        let answer = ingest.invoke(&event_file(file)).await;
        assert_eq!(status(&answer), expected, "{file}: {answer}");
        assert!(
            body(&answer)["error"].is_object(),
            "{file} answered no error object: {answer}"
        );
    }
    ran_under_the_emulator(&manage, 5);
    ran_under_the_emulator(&ingest, 6);
    // A metrics line per accepted publish, as the EMF specification has it.
    let lines = emf_lines(&ingest.output());
    assert_eq!(lines.len(), 3, "{}", ingest.output());
    let total = |name: &str| {
        lines
            .iter()
            .map(|l| l[name].as_f64().unwrap_or(0.0))
            .sum::<f64>()
    };
    assert_eq!(total("Events") + total("DuplicateEvents"), 4.0);
    assert!(total("Deliveries") >= 1.0, "{lines:?}");
    assert!(lines.iter().any(|l| l["FanOut"] == json!(1)), "{lines:?}");
    assert!(lines.iter().all(|l| l["Function"] == "ingest"));
    // Nothing more was queued by the refused events.
    assert_eq!(
        aws.peek_queue(aws.provisioned.delivery_queue_url())
            .await
            .len(),
        2
    );
    // The secret and headers were sealed by manage, which asked KMS for a data key only.
    assert_eq!(kms_actions(&manage_calls.calls()), ["kms:GenerateDataKey"]);
    assert_eq!(kms_actions(&ingest_calls.calls()), Vec::<String>::new());
    for calls in [&manage_calls, &ingest_calls] {
        assert!(
            calls
                .calls()
                .iter()
                .any(|c| c.action == "dynamodb:UpdateItem"),
            "no request counted: {:?}",
            calls.calls()
        );
    }
    allowed_by_the_template("ManageFunction", &aws, &manage_calls.calls());
    allowed_by_the_template("IngestFunction", &aws, &ingest_calls.calls());
}

/// The embedded-metric-format lines among a function's output, each checked against the
/// format's specification.
fn emf_lines(output: &str) -> Vec<Value> {
    output
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line.trim()).ok())
        .filter(|line| line.get("_aws").is_some())
        .inspect(|line| {
            if let Err(why) = herald_aws::lambda::metrics::check_document(line) {
                panic!("not an EMF line ({why}): {line}");
            }
        })
        .collect()
}

/// The subscription the deliver events name, pointed at `url`.
async fn subscription_of_the_events_files(aws: &TestAws, url: &str) {
    let store = DynamoSubscriptionStore::new(
        aws.dynamo.clone(),
        aws.provisioned.subscriptions_table().to_owned(),
    );
    let loopback = UrlPolicy {
        allow_http: true,
        allow_loopback: true,
        ..UrlPolicy::default()
    };
    let mut subscription = active_subscription(
        "acme",
        SubscriptionId::parse("sub_01JD5Q8Z6X0000000000000000").unwrap(),
        SubscriptionUrl::parse(url, &loopback).unwrap(),
        &["order.*"],
    );
    // Signed with the deployment's ed25519 key too, which deliver reads from its secret.
    subscription.signatures.ed25519 = true;
    // Its secret sealed as manage seals it, so deliver opens it with kms:Decrypt.
    let vault = herald_aws::seal::Vault::new(
        &herald_tests::aws::sdk_config(),
        aws.provisioned.keys["SecretsKey"].clone(),
    );
    store
        .with_vault(
            std::sync::Arc::new(vault),
            herald_aws::dynamo::VaultUse::Seal,
        )
        .create(&subscription)
        .await
        .unwrap();
}

/// The ed25519 key's secret, named as the template's parameter for the IAM check.
async fn ed25519_secret(aws: &TestAws) -> String {
    let name = format!("{}-Ed25519SigningKeySecret", aws.prefix);
    aws_sdk_secretsmanager::Client::new(&aws.sdk)
        .create_secret()
        .name(&name)
        .secret_string(herald_core::webhook::keys::generate_ed25519(
            &mut rand::rng(),
        ))
        .send()
        .await
        .unwrap();
    name
}

/// The KMS actions among `calls`, in order.
fn kms_actions(calls: &[AwsCall]) -> Vec<String> {
    calls
        .iter()
        .filter(|c| c.action.starts_with("kms:"))
        .map(|c| c.action.clone())
        .collect()
}

/// Deliver's release bootstrap under the emulator, its AWS calls recorded: loopback
/// receivers allowed, a 5 s timeout, the deployment's ed25519 key, and `extra`.
async fn deliver_under_the_emulator(
    aws: &TestAws,
    extra: &[(&str, &str)],
) -> (Emulator, RecordingProxy) {
    let calls = RecordingProxy::start(moto_url()).await;
    let secret = ed25519_secret(aws).await;
    let mut settings = vec![
        ("HERALD_ALLOW_HTTP", "true"),
        ("HERALD_ALLOW_LOOPBACK", "true"),
        ("HERALD_DELIVERY_TIMEOUT", "5s"),
        ("HERALD_ED25519_SIGNING_KEY_SECRET", secret.as_str()),
    ];
    settings.extend_from_slice(extra);
    let env = function_env(aws, &calls, &settings);
    (Emulator::start("deliver", &env, &[]).await, calls)
}

/// Invokes deliver with an events/ file; it hands no message back to SQS.
async fn no_batch_item_failures(deliver: &Emulator, file: &str) {
    let answer = deliver.invoke(&event_file(file)).await;
    assert_eq!(
        answer,
        json!({"batchItemFailures": []}),
        "{file}: {}",
        deliver.output()
    );
}

#[tokio::test]
async fn deliver_answers_its_events_files_with_the_poison_message_dead_lettered() {
    let aws = TestAws::new().await;
    let receiver = TestReceiver::start(Script::always(200)).await;
    subscription_of_the_events_files(&aws, &receiver.url()).await;
    let (deliver, deliver_calls) = deliver_under_the_emulator(&aws, &[]).await;

    no_batch_item_failures(&deliver, "deliver/batch-of-two.json").await;
    let got = receiver.wait_for(2, Duration::from_secs(10)).await;
    let mut ids: Vec<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "msg_01JD5Q8Z6X000000000000000001M81J18G0S5A22BXD25MHKB1H",
            "msg_01JD5Q8Z6X000000000000000001M81J18G0Y5ZR3R487TGXC7B5"
        ]
    );
    assert!(
        got.iter()
            .all(|r| r.header("idempotency-key") == format!("ffm_wh_{}", r.header("webhook-id")))
    );
    assert!(
        got.iter()
            .all(|r| r.header("webhook-signature").contains(" v1a,")),
        "signed with the key read from Secrets Manager"
    );

    // The poison message is moved to the dead-letter queue, not handed back; the task
    // beside it is delivered.
    no_batch_item_failures(&deliver, "deliver/poison-message.json").await;
    let got = receiver.wait_for(3, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 3);
    let last: Value = serde_json::from_slice(&got[2].body).unwrap();
    assert_eq!(last["data"]["order_id"], "ord_1003", "{last}");
    let dead = aws
        .peek_queue(aws.provisioned.dead_letter_queue_url())
        .await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body(), Some("this is not a delivery task"));
    ran_under_the_emulator(&deliver, 2);
    // A metrics line per batch: three delivered, the poison message dead-lettered.
    let lines = emf_lines(&deliver.output());
    assert_eq!(lines.len(), 2, "{}", deliver.output());
    let total = |name: &str| {
        lines
            .iter()
            .map(|l| l[name].as_f64().unwrap_or(0.0))
            .sum::<f64>()
    };
    assert_eq!(total("Delivered"), 3.0);
    assert_eq!(total("Attempts"), 3.0);
    assert_eq!(total("DeadLetters"), 1.0);
    assert_eq!(total("Retried"), 0.0);
    let latencies: usize = lines
        .iter()
        .map(|l| match &l["AttemptLatency"] {
            Value::Array(values) => values.len(),
            Value::Number(_) => 1,
            _ => 0,
        })
        .sum();
    assert_eq!(latencies, 3, "one latency per attempt");
    assert!(
        lines.iter().all(|l| !l["DeliveryLag"].is_null()),
        "{lines:?}"
    );

    // An ordered line as its FIFO event source hands it over: the delivery already made
    // is let go, and the line goes on to the poison message behind it, which goes to the
    // ordered lane's FIFO dead-letter queue in its line.
    no_batch_item_failures(&deliver, "deliver/ordered-line.json").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.requests().len(), 3, "nothing sent twice");
    let dead = aws
        .peek_queue(aws.provisioned.ordered_dead_letter_queue_url())
        .await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body(), Some("this is not a delivery task either"));
    assert_eq!(
        dead[0]
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId))
            .map(String::as_str),
        Some("sub_01JD5Q8Z6X0000000000000000")
    );
    // The sealed secret opened once (one data key), for every signature made with it.
    assert_eq!(kms_actions(&deliver_calls.calls()), ["kms:Decrypt"]);
    allowed_by_the_template("DeliverFunction", &aws, &deliver_calls.calls());
}

/// Deliver as `DeliveryClaim: none` deploys it: messages handed out for the first time are
/// sent with no call on the deliveries table at all, and their successes leave no record.
#[tokio::test]
async fn with_no_claim_deliver_sends_a_first_hand_out_with_no_call_on_the_deliveries_table() {
    let aws = TestAws::new().await;
    let receiver = TestReceiver::start(Script::always(200)).await;
    subscription_of_the_events_files(&aws, &receiver.url()).await;
    let (deliver, deliver_calls) =
        deliver_under_the_emulator(&aws, &[("HERALD_DELIVERY_CLAIM", "none")]).await;
    no_batch_item_failures(&deliver, "deliver/batch-of-two.json").await;
    let got = receiver.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 2);
    let calls = deliver_calls.calls();
    assert!(
        !calls
            .iter()
            .any(|c| c.resource.ends_with("DeliveriesTable")),
        "{calls:?}"
    );
    // The subscription is read, as in every mode.
    assert!(
        calls.iter().any(|c| c.action == "dynamodb:GetItem"),
        "{calls:?}"
    );
    allowed_by_the_template("DeliverFunction", &aws, &calls);
}

/// An event of 1 MiB through the release bootstraps: ingest keeps it once, in parts, and
/// queues a claim check of a few hundred bytes; deliver, handed that message as the event
/// source hands it over, reads the event back and POSTs it whole (taking the attempt by
/// a read, `DeliveryClaim: read`). Every call is one the template allows.
#[tokio::test]
async fn a_mebibyte_event_is_stored_by_ingest_and_read_back_by_deliver() {
    use rand::{Rng, SeedableRng};
    let aws = TestAws::new().await;
    let receiver = TestReceiver::start(Script::always(200)).await;
    subscription_of_the_events_files(&aws, &receiver.url()).await;
    let ingest_calls = RecordingProxy::start(moto_url()).await;
    let ingest = Emulator::start("ingest", &function_env(&aws, &ingest_calls, &[]), &[]).await;

    // `{"blob":"…"}` is 11 bytes and the text: the most `data` there may be, random, so
    // that it does not deflate to within one item.
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let blob: String = (0..herald_core::event::MAX_DATA_BYTES - 11)
        .map(|_| char::from(rng.sample(rand::distr::Alphanumeric)))
        .collect();
    let mut publish = event_file("ingest/publish-one.json");
    let published = json!({"id": "ord_big", "type": "order.exported", "data": {"blob": blob}});
    publish["body"] = Value::String(published.to_string());
    publish["headers"]["content-length"] = Value::String(published.to_string().len().to_string());
    let answer = ingest.invoke(&publish).await;
    assert_eq!(status(&answer), 202, "{answer}\n{}", ingest.output());
    assert_eq!(body(&answer)["deliveries"], 1, "{answer}");
    let parts = ingest_calls
        .calls()
        .iter()
        .filter(|c| {
            c.action == "dynamodb:PutItem"
                && c.key_values
                    .iter()
                    .any(|(_, v)| v.starts_with("part#ord_big#"))
        })
        .count();
    assert_eq!(parts, 3, "kept once, in parts: {:?}", ingest_calls.calls());

    let queued = aws.peek_queue(aws.provisioned.delivery_queue_url()).await;
    assert_eq!(queued.len(), 1);
    let task = queued[0].body().unwrap();
    assert!(
        task.len() < 1024 && task.contains(r#""stored":"#),
        "a claim check: {task}"
    );
    let mut batch = event_file("deliver/batch-of-two.json");
    let mut record = batch["Records"][0].clone();
    record["messageId"] = json!(queued[0].message_id());
    record["body"] = json!(task);
    batch["Records"] = json!([record]);

    // Deliver as `DeliveryClaim: read` deploys it: the first attempt taken by a read of
    // the deliveries table, its outcome the one write there.
    let (deliver, deliver_calls) =
        deliver_under_the_emulator(&aws, &[("HERALD_DELIVERY_CLAIM", "read")]).await;
    let answer = deliver.invoke(&batch).await;
    assert_eq!(
        answer,
        json!({"batchItemFailures": []}),
        "{}",
        deliver.output()
    );
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].json()["data"], published["data"]);
    let on_deliveries: Vec<String> = deliver_calls
        .calls()
        .iter()
        .filter(|c| c.resource.ends_with("DeliveriesTable"))
        .map(|c| c.action.clone())
        .collect();
    assert_eq!(
        on_deliveries,
        ["dynamodb:GetItem", "dynamodb:UpdateItem"],
        "{:?}",
        deliver_calls.calls()
    );
    // The event's record and its three parts, each read once, at the eventual price: the
    // record was seen, so nothing was read again consistently.
    let event_reads: Vec<bool> = deliver_calls
        .calls()
        .iter()
        .filter(|c| c.resource.ends_with("EventsTable"))
        .map(|c| c.consistent)
        .collect();
    assert_eq!(event_reads, [false; 4], "{:?}", deliver_calls.calls());
    allowed_by_the_template("IngestFunction", &aws, &ingest_calls.calls());
    allowed_by_the_template("DeliverFunction", &aws, &deliver_calls.calls());
}

/// The slow lane under the runtime emulator: a record of the slow lane's queue waits for
/// its receiver past `HERALD_SLOW_LANE_AFTER` (the full timeout), and once the
/// subscription is marked slow, a standard-lane batch for it is moved to the slow lane's
/// queue unattempted, with calls the template allows.
#[tokio::test]
async fn deliver_serves_the_slow_lane_and_moves_a_slow_subscriptions_tasks_there() {
    let aws = TestAws::new().await;
    let receiver =
        TestReceiver::start(Script::always(200).with_delay(Duration::from_secs(2))).await;
    subscription_of_the_events_files(&aws, &receiver.url()).await;
    let (deliver, deliver_calls) =
        deliver_under_the_emulator(&aws, &[("HERALD_SLOW_LANE_AFTER", "1s")]).await;

    // On the slow lane the 2 s answer is waited for: delivered, not cut.
    no_batch_item_failures(&deliver, "deliver/slow-lane.json").await;
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1);
    assert!(
        !deliver.output().contains("E_SLOW_LANE"),
        "{}",
        deliver.output()
    );

    // Marked slow, its standard-lane tasks go to the slow lane's queue unattempted.
    let store = DynamoSubscriptionStore::new(
        aws.dynamo.clone(),
        aws.provisioned.subscriptions_table().to_owned(),
    );
    store
        .mark_slow(
            &herald_core::ids::TenantId::parse("acme").unwrap(),
            &SubscriptionId::parse("sub_01JD5Q8Z6X0000000000000000").unwrap(),
            chrono::Utc::now() + chrono::Duration::minutes(10),
        )
        .await
        .unwrap();
    no_batch_item_failures(&deliver, "deliver/batch-of-two.json").await;
    let moved = aws.peek_queue(aws.provisioned.slow_queue_url()).await;
    assert_eq!(moved.len(), 2, "{}", deliver.output());
    assert!(
        moved
            .iter()
            .all(|m| m.body().unwrap().contains("\"slow\":true"))
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.requests().len(), 1, "nothing more was POSTed");
    ran_under_the_emulator(&deliver, 2);
    allowed_by_the_template("DeliverFunction", &aws, &deliver_calls.calls());
}

/// Deliver's deadline is its invocation's, as the Runtime API gives it (the emulator's
/// `AWS_LAMBDA_FUNCTION_TIMEOUT`, Lambda's function timeout): a batch of four to one slow
/// receiver, one POST at a time, attempts what can end in time and hands the rest back
/// unattempted, visible again at once.
#[tokio::test]
async fn deliver_hands_back_what_its_invocations_deadline_leaves_no_time_for() {
    let aws = TestAws::new().await;
    let receiver =
        TestReceiver::start(Script::always(200).with_delay(Duration::from_secs(3))).await;
    subscription_of_the_events_files(&aws, &receiver.url()).await;
    // 13 s an invocation; an attempt may wait 3.5 s and 5 s are kept after it. The POSTs
    // start at about 0, 3 and 6 s: the first two can end in time, the last two cannot.
    let (deliver, deliver_calls) = deliver_under_the_emulator(
        &aws,
        &[
            ("AWS_LAMBDA_FUNCTION_TIMEOUT", "13"),
            ("HERALD_DELIVERY_TIMEOUT", "3500ms"),
            ("HERALD_DELIVERY_PER_HOST", "1"),
        ],
    )
    .await;
    let queue = herald_local::poller::QueueSource {
        client: aws.sqs.clone(),
        url: aws.provisioned.delivery_queue_url().to_owned(),
        arn: "arn:aws:sqs:us-east-1:123456789012:herald-DeliveryQueue".into(),
        region: "us-east-1".into(),
    };
    let entries = (0..4)
        .map(|i| {
            let task = herald_testkit::paid_order_task(
                "acme",
                "sub_01JD5Q8Z6X0000000000000000",
                &format!("ord_{i}"),
            );
            aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(task.to_message_body())
                .build()
                .unwrap()
        })
        .collect();
    aws.sqs
        .send_message_batch()
        .queue_url(&queue.url)
        .set_entries(Some(entries))
        .send()
        .await
        .unwrap();
    let mut messages = Vec::new();
    while messages.len() < 4 {
        let received = aws
            .sqs
            .receive_message()
            .queue_url(&queue.url)
            .max_number_of_messages(10)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap();
        messages.extend(received.messages.unwrap_or_default());
    }
    let records: Vec<_> = messages
        .iter()
        .map(|m| herald_local::poller::to_record(m, &queue))
        .collect();

    let answer = deliver.invoke(&json!({ "Records": records })).await;

    let handed_back = answer["batchItemFailures"].as_array().unwrap();
    assert_eq!(handed_back.len(), 2, "{answer}\n{}", deliver.output());
    assert_eq!(receiver.requests().len(), 2);
    // Visible again at once, for another invocation.
    let again = aws.peek_queue(&queue.url).await;
    assert_eq!(again.len(), 2, "{}", deliver.output());
    ran_under_the_emulator(&deliver, 1);
    allowed_by_the_template("DeliverFunction", &aws, &deliver_calls.calls());
}

/// A variable's value as a deployment with the parameters' defaults would set it: a
/// parameter's default, a placeholder for a resource's name, "" for an unset secret.
fn deployed_value(value: &yaml_serde::Value, template: &yaml_serde::Value) -> String {
    use yaml_serde::Value as Y;
    match value {
        Y::String(s) => s.clone(),
        Y::Bool(b) => b.to_string(),
        Y::Number(n) => n.to_string(),
        Y::Tagged(tagged) if tagged.tag == "Ref" => {
            let name = tagged.value.as_str().unwrap();
            match template["Parameters"].get(name) {
                Some(parameter) => deployed_value(&parameter["Default"], template),
                None => {
                    assert!(
                        template["Resources"].get(name).is_some(),
                        "!Ref {name} names nothing in the template"
                    );
                    format!("https://sqs.us-east-1.amazonaws.com/123456789012/{name}")
                }
            }
        }
        // The signing keys: !If [condition, secret, ""], "" with the default parameters.
        Y::Tagged(tagged) if tagged.tag == "If" => deployed_value(&tagged.value[2], template),
        other => panic!("unexpected variable value {other:?}"),
    }
}

fn template() -> yaml_serde::Value {
    yaml_serde::from_str(&std::fs::read_to_string(herald_local::template_path()).unwrap()).unwrap()
}

#[tokio::test]
async fn the_local_runner_sets_the_variables_the_template_sets() {
    let template = template();
    let globals = template["Globals"]["Function"]["Environment"]["Variables"]
        .as_mapping()
        .unwrap();
    let aws = TestAws::new().await;
    for name in aws.provisioned.environment().keys() {
        assert!(
            globals.contains_key(name.as_str()),
            "the local runner sets {name}, the template does not"
        );
    }
}

#[test]
fn every_function_logs_json_with_lambdas_lines_at_the_deployments_level() {
    let template = template();
    assert_eq!(
        template["Parameters"]["LambdaSystemLogLevel"]["Default"].as_str(),
        Some("INFO"),
        "Lambda's START and REPORT lines are kept unless a deployment leaves them out"
    );
    let functions: Vec<&str> = template["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::Serverless::Function"))
        .map(|(name, _)| name.as_str().unwrap())
        .collect();
    assert_eq!(functions.len(), 3, "{functions:?}");
    for name in functions {
        let logging = &template["Resources"][name]["Properties"]["LoggingConfig"];
        assert_eq!(logging["LogFormat"].as_str(), Some("JSON"), "{name}");
        assert_eq!(
            deployed_value(&logging["SystemLogLevel"], &template),
            "INFO",
            "{name}"
        );
        let yaml_serde::Value::Tagged(level) = &logging["SystemLogLevel"] else {
            panic!("{name}: SystemLogLevel is not the parameter");
        };
        assert_eq!(level.value.as_str(), Some("LambdaSystemLogLevel"), "{name}");
    }
}

#[test]
fn the_template_gives_each_function_every_variable_it_reads() {
    let template = template();
    let globals = template["Globals"]["Function"]["Environment"]["Variables"]
        .as_mapping()
        .unwrap();
    for (logical, binary) in [
        ("IngestFunction", "ingest"),
        ("ManageFunction", "manage"),
        ("DeliverFunction", "deliver"),
    ] {
        let function = &template["Resources"][logical];
        assert_eq!(
            function["Metadata"]["BuildProperties"]["Binary"].as_str(),
            Some(binary)
        );
        let mut env: HashMap<String, String> = HashMap::new();
        let own = function["Properties"]["Environment"]["Variables"].as_mapping();
        for (name, value) in globals.iter().chain(own.into_iter().flatten()) {
            env.insert(
                name.as_str().unwrap().to_owned(),
                deployed_value(value, &template),
            );
        }
        let source = move |name: &str| env.get(name).filter(|v| !v.is_empty()).cloned();
        let function = match binary {
            "ingest" => Function::Ingest,
            "manage" => Function::Manage,
            _ => Function::Deliver,
        };
        let outcome = herald_aws::lambda::wiring::started(
            function,
            &source,
            &herald_tests::aws::sdk_config(),
        )
        .map(drop);
        assert!(
            outcome.is_ok(),
            "{logical} as deployed would not start: {outcome:?}"
        );
    }
}

/// The (IAM action, logical resource) pairs a function's policy statements allow, e.g.
/// (`dynamodb:Query`, `DeliveriesTable`).
/// One action a function's policy allows on one resource (its logical id), and the
/// `dynamodb:LeadingKeys` condition it is allowed under, if any.
struct Grant {
    action: String,
    logical: String,
    leading_keys: Option<LeadingKeys>,
}

/// `ForAllValues:StringEquals` or `ForAllValues:StringLike` on `dynamodb:LeadingKeys`:
/// every partition key the call reaches must equal (or match, `*` and `?` as wildcards)
/// one of `values`.
struct LeadingKeys {
    like: bool,
    values: Vec<String>,
}

impl LeadingKeys {
    fn of(condition: &yaml_serde::Value) -> Option<Self> {
        [
            ("ForAllValues:StringEquals", false),
            ("ForAllValues:StringLike", true),
        ]
        .into_iter()
        .find_map(|(operator, like)| {
            let values = condition[operator]["dynamodb:LeadingKeys"].as_sequence()?;
            Some(Self {
                like,
                values: values
                    .iter()
                    .map(|v| v.as_str().expect("a key pattern").to_owned())
                    .collect(),
            })
        })
    }

    /// Whether every key in `keys` passes (none: true, as IAM's ForAllValues has it).
    fn allows(&self, keys: &[&str]) -> bool {
        keys.iter().all(|key| {
            self.values.iter().any(|pattern| {
                if self.like {
                    wildcard_match(pattern.as_bytes(), key.as_bytes())
                } else {
                    pattern == key
                }
            })
        })
    }
}

/// IAM's `StringLike`: `*` matches any run of characters, `?` any one.
fn wildcard_match(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.first(), text.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            wildcard_match(&pattern[1..], text)
                || (!text.is_empty() && wildcard_match(pattern, &text[1..]))
        }
        (Some(b'?'), Some(_)) => wildcard_match(&pattern[1..], &text[1..]),
        (Some(p), Some(t)) if p == t => wildcard_match(&pattern[1..], &text[1..]),
        _ => false,
    }
}

#[test]
fn a_leading_keys_condition_is_read_as_iam_reads_it() {
    assert!(wildcard_match(b"*#requests", b"acme#requests"));
    assert!(!wildcard_match(b"*#requests", b"acme#sub_01#requests2"));
    assert!(wildcard_match(b"a?c*", b"abcdef"));
    assert!(!wildcard_match(b"a?c", b"ac"));
    let like = LeadingKeys {
        like: true,
        values: vec!["*#requests".into()],
    };
    assert!(like.allows(&["acme#requests", "globex#requests"]));
    assert!(!like.allows(&["acme#requests", "acme#sub_01"]));
    assert!(like.allows(&[]), "ForAllValues over no key holds");
    let equals = LeadingKeys {
        like: false,
        values: vec!["#excerpt-keys".into()],
    };
    assert!(equals.allows(&["#excerpt-keys"]) && !equals.allows(&["acme#excerpt-keys"]));
}

fn allowed_pairs(template: &yaml_serde::Value, function: &str) -> BTreeSet<(String, String)> {
    grants(template, function)
        .into_iter()
        .map(|g| (g.action, g.logical))
        .collect()
}

fn grants(template: &yaml_serde::Value, function: &str) -> Vec<Grant> {
    use yaml_serde::Value as Y;
    let mut allowed = Vec::new();
    let policies = template["Resources"][function]["Properties"]["Policies"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{function} has no Policies"));
    for policy in policies {
        // A policy given only on a condition (`!If [HasSigningKeys, …]`): as deployed with it.
        let policy = match policy {
            Y::Tagged(t) if t.tag == "If" => &t.value[1],
            other => other,
        };
        let statements = policy["Statement"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{function}: policies are statements, not {policy:?}"));
        for statement in statements {
            assert_eq!(statement["Effect"], Y::from("Allow"));
            let one = |v: &Y| match v {
                Y::Sequence(items) => items.clone(),
                other => vec![other.clone()],
            };
            for resource in one(&statement["Resource"]) {
                let resource = match resource {
                    Y::Tagged(t) if t.tag == "If" => t.value[1].clone(),
                    other => other,
                };
                let logical = match &resource {
                    Y::Tagged(t) if t.tag == "GetAtt" => t
                        .value
                        .as_str()
                        .and_then(|v| v.strip_suffix(".Arn"))
                        .map(str::to_owned),
                    // A secret named by a parameter: `…:secret:${Parameter}-??????`.
                    Y::Tagged(t)
                        if t.tag == "Sub"
                            && t.value.as_str().is_some_and(|v| v.contains(":secret:${")) =>
                    {
                        t.value
                            .as_str()
                            .and_then(|v| v.split_once(":secret:${")?.1.split_once('}'))
                            .map(|(parameter, _)| parameter.to_owned())
                    }
                    Y::Tagged(t) if t.tag == "Sub" => t.value.as_str().and_then(|v| {
                        let (head, rest) = v.strip_prefix("${")?.split_once(".Arn}")?;
                        Some(format!("{head}{rest}"))
                    }),
                    _ => None,
                }
                .unwrap_or_else(|| panic!("{function}: a resource that is no ARN: {resource:?}"));
                for action in one(&statement["Action"]) {
                    allowed.push(Grant {
                        action: action.as_str().unwrap().to_owned(),
                        logical: logical.clone(),
                        leading_keys: LeadingKeys::of(&statement["Condition"]),
                    });
                }
            }
        }
    }
    allowed
}

/// The IAM action that authorises a call: SQS authorises its batch calls with the
/// single call's action.
fn iam_action(action: &str) -> &str {
    match action {
        "sqs:SendMessageBatch" => "sqs:SendMessage",
        "sqs:ChangeMessageVisibilityBatch" => "sqs:ChangeMessageVisibility",
        "sqs:DeleteMessageBatch" => "sqs:DeleteMessage",
        other => other,
    }
}

/// Manage may only seal with the secrets key and deliver only open; ingest neither.
#[test]
fn the_secrets_key_seals_in_manage_and_opens_in_deliver_alone() {
    let template = template();
    let kms = |function: &str| -> BTreeSet<(String, String)> {
        allowed_pairs(&template, function)
            .into_iter()
            .filter(|(action, _)| action.starts_with("kms:"))
            .collect()
    };
    let pair = |action: &str| BTreeSet::from([(action.to_owned(), "SecretsKey".to_owned())]);
    assert_eq!(kms("ManageFunction"), pair("kms:GenerateDataKey"));
    assert_eq!(kms("DeliverFunction"), pair("kms:Decrypt"));
    assert_eq!(kms("IngestFunction"), BTreeSet::new());
}

#[test]
fn the_batch_calls_deliver_makes_are_allowed_by_its_single_call_actions() {
    let allowed = allowed_pairs(&template(), "DeliverFunction");
    for (call, queue) in [
        ("sqs:ChangeMessageVisibilityBatch", "DeliveryQueue"),
        ("sqs:SendMessageBatch", "DeliveryQueue"),
        ("sqs:SendMessageBatch", "DeadLetterQueue"),
    ] {
        let pair = (iam_action(call).to_owned(), queue.to_owned());
        assert!(allowed.contains(&pair), "{pair:?} is not allowed");
    }
    assert_eq!(iam_action("dynamodb:GetItem"), "dynamodb:GetItem");
}

/// The attribute a table's items are partitioned by: its `KeySchema`'s `HASH`.
fn partition_key(template: &yaml_serde::Value, table: &str) -> Option<String> {
    template["Resources"][table]["Properties"]["KeySchema"]
        .as_sequence()?
        .iter()
        .find(|k| k["KeyType"].as_str() == Some("HASH"))
        .and_then(|k| k["AttributeName"].as_str())
        .map(str::to_owned)
}

/// Every AWS call the function made is allowed by its statements in template.yaml: an
/// action on the resource, under the statement's `dynamodb:LeadingKeys` condition where
/// it has one (checked against the partition keys the call reaches).
fn allowed_by_the_template(function: &str, aws: &TestAws, calls: &[AwsCall]) {
    assert!(!calls.is_empty(), "{function} made no AWS call");
    let template = template();
    let grants = grants(&template, function);
    let mut denied = BTreeSet::new();
    for call in calls {
        let action = iam_action(&call.action).to_owned();
        // A KMS key is named by its ARN, provisioned for a logical id.
        let logical = match aws
            .provisioned
            .keys
            .iter()
            .find(|(_, arn)| **arn == call.resource)
        {
            Some((logical, _)) => logical.clone(),
            None => call
                .resource
                .strip_prefix(&format!("{}-", aws.prefix))
                .unwrap_or_else(|| panic!("{function} called {call:?}, not one of this test's"))
                // A FIFO queue's name is its logical id with `.fifo`.
                .trim_end_matches(".fifo")
                .to_owned(),
        };
        let partition = partition_key(&template, &logical);
        let keys: Vec<&str> = call
            .key_values
            .iter()
            .filter(|(name, _)| Some(name) == partition.as_ref())
            .map(|(_, value)| value.as_str())
            .collect();
        let allowed = grants.iter().any(|g| {
            g.action == action
                && g.logical == logical
                && g.leading_keys.as_ref().is_none_or(|c| c.allows(&keys))
        });
        if !allowed {
            denied.insert((action, logical, keys.join(",")));
        }
    }
    assert!(
        denied.is_empty(),
        "{function} calls what its policy does not allow: {denied:?}"
    );
}

/// The stack's `ApiUrl` and `PortalUrl` as CloudFormation renders them on `stage`: the
/// `DefaultStage` condition's branch, its `${…}` filled in (the API's id `abc123`).
fn output_on(template: &yaml_serde::Value, output: &str, stage: &str) -> String {
    use yaml_serde::Value as Y;
    let condition = &template["Conditions"]["DefaultStage"];
    let Y::Tagged(equals) = condition else {
        panic!("DefaultStage is an !Equals, not {condition:?}")
    };
    assert_eq!(equals.tag, "Equals");
    assert_eq!(equals.value[1].as_str(), Some("$default"));
    let value = &template["Outputs"][output]["Value"];
    let Y::Tagged(choice) = value else {
        panic!("{output} is an !If on DefaultStage, not {value:?}")
    };
    assert_eq!(choice.tag, "If");
    assert_eq!(choice.value[0].as_str(), Some("DefaultStage"));
    let branch = &choice.value[if stage == "$default" { 1 } else { 2 }];
    let Y::Tagged(sub) = branch else {
        panic!("{output}: a branch is a !Sub, not {branch:?}")
    };
    sub.value
        .as_str()
        .unwrap()
        .replace("${HttpApi}", "abc123")
        .replace("${AWS::Region}", "eu-west-1")
        .replace("${AWS::URLSuffix}", "amazonaws.com")
        .replace("${Stage}", stage)
}

/// A named stage is the URL's last segment; `$default` has none (API Gateway serves it
/// at the base URL), as the local runner's `stage_url` has it: an `ApiUrl` of
/// `…/$default` would answer 404 to every call.
#[test]
fn the_stacks_urls_name_the_stage_only_when_it_has_a_name() {
    let template = template();
    let base = "https://abc123.execute-api.eu-west-1.amazonaws.com";
    for (stage, api, portal) in [
        ("dev", format!("{base}/dev"), format!("{base}/dev/portal/")),
        ("$default", base.to_owned(), format!("{base}/portal/")),
    ] {
        assert_eq!(output_on(&template, "ApiUrl", stage), api, "{stage}");
        assert_eq!(output_on(&template, "PortalUrl", stage), portal, "{stage}");
    }
}

/// docs/DEPLOY.md's least privilege: only manage may scan or batch-write, and only the
/// tables erasure walks (the deliveries, events and portal sessions); ingest and deliver
/// have neither.
#[test]
fn only_manages_erasure_scans_or_batch_writes() {
    let template = template();
    for function in ["IngestFunction", "DeliverFunction", "ManageFunction"] {
        let mut bulk: Vec<String> = grants(&template, function)
            .into_iter()
            .filter(|g| g.action == "dynamodb:Scan" || g.action == "dynamodb:BatchWriteItem")
            .map(|g| format!("{} {}", g.action, g.logical))
            .collect();
        bulk.sort();
        let expected: Vec<String> = match function {
            "ManageFunction" => [
                "dynamodb:BatchWriteItem DeliveriesTable",
                "dynamodb:BatchWriteItem EventsTable",
                "dynamodb:BatchWriteItem PortalSessionsTable",
                "dynamodb:Scan DeliveriesTable",
                "dynamodb:Scan EventsTable",
                "dynamodb:Scan PortalSessionsTable",
            ]
            .map(str::to_owned)
            .to_vec(),
            _ => Vec::new(),
        };
        assert_eq!(bulk, expected, "{function}");
    }
}

/// The newest glibc symbol version a bootstrap may need: Amazon Linux 2023's glibc, 2.34,
/// is what `provided.al2023` runs it with. The stand-in image `sam local` uses here carries
/// this machine's newer glibc, so only this check would see a bootstrap AWS cannot start.
const PROVIDED_AL2023_GLIBC: (u32, u32) = (2, 34);

/// Every `GLIBC_x.y` version an ELF file's dynamic symbols need, as `objdump -T` lists them.
fn glibc_versions(objdump: &str) -> Vec<(u32, u32)> {
    let mut versions: Vec<(u32, u32)> = objdump
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .filter_map(|word| word.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let mut parts = v.split('.');
            Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
        })
        .collect();
    versions.sort_unstable();
    versions.dedup();
    versions
}

#[test]
fn the_version_reader_sees_a_too_new_symbol() {
    let listing = "0000 DF *UND* 0000 (GLIBC_2.2.5) memcpy\n0000 DF *UND* 0000 (GLIBC_2.35) foo\n";
    assert_eq!(glibc_versions(listing), [(2, 2), (2, 35)]);
}

#[test]
fn the_bootstraps_need_no_glibc_newer_than_provided_al2023s() {
    let target = herald_tests::emulator::workspace_root().join("target");
    // What `sam local` and the emulator tests run (x86_64), and what the template deploys
    // (arm64), each as `sam build` made it.
    let mut checked = 0;
    for dir in ["sam-build-x86_64", "lambda-x86_64", "sam-build"] {
        let dir = target.join(dir);
        let functions = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e} (`make test` builds it)", dir.display()));
        for function in functions {
            let function = function.unwrap().path();
            // Herald's three; `make bench` puts its yardstick (`hello`) beside them.
            let name = function
                .file_name()
                .unwrap()
                .to_string_lossy()
                .to_lowercase();
            let bootstrap = function.join("bootstrap");
            if !bootstrap.is_file() || name.starts_with("hello") {
                continue;
            }
            let output = std::process::Command::new("objdump")
                .arg("-T")
                .arg(&bootstrap)
                .output()
                .expect("running objdump (binutils)");
            assert!(
                output.status.success(),
                "objdump -T {}",
                bootstrap.display()
            );
            let versions = glibc_versions(&String::from_utf8_lossy(&output.stdout));
            let newest = versions.last().copied().unwrap_or_else(|| {
                panic!(
                    "{} needs no glibc: not a dynamic executable?",
                    bootstrap.display()
                )
            });
            assert!(
                newest <= PROVIDED_AL2023_GLIBC,
                "{} needs GLIBC_{}.{}; provided.al2023 has {}.{}",
                bootstrap.display(),
                newest.0,
                newest.1,
                PROVIDED_AL2023_GLIBC.0,
                PROVIDED_AL2023_GLIBC.1
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 9, "three functions in each of the three builds");
}

/// The API is throttled on every route, and (unless turned off) logs each call without its
/// headers or body.
#[test]
fn the_api_is_throttled_and_logs_each_call_without_secrets() {
    let template = template();
    let api = &template["Resources"]["HttpApi"]["Properties"];
    let route = &api["DefaultRouteSettings"];
    for (setting, parameter) in [
        ("ThrottlingRateLimit", "ApiThrottlingRateLimit"),
        ("ThrottlingBurstLimit", "ApiThrottlingBurstLimit"),
    ] {
        assert_eq!(
            deployed_value(&route[setting], &template),
            deployed_value(&template["Parameters"][parameter]["Default"], &template),
            "{setting}"
        );
    }
    let logs = format!("{:?}", api["AccessLogSettings"]);
    for needed in [
        "ApiAccessLogGroup",
        "$context.routeKey",
        "$context.status",
        "$context.identity.sourceIp",
    ] {
        assert!(logs.contains(needed), "{needed} in {logs}");
    }
    for secret in ["header", "body", "authorization", "secret"] {
        assert!(!logs.to_lowercase().contains(secret), "{secret} in {logs}");
    }
}

/// Every alarm and every dashboard graph of the template names a metric Herald writes
/// (its EMF lines) or AWS publishes for the resource.
#[test]
fn every_alarm_and_graph_names_a_metric_that_is_emitted() {
    use herald_deliver::Disposition;
    let mut emitted: BTreeSet<(String, String)> = BTreeSet::new();
    // A batch with a record of every outcome: counts of zero are left out of a line.
    let reports: Vec<_> = [
        Disposition::Delivered,
        Disposition::RetryIn(std::time::Duration::from_secs(5)),
        Disposition::Failed("window spent".into()),
        Disposition::Gone,
        Disposition::Skipped("disabled".into()),
        Disposition::Superseded,
        Disposition::DeadLettered("malformed".into()),
        Disposition::RateLimited(std::time::Duration::from_secs(1)),
        Disposition::ToSlowLane,
    ]
    .into_iter()
    .map(|disposition| {
        let mut report = herald_deliver::RecordReport::new("m", disposition);
        report.attempt = Some(1);
        report.latency_ms = Some(5);
        report.lag_ms = Some(50);
        report.error = Some("E_TIMEOUT");
        report
    })
    .collect();
    for line in [
        herald_deliver::batch_metrics(&reports).document(1),
        herald_ingest::publish_metrics(&[(2, false)]).document(1),
    ] {
        herald_aws::lambda::metrics::check_document(&line).unwrap();
        for name in line.as_object().unwrap().keys() {
            emitted.insert(("Herald".into(), name.clone()));
        }
    }
    for (namespace, name) in [
        ("AWS/Lambda", "Errors"),
        ("AWS/Lambda", "Throttles"),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
        ("AWS/SQS", "ApproximateAgeOfOldestMessage"),
    ] {
        emitted.insert((namespace.into(), name.into()));
    }
    let template = template();
    let resources = template["Resources"].as_mapping().unwrap();
    let mut alarms = 0;
    for (name, resource) in resources {
        match resource["Type"].as_str() {
            Some("AWS::CloudWatch::Alarm") => {
                alarms += 1;
                let metric = (
                    resource["Properties"]["Namespace"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                    resource["Properties"]["MetricName"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                );
                assert!(
                    emitted.contains(&metric),
                    "alarm {name:?}: {metric:?} is not emitted"
                );
            }
            Some("AWS::CloudWatch::Dashboard") => {
                let body = match &resource["Properties"]["DashboardBody"] {
                    yaml_serde::Value::Tagged(tagged) => tagged.value.as_str().unwrap().to_owned(),
                    other => panic!("{other:?}"),
                };
                // ${…} are the stack's names; any string stands for them here.
                let body = regex_lite::Regex::new(r"\$\{[^}]+\}")
                    .unwrap()
                    .replace_all(&body, "x");
                let body: Value = serde_json::from_str(&body).expect("the dashboard is JSON");
                for widget in body["widgets"].as_array().unwrap() {
                    let (mut namespace, mut metric) = (String::new(), String::new());
                    for row in widget["properties"]["metrics"].as_array().unwrap() {
                        let row = row.as_array().unwrap();
                        // "..." repeats the row above but its last value; "." one field.
                        if row[0] != "..." {
                            if row[0] != "." {
                                namespace = row[0].as_str().unwrap().to_owned();
                            }
                            if row[1] != "." {
                                metric = row[1].as_str().unwrap().to_owned();
                            }
                        }
                        assert!(
                            emitted.contains(&(namespace.clone(), metric.clone())),
                            "dashboard graph {}: {namespace}/{metric} is not emitted",
                            widget["properties"]["title"]
                        );
                    }
                }
            }
            _ => {}
        }
    }
    assert!(alarms >= 6, "{alarms} alarms");
}

/// The release bootstrap of `binary` as `make build-x86_64` built it, read whole.
fn bootstrap_bytes(binary: &str) -> Vec<u8> {
    let path = herald_tests::emulator::bootstrap(binary);
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (`make build-x86_64` builds it)", path.display()))
}

/// The release bootstraps `make build-x86_64` built the SAM way are position-dependent
/// executables (ELF type `EXEC`, not `DYN`): `functions/link.rs` links them `-no-pie`, so
/// a cold start applies no relocations (docs/DECISIONS.md, "Position-dependent
/// bootstraps"), unless they were built with `HERALD_PIE=1`.
#[test]
fn the_bootstraps_are_linked_position_dependent() {
    const ET_EXEC: u16 = 2;
    const ET_DYN: u16 = 3;
    let expected = if std::env::var("HERALD_PIE").is_ok_and(|v| v == "1") {
        ET_DYN
    } else {
        ET_EXEC
    };
    for binary in ["ingest", "deliver", "manage"] {
        let bytes = bootstrap_bytes(binary);
        assert_eq!(&bytes[..4], b"\x7fELF", "{binary}");
        // e_type: the 16-bit field after the 16 bytes of e_ident, little-endian on x86_64.
        let kind = u16::from_le_bytes([bytes[16], bytes[17]]);
        assert_eq!(kind, expected, "{binary}: ELF type {kind}");
    }
}

/// A section of an ELF64 file: its name, address and size.
#[derive(Debug)]
struct Section {
    name: String,
    address: u64,
    size: u64,
}

/// The section headers of a little-endian ELF64 file.
fn elf_sections(bytes: &[u8]) -> Vec<Section> {
    let u16_at = |at: usize| u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap()) as usize;
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    assert_eq!(&bytes[..5], b"\x7fELF\x02", "an ELF64 file");
    let (table, entry, count, names) = (
        u64_at(0x28) as usize,
        u16_at(0x3a),
        u16_at(0x3c),
        u16_at(0x3e),
    );
    let header = |i: usize| table + i * entry;
    let names_at = u64_at(header(names) + 0x18) as usize;
    (0..count)
        .map(|i| {
            let name_at = names_at + u32_at(header(i));
            let end = bytes[name_at..].iter().position(|&b| b == 0).unwrap();
            Section {
                name: String::from_utf8_lossy(&bytes[name_at..name_at + end]).into_owned(),
                address: u64_at(header(i) + 0x10),
                size: u64_at(header(i) + 0x20),
            }
        })
        .collect()
}

/// The release bootstraps lay out the code a cold start and a first batch run
/// (`functions/hot-code.ld`, written by `make hot-code`) in `.text.hot`, ahead of the rest
/// of their code, and carry no symbol table (functions/link.rs; docs/PERFORMANCE.md,
/// "Cold start"). A script gone stale (its names no longer the bootstraps' after a change
/// of dependencies or of the compiler) lays out little or nothing there, and this fails
/// until `make hot-code` writes a new one.
#[test]
fn the_bootstraps_lay_out_the_code_they_run_first_and_are_stripped() {
    let keep_symbols = std::env::var("HERALD_KEEP_SYMBOLS").is_ok_and(|v| v == "1");
    let hot_code = std::env::var("HERALD_HOT_CODE").map_or(true, |v| v != "0");
    for binary in ["ingest", "deliver", "manage"] {
        let bytes = bootstrap_bytes(binary);
        let sections = elf_sections(&bytes);
        let named = |name: &str| sections.iter().find(|s| s.name == name);
        assert_eq!(
            named(".symtab").is_some(),
            keep_symbols,
            "{binary}: a symbol table only with HERALD_KEEP_SYMBOLS=1"
        );
        if !hot_code {
            continue;
        }
        let text = named(".text").expect("a .text section");
        let hot = named(".text.hot").unwrap_or_else(|| {
            panic!("{binary}: no .text.hot; `make hot-code` writes functions/hot-code.ld anew")
        });
        assert!(
            hot.address < text.address,
            "{binary}: {hot:?} after {text:?}"
        );
        assert!(
            hot.size * 4 >= hot.size + text.size,
            "{binary}: {} of {} bytes of code laid out first; is functions/hot-code.ld stale? (`make hot-code`)",
            hot.size,
            hot.size + text.size
        );
    }
}

/// `scripts/hot_code.py` (what `make hot-code` writes functions/hot-code.ld with) names
/// each function of the bootstrap that ran in the profiles, the start's first, once; not
/// the libraries' functions nor addresses without a symbol; and whatever number LTO put
/// on a local function's name. Then each again with any crate hash.
/// Runs scripts/hot_code.py to write `out` from `inputs` (its flags and files); the
/// script written and the section patterns it names, in order.
fn hot_code(out: &std::path::Path, inputs: &[&std::ffi::OsStr]) -> (String, Vec<String>) {
    let script = herald_tests::emulator::workspace_root().join("scripts/hot_code.py");
    let run = std::process::Command::new("python3")
        .arg(&script)
        .arg(out)
        .args(inputs)
        .output()
        .expect("python3 runs scripts/hot_code.py");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let written = std::fs::read_to_string(out).unwrap();
    let patterns = written
        .lines()
        .filter_map(|l| l.trim().strip_prefix("*(.text*.")?.strip_suffix(')'))
        .map(str::to_owned)
        .collect();
    (written, patterns)
}

#[test]
fn the_hot_code_script_names_what_ran_the_start_first() {
    let dir = std::env::temp_dir().join(format!("herald-hot-code-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let profile = |name: &str, own: &[String], unplaced: &str| {
        let mut text = String::from("# callgrind format\nversion: 1\ncmd:  /var/task/bootstrap\n");
        text.push_str("ob=/var/task/bootstrap\n");
        for f in own {
            text.push_str(&format!("fn={f}\n0 12\n"));
        }
        text.push_str("fn=0x0000000001234560\n0 3\nfn=(below main)\n0 1\n");
        text.push_str("ob=/usr/lib/x86_64-linux-gnu/libc.so.6\nfn=strlen\n0 4\n");
        text.push_str(&format!("ob=???\nfn={unplaced}\n0 2\n"));
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let name = |tier: &str, i: usize| {
        format!(
            "_ZN6herald{}{tier}{i:03}17h0123456789abcdefE",
            tier.len() + 3
        )
    };
    let start: Vec<String> = (0..120)
        .map(|i| name("start", i))
        .chain(["_ZN4core3fmt5write17hfedcba9876543210E.llvm.7421".to_owned()])
        .collect();
    let work: Vec<String> = (0..120)
        .map(|i| name("work", i))
        .chain(start[..10].iter().cloned())
        .collect();
    let start_profile = profile("start.1", &start, "_ZN5tokio3run17h00000000000000aaE");
    let work_profile = profile("work.1", &work, "_ZN5tokio3run17h00000000000000aaE");
    let (written, patterns) = hot_code(
        &dir.join("hot.ld"),
        &[
            "--start".as_ref(),
            start_profile.as_os_str(),
            "--work".as_ref(),
            work_profile.as_os_str(),
        ],
    );
    // Exactly: the start's 121 and the unplaced one, then the work's 120; then the same
    // with any crate hash (for a build whose hashes differ), the start's first.
    assert_eq!(patterns.len(), 2 * (121 + 1 + 120), "{written}");
    let at = |p: &str| {
        patterns
            .iter()
            .position(|q| *q == p)
            .unwrap_or_else(|| panic!("{p} not named"))
    };
    assert!(
        at(&name("start", 119)) < at(&name("work", 0)),
        "the start's functions first"
    );
    assert!(at("_ZN5tokio3run17h00000000000000aaE") < at(&name("work", 0)));
    at("_ZN4core3fmt5write17hfedcba9876543210E.llvm.*");
    let any_hash = |n: &str| n.replace("17h0123456789abcdefE", "17h*E");
    assert!(at(&name("work", 119)) < at(&any_hash(&name("start", 0))));
    assert!(at(&any_hash(&name("start", 119))) < at(&any_hash(&name("work", 0))));
    at("_ZN4core3fmt5write17h*E.llvm.*");
    for absent in ["strlen", "0x0000000001234560", "(below main)"] {
        assert!(!written.contains(absent), "{absent} named: {written}");
    }
    assert!(written.contains("INSERT BEFORE .text;"));

    // With qemu's logs of the arm64 bootstraps (`-d in_asm`): their exact names follow the
    // x86_64 ones of each tier; their any-hash forms are the x86_64 ones', named once.
    let qemu_log = |file: &str, names: &[String]| {
        let mut text = String::from("----------------\nIN: \n0x0000550000001000:  d503201f  nop\n");
        for n in names {
            text.push_str(&format!(
                "----------------\nIN: {n}\n0x0000000001212340:  d10083ff  sub sp, sp, #0x20\n\n"
            ));
        }
        text.push_str("----------------\nIN: $x\n0x0000000001212350:  d65f03c0  ret\n");
        let path = dir.join(file);
        std::fs::write(&path, text).unwrap();
        path
    };
    let arm64 = |n: &String| {
        n.replace("17h0123456789abcdefE", "17h1111111111111111E")
            .replace("17hfedcba9876543210E", "17h1111111111111111E")
    };
    let arm64_start: Vec<String> = start.iter().map(arm64).collect();
    let arm64_work: Vec<String> = work.iter().map(arm64).collect();
    let start_log = qemu_log("start.log", &arm64_start);
    let work_log = qemu_log("work.log", &arm64_work);
    let (written, patterns) = hot_code(
        &dir.join("hot-arm64.ld"),
        &[
            "--start".as_ref(),
            start_profile.as_os_str(),
            "--work".as_ref(),
            work_profile.as_os_str(),
            "--arm64-start".as_ref(),
            start_log.as_os_str(),
            "--arm64-work".as_ref(),
            work_log.as_os_str(),
        ],
    );
    assert_eq!(patterns.len(), 2 * (121 + 1 + 120) + 121 + 120, "{written}");
    let at = |p: &str| {
        patterns
            .iter()
            .position(|q| *q == p)
            .unwrap_or_else(|| panic!("{p} not named"))
    };
    let (x86, arm) = (name("start", 119), arm64(&name("start", 119)));
    assert!(
        at(&x86) < at(&arm64(&name("start", 0))),
        "x86_64's start first"
    );
    assert!(
        at(&arm) < at(&name("work", 0)),
        "then arm64's start, then the work"
    );
    assert!(at(&name("work", 119)) < at(&arm64(&name("work", 0))));
    assert!(at(&arm64(&name("work", 119))) < at(&any_hash(&name("start", 0))));
    at("_ZN4core3fmt5write17h1111111111111111E.llvm.*");
    assert!(!written.contains("$x"), "{written}");
    // Profiles of something else, with too few functions of their own, are refused.
    let few = profile("few.1", &start[..5], "x");
    let run = std::process::Command::new("python3")
        .arg(herald_tests::emulator::workspace_root().join("scripts/hot_code.py"))
        .arg(dir.join("other.ld"))
        .arg("--start")
        .arg(&few)
        .arg("--work")
        .arg(&few)
        .output()
        .unwrap();
    assert!(!run.status.success());
    assert!(!dir.join("other.ld").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
