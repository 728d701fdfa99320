//! `herald events publish`: events from a file or standard input, sent in batches of at
//! most 100 (and at most [`MAX_BATCH_BYTES`]), with a progress bar for people.
//!
//! The input is one event (`{"type": …, "data": …}`), an array of events, a batch
//! (`{"events": [...]}`), or one event per line (JSON Lines). An event without an `id` is
//! given one before it is sent, so a batch sent again after no answer or a 503 is not
//! published twice: Herald answers the repeats as duplicates.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::client::Client;
use crate::commands::Output;
use crate::failure::{Failure, UNAVAILABLE};

/// Events in one call: the API's limit.
pub const MAX_BATCH_EVENTS: usize = 100;
/// The largest body sent in one call, under the function's 6 MB request limit.
pub const MAX_BATCH_BYTES: usize = 5 * 1024 * 1024;
/// Tries of one batch when there is no answer or a 5xx.
const TRIES: u32 = 4;

/// The events in `text`, in order; an error names the line or item that is no event.
pub fn parse_events(text: &str) -> Result<Vec<Value>, Failure> {
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Err(Failure::usage("the input holds no events"));
    }
    let whole: Result<Value, _> = serde_json::from_str(trimmed);
    let events = match whole {
        Ok(Value::Array(items)) => items,
        Ok(Value::Object(mut object)) => match object.remove("events") {
            Some(Value::Array(items)) if object.is_empty() => items,
            Some(_) => return Err(Failure::usage("`events` must be the only field, an array")),
            None => vec![Value::Object(object)],
        },
        Ok(_) => {
            return Err(Failure::usage(
                "the input is JSON but not an event, an array or a batch",
            ));
        }
        // Not one JSON value: JSON Lines.
        Err(_) => {
            let mut events = Vec::new();
            for (n, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let event: Value = serde_json::from_str(line).map_err(|e| {
                    Failure::usage(format!("line {}: not a JSON event: {e}", n + 1))
                })?;
                events.push(event);
            }
            events
        }
    };
    for (i, event) in events.iter().enumerate() {
        if !event.is_object() {
            return Err(Failure::usage(format!(
                "event {}: not a JSON object",
                i + 1
            )));
        }
    }
    if events.is_empty() {
        return Err(Failure::usage("the input holds no events"));
    }
    Ok(events)
}

/// Gives every event without an id one of its own: `cli_` and 26 random base32 letters.
pub fn give_ids(events: &mut [Value]) {
    use rand::Rng;
    const ALPHABET: &[u8] = b"0123456789abcdefghjkmnpqrstvwxyz";
    let mut rng = rand::rng();
    for event in events.iter_mut() {
        if event.get("id").is_none() {
            let id: String = (0..26)
                .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
                .collect();
            event["id"] = json!(format!("cli_{id}"));
        }
    }
}

/// The events cut into batches of at most `size` events and [`MAX_BATCH_BYTES`]; an event
/// alone over the byte limit is refused here.
pub fn batches(events: &[Value], size: usize) -> Result<Vec<&[Value]>, Failure> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, event) in events.iter().enumerate() {
        let len = event.to_string().len() + 1;
        if len + 16 > MAX_BATCH_BYTES {
            return Err(Failure::usage(format!(
                "event {} is {len} bytes, over the {MAX_BATCH_BYTES}-byte limit of a call",
                i + 1
            )));
        }
        if i > start && (i - start == size || bytes + len + 16 > MAX_BATCH_BYTES) {
            out.push(&events[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += len;
    }
    out.push(&events[start..]);
    Ok(out)
}

/// Publishes `events`; a progress bar on standard error when `progress` (a terminal).
pub async fn publish(
    client: &Client,
    mut events: Vec<Value>,
    batch_size: usize,
    progress: bool,
) -> Result<Output, Failure> {
    give_ids(&mut events);
    let batches = batches(&events, batch_size)?;
    let bar = if progress {
        let bar = indicatif::ProgressBar::new(events.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} events  {per_sec}  eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut results: Vec<Value> = Vec::with_capacity(events.len());
    let mut sent = 0;
    for batch in batches {
        let answered = match send(client, batch).await {
            Ok(answered) => answered,
            Err(failure) => {
                bar.abandon();
                return Err(Failure {
                    code: failure.code,
                    message: format!(
                        "events {}–{} were not published: {}\n{sent} before them were. Fix \
                         the cause and run the command again: events with ids are not \
                         published twice.",
                        sent + 1,
                        sent + batch.len(),
                        failure.message
                    ),
                });
            }
        };
        sent += batch.len();
        bar.set_position(sent as u64);
        results.extend(answered);
    }
    bar.finish_and_clear();
    let deliveries: u64 = results
        .iter()
        .filter_map(|r| r["deliveries"].as_u64())
        .sum();
    let duplicates = results
        .iter()
        .filter(|r| r["duplicate"] == json!(true))
        .count();
    let mut text = format!(
        "published {} event{} for {deliveries} deliver{}",
        results.len(),
        if results.len() == 1 { "" } else { "s" },
        if deliveries == 1 { "y" } else { "ies" },
    );
    if duplicates > 0 {
        text.push_str(&format!(" ({duplicates} already published before)"));
    }
    text.push('\n');
    Ok(Output {
        json: json!({"events": results}),
        text,
    })
}

/// One batch, tried again on no answer, a 5xx or a 429 (the tenant's publishes a second
/// are capped, `HERALD_MAX_REQUESTS_PER_SECOND`); its per-event answers. Every event has
/// its id by now, so a batch sent twice is answered as duplicates.
async fn send(client: &Client, batch: &[Value]) -> Result<Vec<Value>, Failure> {
    let body = json!({"events": batch});
    let mut wait = Duration::from_millis(500);
    let mut tries = 0;
    loop {
        tries += 1;
        match client
            .expect(
                Method::POST,
                "/v1/events",
                Some(&body),
                "publishing",
                &[202],
            )
            .await
        {
            Ok(answer) => {
                return Ok(answer["events"].as_array().cloned().unwrap_or_default());
            }
            Err(failure) if failure.code == UNAVAILABLE && tries < TRIES => {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            Err(failure) => return Err(failure),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_input_shape_gives_its_events() {
        let one = parse_events(r#"{"type": "a.b", "data": {}}"#).unwrap();
        assert_eq!(one.len(), 1);
        let array =
            parse_events(r#"[{"type": "a.b", "data": {}}, {"type": "a.c", "data": {}}]"#).unwrap();
        assert_eq!(array.len(), 2);
        let batch = parse_events(r#"{"events": [{"type": "a.b", "data": {}}]}"#).unwrap();
        assert_eq!(batch.len(), 1);
        let lines = parse_events(
            "{\"type\": \"a.b\", \"data\": {}}\n\n{\"type\": \"a.c\", \"data\": {}}\n",
        )
        .unwrap();
        assert_eq!(lines[1]["type"], "a.c");
    }

    #[test]
    fn what_is_no_event_is_named() {
        assert!(parse_events("").unwrap_err().message.contains("no events"));
        assert!(
            parse_events("[]")
                .unwrap_err()
                .message
                .contains("no events")
        );
        let line = parse_events("{\"type\": \"a\"}\n{oops\n").unwrap_err();
        assert!(line.message.starts_with("line 2"), "{}", line.message);
        assert!(parse_events("[1]").unwrap_err().message.contains("event 1"));
        assert!(parse_events("42").is_err());
    }

    #[test]
    fn events_without_ids_get_one_and_ids_given_are_kept() {
        let mut events = vec![json!({"type": "a"}), json!({"type": "a", "id": "mine"})];
        give_ids(&mut events);
        let given = events[0]["id"].as_str().unwrap();
        assert!(given.starts_with("cli_") && given.len() == 30, "{given}");
        assert_eq!(events[1]["id"], "mine");
    }

    #[test]
    fn batches_keep_to_the_count_and_the_size() {
        let events: Vec<Value> = (0..250)
            .map(|i| json!({"type": "a", "data": {"i": i}}))
            .collect();
        let cut = batches(&events, 100).unwrap();
        assert_eq!(
            cut.iter().map(|b| b.len()).collect::<Vec<_>>(),
            vec![100, 100, 50]
        );
        let big = "x".repeat(2 * 1024 * 1024);
        let large: Vec<Value> = (0..3)
            .map(|_| json!({"type": "a", "data": {"x": big}}))
            .collect();
        let cut = batches(&large, 100).unwrap();
        assert_eq!(cut.iter().map(|b| b.len()).collect::<Vec<_>>(), vec![2, 1]);
        let huge = vec![json!({"type": "a", "data": {"x": "x".repeat(MAX_BATCH_BYTES)}})];
        assert!(batches(&huge, 100).is_err());
    }
}
