//! The signing keys read from Secrets Manager (moto's): a new value signs once the keys
//! are read again, a failed read keeps the keys in hand, and a bad value names its secret.

use std::time::Duration;

use herald_aws::secrets::{KeyLoadError, KeySource, SecretNames};
use herald_core::ports::KeyStore;
use herald_core::webhook::keys::{
    DEFAULT_RSA_MD5_HEADER, DEFAULT_RSA_SHA512_HEADER, generate_ed25519,
};
use herald_tests::aws::{sdk_config, unique_prefix};

async fn secret(client: &aws_sdk_secretsmanager::Client, value: &str) -> String {
    let name = format!("herald/{}", unique_prefix());
    client
        .create_secret()
        .name(&name)
        .secret_string(value)
        .send()
        .await
        .unwrap();
    name
}

fn names(ed25519: Option<&str>, rsa: Option<&str>, refresh: Duration) -> SecretNames {
    SecretNames {
        ed25519: ed25519.map(str::to_owned),
        rsa: rsa.map(str::to_owned),
        sha512_header: DEFAULT_RSA_SHA512_HEADER.into(),
        md5_header: DEFAULT_RSA_MD5_HEADER.into(),
        refresh,
    }
}

fn public_ed25519(key: &str) -> String {
    herald_core::webhook::keys::SigningKeys::new(Some(key), None, "a", "b")
        .unwrap()
        .public()
        .ed25519
        .unwrap()
}

#[tokio::test]
async fn a_new_secret_value_signs_once_the_keys_are_read_again() {
    let sdk = sdk_config();
    let client = aws_sdk_secretsmanager::Client::new(&sdk);
    let first = generate_ed25519(&mut rand::rng());
    let rsa = std::fs::read_to_string(
        herald_tests::emulator::workspace_root().join("crates/testkit/testdata/rsa-2048.pem"),
    )
    .unwrap();
    let ed25519_secret = secret(&client, &first).await;
    let rsa_secret = secret(&client, &rsa).await;

    let every_time = KeySource::secrets(
        &sdk,
        names(Some(&ed25519_secret), Some(&rsa_secret), Duration::ZERO),
    );
    let kept = KeySource::secrets(
        &sdk,
        names(
            Some(&ed25519_secret),
            Some(&rsa_secret),
            Duration::from_secs(3600),
        ),
    );
    let offer = kept.offer();
    assert!(offer.ed25519 && offer.rsa);
    assert_eq!(
        offer.reserved_headers,
        ["fluent-signature", "flex.signature"]
    );
    for source in [&every_time, &kept] {
        let keys = source.read().await.unwrap();
        assert_eq!(keys.public().ed25519, Some(public_ed25519(&first)));
        assert!(keys.has_rsa());
    }

    let second = generate_ed25519(&mut rand::rng());
    client
        .put_secret_value()
        .secret_id(&ed25519_secret)
        .secret_string(&second)
        .send()
        .await
        .unwrap();
    assert_eq!(
        every_time.read().await.unwrap().public().ed25519,
        Some(public_ed25519(&second)),
        "read again: the new value"
    );
    assert_eq!(
        kept.read().await.unwrap().public().ed25519,
        Some(public_ed25519(&first)),
        "within its refresh time: the value read before"
    );

    // Secrets Manager failing after a read: the keys in hand keep signing.
    client
        .delete_secret()
        .secret_id(&ed25519_secret)
        .force_delete_without_recovery(true)
        .send()
        .await
        .unwrap();
    assert_eq!(
        every_time.read().await.unwrap().public().ed25519,
        Some(public_ed25519(&second))
    );
}

#[tokio::test]
async fn without_keys_in_hand_a_missing_or_bad_secret_is_an_error_naming_it() {
    let sdk = sdk_config();
    let client = aws_sdk_secretsmanager::Client::new(&sdk);
    let missing = KeySource::secrets(
        &sdk,
        names(Some("herald/no-such-secret"), None, Duration::ZERO),
    );
    match missing.read().await {
        Err(KeyLoadError::Unavailable { secret, .. }) => {
            assert_eq!(secret, "herald/no-such-secret")
        }
        other => panic!("{other:?}"),
    }
    let bad = secret(&client, "not a key").await;
    let source = KeySource::secrets(&sdk, names(Some(&bad), None, Duration::ZERO));
    let error = source.read().await.unwrap_err();
    assert!(
        matches!(&error, KeyLoadError::Invalid { secret, .. } if *secret == bad),
        "{error:?}"
    );
    assert!(error.to_string().contains("whsk_"), "{error}");
    // Which secret, never what is in it.
    assert!(!format!("{source:?}").contains("not a key"));
}
