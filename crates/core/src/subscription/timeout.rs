//! A subscription's own limit on one attempt: how long Herald waits for its receiver's
//! answer, from 1 s up to the deployment's `HERALD_DELIVERY_TIMEOUT`. Written and shown
//! as a duration (`10s`, `2500ms`).

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The shortest limit a subscription may set.
pub const MIN_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttemptTimeout(Duration);

impl AttemptTimeout {
    /// `raw` as a limit within `max` (the deployment's), or why not.
    pub fn parse(raw: &str, max: Option<Duration>) -> Result<Self, String> {
        let limit = crate::delivery::retry::parse_duration(raw).map_err(|e| e.to_string())?;
        if limit < MIN_TIMEOUT {
            return Err(format!(
                "at least {}",
                humantime::format_duration(MIN_TIMEOUT)
            ));
        }
        if let Some(max) = max
            && limit > max
        {
            return Err(format!(
                "at most {}, this deployment's limit on an attempt",
                humantime::format_duration(max)
            ));
        }
        Ok(Self(limit))
    }

    pub fn get(self) -> Duration {
        self.0
    }
}

impl std::fmt::Display for AttemptTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for AttemptTimeout {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AttemptTimeout {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw, None).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_is_a_duration_within_the_deployments() {
        let max = Some(Duration::from_secs(30));
        assert_eq!(
            AttemptTimeout::parse("10s", max).unwrap().get(),
            Duration::from_secs(10)
        );
        assert_eq!(
            AttemptTimeout::parse("2500ms", max).unwrap().to_string(),
            "2s 500ms"
        );
        assert_eq!(AttemptTimeout::parse("30", max).unwrap().to_string(), "30s");
        for (raw, why) in [
            ("31s", "at most 30s"),
            ("500ms", "at least 1s"),
            ("soon", ""),
            ("", ""),
        ] {
            let err = AttemptTimeout::parse(raw, max).unwrap_err();
            assert!(err.contains(why), "{raw}: {err}");
        }
        let stored: AttemptTimeout = serde_json::from_str("\"1m\"").unwrap();
        assert_eq!(serde_json::to_string(&stored).unwrap(), "\"1m\"");
    }
}
