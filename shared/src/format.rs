//! Body formats: how an event is rendered for one subscription. The bytes rendered are
//! the bytes signed and sent.

use chrono::SecondsFormat;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::event::Event;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyFormat {
    /// Standard Webhooks: `{"type","timestamp","data"}`.
    #[default]
    Standard,
}

/// Renders the body of a delivery of `event` in `format`.
pub fn render(event: &Event, format: BodyFormat) -> Vec<u8> {
    let value = match format {
        BodyFormat::Standard => json!({
            "type": event.event_type.as_str(),
            "timestamp": event.occurred_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            "data": event.data,
        }),
    };
    // Serializing a Value built from valid JSON parts cannot fail.
    serde_json::to_vec(&value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{event::EventType, ids::EventId};
    use chrono::TimeZone;

    #[test]
    fn standard_body_is_byte_exact() {
        let event = Event {
            id: EventId::parse("e1").unwrap(),
            event_type: EventType::parse("order.shipped").unwrap(),
            occurred_at: chrono::Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
            data: serde_json::from_str(r#"{"order_id":"o_1","total":12.5}"#).unwrap(),
            subject: None,
        };
        assert_eq!(
            String::from_utf8(render(&event, BodyFormat::Standard)).unwrap(),
            r#"{"data":{"order_id":"o_1","total":12.5},"timestamp":"2023-11-14T22:13:20.000Z","type":"order.shipped"}"#
        );
    }
}
