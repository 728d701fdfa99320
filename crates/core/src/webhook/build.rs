//! The signed request for one attempt. The timestamp is this attempt's, so receivers can
//! refuse stale ones; the id is the delivery's, so they can drop duplicates.

use std::borrow::Cow;

use chrono::{DateTime, Utc};

use super::keys::SigningKeys;
use super::render::{self, RenderContext};
use super::sign::signature_header;
use crate::delivery::DeliveryTask;
use crate::ports::OutgoingWebhook;
use crate::subscription::{Subscription, herald_sets_header};

/// The request: body in the subscription's format, its custom headers (`accept: */*`
/// when they set no `accept`), then Herald's own (`webhook-id`, `webhook-timestamp`, `webhook-signature` with every live secret and
/// the `v1a` entry when asked, `idempotency-key`) and the RSA signature headers when
/// asked. `keys` are the deployment's, needed only for the asymmetric signatures;
/// `queried` is the result of the subscription's GraphQL query, when it has one.
pub fn build(
    task: &DeliveryTask,
    subscription: &Subscription,
    queried: Option<&serde_json::Map<String, serde_json::Value>>,
    keys: Option<&SigningKeys>,
    idempotency_key_prefix: &str,
    now: DateTime<Utc>,
) -> OutgoingWebhook {
    let ctx = RenderContext {
        tenant: &task.tenant,
        delivery_id: &task.delivery_id,
    };
    let payload = match queried {
        Some(result) => render::Payload::Queried(result),
        None => render::Payload::Event(subscription.selection.as_ref()),
    };
    let body = render::render(&task.event, subscription.format, payload, &ctx);
    let timestamp = now.timestamp();
    let id = task.delivery_id.as_str();
    let mut signature = signature_header(subscription.live_secrets(now), id, timestamp, &body);
    if subscription.signatures.ed25519
        && let Some(entry) = keys.and_then(|k| k.ed25519_entry(&task.tenant, id, timestamp, &body))
    {
        signature.push(' ');
        signature.push_str(&entry);
    }
    // Custom headers first: Herald's own are added after them. Their names were refused
    // when written; one Herald sets now all the same (the deployment's RSA header names
    // renamed since, a record written before a name was reserved) is left out, so a
    // receiver never sees two of a header, the subscription's first.
    let mut headers: Vec<(Cow<'static, str>, Cow<'static, str>)> =
        Vec::with_capacity(subscription.headers.len() + 8);
    headers.extend(
        subscription
            .headers
            .iter()
            // Names are stored lowercase.
            .filter(|(name, _)| {
                !herald_sets_header(name) && !keys.is_some_and(|k| k.sets_header(name))
            })
            .map(|(k, v)| (Cow::Owned(k.clone()), Cow::Owned(v.clone()))),
    );
    let custom_headers = headers.len();
    // `Accept: */*` as common HTTP clients send it (some firewalls refuse a request
    // without one), unless the subscription sets its own.
    if !subscription.headers.contains_key("accept") {
        headers.push(("accept".into(), "*/*".into()));
    }
    headers.extend([
        ("content-type".into(), "application/json".into()),
        ("user-agent".into(), crate::USER_AGENT.into()),
        ("webhook-id".into(), id.to_owned().into()),
        ("webhook-timestamp".into(), timestamp.to_string().into()),
        ("webhook-signature".into(), signature.into()),
        (
            "idempotency-key".into(),
            [idempotency_key_prefix, id].concat().into(),
        ),
    ]);
    if subscription.signatures.rsa
        && let Some(keys) = keys
    {
        headers.extend(
            keys.rsa_headers(&body)
                .into_iter()
                .map(|(name, value)| (name.into(), value.into())),
        );
    }
    OutgoingWebhook {
        timeout: subscription.timeout.map(|t| t.get()),
        url: subscription.url.clone(),
        headers,
        custom_headers,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::TenantId;
    use crate::subscription::url::UrlPolicy;

    fn subscription(headers: serde_json::Value) -> Subscription {
        let new: crate::subscription::NewSubscription = serde_json::from_value(serde_json::json!({
            "url": "https://hooks.example.com/", "event_types": ["*"], "headers": headers
        }))
        .unwrap();
        new.into_subscription(
            TenantId::parse("acme").unwrap(),
            &UrlPolicy::default(),
            &crate::subscription::Offer::default(),
            Utc::now(),
            &mut rand::rng(),
        )
        .unwrap()
    }

    fn built(subscription: &Subscription) -> OutgoingWebhook {
        let task = crate::delivery::test_task(&subscription.tenant, &subscription.id);
        build(&task, subscription, None, None, "", Utc::now())
    }

    #[test]
    fn the_subscriptions_headers_come_first_and_are_counted_as_its_own() {
        let subscription = subscription(serde_json::json!({
            "authorization": "Bearer s3cret", "x-api-key": "k1"
        }));
        let webhook = built(&subscription);
        assert_eq!(webhook.custom_headers, 2);
        let mut custom: Vec<_> = webhook.headers[..2]
            .iter()
            .map(|(name, value)| (name.as_ref(), value.as_ref()))
            .collect();
        custom.sort();
        assert_eq!(
            custom,
            [("authorization", "Bearer s3cret"), ("x-api-key", "k1")]
        );
        // Herald's own follow, none of them counted.
        let own: Vec<&str> = webhook.headers[2..]
            .iter()
            .map(|(n, _)| n.as_ref())
            .collect();
        assert!(own.contains(&"webhook-signature"), "{own:?}");
        assert!(!own.contains(&"authorization"), "{own:?}");
    }

    /// A stored header Herald sets itself (the deployment's RSA header renamed to it since,
    /// or a record older than the name's reservation) is left out, not sent beside
    /// Herald's own: a receiver sees one of each, Herald's.
    #[test]
    fn a_stored_header_herald_sets_itself_is_left_out() {
        let mut subscription = subscription(serde_json::json!({"x-team": "billing"}));
        subscription.signatures.rsa = true;
        for (name, value) in [
            ("x-sig", "forged"),
            ("webhook-signature", "v1,forged"),
            ("content-length", "1"),
        ] {
            subscription.headers.insert(name.into(), value.into());
        }
        let keys = SigningKeys::new(
            None,
            Some(include_str!("../../../testkit/testdata/rsa-2048.pem")),
            "x-sig",
            "x-sig-md5",
        )
        .unwrap();
        let task = crate::delivery::test_task(&subscription.tenant, &subscription.id);
        let webhook = build(&task, &subscription, None, Some(&keys), "", Utc::now());
        assert_eq!(webhook.custom_headers, 1);
        assert_eq!(webhook.headers[0], ("x-team".into(), "billing".into()));
        for name in ["x-sig", "webhook-signature"] {
            let values: Vec<&str> = webhook
                .headers
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.as_ref())
                .collect();
            assert_eq!(values.len(), 1, "{name}: {values:?}");
            assert!(!values[0].contains("forged"), "{name}: {values:?}");
        }
        assert!(!webhook.headers.iter().any(|(n, _)| n == "content-length"));
    }

    #[test]
    fn a_subscription_without_headers_counts_none() {
        let webhook = built(&subscription(serde_json::json!({})));
        assert_eq!(webhook.custom_headers, 0);
        assert_eq!(webhook.headers[0].0, "accept", "{:?}", webhook.headers[0]);
    }
}
