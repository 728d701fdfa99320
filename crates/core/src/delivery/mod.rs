//! Deliveries: the task that travels on the queue, the record kept in the ledger, and the
//! attempts made.

pub mod decide;
pub mod rate;
mod record;
pub mod retry;
pub mod settings;
mod task;

pub use record::{
    Attempt, AttemptError, DeadLetterMark, DeliveryRecord, DeliveryState, MAX_ATTEMPTS_KEPT,
};
pub use task::{
    DeliveryTask, INLINE_DATA_BYTES, Lane, MalformedTask, QueueMessage, decode_message,
};

/// A task for an `a.b` event with no data, for the unit tests of what a task becomes.
#[cfg(test)]
pub(crate) fn test_task(
    tenant: &crate::ids::TenantId,
    subscription: &crate::ids::SubscriptionId,
) -> DeliveryTask {
    let event = crate::event::Event {
        id: crate::ids::EventId::parse("e1").unwrap(),
        event_type: crate::event::EventType::parse("a.b").unwrap(),
        occurred_at: chrono::Utc::now(),
        data: Default::default(),
        subject: None,
    };
    DeliveryTask::new(tenant, subscription, &event, chrono::Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{SubscriptionId, TenantId};
    use chrono::Utc;

    fn task() -> DeliveryTask {
        let tenant = TenantId::parse("acme").unwrap();
        let sub = SubscriptionId::parse("sub_01HZZZZZZZZZZZZZZZZZZZZZZZ").unwrap();
        test_task(&tenant, &sub)
    }

    #[test]
    fn tasks_round_trip_through_the_queue_format() {
        let task = task();
        let body = task.to_message_body();
        assert!(body.contains(r#""kind":"deliver.v1""#));
        assert_eq!(decode_message(&body).unwrap(), task);
    }

    #[test]
    fn a_task_too_long_to_carry_its_event_travels_as_a_claim_check() {
        let mut task = task();
        std::sync::Arc::make_mut(&mut task.event).subject = Some(crate::event::Subject {
            kind: "order".into(),
            id: "o1".into(),
            reference: None,
            status: None,
            root: None,
        });
        std::sync::Arc::make_mut(&mut task.event)
            .data
            .insert("s".into(), "x".repeat(INLINE_DATA_BYTES).into());
        let body = task.to_message_body();
        assert!(body.len() < 1024, "{} bytes", body.len());
        let check = decode_message(&body).unwrap();
        assert!(check.event.data.is_empty());
        assert_eq!(
            check.stored.as_deref(),
            Some(task.event.fingerprint().as_str())
        );
        assert_eq!(check.event.subject, task.event.subject);
        assert_eq!(check.delivery_id, task.delivery_id);
        // A claim check queued again (the slow lane) stays one.
        assert_eq!(check.to_message_body(), body);
        // Read back, it is the task as it was.
        assert_eq!(check.with_event(task.event.clone()), task);
        // `data` of exactly the bound (`{"s":"…"}`: 8 bytes and the text) stays inline.
        let mut fits = self::task();
        let text = "x".repeat(INLINE_DATA_BYTES - 8);
        std::sync::Arc::make_mut(&mut fits.event)
            .data
            .insert("s".into(), text.into());
        let body = fits.to_message_body();
        assert!(body.len() > INLINE_DATA_BYTES);
        assert_eq!(decode_message(&body).unwrap(), fits);
    }

    #[test]
    fn a_large_events_tasks_are_made_as_claim_checks_and_queue_as_one_would() {
        let mut task = task();
        let fingerprint = |t: &DeliveryTask| t.event.fingerprint();
        let (carried, stored) = DeliveryTask::carried(&task.event, &fingerprint(&task));
        assert_eq!((&carried, stored), (&task.event, None), "small: as it is");
        std::sync::Arc::make_mut(&mut task.event)
            .data
            .insert("s".into(), "x".repeat(INLINE_DATA_BYTES).into());
        let (carried, stored) = DeliveryTask::carried(&task.event, &fingerprint(&task));
        assert!(carried.data.is_empty());
        assert_eq!(stored.as_deref(), Some(fingerprint(&task).as_str()));
        let made = DeliveryTask {
            stored,
            ..DeliveryTask::new(&task.tenant, &task.subscription_id, &carried, Utc::now())
        };
        let made = DeliveryTask {
            delivery_id: task.delivery_id.clone(),
            ..made
        };
        // The message is the one the whole task would have queued as.
        assert_eq!(made.to_message_body(), task.to_message_body());
    }

    #[test]
    fn every_state_parses_back() {
        let all = [
            DeliveryState::Pending,
            DeliveryState::Delivering,
            DeliveryState::Delivered,
            DeliveryState::Failed,
            DeliveryState::Skipped,
            DeliveryState::Superseded,
        ];
        for state in all {
            assert_eq!(DeliveryState::parse(state.as_str()), Some(state));
            let json = serde_json::to_value(state).unwrap();
            assert_eq!(json, serde_json::Value::String(state.as_str().into()));
        }
    }

    #[test]
    fn every_dead_letter_mark_parses_back() {
        for mark in [DeadLetterMark::Owed, DeadLetterMark::Sent] {
            assert_eq!(DeadLetterMark::parse(mark.as_str()), Some(mark));
            let json = serde_json::to_value(mark).unwrap();
            assert_eq!(json, serde_json::Value::String(mark.as_str().into()));
        }
        assert_eq!(DeadLetterMark::parse("lost"), None);
    }

    #[test]
    fn malformed_and_forged_tasks_are_refused() {
        assert!(decode_message("not json").is_err());
        assert!(decode_message(r#"{"kind":"deliver.v9"}"#).is_err());
        let mut forged = task();
        forged.tenant = TenantId::parse("other").unwrap();
        assert!(decode_message(&forged.to_message_body()).is_err());
        let mut elsewhere = task();
        elsewhere.subscription_id =
            SubscriptionId::parse("sub_01HYYYYYYYYYYYYYYYYYYYYYYY").unwrap();
        assert!(decode_message(&elsewhere.to_message_body()).is_err());
    }
}
