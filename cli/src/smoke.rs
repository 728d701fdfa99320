//! The check a user runs right after deploying: one webhook through the whole stack.
//!
//! 1. `GET /v1/signing-keys`: the API answers and takes the token.
//! 2. `POST /v1/subscriptions` to the given URL, for an event type of this run alone.
//! 3. `POST /v1/events` of that type: ingest matches the subscription and queues a task.
//! 4. `GET /v1/subscriptions/{id}/deliveries` until the delivery records an attempt:
//!    deliver received the task, sent the webhook and recorded the outcome, whatever the
//!    endpoint answered (under `DeliveryClaim: none`, whatever it answered but 2xx, which
//!    is not recorded at a first attempt: the default target answers 404).
//! 5. `DELETE /v1/subscriptions/{id}`, also after a failure of steps 3 and 4.
//!
//! The event type is new for each run (`smoke.r<random>`), so only subscriptions to every
//! type (`*`) or to `smoke.*` get it besides the check's own; run it as a tenant kept for
//! such checks. With an operator's token, every call acts for the tenant `--tenant` (or
//! `HERALD_TENANT`) names, as every other command's does.

use std::fmt;
use std::io::Write;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Answer, Client};

const STEPS: usize = 5;
/// How often the attempt log is read while waiting.
const POLL_EVERY: Duration = Duration::from_millis(500);

/// Where the check's webhook goes when no URL is given: the API's own URL, which answers
/// it (API Gateway's 404, or the local runner's), so the attempt is recorded without a
/// receiver of the user's.
pub fn default_target(api: &str) -> String {
    format!("{}/herald-smoke", api.trim_end_matches('/'))
}

pub struct Check {
    pub api: String,
    pub token: String,
    /// The tenant an operator's token acts for (`--tenant`), as in every other command.
    pub tenant: Option<String>,
    pub url: String,
    pub timeout: Duration,
}

/// The first step that failed, and why.
#[derive(Debug)]
pub struct Failure {
    pub step: usize,
    pub doing: &'static str,
    pub reason: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "step {} of {STEPS} failed ({}): {}",
            self.step, self.doing, self.reason
        )
    }
}

struct Steps<'a> {
    client: Client,
    out: &'a mut dyn Write,
}

impl Steps<'_> {
    fn say(&mut self, line: std::fmt::Arguments<'_>) {
        // The report is for a person; a closed stdout must not fail the check.
        let _ = writeln!(self.out, "{line}");
    }

    /// One call that must answer `expected`.
    async fn expect(
        &self,
        step: usize,
        doing: &'static str,
        method: Method,
        path: &str,
        body: Option<&Value>,
        expected: u16,
    ) -> Result<Answer, Failure> {
        let fail = |reason: String| Failure {
            step,
            doing,
            reason,
        };
        let answer = self
            .client
            .call(method.clone(), path, body)
            .await
            .map_err(|e| fail(format!("{e:#}")))?;
        if answer.status != expected {
            return Err(fail(format!(
                "{method} {} answered {}",
                self.client.url(path),
                answer.explain()
            )));
        }
        Ok(answer)
    }
}

/// Runs the check, reporting each step to `out`.
pub async fn run(check: &Check, out: &mut dyn Write) -> Result<(), Failure> {
    let client = Client::new(&check.api, &check.token)
        .map(|c| c.acting_for(check.tenant.clone()))
        .map_err(|e| Failure {
            step: 1,
            doing: "reading the API URL",
            reason: format!("{e:#}"),
        })?;
    let mut steps = Steps { client, out };
    let run_id = format!("r{:012x}", rand::random::<u64>() >> 16);
    let event_type = format!("smoke.{run_id}");

    steps
        .expect(
            1,
            "reaching the API",
            Method::GET,
            "/v1/signing-keys",
            None,
            200,
        )
        .await?;
    let acting = match &check.tenant {
        Some(tenant) => format!(", acting for {tenant}"),
        None => String::new(),
    };
    steps.say(format_args!(
        "1/{STEPS} the API at {} answers and takes the token{acting}",
        check.api
    ));

    let created = steps
        .expect(
            2,
            "creating a subscription",
            Method::POST,
            "/v1/subscriptions",
            Some(&json!({
                "url": check.url,
                "event_types": [event_type],
                "description": format!("herald smoke {run_id}; deleted by the check"),
            })),
            201,
        )
        .await?;
    let Some(id) = created.body["id"].as_str().map(str::to_owned) else {
        return Err(Failure {
            step: 2,
            doing: "creating a subscription",
            reason: format!("the answer names no subscription: {}", created.explain()),
        });
    };
    steps.say(format_args!(
        "2/{STEPS} subscription {id} to {} for {event_type}",
        check.url
    ));

    let delivered = deliver_one(&mut steps, check, &id, &event_type, &run_id).await;

    let deleted = steps
        .expect(
            5,
            "deleting the subscription",
            Method::DELETE,
            &format!("/v1/subscriptions/{id}"),
            None,
            204,
        )
        .await;
    match (delivered, deleted) {
        (Err(failure), Ok(_)) => {
            steps.say(format_args!(
                "5/{STEPS} subscription {id} deleted after the failure"
            ));
            Err(failure)
        }
        (Err(failure), Err(cleanup)) => {
            steps.say(format_args!(
                "5/{STEPS} subscription {id} could not be deleted either: {}",
                cleanup.reason
            ));
            Err(failure)
        }
        (Ok(()), Err(cleanup)) => Err(cleanup),
        (Ok(()), Ok(_)) => {
            steps.say(format_args!("5/{STEPS} subscription {id} deleted"));
            steps.say(format_args!("smoke check passed"));
            Ok(())
        }
    }
}

/// Steps 3 and 4: publish, then wait for the attempt.
async fn deliver_one(
    steps: &mut Steps<'_>,
    check: &Check,
    subscription: &str,
    event_type: &str,
    run_id: &str,
) -> Result<(), Failure> {
    let published = steps
        .expect(
            3,
            "publishing an event",
            Method::POST,
            "/v1/events",
            Some(&json!({"type": event_type, "data": {"smoke": run_id}})),
            202,
        )
        .await?;
    let deliveries = published.body["deliveries"].as_u64().unwrap_or(0);
    if deliveries == 0 {
        return Err(Failure {
            step: 3,
            doing: "publishing an event",
            reason: format!(
                "the event matched no subscription, not even the check's own: {}",
                published.explain()
            ),
        });
    }
    steps.say(format_args!(
        "3/{STEPS} event {} published, {deliveries} delivery queued",
        published.body["id"].as_str().unwrap_or("?")
    ));

    let path = format!("/v1/subscriptions/{subscription}/deliveries");
    let deadline = Instant::now() + check.timeout;
    let mut last_seen = String::from("no delivery listed yet");
    loop {
        let listed = steps
            .expect(4, "reading the attempt log", Method::GET, &path, None, 200)
            .await?;
        if let Some(delivery) = listed.body["data"].as_array().and_then(|d| d.first()) {
            if let Some(attempt) = delivery["attempts"].as_array().and_then(|a| a.first()) {
                let outcome = match (attempt["status"].as_u64(), attempt["error"].as_str()) {
                    (Some(status), _) => format!("the endpoint answered {status}"),
                    (None, Some(error)) => format!("no answer ({error})"),
                    (None, None) => "no answer".to_owned(),
                };
                steps.say(format_args!(
                    "4/{STEPS} delivery {} attempted: {outcome} in {} ms, now {}",
                    delivery["id"].as_str().unwrap_or("?"),
                    attempt["latency_ms"].as_u64().unwrap_or(0),
                    delivery["state"].as_str().unwrap_or("?"),
                ));
                return Ok(());
            }
            last_seen = format!(
                "delivery {} is {} with no attempt",
                delivery["id"].as_str().unwrap_or("?"),
                delivery["state"].as_str().unwrap_or("?")
            );
        }
        if Instant::now() >= deadline {
            return Err(Failure {
                step: 4,
                doing: "waiting for the attempt",
                reason: format!(
                    "{last_seen} after {}: is the deliver function running, with its SQS \
                     event source enabled? See /aws/lambda/<stack>-deliver. (A stack \
                     deployed with DeliveryClaim none records no first attempt that \
                     succeeds: check it against a URL that does not answer 2xx, such as \
                     the default.)",
                    humantime::format_duration(check.timeout)
                ),
            });
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}
