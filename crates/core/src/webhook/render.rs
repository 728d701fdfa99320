//! Body formats: how an event is rendered for one subscription. The bytes rendered are
//! the bytes signed and sent. Each format speaks as one of the providers in the seeds.

use std::borrow::Cow;

use chrono::SecondsFormat;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::event::{Event, Subject};
use crate::ids::{DeliveryId, TenantId};
use crate::webhook::select::Selection;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyFormat {
    /// Standard Webhooks: `{"type","timestamp","data"}`.
    #[default]
    Standard,
    /// `{"event","data"}`.
    EventData,
    /// `{"id","object":"event","date_created","event_type","payload","version"}` with a
    /// numeric id.
    TypedObject,
    /// The flat entity event: `id, name, type, accountId, retailerId, entity…, rootEntity…,
    /// attributes`, built from the event's type, subject and data.
    EntityEvent,
}

/// The version string `typed_object` bodies carry.
pub const TYPED_OBJECT_VERSION: &str = "1.0";

/// What a body may say besides the event: whose it is and which delivery.
pub struct RenderContext<'a> {
    pub tenant: &'a TenantId,
    pub delivery_id: &'a DeliveryId,
}

/// A number for a delivery that fits in JavaScript's safe integers (53 bits), taken from
/// the delivery id, so it is the same on every retry and differs between deliveries.
pub fn numeric_id(delivery_id: &DeliveryId) -> u64 {
    // The top 53 of the digest's 80 bits.
    ((delivery_id.digest() >> 27) as u64).max(1)
}

fn subject_fields(prefix: &str, subject: Option<&Subject>, out: &mut Map<String, Value>) {
    let text = |v: Option<&String>| v.map_or(Value::Null, |s| Value::String(s.clone()));
    out.insert(format!("{prefix}Id"), text(subject.map(|s| &s.id)));
    out.insert(
        format!("{prefix}Ref"),
        text(subject.and_then(|s| s.reference.as_ref())),
    );
    out.insert(format!("{prefix}Type"), text(subject.map(|s| &s.kind)));
    if prefix == "entity" {
        out.insert(
            format!("{prefix}Status"),
            text(subject.and_then(|s| s.status.as_ref())),
        );
    }
}

/// Where a body's `data` comes from.
#[derive(Clone, Copy, Debug)]
pub enum Payload<'a> {
    /// The event's `data`, whole or only its selected parts.
    Event(Option<&'a Selection>),
    /// The result of the subscription's GraphQL query.
    Queried(&'a Map<String, Value>),
}

/// Renders the body of a delivery of `event` in `format`, its `data` from `payload`.
pub fn render(
    event: &Event,
    format: BodyFormat,
    payload: Payload<'_>,
    ctx: &RenderContext<'_>,
) -> Vec<u8> {
    // The event's data is serialised where it lies; only a selection makes a new map.
    let data: Cow<'_, Map<String, Value>> = match payload {
        Payload::Event(Some(selection)) => Cow::Owned(selection.apply(&event.data)),
        Payload::Event(None) => Cow::Borrowed(&event.data),
        Payload::Queried(result) => Cow::Borrowed(result),
    };
    let timestamp = event
        .occurred_at
        .to_rfc3339_opts(SecondsFormat::Millis, true);
    let kind = event.event_type.as_str();
    // Fields in the order serde_json's maps keep (by name), so the bytes are what a map of
    // the same fields would give.
    let mut body = Vec::with_capacity(BODY_CAPACITY);
    let written = match format {
        BodyFormat::Standard => serde_json::to_writer(
            &mut body,
            &Standard {
                data: &data,
                timestamp: &timestamp,
                kind,
            },
        ),
        BodyFormat::EventData => serde_json::to_writer(
            &mut body,
            &EventData {
                data: &data,
                event: kind,
            },
        ),
        BodyFormat::TypedObject => serde_json::to_writer(
            &mut body,
            &TypedObject {
                date_created: &timestamp,
                event_type: kind,
                id: numeric_id(ctx.delivery_id),
                object: "event",
                payload: &data,
                version: TYPED_OBJECT_VERSION,
            },
        ),
        BodyFormat::EntityEvent => {
            let mut body = Map::new();
            body.insert("id".into(), Value::String(event.id.to_string()));
            body.insert("name".into(), Value::String(event.event_type.to_string()));
            body.insert("type".into(), Value::String("NORMAL".into()));
            body.insert("accountId".into(), Value::String(ctx.tenant.to_string()));
            let retailer = event.data.get("retailerId").map(|v| match v {
                Value::String(s) => Value::String(s.clone()),
                other => Value::String(other.to_string()),
            });
            body.insert("retailerId".into(), retailer.unwrap_or(Value::Null));
            let subject = event.subject.as_ref();
            subject_fields("entity", subject, &mut body);
            // Without a root, the entity is its own root, as in the seed's example.
            let root = subject.and_then(|s| s.root.as_deref()).or(subject);
            subject_fields("rootEntity", root, &mut body);
            body.insert("attributes".into(), Value::Object(data.into_owned()));
            return serde_json::to_vec(&Value::Object(body)).unwrap_or_default();
        }
    };
    // Maps of strings and JSON values always serialise.
    written.map(|()| body).unwrap_or_default()
}

/// Room for a typical body at once, so serialising does not grow it from nothing.
const BODY_CAPACITY: usize = 512;

#[derive(Serialize)]
struct Standard<'a> {
    data: &'a Map<String, Value>,
    timestamp: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
}

#[derive(Serialize)]
struct EventData<'a> {
    data: &'a Map<String, Value>,
    event: &'a str,
}

#[derive(Serialize)]
struct TypedObject<'a> {
    date_created: &'a str,
    event_type: &'a str,
    id: u64,
    object: &'a str,
    payload: &'a Map<String, Value>,
    version: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventType;
    use crate::ids::EventId;
    use chrono::TimeZone;

    fn event(subject: Option<Value>) -> Event {
        Event {
            id: EventId::parse("b34281d0-ada4-11e9").unwrap(),
            event_type: EventType::parse("order.shipped").unwrap(),
            occurred_at: chrono::Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
            data: serde_json::from_str(r#"{"order_id":"o_1","total":12.5,"retailerId":1}"#)
                .unwrap(),
            subject: subject.map(|s| serde_json::from_value(s).unwrap()),
        }
    }

    fn body(event: &Event, format: BodyFormat, selection: Option<&str>) -> String {
        let tenant = TenantId::parse("ACME").unwrap();
        let delivery_id =
            DeliveryId::parse(&format!("msg_{}", "0123456789ABCDEF".repeat(3) + "0123")).unwrap();
        let selection = selection.map(|s| Selection::parse(s).unwrap());
        let ctx = RenderContext {
            tenant: &tenant,
            delivery_id: &delivery_id,
        };
        String::from_utf8(render(
            event,
            format,
            Payload::Event(selection.as_ref()),
            &ctx,
        ))
        .unwrap()
    }

    #[test]
    fn standard_and_event_data_are_byte_exact() {
        let e = event(None);
        assert_eq!(
            body(&e, BodyFormat::Standard, None),
            r#"{"data":{"order_id":"o_1","retailerId":1,"total":12.5},"timestamp":"2023-11-14T22:13:20.000Z","type":"order.shipped"}"#
        );
        assert_eq!(
            body(&e, BodyFormat::EventData, Some("{ order_id }")),
            r#"{"data":{"order_id":"o_1"},"event":"order.shipped"}"#
        );
    }

    #[test]
    fn typed_object_has_a_numeric_id_safe_in_javascript() {
        assert_eq!(
            body(&event(None), BodyFormat::TypedObject, Some("{ total }")),
            r#"{"date_created":"2023-11-14T22:13:20.000Z","event_type":"order.shipped","id":1171591994633323,"object":"event","payload":{"total":12.5},"version":"1.0"}"#
        );
        let top = format!("msg_{}", "Z".repeat(52));
        let a = numeric_id(&DeliveryId::parse(&top).unwrap());
        assert_eq!(a, (1 << 53) - 1);
        let mut lower = top.clone();
        lower.replace_range(top.len() - 11..top.len() - 10, "Y");
        let b = numeric_id(&DeliveryId::parse(&lower).unwrap());
        assert_ne!(a, b);
        // The number names the digest's leading digits, which a lookup filters on.
        assert_eq!(
            DeliveryId::digest_digits_of_number(a).unwrap(),
            top[top.len() - 16..top.len() - 6]
        );
        assert_eq!(DeliveryId::digest_digits_of_number(1 << 53), None);
        // Only the digest counts: the same digest at another time is the same number.
        let mut earlier = top.clone();
        earlier.replace_range(4 + 26..4 + 36, &"0".repeat(10));
        assert_eq!(numeric_id(&DeliveryId::parse(&earlier).unwrap()), a);
    }

    #[test]
    fn entity_event_is_built_from_type_subject_and_data() {
        let e = event(Some(serde_json::json!({
            "type": "FULFILMENT", "id": "55", "ref": "F_55", "status": "SHIPPED",
            "root": {"type": "ORDER", "id": "123", "ref": "0_123"}
        })));
        assert_eq!(
            body(&e, BodyFormat::EntityEvent, None),
            r#"{"accountId":"ACME","attributes":{"order_id":"o_1","retailerId":1,"total":12.5},"entityId":"55","entityRef":"F_55","entityStatus":"SHIPPED","entityType":"FULFILMENT","id":"b34281d0-ada4-11e9","name":"order.shipped","retailerId":"1","rootEntityId":"123","rootEntityRef":"0_123","rootEntityType":"ORDER","type":"NORMAL"}"#
        );
        // A lightweight webhook: identifiers only.
        let light = body(&e, BodyFormat::EntityEvent, Some("{ order_id }"));
        assert!(
            light.contains(r#""attributes":{"order_id":"o_1"}"#),
            "{light}"
        );
        let no_root = body(
            &event(Some(serde_json::json!({"type": "ORDER", "id": "9"}))),
            BodyFormat::EntityEvent,
            None,
        );
        assert!(
            no_root.contains(r#""rootEntityId":"9""#) && no_root.contains(r#""entityStatus":null"#),
            "{no_root}"
        );
    }
}
