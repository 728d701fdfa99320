//! Tracing across the queue: X-Ray's trace header, and Herald's spans as X-Ray segment
//! documents.
//!
//! The header is the one Lambda hands a function (`_X_AMZN_TRACE_ID`, the runtime API's
//! `Lambda-Runtime-Trace-Id`) and SQS carries as `AWSTraceHeader`:
//! `Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1`
//! ("Tracing header", <https://docs.aws.amazon.com/xray/latest/devguide/xray-concepts.html#xray-concepts-tracingheader>).
//! Ingest opens a `publish` span under its invocation and puts a header naming that span
//! as parent on every task it queues; deliver continues the trace from the task with a
//! segment per delivery (`claim`, `POST`, `record`), so one event's path reads end to end
//! in X-Ray (docs/OPERATIONS.md, "Tracing").
//!
//! Documents follow "AWS X-Ray segment documents",
//! <https://docs.aws.amazon.com/xray/latest/devguide/xray-api-segmentdocuments.html>:
//! `name`, a 16-hex-digit `id`, `trace_id`, `start_time` and `end_time` in epoch seconds,
//! `parent_id` for a segment continuing a caller's trace, and for a subsegment sent on its
//! own `type: "subsegment"` with its `trace_id` and `parent_id`.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value, json};

/// The longest header Herald reads: far above the real one (about 90 bytes with
/// `Lineage`), so a hostile task cannot carry a large one.
const MAX_HEADER_BYTES: usize = 256;

/// X-Ray's trace header: the trace, the segment to hang the next one under, and whether
/// the trace is sampled (recorded). Only `Root`, `Parent` and `Sampled` are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceHeader {
    /// `1-{8 hex digits of epoch seconds}-{24 hex digits}`.
    pub root: String,
    /// The id of the segment or subsegment the next one continues.
    pub parent: Option<String>,
    pub sampled: bool,
}

#[derive(Debug, PartialEq, thiserror::Error)]
#[error("not an X-Ray trace header: {0}")]
pub struct BadTraceHeader(&'static str);

impl TraceHeader {
    /// A new sampled trace begun at `now`, as Lambda begins one for an invocation.
    pub fn begin(now: DateTime<Utc>, rng: &mut impl Rng) -> Self {
        let epoch = now.timestamp().max(0) as u32;
        Self {
            root: format!("1-{epoch:08x}-{:024x}", rng.random::<u128>() >> 32),
            parent: Some(new_id(rng)),
            sampled: true,
        }
    }

    /// The same trace, continued under `parent`.
    pub fn under(&self, parent: &str) -> Self {
        Self {
            root: self.root.clone(),
            parent: Some(parent.to_owned()),
            sampled: self.sampled,
        }
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn valid_root(root: &str) -> bool {
    let mut parts = root.split('-');
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next()),
        (Some("1"), Some(time), Some(random), None) if is_hex(time, 8) && is_hex(random, 24)
    )
}

impl FromStr for TraceHeader {
    type Err = BadTraceHeader;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() > MAX_HEADER_BYTES {
            return Err(BadTraceHeader("longer than 256 bytes"));
        }
        let (mut root, mut parent, mut sampled) = (None, None, false);
        for field in s.split(';').map(str::trim).filter(|f| !f.is_empty()) {
            let (key, value) = field
                .split_once('=')
                .ok_or(BadTraceHeader("a field without '='"))?;
            match key {
                "Root" if valid_root(value) => root = Some(value.to_owned()),
                "Root" => return Err(BadTraceHeader("Root is not 1-<8 hex>-<24 hex>")),
                "Parent" if is_hex(value, 16) => parent = Some(value.to_owned()),
                "Parent" => return Err(BadTraceHeader("Parent is not 16 hex digits")),
                "Sampled" => sampled = value == "1",
                // Lineage, Self and what X-Ray adds later are not Herald's to keep.
                _ => {}
            }
        }
        Ok(Self {
            root: root.ok_or(BadTraceHeader("no Root"))?,
            parent,
            sampled,
        })
    }
}

impl fmt::Display for TraceHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Root={}", self.root)?;
        if let Some(parent) = &self.parent {
            write!(f, ";Parent={parent}")?;
        }
        write!(f, ";Sampled={}", u8::from(self.sampled))
    }
}

impl Serialize for TraceHeader {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TraceHeader {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A new segment or subsegment id: 16 hex digits.
pub fn new_id(rng: &mut impl Rng) -> String {
    format!("{:016x}", rng.random::<u64>())
}

/// Seconds since the epoch with microseconds, as segment documents time things.
fn epoch_seconds(at: DateTime<Utc>) -> f64 {
    at.timestamp_micros() as f64 / 1e6
}

/// One timed piece of work: a segment or a subsegment, with its own subsegments.
#[derive(Clone, Debug, PartialEq)]
pub struct Span {
    pub name: String,
    pub id: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Further fields of the document: `http`, `annotations`, `namespace`, `error`, …
    pub fields: Map<String, Value>,
    pub subsegments: Vec<Span>,
}

impl Span {
    /// A span begun at `start`; it ends where `end` puts it (until then, at its start).
    pub fn begin(name: &str, start: DateTime<Utc>, rng: &mut impl Rng) -> Self {
        Self {
            name: name.to_owned(),
            id: new_id(rng),
            start,
            end: start,
            fields: Map::new(),
            subsegments: Vec::new(),
        }
    }

    pub fn end(&mut self, at: DateTime<Utc>) -> &mut Self {
        self.end = at.max(self.start);
        self
    }

    /// An annotation X-Ray indexes for search: ids and counts, never secrets or bodies.
    pub fn annotate(&mut self, key: &str, value: impl Into<Value>) -> &mut Self {
        let annotations = self
            .fields
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(map) = annotations {
            map.insert(key.to_owned(), value.into());
        }
        self
    }

    pub fn set(&mut self, key: &str, value: Value) -> &mut Self {
        self.fields.insert(key.to_owned(), value);
        self
    }

    fn body(&self) -> Map<String, Value> {
        let mut doc = Map::new();
        doc.insert("name".into(), json!(self.name));
        doc.insert("id".into(), json!(self.id));
        doc.insert("start_time".into(), json!(epoch_seconds(self.start)));
        doc.insert("end_time".into(), json!(epoch_seconds(self.end)));
        for (k, v) in &self.fields {
            doc.insert(k.clone(), v.clone());
        }
        if !self.subsegments.is_empty() {
            let subs: Vec<Value> = self
                .subsegments
                .iter()
                .map(|s| Value::Object(s.body()))
                .collect();
            doc.insert("subsegments".into(), Value::Array(subs));
        }
        doc
    }

    /// This span as a segment of `header`'s trace, continuing its parent if it names one.
    pub fn segment_document(&self, header: &TraceHeader) -> Value {
        let mut doc = self.body();
        doc.insert("trace_id".into(), json!(header.root));
        if let Some(parent) = &header.parent {
            doc.insert("parent_id".into(), json!(parent));
        }
        Value::Object(doc)
    }

    /// This span as a subsegment sent on its own, under `header`'s parent (a subsegment
    /// must have one: `None` without it).
    pub fn subsegment_document(&self, header: &TraceHeader) -> Option<Value> {
        let parent = header.parent.as_ref()?;
        let mut doc = self.body();
        doc.insert("type".into(), json!("subsegment"));
        doc.insert("trace_id".into(), json!(header.root));
        doc.insert("parent_id".into(), json!(parent));
        Some(Value::Object(doc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";

    #[test]
    fn reads_and_writes_the_documented_header() {
        let header: TraceHeader = HEADER.parse().unwrap();
        assert_eq!(header.root, "1-5759e988-bd862e3fe1be46a994272793");
        assert_eq!(header.parent.as_deref(), Some("53995c3f42cd8ad8"));
        assert!(header.sampled);
        assert_eq!(header.to_string(), HEADER);
        let with_lineage: TraceHeader = format!("{HEADER};Lineage=a87bd80c:1|68fd508a:5")
            .parse()
            .unwrap();
        assert_eq!(with_lineage, header);
        let unsampled: TraceHeader = "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0"
            .parse()
            .unwrap();
        assert!(!unsampled.sampled && unsampled.parent.is_none());
    }

    #[test]
    fn refuses_what_is_not_a_header() {
        for bad in [
            "",
            "Parent=53995c3f42cd8ad8",
            "Root=1-5759e988",
            "Root=2-5759e988-bd862e3fe1be46a994272793",
            "Root=1-5759e988-bd862e3fe1be46a99427279z",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=xyz",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled",
        ] {
            assert!(bad.parse::<TraceHeader>().is_err(), "{bad}");
        }
        let long = format!("{HEADER};{}", "x=y;".repeat(100));
        assert!(long.parse::<TraceHeader>().is_err());
    }

    #[test]
    fn a_begun_trace_is_valid_and_carries_its_time() {
        let now = DateTime::from_timestamp(0x5759e988, 0).unwrap();
        let header = TraceHeader::begin(now, &mut rand::rng());
        assert!(header.root.starts_with("1-5759e988-"), "{}", header.root);
        let again: TraceHeader = header.to_string().parse().unwrap();
        assert_eq!(again, header);
        let under = header.under("0123456789abcdef");
        assert_eq!(under.root, header.root);
        assert_eq!(under.parent.as_deref(), Some("0123456789abcdef"));
    }

    #[test]
    fn spans_become_segment_documents() {
        let header: TraceHeader = HEADER.parse().unwrap();
        let start = DateTime::from_timestamp(1_700_000_000, 250_000_000).unwrap();
        let mut span = Span::begin("publish", start, &mut rand::rng());
        let mut child = Span::begin("enqueue", start, &mut rand::rng());
        child.end(start + chrono::Duration::milliseconds(5));
        span.subsegments.push(child);
        span.annotate("events", 3)
            .end(start + chrono::Duration::milliseconds(10));

        let sub = span.subsegment_document(&header).unwrap();
        assert_eq!(sub["type"], "subsegment");
        assert_eq!(sub["trace_id"], header.root);
        assert_eq!(sub["parent_id"], "53995c3f42cd8ad8");
        assert_eq!(sub["start_time"], 1_700_000_000.25);
        assert_eq!(sub["end_time"], 1_700_000_000.26);
        assert_eq!(sub["annotations"]["events"], 3);
        assert_eq!(sub["subsegments"][0]["name"], "enqueue");
        assert!(sub["subsegments"][0].get("trace_id").is_none());

        let seg = span.segment_document(&header);
        assert!(seg.get("type").is_none());
        assert_eq!(seg["parent_id"], "53995c3f42cd8ad8");
        let rootless = TraceHeader {
            parent: None,
            ..header
        };
        assert!(span.subsegment_document(&rootless).is_none());
        assert!(span.segment_document(&rootless).get("parent_id").is_none());
        // An end before the start is clamped to it.
        span.end(start - chrono::Duration::seconds(1));
        assert_eq!(span.end, start);
    }
}
