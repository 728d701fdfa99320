//! The files of `events/` have the shapes AWS documents for the events it sends, on the
//! template's stage; and the local runner's gateway and event source build the same shapes.
//!
//! HTTP API events (payload format 2.0):
//! <https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html>.
//! SQS events: "Using Lambda with Amazon SQS", its example event,
//! <https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html>.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use herald_aws::lambda::gateway::{claim_string, unverified_claims};
use herald_local::gateway::{Call, Gateway};
use herald_local::poller::{QueueSource, to_record};
use herald_local::routes::Routes;
use herald_tests::aws::TestAws;
use herald_tests::emulator::{event_file, event_files};
use md5_legacy::{Digest, Md5};
use serde_json::{Value, json};

fn template() -> String {
    std::fs::read_to_string(herald_local::template_path()).unwrap()
}

fn gateway() -> Gateway {
    let template = template();
    Gateway {
        routes: Routes::parse(&template).unwrap(),
        stage: Routes::stage_of(&template).unwrap(),
    }
}

fn keys(value: &Value) -> BTreeSet<&str> {
    value
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

fn names(list: &[&'static str]) -> BTreeSet<&'static str> {
    list.iter().copied().collect()
}

/// Every way `event` differs from the payload-v2 event API Gateway sends for `stage`.
fn http_event_problems(event: &Value, gateway: &Gateway, stage: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            problems.push(what);
        }
    };
    let top = keys(event);
    let allowed = names(&[
        "version",
        "routeKey",
        "rawPath",
        "rawQueryString",
        "cookies",
        "headers",
        "queryStringParameters",
        "requestContext",
        "body",
        "pathParameters",
        "isBase64Encoded",
        "stageVariables",
    ]);
    check(
        top.is_subset(&allowed),
        format!("fields AWS does not send: {:?}", top.difference(&allowed)),
    );
    let required = names(&[
        "version",
        "routeKey",
        "rawPath",
        "rawQueryString",
        "headers",
        "requestContext",
        "isBase64Encoded",
    ]);
    check(
        required.is_subset(&top),
        format!("missing: {:?}", required.difference(&top)),
    );
    check(event["version"] == "2.0", "version is not 2.0".into());

    let context = &event["requestContext"];
    let context_keys = keys(context);
    let context_allowed = names(&[
        "accountId",
        "apiId",
        "authentication",
        "authorizer",
        "domainName",
        "domainPrefix",
        "http",
        "requestId",
        "routeKey",
        "stage",
        "time",
        "timeEpoch",
    ]);
    check(
        context_keys.is_subset(&context_allowed),
        format!(
            "requestContext fields AWS does not send: {:?}",
            context_keys.difference(&context_allowed)
        ),
    );
    let context_required = names(&[
        "accountId",
        "apiId",
        "domainName",
        "domainPrefix",
        "http",
        "requestId",
        "routeKey",
        "stage",
        "time",
        "timeEpoch",
    ]);
    check(
        context_required.is_subset(&context_keys),
        format!(
            "requestContext lacks {:?}",
            context_required.difference(&context_keys)
        ),
    );
    check(
        context["accountId"]
            .as_str()
            .is_some_and(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit())),
        "accountId is not 12 digits".into(),
    );
    check(
        context["requestId"].as_str().is_some_and(|r| !r.is_empty()),
        "no requestId".into(),
    );
    check(
        context["stage"] == stage,
        format!("stage {} is not {stage}", context["stage"]),
    );
    let domain = context["domainName"].as_str().unwrap_or_default();
    check(
        context["domainPrefix"].as_str() == domain.split('.').next(),
        "domainPrefix is not the domain's first label".into(),
    );
    let http = &context["http"];
    check(
        keys(http) == names(&["method", "path", "protocol", "sourceIp", "userAgent"]),
        format!("requestContext.http has {:?}", keys(http)),
    );
    check(
        http["path"] == event["rawPath"],
        "requestContext.http.path is not rawPath".into(),
    );

    // The route: the key is the template's, and the path is the route's path on the stage's
    // execute-api URL, or under a custom domain's mapping.
    let route_key = event["routeKey"].as_str().unwrap_or_default();
    check(
        context["routeKey"] == event["routeKey"],
        "the two routeKeys differ".into(),
    );
    let method = http["method"].as_str().unwrap_or_default();
    let raw_path = event["rawPath"].as_str().unwrap_or_default();
    let prefix = format!("/{stage}");
    let candidates: Vec<&str> = if stage == "$default" {
        vec![raw_path]
    } else {
        // On execute-api the stage leads the path; through a domain's API mapping the
        // mapping's own path may (each segment tried as the mapping's).
        let mut candidates: Vec<&str> =
            raw_path.strip_prefix(prefix.as_str()).into_iter().collect();
        candidates.extend(raw_path.match_indices('/').map(|(i, _)| &raw_path[i..]));
        candidates
    };
    let matched = candidates.iter().find_map(|path| {
        gateway
            .routes
            .find(method, path)
            .filter(|m| m.route.key() == route_key)
    });
    match matched {
        None => check(
            false,
            format!("{method} {raw_path} matches no route {route_key} of template.yaml"),
        ),
        Some(matched) => {
            let given: BTreeMap<String, String> =
                serde_json::from_value(event["pathParameters"].clone()).unwrap_or_default();
            check(
                given == matched.path_parameters,
                format!(
                    "pathParameters {given:?}, the route gives {:?}",
                    matched.path_parameters
                ),
            );
        }
    }
    if domain.ends_with(".amazonaws.com") {
        check(
            domain.contains(".execute-api.")
                && context["apiId"].as_str() == domain.split('.').next(),
            "an AWS domain that is not the API's execute-api one".into(),
        );
        if stage != "$default" {
            check(
                raw_path.starts_with(&format!("{prefix}/")),
                "execute-api paths of a named stage begin with it".into(),
            );
        }
    }

    let headers = event["headers"].as_object().cloned().unwrap_or_default();
    for (name, value) in &headers {
        check(
            name.chars().all(|c| !c.is_ascii_uppercase()),
            format!("header {name} is not lower case"),
        );
        check(value.is_string(), format!("header {name} is not a string"));
    }
    check(
        !headers.contains_key("cookie"),
        "cookies belong in `cookies`".into(),
    );
    if let Some(cookies) = event.get("cookies") {
        check(
            cookies.as_array().is_some_and(|c| {
                c.iter()
                    .all(|c| c.as_str().is_some_and(|c| !c.contains(';')))
            }),
            "cookies are a list of single cookies".into(),
        );
    }
    let query = event["rawQueryString"].as_str().unwrap_or_default();
    if query.is_empty() {
        check(
            event.get("queryStringParameters").is_none(),
            "queryStringParameters without a query".into(),
        );
    } else {
        let mut joined: BTreeMap<String, String> = BTreeMap::new();
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            joined
                .entry(k.into())
                .and_modify(|x| {
                    x.push(',');
                    x.push_str(v)
                })
                .or_insert_with(|| v.into());
        }
        check(
            event["queryStringParameters"] == json!(joined),
            "queryStringParameters are not rawQueryString joined by commas".into(),
        );
    }

    if let Some(authorizer) = context.get("authorizer") {
        let claims = authorizer["jwt"]["claims"].as_object();
        check(
            claims.is_some_and(|c| c.values().all(Value::is_string)),
            "claims are strings".into(),
        );
        let scopes = &authorizer["jwt"]["scopes"];
        check(
            scopes.is_null()
                || scopes
                    .as_array()
                    .is_some_and(|s| s.iter().all(Value::is_string)),
            "scopes are null or strings".into(),
        );
        // The claims are the header's token's, in their string forms.
        let token = headers
            .get("authorization")
            .and_then(Value::as_str)
            .and_then(herald_aws::lambda::gateway::bearer_token)
            .and_then(unverified_claims);
        if let (Some(token), Some(claims)) = (token, claims) {
            let forms: serde_json::Map<String, Value> = token
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(claim_string(v))))
                .collect();
            check(&forms == claims, "the claims are not the token's".into());
        }
    }

    let body = event.get("body").and_then(Value::as_str);
    let bytes = match (event["isBase64Encoded"].as_bool(), body) {
        (Some(true), Some(body)) => base64::engine::general_purpose::STANDARD.decode(body).ok(),
        (Some(false), Some(body)) => Some(body.as_bytes().to_vec()),
        (Some(_), None) => Some(Vec::new()),
        (None, _) => None,
    };
    check(
        bytes.is_some(),
        "the body is not what isBase64Encoded says".into(),
    );
    if let (Some(length), Some(bytes)) = (headers.get("content-length"), &bytes) {
        check(
            length.as_str() == Some(bytes.len().to_string().as_str()),
            "content-length is not the body's".into(),
        );
    }
    let time = context["time"].as_str().unwrap_or_default();
    let parsed = chrono::DateTime::parse_from_str(time, "%d/%b/%Y:%H:%M:%S %z");
    check(
        parsed.is_ok_and(|t| {
            Some(t.timestamp()) == context["timeEpoch"].as_i64().map(|ms| ms / 1000)
        }),
        format!("time {time} is not timeEpoch"),
    );
    problems
}

fn is_http_event(event: &Value) -> bool {
    event.get("routeKey").is_some()
}

#[test]
fn every_http_event_file_is_what_api_gateway_sends_on_the_templates_stage() {
    let gateway = gateway();
    assert_eq!(gateway.stage, "dev");
    let mut stages = BTreeSet::new();
    let mut checked = 0;
    for file in event_files() {
        let event = event_file(&file);
        if !is_http_event(&event) {
            continue;
        }
        // One file shows the $default stage; the others, the template's.
        let stage = if file.contains("default-stage") {
            "$default"
        } else {
            gateway.stage.as_str()
        };
        stages.insert(stage);
        let problems = http_event_problems(&event, &gateway, stage);
        assert!(problems.is_empty(), "{file}: {problems:#?}");
        checked += 1;
    }
    assert!(checked >= 8, "{checked} files");
    assert_eq!(stages, BTreeSet::from(["$default", "dev"]));
}

#[test]
fn a_wrong_sample_is_caught() {
    let gateway = gateway();
    let good = event_file("ingest/publish-one.json");
    assert!(http_event_problems(&good, &gateway, "dev").is_empty());
    for (pointer, value) in [
        ("/requestContext/stage", json!("$default")),
        ("/rawPath", json!("/v1/events")),
        ("/routeKey", json!("POST /v1/other")),
        (
            "/requestContext/authorizer/jwt/claims/iat",
            json!(1795348790),
        ),
        ("/headers/content-length", json!("1")),
        ("/requestContext/timeEpoch", json!(1)),
    ] {
        let mut wrong = good.clone();
        *wrong.pointer_mut(pointer).unwrap() = value;
        assert!(
            !http_event_problems(&wrong, &gateway, "dev").is_empty(),
            "{pointer} went unnoticed"
        );
    }
}

#[test]
fn the_local_gateway_builds_the_same_shapes() {
    let gateway = gateway();
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(br#"{"sub":"c1","tenant":"acme","scope":"herald/read","groups":["a","b"],"exp":4102444800}"#);
    let token = format!("Bearer eyJhbGciOiJSUzI1NiJ9.{payload}.c2ln");
    for (method, path, query, content_type, body) in [
        (
            "POST",
            "/dev/v1/events",
            "",
            "application/json",
            &b"{\"type\":\"a\",\"data\":{}}"[..],
        ),
        (
            "POST",
            "/v1/events",
            "",
            "application/octet-stream",
            &[0xff, 0x01][..],
        ),
        (
            "GET",
            "/dev/v1/subscriptions",
            "limit=5&state=a&state=b",
            "",
            &b""[..],
        ),
        (
            "GET",
            "/v1/subscriptions/sub_1/deliveries",
            "since=x",
            "",
            &b""[..],
        ),
        (
            "POST",
            "/dev/v1/deliveries/msg_1/retry",
            "",
            "application/json",
            &b"{}"[..],
        ),
    ] {
        let mut headers = BTreeMap::from([
            ("host".to_owned(), "127.0.0.1:3000".to_owned()),
            ("user-agent".to_owned(), "curl/8.5.0".to_owned()),
            ("authorization".to_owned(), token.clone()),
            ("cookie".to_owned(), "a=1; b=2".to_owned()),
            ("content-length".to_owned(), body.len().to_string()),
        ]);
        if !content_type.is_empty() {
            headers.insert("content-type".into(), content_type.into());
        }
        let call = Call {
            method,
            path,
            query,
            headers: &headers,
            body,
            source_ip: "127.0.0.1",
        };
        let routed = gateway.route(method, path).unwrap();
        let caller = gateway
            .authorize(Some(&token), "tenant", 1_800_000_000)
            .unwrap();
        let event = gateway.event_for(&call, &routed, Some(&caller));
        let problems = http_event_problems(&event, &gateway, "dev");
        assert!(
            problems.is_empty(),
            "{method} {path}: {problems:#?}\n{event:#}"
        );
    }
}

/// Every way `record` differs from an SQS record the event source mapping sends.
fn sqs_record_problems(record: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            problems.push(what);
        }
    };
    let mut expected = names(&[
        "messageId",
        "receiptHandle",
        "body",
        "attributes",
        "messageAttributes",
        "md5OfBody",
        "eventSource",
        "eventSourceARN",
        "awsRegion",
    ]);
    let has_attributes = record["messageAttributes"]
        .as_object()
        .is_some_and(|a| !a.is_empty());
    if has_attributes {
        expected.insert("md5OfMessageAttributes");
    }
    let present: BTreeSet<&str> = record
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, _)| k.as_str())
                .collect()
        })
        .unwrap_or_default();
    check(
        present == expected,
        format!("fields {present:?}, AWS sends {expected:?}"),
    );
    let attributes = &record["attributes"];
    for name in [
        "ApproximateReceiveCount",
        "SentTimestamp",
        "SenderId",
        "ApproximateFirstReceiveTimestamp",
    ] {
        check(
            attributes[name].is_string(),
            format!("attributes.{name} is missing"),
        );
    }
    let known = names(&[
        "ApproximateReceiveCount",
        "SentTimestamp",
        "SenderId",
        "ApproximateFirstReceiveTimestamp",
        "AWSTraceHeader",
        "SequenceNumber",
        "MessageGroupId",
        "MessageDeduplicationId",
        "DeadLetterQueueSourceArn",
    ]);
    check(
        keys(attributes).is_subset(&known),
        format!("attributes {:?}", keys(attributes)),
    );
    for name in [
        "ApproximateReceiveCount",
        "SentTimestamp",
        "ApproximateFirstReceiveTimestamp",
    ] {
        check(
            attributes[name]
                .as_str()
                .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())),
            format!("attributes.{name} is not a number"),
        );
    }
    let body = record["body"].as_str().unwrap_or_default();
    check(
        record["md5OfBody"].as_str() == Some(hex(&Md5::digest(body.as_bytes())).as_str()),
        "md5OfBody is not the body's MD5".into(),
    );
    check(record["eventSource"] == "aws:sqs", "eventSource".into());
    let region = record["awsRegion"].as_str().unwrap_or_default();
    let arn: Vec<&str> = record["eventSourceARN"]
        .as_str()
        .unwrap_or_default()
        .split(':')
        .collect();
    check(
        arn.len() == 6
            && arn[..3] == ["arn", "aws", "sqs"]
            && arn[3] == region
            && arn[4].len() == 12
            && !arn[5].is_empty(),
        format!("eventSourceARN {arn:?} is not a queue of {region}"),
    );
    for (name, attribute) in record["messageAttributes"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let fields = keys(attribute);
        check(
            fields.contains("dataType")
                && fields.is_subset(&names(&[
                    "stringValue",
                    "binaryValue",
                    "stringListValues",
                    "binaryListValues",
                    "dataType",
                ])),
            format!("messageAttributes.{name} has {fields:?}"),
        );
    }
    problems
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn every_sqs_event_file_is_what_the_event_source_sends() {
    let mut checked = 0;
    for file in event_files() {
        let event = event_file(&file);
        let Some(records) = event["Records"].as_array() else {
            continue;
        };
        assert_eq!(keys(&event), names(&["Records"]), "{file}");
        for record in records {
            let problems = sqs_record_problems(record);
            assert!(problems.is_empty(), "{file}: {problems:#?}");
            // A stack's queue is named `<stack>-<logical id>-<suffix>`, a FIFO one with
            // `.fifo` after: one of the three queues deliver is mapped to.
            let queue = record["eventSourceARN"]
                .as_str()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap();
            let logical = queue.split('-').nth(1);
            assert!(
                matches!(logical, Some("DeliveryQueue" | "SlowDeliveryQueue"))
                    && !queue.ends_with(".fifo")
                    || (logical == Some("OrderedDeliveryQueue") && queue.ends_with(".fifo")),
                "{file}: {queue}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 4, "{checked} records");
    let mut wrong = event_file("deliver/batch-of-two.json")["Records"][0].clone();
    wrong["md5OfBody"] = json!("00");
    assert!(!sqs_record_problems(&wrong).is_empty());
}

#[tokio::test]
async fn the_local_event_source_sends_the_same_shapes() {
    let aws = TestAws::new().await;
    let url = aws.provisioned.delivery_queue_url().to_owned();
    aws.sqs
        .send_message()
        .queue_url(&url)
        .message_body("{\"kind\": \"deliver.v1\"}")
        .send()
        .await
        .unwrap();
    aws.sqs
        .send_message()
        .queue_url(&url)
        .message_body("with attributes")
        .message_attributes(
            "herald-reason",
            aws_sdk_sqs::types::MessageAttributeValue::builder()
                .data_type("String")
                .string_value("a reason")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let (queue_url, queue_arn) = aws.provisioned.queues["DeliveryQueue"].clone();
    let source = QueueSource {
        client: aws.sqs.clone(),
        url: queue_url,
        arn: queue_arn,
        region: "us-east-1".into(),
    };
    let mut seen = 0;
    for _ in 0..10 {
        let received = aws
            .sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap();
        for message in received.messages() {
            let record = serde_json::to_value(to_record(message, &source)).unwrap();
            let problems = sqs_record_problems(&record);
            assert!(problems.is_empty(), "{problems:#?}\n{record:#}");
            seen += 1;
        }
        if seen == 2 {
            break;
        }
    }
    assert_eq!(seen, 2);
}
