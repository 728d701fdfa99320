//! How to receive Herald's webhooks safely: the code a subscriber copies.
//!
//! 1. Verify `webhook-signature` over `"{webhook-id}.{webhook-timestamp}.{body}"` with
//!    HMAC-SHA256 and your `whsec_` secret, in constant time. During a secret rotation
//!    Herald sends one `v1,` entry per live secret; any one matching is enough.
//! 2. Refuse timestamps more than five minutes from your clock, so a captured request
//!    cannot be replayed later.
//! 3. Drop duplicates by `webhook-id`: retries and redeliveries reuse it. (In production
//!    keep seen ids in your database, in the same transaction as the work they cause.)

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{KeyInit, Mac};

/// How far a timestamp may be from the receiver's clock.
pub const TOLERANCE_SECONDS: i64 = 5 * 60;

#[derive(Debug, PartialEq, Eq)]
pub enum Rejection {
    MissingHeader(&'static str),
    BadTimestamp,
    /// Too old or too far in the future: possibly a replay.
    Stale,
    BadSignature,
}

pub struct Verifier {
    keys: Vec<Vec<u8>>,
}

impl Verifier {
    /// One or more `whsec_` secrets: during a rotation, configure both.
    pub fn new(secrets: &[&str]) -> Result<Self, String> {
        let keys = secrets
            .iter()
            .map(|s| {
                let body = s
                    .trim()
                    .strip_prefix("whsec_")
                    .ok_or("a secret starts with whsec_")?;
                B64.decode(body)
                    .map_err(|_| "a secret is whsec_ and base64".to_owned())
            })
            .collect::<Result<Vec<_>, String>>()?;
        if keys.is_empty() {
            return Err("at least one secret is needed".into());
        }
        Ok(Self { keys })
    }

    /// Checks one request; `header` looks a header up by lower-case name.
    pub fn verify<'a>(
        &self,
        header: impl Fn(&str) -> Option<&'a str>,
        body: &[u8],
        now: i64,
    ) -> Result<(), Rejection> {
        let id = header("webhook-id").ok_or(Rejection::MissingHeader("webhook-id"))?;
        let timestamp =
            header("webhook-timestamp").ok_or(Rejection::MissingHeader("webhook-timestamp"))?;
        let signatures =
            header("webhook-signature").ok_or(Rejection::MissingHeader("webhook-signature"))?;
        let sent_at: i64 = timestamp.parse().map_err(|_| Rejection::BadTimestamp)?;
        // `abs_diff`: a crafted timestamp (i64::MIN) cannot overflow the subtraction.
        if now.abs_diff(sent_at) > TOLERANCE_SECONDS.unsigned_abs() {
            return Err(Rejection::Stale);
        }
        let candidates: Vec<Vec<u8>> = signatures
            .split(' ')
            .filter_map(|entry| entry.strip_prefix("v1,"))
            .filter_map(|sig| B64.decode(sig).ok())
            .collect();
        for key in &self.keys {
            for candidate in &candidates {
                let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key)
                    .map_err(|_| Rejection::BadSignature)?;
                mac.update(id.as_bytes());
                mac.update(b".");
                mac.update(timestamp.as_bytes());
                mac.update(b".");
                mac.update(body);
                // Constant-time comparison.
                if mac.verify_slice(candidate).is_ok() {
                    return Ok(());
                }
            }
        }
        Err(Rejection::BadSignature)
    }
}

/// Remembers the last `capacity` webhook ids.
pub struct Deduper {
    seen: Mutex<(HashSet<String>, VecDeque<String>)>,
    capacity: usize,
}

impl Deduper {
    pub fn new(capacity: usize) -> Self {
        Self {
            seen: Mutex::new((HashSet::new(), VecDeque::new())),
            capacity: capacity.max(1),
        }
    }

    /// True the first time an id is seen.
    pub fn first_time(&self, id: &str) -> bool {
        let mut guard = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let (set, order) = &mut *guard;
        if !set.insert(id.to_owned()) {
            return false;
        }
        order.push_back(id.to_owned());
        if order.len() > self.capacity
            && let Some(oldest) = order.pop_front()
        {
            set.remove(&oldest);
        }
        true
    }
}

/// What the receiver does with one request: the HTTP status to answer.
pub fn handle<'a>(
    verifier: &Verifier,
    deduper: &Deduper,
    header: impl Fn(&str) -> Option<&'a str> + Copy,
    body: &[u8],
    now: i64,
    process: impl FnOnce(&serde_json::Value),
) -> u16 {
    if verifier.verify(header, body, now).is_err() {
        return 401;
    }
    let Some(id) = header("webhook-id") else {
        return 400;
    };
    if !deduper.first_time(id) {
        // Already handled: acknowledge, so Herald stops retrying, but do nothing again.
        return 200;
    }
    match serde_json::from_slice(body) {
        Ok(event) => {
            process(&event);
            204
        }
        Err(_) => 400,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const SIGNED_AT: i64 = 1649367553;

    fn headers(signature: &'static str) -> impl Fn(&str) -> Option<&'static str> + Copy {
        move |name| match name {
            "webhook-id" => Some("msg_27UH4WbU6Z5A5EzD8u03UvzRbpk"),
            "webhook-timestamp" => Some("1649367553"),
            "webhook-signature" => Some(signature),
            _ => None,
        }
    }

    #[test]
    fn the_standard_webhooks_vector_verifies() {
        let verifier = Verifier::new(&[SECRET]).unwrap();
        let good = headers("v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
        assert_eq!(verifier.verify(good, BODY, SIGNED_AT + 10), Ok(()));
        assert_eq!(
            verifier.verify(good, b"{}", SIGNED_AT),
            Err(Rejection::BadSignature)
        );
        let rotating = headers("v1,AAAA v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
        assert_eq!(verifier.verify(rotating, BODY, SIGNED_AT), Ok(()));
    }

    #[test]
    fn stale_and_future_timestamps_are_refused() {
        let verifier = Verifier::new(&[SECRET]).unwrap();
        let good = headers("v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
        assert_eq!(
            verifier.verify(good, BODY, SIGNED_AT + 301),
            Err(Rejection::Stale)
        );
        assert_eq!(
            verifier.verify(good, BODY, SIGNED_AT - 301),
            Err(Rejection::Stale)
        );
        // The extremes are stale too, refused before any signature is checked.
        for extreme in ["-9223372036854775808", "9223372036854775807"] {
            let crafted = move |name: &str| match name {
                "webhook-timestamp" => Some(extreme),
                other => good(other),
            };
            assert_eq!(
                verifier.verify(crafted, BODY, SIGNED_AT),
                Err(Rejection::Stale)
            );
        }
    }

    #[test]
    fn duplicates_are_acknowledged_once_processed_once() {
        let verifier = Verifier::new(&[SECRET]).unwrap();
        let deduper = Deduper::new(2);
        let good = headers("v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
        let mut processed = 0;
        assert_eq!(
            handle(&verifier, &deduper, good, BODY, SIGNED_AT, |_| processed +=
                1),
            204
        );
        assert_eq!(
            handle(&verifier, &deduper, good, BODY, SIGNED_AT, |_| processed +=
                1),
            200
        );
        assert_eq!(processed, 1);
        assert_eq!(
            handle(
                &verifier,
                &deduper,
                headers("v1,bad"),
                BODY,
                SIGNED_AT,
                |_| {}
            ),
            401
        );
        assert!(deduper.first_time("a") && deduper.first_time("b") && deduper.first_time("c"));
        assert!(
            deduper.first_time("msg_27UH4WbU6Z5A5EzD8u03UvzRbpk"),
            "the oldest id was forgotten"
        );
    }
}
