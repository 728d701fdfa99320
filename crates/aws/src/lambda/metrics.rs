//! Herald's metrics as CloudWatch embedded metric format (EMF) log lines: CloudWatch Logs
//! extracts them into metrics from the log line alone, with no API call and no agent.
//! <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>
//!
//! One line per deliver batch and per publish, in namespace `Herald`, with the one
//! dimension `Function`, so the metrics cost a few custom metrics per deployment whatever
//! the number of tenants or endpoints. Lines are written only where a function runs under
//! Lambda (the bootstraps turn them on at start-up); the local runner and tests that call
//! the handlers write none unless they ask to.

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Map, Value, json};

/// The metrics' namespace.
pub const NAMESPACE: &str = "Herald";
/// The most values one metric may carry in one line (the format's limit).
pub const MAX_VALUES: usize = 100;

static ENABLED: AtomicBool = AtomicBool::new(false);
/// Where lines go once enabled: standard output, or a test's buffer.
static SINK: Mutex<Option<Box<dyn Write + Send>>> = Mutex::new(None);

/// Metrics lines from now on, to standard output (Lambda's log stream).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Metrics lines from now on, to `sink` (tests).
pub fn enable_into(sink: Box<dyn Write + Send>) {
    *SINK.lock().unwrap_or_else(|p| p.into_inner()) = Some(sink);
    enable();
}

/// A metric's unit, as CloudWatch names it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unit {
    Count,
    Milliseconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Self::Count => "Count",
            Self::Milliseconds => "Milliseconds",
        }
    }
}

/// One line's metrics for one function.
#[derive(Clone, Debug)]
pub struct Metrics {
    function: &'static str,
    values: Vec<(String, Unit, Vec<u64>)>,
}

impl Metrics {
    pub fn new(function: &'static str) -> Self {
        Self {
            function,
            values: Vec::new(),
        }
    }

    /// A count; zero adds nothing. Most of a batch's counts are zero, and leaving them out
    /// makes its line about a third as long (the line's bytes are what the metrics cost,
    /// as log ingestion): an alarm reads no data as not breaching (`TreatMissingData`),
    /// and a graph shows a gap where it would show zero (docs/OPERATIONS.md).
    pub fn count(&mut self, name: &str, n: u64) -> &mut Self {
        if n > 0 {
            self.values.push((name.to_owned(), Unit::Count, vec![n]));
        }
        self
    }

    /// Durations, one value per observation (at most [`MAX_VALUES`] are kept); none adds
    /// nothing.
    pub fn milliseconds(&mut self, name: &str, values: impl IntoIterator<Item = u64>) -> &mut Self {
        self.values(name, Unit::Milliseconds, values)
    }

    /// Observations in `unit` (at most [`MAX_VALUES`] are kept); none adds nothing.
    pub fn values(
        &mut self,
        name: &str,
        unit: Unit,
        values: impl IntoIterator<Item = u64>,
    ) -> &mut Self {
        let values: Vec<u64> = values.into_iter().take(MAX_VALUES).collect();
        if !values.is_empty() {
            self.values.push((name.to_owned(), unit, values));
        }
        self
    }

    /// The line's JSON: the metrics as root members, described by `_aws`.
    pub fn document(&self, timestamp_ms: i64) -> Value {
        let mut root = Map::new();
        let mut described = Vec::new();
        for (name, unit, values) in &self.values {
            described.push(json!({"Name": name, "Unit": unit.as_str()}));
            let value = match values.as_slice() {
                [one] => json!(one),
                many => json!(many),
            };
            root.insert(name.clone(), value);
        }
        root.insert("Function".into(), json!(self.function));
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [["Function"]],
                    "Metrics": described,
                }],
            }),
        );
        Value::Object(root)
    }

    /// Writes the line, if metrics are on.
    pub fn emit(&self) {
        if !ENABLED.load(Ordering::Relaxed) || self.values.is_empty() {
            return;
        }
        let line = format!("{}\n", self.document(chrono::Utc::now().timestamp_millis()));
        let mut sink = SINK.lock().unwrap_or_else(|p| p.into_inner());
        let _ = match sink.as_mut() {
            Some(sink) => sink.write_all(line.as_bytes()),
            None => std::io::stdout().lock().write_all(line.as_bytes()),
        };
    }
}

/// Why `line` is not an EMF document as the specification describes it, if it is not:
/// `_aws` with an integer `Timestamp` and `CloudWatchMetrics` directives, each naming a
/// namespace, dimension sets of root members holding strings, and metrics whose names are
/// root members holding a number or at most 100 numbers.
pub fn check_document(line: &Value) -> Result<(), String> {
    let root = line.as_object().ok_or("not a JSON object")?;
    let aws = root
        .get("_aws")
        .and_then(Value::as_object)
        .ok_or("no _aws object")?;
    aws.get("Timestamp")
        .and_then(Value::as_i64)
        .filter(|t| *t > 0)
        .ok_or("_aws.Timestamp is not a positive integer of milliseconds")?;
    let directives = aws
        .get("CloudWatchMetrics")
        .and_then(Value::as_array)
        .filter(|d| !d.is_empty())
        .ok_or("_aws.CloudWatchMetrics is not a non-empty array")?;
    for directive in directives {
        let namespace = directive["Namespace"].as_str().unwrap_or("");
        if namespace.is_empty() || namespace.len() > 255 {
            return Err("a directive's Namespace is not 1-255 characters".into());
        }
        let sets = directive["Dimensions"]
            .as_array()
            .ok_or("Dimensions is not an array")?;
        for set in sets {
            let set = set.as_array().ok_or("a dimension set is not an array")?;
            if set.len() > 30 {
                return Err("a dimension set has more than 30 dimensions".into());
            }
            for name in set {
                let name = name.as_str().ok_or("a dimension name is not a string")?;
                if !root.get(name).is_some_and(Value::is_string) {
                    return Err(format!(
                        "dimension {name} is not a root member holding a string"
                    ));
                }
            }
        }
        let metrics = directive["Metrics"]
            .as_array()
            .filter(|m| m.len() <= 100)
            .ok_or("Metrics is not an array of at most 100")?;
        for metric in metrics {
            let name = metric["Name"].as_str().ok_or("a metric has no Name")?;
            if let Some(unit) = metric.get("Unit")
                && !matches!(
                    unit.as_str(),
                    Some("Count" | "Milliseconds" | "Seconds" | "Bytes" | "None")
                )
            {
                return Err(format!("metric {name} has an unknown Unit {unit}"));
            }
            match root.get(name) {
                Some(Value::Number(_)) => {}
                Some(Value::Array(values))
                    if !values.is_empty()
                        && values.len() <= MAX_VALUES
                        && values.iter().all(Value::is_number) => {}
                _ => {
                    return Err(format!(
                        "metric {name} is not a root member holding a number or up to 100 numbers"
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_follows_the_specification() {
        let mut metrics = Metrics::new("deliver");
        metrics
            .count("Delivered", 9)
            .count("Failed", 0)
            .milliseconds("AttemptLatency", [12, 40, 7])
            .milliseconds("DeliveryLag", []);
        let line = metrics.document(1_796_000_000_000);
        check_document(&line).unwrap();
        // Whole numbers as JSON integers: `9`, not `9.0`, two bytes a value less to ingest.
        assert_eq!(line.to_string().matches(".0").count(), 0, "{line}");
        assert_eq!(line["Delivered"], json!(9));
        assert_eq!(line["AttemptLatency"], json!([12, 40, 7]));
        assert!(
            line.get("DeliveryLag").is_none(),
            "no observation, no metric"
        );
        assert_eq!(line["Function"], "deliver");
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Namespace"], NAMESPACE);
    }

    #[test]
    fn what_breaks_the_specification_is_told() {
        let good = Metrics::new("ingest").count("Events", 1).document(1);
        let mut no_member = good.clone();
        no_member.as_object_mut().unwrap().remove("Events");
        assert!(check_document(&no_member).unwrap_err().contains("Events"));
        let mut no_dimension = good.clone();
        no_dimension.as_object_mut().unwrap().remove("Function");
        assert!(
            check_document(&no_dimension)
                .unwrap_err()
                .contains("Function")
        );
        let mut bad_time = good.clone();
        bad_time["_aws"]["Timestamp"] = json!("now");
        assert!(check_document(&bad_time).is_err());
        let many = Metrics::new("deliver")
            .milliseconds("AttemptLatency", 0..500)
            .document(1);
        assert_eq!(many["AttemptLatency"].as_array().unwrap().len(), MAX_VALUES);
        check_document(&many).unwrap();
    }
}
