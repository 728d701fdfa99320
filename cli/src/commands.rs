//! The API commands: each calls Herald's HTTP API and answers an [`Output`], the API's JSON
//! (for `--json`) and a text for people.

use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::client::Client;
use crate::failure::Failure;
use crate::table::{cell, fields, render};

/// What a command prints: `text` for people, `json` with `--json`.
#[derive(Debug)]
pub struct Output {
    pub json: Value,
    pub text: String,
}

/// The most pages `--all` follows, a bound on a listing that never ends.
const MAX_PAGES: usize = 1000;
/// Ids are Herald's own (`sub_…`, `msg_…`): letters, digits and `_`, so an id can never
/// change which route is called.
const MAX_ID_LEN: usize = 64;

/// `id` when it can be one of Herald's ids, else a usage failure naming it.
pub fn checked_id<'a>(what: &str, id: &'a str) -> Result<&'a str, Failure> {
    if !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        Ok(id)
    } else {
        Err(Failure::usage(format!(
            "`{id}` is not a {what} id (like {})",
            if what == "delivery" {
                "msg_01…"
            } else {
                "sub_01…"
            }
        )))
    }
}

impl Client {
    /// One call that must answer one of `ok`; its JSON (Null when empty).
    pub async fn expect(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        doing: &str,
        ok: &[u16],
    ) -> Result<Value, Failure> {
        let answer = self
            .call(method, path, body)
            .await
            .map_err(|e| Failure::unavailable(format!("{doing}: {e:#}")))?;
        if ok.contains(&answer.status) {
            Ok(match answer.body {
                Value::String(s) if s.is_empty() => Value::Null,
                body => body,
            })
        } else {
            Err(Failure::answered(doing, &answer))
        }
    }

    /// A listing: one page (with its `next_cursor`), or every page with `all`.
    async fn list(
        &self,
        path: &str,
        query: &[(&str, String)],
        all: bool,
        doing: &str,
    ) -> Result<Value, Failure> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut pairs: Vec<(&str, String)> = query.to_vec();
            if let Some(c) = &cursor {
                pairs.push(("cursor", c.clone()));
            }
            let full = with_query(path, &pairs);
            let page = self.expect(Method::GET, &full, None, doing, &[200]).await?;
            items.extend(page["data"].as_array().cloned().unwrap_or_default());
            cursor = page["next_cursor"].as_str().map(str::to_owned);
            if !all || cursor.is_none() {
                return Ok(json!({"data": items, "next_cursor": cursor}));
            }
        }
        Err(Failure::unavailable(format!(
            "{doing}: more than {MAX_PAGES} pages; narrow the listing"
        )))
    }
}

fn with_query(path: &str, pairs: &[(&str, String)]) -> String {
    if pairs.is_empty() {
        return path.to_owned();
    }
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        query.append_pair(k, v);
    }
    format!("{path}?{}", query.finish())
}

/// A listing's text: a table of `headers` with one `row` per item of `data` (or `empty`
/// when there is none), and the hint when more pages follow.
fn listing_text(
    json: &Value,
    empty: &str,
    headers: &[&str],
    row: impl Fn(&Value) -> Vec<String>,
) -> String {
    let rows: Vec<Vec<String>> = json["data"]
        .as_array()
        .into_iter()
        .flatten()
        .map(row)
        .collect();
    let mut text = if rows.is_empty() {
        format!("{empty}\n")
    } else {
        render(headers, &rows)
    };
    text.push_str(&next_page_hint(json));
    text
}

fn next_page_hint(json: &Value) -> String {
    match json["next_cursor"].as_str() {
        Some(_) => "(more: add --all for every page)\n".to_owned(),
        None => String::new(),
    }
}

// --- subscriptions ------------------------------------------------------------------------

pub async fn subscriptions_list(
    client: &Client,
    limit: Option<u32>,
    all: bool,
) -> Result<Output, Failure> {
    let query: Vec<(&str, String)> = limit
        .map(|l| ("limit", l.to_string()))
        .into_iter()
        .collect();
    let json = client
        .list("/v1/subscriptions", &query, all, "listing subscriptions")
        .await?;
    let text = listing_text(
        &json,
        "no subscriptions",
        &["ID", "STATUS", "EVENT TYPES", "URL"],
        |s| {
            vec![
                cell(&s["id"]),
                cell(&s["status"]),
                cell(&s["event_types"]),
                cell(&s["url"]),
            ]
        },
    );
    Ok(Output { json, text })
}

fn subscription_text(s: &Value) -> String {
    let mut pairs = vec![
        ("id", cell(&s["id"])),
        ("status", cell(&s["status"])),
        ("url", cell(&s["url"])),
        ("event types", cell(&s["event_types"])),
        ("format", cell(&s["format"])),
        ("description", cell(&s["description"])),
        ("version", cell(&s["version"])),
        (
            "retries",
            match s["retry"].as_object() {
                Some(r) => format!("{} within {}", cell(&r["schedule"]), cell(&r["window"])),
                None => "the deployment's".to_owned(),
            },
        ),
        (
            "rate limit",
            match s["rate_limit"].as_u64() {
                Some(n) => format!("{n} a second"),
                None => "none".to_owned(),
            },
        ),
        (
            "timeout",
            match s["timeout"].as_str() {
                Some(t) => t.to_owned(),
                None => "the deployment's".to_owned(),
            },
        ),
        ("created", cell(&s["created_at"])),
    ];
    if let Some(headers) = s["headers"].as_object().filter(|h| !h.is_empty()) {
        let names: Vec<&str> = headers.keys().map(String::as_str).collect();
        pairs.push(("headers", names.join(",")));
    }
    if !s["disabled_reason"].is_null() {
        pairs.push((
            "disabled",
            format!(
                "{} ({})",
                cell(&s["disabled_at"]),
                cell(&s["disabled_reason"])
            ),
        ));
    }
    if !s["failing_since"].is_null() {
        pairs.push(("failing since", cell(&s["failing_since"])));
    }
    fields(&pairs)
}

pub async fn subscriptions_show(client: &Client, id: &str) -> Result<Output, Failure> {
    let id = checked_id("subscription", id)?;
    let json = client
        .expect(
            Method::GET,
            &format!("/v1/subscriptions/{id}"),
            None,
            "reading the subscription",
            &[200],
        )
        .await?;
    Ok(Output {
        text: subscription_text(&json),
        json,
    })
}

/// The fields a `create` or `update` sends; None leaves a field out.
#[derive(Debug, Default)]
pub struct SubscriptionFields {
    pub url: Option<String>,
    pub event_types: Vec<String>,
    pub description: Option<String>,
    pub format: Option<String>,
    pub headers: Vec<String>,
    pub status: Option<String>,
    pub filter: Option<String>,
    /// Its own retry policy: (schedule, window).
    pub retry: Option<(String, String)>,
    /// Its own limit on an attempt.
    pub timeout: Option<String>,
    /// Deliveries a second at most.
    pub rate_limit: Option<u32>,
    /// `subscription` or `subject`: deliveries one at a time in publish order.
    pub ordering: Option<String>,
    /// A GraphQL query's text, and its variables as `NAME=PLACE`.
    pub query: Option<String>,
    pub query_vars: Vec<String>,
}

impl SubscriptionFields {
    /// The JSON body; `Name: value` headers and a JSON filter checked here, so a typo is
    /// told before anything is sent.
    pub fn body(&self) -> Result<Value, Failure> {
        let mut body = Map::new();
        if let Some(url) = &self.url {
            body.insert("url".into(), json!(url));
        }
        if !self.event_types.is_empty() {
            body.insert("event_types".into(), json!(self.event_types));
        }
        if let Some(d) = &self.description {
            body.insert("description".into(), json!(d));
        }
        if let Some(f) = &self.format {
            body.insert("format".into(), json!(f));
        }
        if let Some(s) = &self.status {
            body.insert("status".into(), json!(s));
        }
        if !self.headers.is_empty() {
            let mut headers = Map::new();
            for header in &self.headers {
                let (name, value) = header
                    .split_once(':')
                    .filter(|(n, _)| !n.trim().is_empty())
                    .ok_or_else(|| {
                        Failure::usage(format!("--header `{header}`: write it as `Name: value`"))
                    })?;
                headers.insert(name.trim().to_owned(), json!(value.trim()));
            }
            body.insert("headers".into(), Value::Object(headers));
        }
        if let Some((schedule, window)) = &self.retry {
            body.insert(
                "retry".into(),
                json!({"schedule": schedule, "window": window}),
            );
        }
        if let Some(timeout) = &self.timeout {
            body.insert("timeout".into(), json!(timeout));
        }
        if let Some(rate) = self.rate_limit {
            body.insert("rate_limit".into(), json!(rate));
        }
        if let Some(ordering) = &self.ordering {
            body.insert("ordering".into(), json!(ordering));
        }
        if let Some(text) = &self.query {
            let mut variables = Map::new();
            for var in &self.query_vars {
                let (name, place) = var
                    .split_once('=')
                    .filter(|(n, p)| !n.trim().is_empty() && !p.trim().is_empty())
                    .ok_or_else(|| {
                        Failure::usage(format!(
                            "--query-var `{var}`: write it as `NAME=PLACE`, like `id=subject.id`"
                        ))
                    })?;
                variables.insert(
                    name.trim().trim_start_matches('$').to_owned(),
                    json!(place.trim()),
                );
            }
            body.insert(
                "query".into(),
                json!({"text": text, "variables": variables}),
            );
        }
        if let Some(filter) = &self.filter {
            let parsed: Value = serde_json::from_str(filter)
                .map_err(|e| Failure::usage(format!("--filter is not JSON: {e}")))?;
            body.insert("filter".into(), parsed);
        }
        Ok(Value::Object(body))
    }
}

pub async fn subscriptions_create(
    client: &Client,
    fields_in: &SubscriptionFields,
) -> Result<Output, Failure> {
    let body = fields_in.body()?;
    let json = client
        .expect(
            Method::POST,
            "/v1/subscriptions",
            Some(&body),
            "creating the subscription",
            &[201],
        )
        .await?;
    let mut text = subscription_text(&json);
    text.push_str(&format!(
        "secret        {}\n\nThe secret is shown only now: give it to the endpoint's owner to verify signatures.\n",
        cell(&json["secret"])
    ));
    Ok(Output { json, text })
}

pub async fn subscriptions_update(
    client: &Client,
    id: &str,
    fields_in: &SubscriptionFields,
) -> Result<Output, Failure> {
    let id = checked_id("subscription", id)?;
    let body = fields_in.body()?;
    if body.as_object().is_some_and(Map::is_empty) {
        return Err(Failure::usage(
            "nothing to change: give --url, --event-type, --description, --format, --header, --filter, --retry-schedule and --retry-window, --timeout, --rate-limit, or --status",
        ));
    }
    let json = client
        .expect(
            Method::PATCH,
            &format!("/v1/subscriptions/{id}"),
            Some(&body),
            "updating the subscription",
            &[200],
        )
        .await?;
    Ok(Output {
        text: subscription_text(&json),
        json,
    })
}

pub async fn subscriptions_delete(client: &Client, id: &str) -> Result<Output, Failure> {
    let id = checked_id("subscription", id)?;
    client
        .expect(
            Method::DELETE,
            &format!("/v1/subscriptions/{id}"),
            None,
            "deleting the subscription",
            &[204],
        )
        .await?;
    Ok(Output {
        json: json!({"id": id, "deleted": true}),
        text: format!("deleted {id}\n"),
    })
}

pub async fn subscriptions_rotate(
    client: &Client,
    id: &str,
    grace: Option<&str>,
) -> Result<Output, Failure> {
    let id = checked_id("subscription", id)?;
    let body = match grace {
        Some(g) => json!({"grace_period": g}),
        None => json!({}),
    };
    let json = client
        .expect(
            Method::POST,
            &format!("/v1/subscriptions/{id}/secret/rotate"),
            Some(&body),
            "rotating the secret",
            &[200],
        )
        .await?;
    let previous = match json["previous_secret_expires_at"].as_str() {
        Some(at) => format!("The previous secret also signs until {at}."),
        None => "The previous secret no longer signs.".to_owned(),
    };
    let text = format!(
        "{}\nThe new secret is shown only now. {previous}\n",
        fields(&[
            ("secret", cell(&json["secret"])),
            ("version", cell(&json["version"])),
            ("rotated", cell(&json["rotated_at"])),
        ])
    );
    Ok(Output { json, text })
}

pub async fn subscriptions_test(
    client: &Client,
    id: &str,
    data: Option<&str>,
) -> Result<Output, Failure> {
    let id = checked_id("subscription", id)?;
    let body = match data {
        Some(raw) => {
            let data: Value = serde_json::from_str(raw)
                .map_err(|e| Failure::usage(format!("--data is not JSON: {e}")))?;
            if !data.is_object() {
                return Err(Failure::usage("--data must be a JSON object"));
            }
            json!({"data": data})
        }
        None => json!({}),
    };
    let json = client
        .expect(
            Method::POST,
            &format!("/v1/subscriptions/{id}/test"),
            Some(&body),
            "sending a test event",
            &[202],
        )
        .await?;
    let text = format!(
        "test event {} queued as delivery {}: see it with `herald deliveries show {}`\n",
        cell(&json["event_id"]),
        cell(&json["delivery_id"]),
        cell(&json["delivery_id"])
    );
    Ok(Output { json, text })
}

// --- signing keys -------------------------------------------------------------------------

/// The tenant's public keys as text: the keys in use at the top, then each live pair.
fn keys_text(json: &Value) -> String {
    let mut text = fields(&[
        ("ed25519", cell(&json["ed25519"])),
        ("rsa", cell(&json["rsa"])),
    ]);
    for pair in json["keys"].as_array().into_iter().flatten() {
        text.push('\n');
        text.push_str(&fields(&[
            ("kid", cell(&pair["kid"])),
            ("ed25519", cell(&pair["ed25519"])),
            ("created", cell(&pair["created_at"])),
            ("rsa signs from", cell(&pair["signs_from"])),
            ("retires", cell(&pair["retires_at"])),
        ]));
    }
    text
}

/// `GET /v1/signing-keys`: the tenant's public keys (made on first use).
pub async fn keys_show(client: &Client) -> Result<Output, Failure> {
    let json = client
        .expect(
            Method::GET,
            "/v1/signing-keys",
            None,
            "reading the signing keys",
            &[200],
        )
        .await?;
    Ok(Output {
        text: keys_text(&json),
        json,
    })
}

/// `POST /v1/signing-keys/rotate`: a new pair, taking over after the overlap.
pub async fn keys_rotate(client: &Client) -> Result<Output, Failure> {
    let json = client
        .expect(
            Method::POST,
            "/v1/signing-keys/rotate",
            None,
            "rotating the signing keys",
            &[200],
        )
        .await?;
    let text = format!(
        "{}\nThe new pair is served now and signs v1a beside the old; its RSA signatures begin \
         when the old pair retires.\n",
        keys_text(&json)
    );
    Ok(Output { json, text })
}

// --- events --------------------------------------------------------------------------------

/// `id` when it can be a producer's event id (as Herald takes them: 1 to 128 of
/// `[A-Za-z0-9_.:-]`, not dots alone), else a usage failure naming it. Dots alone would be
/// a dot segment of the URL's path, which is removed before sending: `events show ..`
/// would ask for another route.
pub fn checked_event_id(id: &str) -> Result<&str, Failure> {
    let valid = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
        && !id.bytes().all(|b| b == b'.');
    if valid {
        Ok(id)
    } else {
        Err(Failure::usage(format!(
            "`{id}` is not an event id (1 to 128 letters, digits, `_`, `-`, `.` or `:`, \
             not dots alone)"
        )))
    }
}

pub async fn events_show(client: &Client, id: &str) -> Result<Output, Failure> {
    let id = checked_event_id(id)?;
    let json = client
        .expect(
            Method::GET,
            &format!("/v1/events/{id}"),
            None,
            "reading the event",
            &[200],
        )
        .await?;
    let mut text = fields(&[
        ("id", cell(&json["id"])),
        ("type", cell(&json["type"])),
        ("occurred", cell(&json["occurred_at"])),
    ]);
    text.push_str(&serde_json::to_string_pretty(&json["data"]).unwrap_or_default());
    text.push('\n');
    Ok(Output { json, text })
}

// --- deliveries ----------------------------------------------------------------------------

/// Which deliveries a listing or replay takes.
#[derive(Debug, Default)]
pub struct DeliveryQuery {
    pub state: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
}

pub async fn deliveries_list(
    client: &Client,
    subscription: &str,
    query: &DeliveryQuery,
    limit: Option<u32>,
    all: bool,
) -> Result<Output, Failure> {
    let subscription = checked_id("subscription", subscription)?;
    let mut pairs: Vec<(&str, String)> = Vec::new();
    for (name, value) in [
        ("state", &query.state),
        ("since", &query.since),
        ("until", &query.until),
    ] {
        if let Some(v) = value {
            pairs.push((name, v.clone()));
        }
    }
    if let Some(l) = limit {
        pairs.push(("limit", l.to_string()));
    }
    let json = client
        .list(
            &format!("/v1/subscriptions/{subscription}/deliveries"),
            &pairs,
            all,
            "listing deliveries",
        )
        .await?;
    let text = listing_text(
        &json,
        "no deliveries",
        &["ID", "STATE", "EVENT TYPE", "ATTEMPTS", "LAST", "CREATED"],
        |d| {
            let attempts = d["attempts"].as_array().map_or(0, Vec::len);
            let last = d["attempts"]
                .as_array()
                .and_then(|a| a.last())
                .cloned()
                .unwrap_or(Value::Null);
            let answered = match (&last["status"], &last["error"]) {
                (Value::Null, Value::Null) => "-".to_owned(),
                (Value::Null, error) => cell(error),
                (status, _) => cell(status),
            };
            vec![
                cell(&d["id"]),
                cell(&d["state"]),
                cell(&d["event_type"]),
                attempts.to_string(),
                answered,
                cell(&d["created_at"]),
            ]
        },
    );
    Ok(Output { json, text })
}

pub async fn deliveries_feed(
    client: &Client,
    subscription: &str,
    since: Option<String>,
    limit: Option<u32>,
    all: bool,
) -> Result<Output, Failure> {
    let subscription = checked_id("subscription", subscription)?;
    let mut pairs: Vec<(&str, String)> = Vec::new();
    if let Some(since) = since {
        pairs.push(("since", since));
    }
    if let Some(l) = limit {
        pairs.push(("limit", l.to_string()));
    }
    let json = client
        .list(
            &format!("/v1/subscriptions/{subscription}/feed"),
            &pairs,
            all,
            "reading the feed",
        )
        .await?;
    let text = listing_text(
        &json,
        "no deliveries",
        &["DELIVERY", "EVENT", "EVENT TYPE", "STATE", "ACCEPTED"],
        |d| {
            vec![
                cell(&d["delivery_id"]),
                cell(&d["event_id"]),
                cell(&d["event_type"]),
                cell(&d["state"]),
                cell(&d["accepted_at"]),
            ]
        },
    );
    Ok(Output { json, text })
}

pub async fn deliveries_show(client: &Client, id: &str) -> Result<Output, Failure> {
    let id = checked_id("delivery", id)?;
    let json = client
        .expect(
            Method::GET,
            &format!("/v1/deliveries/{id}"),
            None,
            "reading the delivery",
            &[200],
        )
        .await?;
    let mut text = fields(&[
        ("id", cell(&json["id"])),
        ("state", cell(&json["state"])),
        ("subscription", cell(&json["subscription_id"])),
        (
            "event",
            format!(
                "{} ({})",
                cell(&json["event_id"]),
                cell(&json["event_type"])
            ),
        ),
        ("created", cell(&json["created_at"])),
        ("next attempt", cell(&json["next_attempt_at"])),
        ("reason", cell(&json["reason"])),
    ]);
    let attempts: Vec<Vec<String>> = json["attempts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            vec![
                cell(&a["number"]),
                cell(&a["at"]),
                cell(&a["status"]),
                cell(&a["error"]),
                format!("{} ms", cell(&a["latency_ms"])),
                cell(&a["response"]),
            ]
        })
        .collect();
    text.push('\n');
    if attempts.is_empty() {
        text.push_str("no attempts yet\n");
    } else {
        text.push_str(&render(
            &["#", "AT", "STATUS", "ERROR", "LATENCY", "ANSWER"],
            &attempts,
        ));
    }
    Ok(Output { json, text })
}

pub async fn deliveries_retry(client: &Client, id: &str) -> Result<Output, Failure> {
    let id = checked_id("delivery", id)?;
    let json = client
        .expect(
            Method::POST,
            &format!("/v1/deliveries/{id}/retry"),
            None,
            "retrying the delivery",
            &[202],
        )
        .await?;
    let text = if json["queued"].as_bool() == Some(true) {
        format!("{id} queued for another attempt\n")
    } else {
        format!("{id} is already queued; nothing more to do\n")
    };
    Ok(Output { json, text })
}

/// The most calls one replay makes, a bound on a walk that never ends (each queues at most
/// 100 deliveries).
const MAX_REPLAY_CALLS: usize = 1000;
/// The most times in a row a replay waits for the tenant's redeliveries to come back.
const MAX_REPLAY_WAITS: usize = 5;

/// Replays the whole range: each answer's `cursor` is sent back with the same range and
/// state until it is null, so every matching delivery is queued once. A call refused for
/// the tenant's redeliveries a minute (429, nothing queued) is made again in the next
/// minute (after the answer's `Retry-After`). Progress goes to standard error; a failure says how to continue from where it
/// stopped (`--cursor`).
pub async fn deliveries_replay(
    client: &Client,
    subscription: &str,
    query: &DeliveryQuery,
    cursor: Option<String>,
) -> Result<Output, Failure> {
    let subscription = checked_id("subscription", subscription)?;
    let mut body = Map::new();
    let since = query
        .since
        .as_ref()
        .ok_or_else(|| Failure::usage("--since is needed: the start of the range to replay"))?;
    body.insert("since".into(), json!(since));
    if let Some(u) = &query.until {
        body.insert("until".into(), json!(u));
    }
    if let Some(s) = &query.state {
        body.insert("state".into(), json!(s));
    }
    let path = format!("/v1/subscriptions/{subscription}/replay");
    let (mut queued, mut skipped, mut calls, mut waits) = (0u64, 0u64, 0usize, 0usize);
    let mut cursor = cursor;
    // How to go on from the call at `cursor`, told with a failure.
    let resume = |cursor: &Option<String>, queued: u64| {
        let mut command = format!("herald deliveries replay {subscription} --since {since}");
        if let Some(u) = &query.until {
            command.push_str(&format!(" --until {u}"));
        }
        if let Some(s) = &query.state {
            command.push_str(&format!(" --state {s}"));
        }
        if let Some(c) = cursor {
            command.push_str(&format!(" --cursor {c}"));
        }
        if let Some(t) = client.tenant() {
            command.push_str(&format!(" --tenant {t}"));
        }
        format!(
            "{queued} deliveries were queued again before this; to go on from here run `{command}`"
        )
    };
    let state = loop {
        if calls == MAX_REPLAY_CALLS {
            return Err(Failure::unavailable(format!(
                "replaying deliveries: more than {MAX_REPLAY_CALLS} calls; {}",
                resume(&cursor, queued)
            )));
        }
        let mut call = body.clone();
        if let Some(c) = &cursor {
            call.insert("cursor".into(), json!(c));
        }
        let answer = client
            .call(Method::POST, &path, Some(&Value::Object(call)))
            .await
            .map_err(|e| {
                Failure::unavailable(format!(
                    "replaying deliveries: {e:#}; {}",
                    resume(&cursor, queued)
                ))
            })?;
        if answer.status == 429 && waits < MAX_REPLAY_WAITS {
            // Nothing was queued; the tenant's redeliveries come back with the next minute:
            // after the API's Retry-After, or by this machine's clock without one.
            waits += 1;
            let wait = answer.retry_after.map_or_else(
                || until_next_minute(std::time::SystemTime::now()),
                |seconds| std::time::Duration::from_secs(seconds) + REPLAY_WAIT_MARGIN,
            );
            eprintln!(
                "replaying deliveries: {queued} queued so far; the tenant may queue no more \
                 this minute, waiting {} s",
                wait.as_secs()
            );
            tokio::time::sleep(wait).await;
            continue;
        }
        if answer.status != 202 {
            let failure = Failure::answered("replaying deliveries", &answer);
            return Err(if calls == 0 {
                failure
            } else {
                Failure {
                    message: format!("{}; {}", failure.message, resume(&cursor, queued)),
                    ..failure
                }
            });
        }
        calls += 1;
        waits = 0;
        let json = answer.body;
        queued += json["queued"].as_u64().unwrap_or(0);
        skipped += json["skipped"].as_u64().unwrap_or(0);
        match json["cursor"].as_str() {
            Some(next) => {
                cursor = Some(next.to_owned());
                eprintln!("replaying deliveries: {queued} queued so far");
            }
            None => break json["state"].clone(),
        }
    };
    let mut text = format!("{queued} {} deliveries queued again\n", cell(&state));
    if skipped > 0 {
        text.push_str(&format!(
            "{skipped} were not: each has made the most attempts a delivery keeps, or its event \
             is no longer kept\n"
        ));
    }
    let json = json!({
        "queued": queued,
        "skipped": skipped,
        "state": state,
        "calls": calls,
    });
    Ok(Output { json, text })
}

/// How long past a wait a refused replay is made again.
const REPLAY_WAIT_MARGIN: std::time::Duration = std::time::Duration::from_millis(500);

/// From `now` until just past the next whole minute, when a tenant's redeliveries a minute
/// are whole again.
fn until_next_minute(now: std::time::SystemTime) -> std::time::Duration {
    let into = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
        % 60_000;
    std::time::Duration::from_millis(60_000 - into as u64) + REPLAY_WAIT_MARGIN
}

// --- portal --------------------------------------------------------------------------------

// --- erasure -------------------------------------------------------------------------------

/// The most an erasure waits at once for its sweep's settle time, and in all.
const MAX_SETTLE_WAIT: std::time::Duration = std::time::Duration::from_secs(3600);

/// Runs an erasure at `path` until done: each answer's cursor is sent back, and a sweep
/// not yet allowed is waited for until its `sweep_after`. Progress goes to standard error.
/// `POST /v1/tenant/seal` until done: seals what the tenant still holds in the clear.
pub async fn seal(client: &Client, tenant: &str) -> Result<Output, Failure> {
    let mut body = json!({});
    let mut sealed = 0;
    loop {
        let json = client
            .expect(
                Method::POST,
                "/v1/tenant/seal",
                Some(&body),
                "sealing",
                &[200],
            )
            .await?;
        sealed += json["sealed"].as_u64().unwrap_or(0);
        if json["done"] == true {
            let text = format!("Sealed the values of {sealed} subscriptions of {tenant}.\n");
            return Ok(Output {
                json: json!({"done": true, "sealed": sealed}),
                text,
            });
        }
        body = json!({"cursor": json["cursor"]});
    }
}

pub async fn erase(client: &Client, path: &str, what: &str) -> Result<Output, Failure> {
    let started = std::time::Instant::now();
    let mut body = json!({});
    loop {
        let json = client
            .expect(Method::POST, path, Some(&body), "erasing", &[200])
            .await?;
        let erased = &json["erased"];
        let totals = format!(
            "{} subscriptions, {} deliveries, {} events, {} portal sessions",
            cell(&erased["subscriptions"]),
            cell(&erased["deliveries"]),
            cell(&erased["events"]),
            cell(&erased["portal_sessions"])
        );
        if json["done"] == true {
            let text = format!("Erased {what}: {totals}.\n");
            return Ok(Output { json, text });
        }
        eprintln!("erasing {what}: {} so far ({totals})", cell(&json["stage"]));
        if json["stage"] == "sweep" {
            let wait = json["sweep_after"]
                .as_str()
                .and_then(|at| humantime::parse_rfc3339_weak(at).ok())
                .and_then(|at| at.duration_since(std::time::SystemTime::now()).ok())
                .unwrap_or_default()
                .max(std::time::Duration::from_millis(500));
            if started.elapsed() + wait > MAX_SETTLE_WAIT {
                return Err(Failure {
                    code: crate::failure::UNAVAILABLE,
                    message: format!(
                        "the erasure's last stage may not run before {}; run this again then",
                        cell(&json["sweep_after"])
                    ),
                });
            }
            tokio::time::sleep(wait).await;
        }
        body = json!({"cursor": json["cursor"]});
    }
}

pub async fn portal_open(
    client: &Client,
    tenant: &str,
    lifetime: Option<&str>,
    event_types: &[String],
) -> Result<Output, Failure> {
    let mut body = Map::new();
    if let Some(l) = lifetime {
        body.insert("lifetime".into(), json!(l));
    }
    if !event_types.is_empty() {
        body.insert("event_types".into(), json!(event_types));
    }
    let json = client
        .expect(
            Method::POST,
            "/v1/portal/sessions",
            Some(&Value::Object(body)),
            "opening a portal session",
            &[201],
        )
        .await?;
    let opened_for = json["tenant"].as_str().unwrap_or_default();
    if opened_for != tenant {
        return Err(Failure {
            code: crate::failure::UNAUTHORIZED,
            message: format!(
                "the token is for tenant `{opened_for}`, not `{tenant}`: a session is opened for \
                 the token's tenant, so use a token (or profile) of `{tenant}`'s. The session \
                 opened for `{opened_for}` ends on its own at {}.",
                cell(&json["expires_at"])
            ),
        });
    }
    let text = format!(
        "Portal for {tenant}, open until {}:\n{}\n\nHand the link to the tenant (or put it in an \
         iframe); it carries the session's token, so treat it as a secret.\n",
        cell(&json["expires_at"]),
        cell(&json["url"])
    );
    Ok(Output { json, text })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A replay that fails part-way says how to go on: the same range, the cursor it
    /// stopped at, and the tenant an operator acts for.
    #[tokio::test]
    async fn a_replay_that_fails_part_way_says_how_to_go_on() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", api.local_addr().unwrap());
        tokio::spawn(async move {
            for (status, body) in [
                (
                    "202 Accepted",
                    r#"{"queued":100,"skipped":0,"more":true,"cursor":"c1","state":"failed"}"#,
                ),
                ("500 Internal Server Error", "{}"),
            ] {
                let (mut stream, _) = api.accept().await.unwrap();
                let mut request = [0u8; 8192];
                let _ = stream.read(&mut request).await;
                let text = format!(
                    "HTTP/1.1 {status}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(text.as_bytes()).await.unwrap();
            }
        });
        let client = Client::new(&base, "ops:operator")
            .unwrap()
            .acting_for(Some("acme".into()));
        let query = DeliveryQuery {
            state: Some("failed".into()),
            since: Some("2026-12-01T00:00:00Z".into()),
            until: None,
        };
        let failure = deliveries_replay(&client, "sub_01JD5Q8Z6X0000000000000000", &query, None)
            .await
            .err()
            .unwrap();
        assert!(
            failure.message.contains("100 deliveries were queued"),
            "{}",
            failure.message
        );
        assert!(
            failure.message.contains(
                "`herald deliveries replay sub_01JD5Q8Z6X0000000000000000 --since 2026-12-01T00:00:00Z --state failed --cursor c1 --tenant acme`"
            ),
            "{}",
            failure.message
        );
    }

    #[test]
    fn a_refused_replay_waits_until_the_next_minute() {
        let at = |millis: u64| std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis);
        let minute = 29_000_000 * 60_000;
        assert_eq!(until_next_minute(at(minute)).as_millis(), 60_500);
        assert_eq!(until_next_minute(at(minute + 59_000)).as_millis(), 1_500);
        assert_eq!(until_next_minute(at(minute + 30_250)).as_millis(), 30_250);
    }

    #[test]
    fn ids_cannot_change_the_route() {
        assert!(checked_id("subscription", "sub_01JD4Z").is_ok());
        for bad in [
            "",
            "../signing-keys",
            "sub_1/test",
            "sub_1?x=1",
            "a b",
            &"x".repeat(65),
        ] {
            let failure = checked_id("subscription", bad).unwrap_err();
            assert_eq!(failure.code, crate::failure::USAGE, "{bad}");
        }
    }

    #[test]
    fn event_ids_of_dots_alone_are_refused() {
        for good in ["cli-test-7", "ord_5.0", ".a", "a..", "a:b"] {
            assert_eq!(checked_event_id(good).unwrap(), good);
        }
        for bad in [
            ".",
            "..",
            "...",
            "",
            "../v1/subscriptions",
            "a b",
            &"x".repeat(129),
        ] {
            let failure = checked_event_id(bad).unwrap_err();
            assert_eq!(failure.code, crate::failure::USAGE, "{bad}");
            assert!(failure.message.contains("not dots alone"), "{bad}");
        }
    }

    #[test]
    fn fields_become_the_body_and_bad_ones_are_told() {
        let fields = SubscriptionFields {
            url: Some("https://a.example/".into()),
            event_types: vec!["order.*".into()],
            headers: vec!["X-Team: billing".into()],
            filter: Some(r#"{"data.amount": {"$gte": 100}}"#.into()),
            ordering: Some("subject".into()),
            query: Some("query($id: ID!) { invoice(id: $id) { id } }".into()),
            query_vars: vec!["$id = subject.id".into()],
            ..Default::default()
        };
        assert_eq!(
            fields.body().unwrap(),
            json!({
                "url": "https://a.example/",
                "event_types": ["order.*"],
                "headers": {"X-Team": "billing"},
                "filter": {"data.amount": {"$gte": 100}},
                "ordering": "subject",
                "query": {"text": "query($id: ID!) { invoice(id: $id) { id } }",
                          "variables": {"id": "subject.id"}},
            })
        );
        let bad_var = SubscriptionFields {
            query: Some("{ a }".into()),
            query_vars: vec!["id:subject.id".into()],
            ..Default::default()
        };
        assert!(bad_var.body().unwrap_err().message.contains("NAME=PLACE"));
        let bad_header = SubscriptionFields {
            headers: vec!["no colon".into()],
            ..Default::default()
        };
        assert!(
            bad_header
                .body()
                .unwrap_err()
                .message
                .contains("Name: value")
        );
        let bad_filter = SubscriptionFields {
            filter: Some("{".into()),
            ..Default::default()
        };
        assert!(bad_filter.body().unwrap_err().message.contains("--filter"));
    }

    #[test]
    fn queries_are_encoded() {
        assert_eq!(
            with_query("/v1/x", &[("since", "2026-12-01T00:00:00+01:00".into())]),
            "/v1/x?since=2026-12-01T00%3A00%3A00%2B01%3A00"
        );
        assert_eq!(with_query("/v1/x", &[]), "/v1/x");
    }
}
