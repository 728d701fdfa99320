//! TLS trust for Herald's two HTTPS clients, built from root certificates compiled into
//! the binary: start-up reads no certificate file. (Loading the system store, which both
//! clients did by default, was half of a cold start: hundreds of files opened and parsed,
//! once per client.)
//!
//! - Webhooks go to any public endpoint: Mozilla's root programme (`webpki-roots`),
//!   already in the form rustls verifies against, so nothing is parsed.
//! - AWS API calls go to AWS endpoints only: the Amazon Trust Services roots (Amazon Root
//!   CA 1–4 and Starfield Services Root CA G2, which AWS names as the roots of its
//!   endpoints' certificates), copied from Mozilla's set (`webpki-root-certs`) into
//!   `tls/aws-roots.pem`.

use std::sync::Arc;

use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// The rustls configuration of the webhook client: Mozilla's roots, HTTP/2 or 1.1.
pub fn webhook_client_config() -> Result<rustls::ClientConfig, rustls::Error> {
    webhook_client_config_trusting(None)
}

/// [`webhook_client_config`], and `also` trusted beside Mozilla's roots: the root of a
/// receiver a test or the bench made. Nothing a deployment configures reaches this.
pub fn webhook_client_config_trusting(
    also: Option<&rustls::pki_types::CertificateDer<'_>>,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(root) = also {
        roots.add(root.clone())?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The Amazon Trust Services roots (Amazon Root CA 1–4 and Starfield Services Root
/// Certificate Authority - G2), as the PEM bundle the AWS SDK's trust store takes. They are
/// Mozilla's copies (`webpki-root-certs`), written out once rather than searched for and
/// encoded on every cold start (that was about 0.15 ms); a test keeps the file equal to
/// what Mozilla's set holds, so a change there fails the build's tests until the file is
/// written again (`HERALD_WRITE_AWS_ROOTS=1 cargo test -p herald-aws aws_roots`).
const AWS_ROOTS_PEM: &str = include_str!("tls/aws-roots.pem");

/// The AWS SDK's HTTP client: its own (hyper, rustls with aws-lc), trusting only the
/// roots of AWS endpoints instead of loading the system's certificate files.
pub fn aws_http_client() -> SharedHttpClient {
    let mut store = TrustStore::empty();
    store.add_pem_certificate(AWS_ROOTS_PEM);
    let context = TlsContext::builder().with_trust_store(store).build();
    let builder = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc));
    match context {
        Ok(context) => SharedHttpClient::new(ConnectorOnFirstUse(
            builder.tls_context(context).build_https(),
        )),
        // Not expected with a trust store of certificates only; the SDK's own default
        // (the system's store) then, said once in the log.
        Err(e) => {
            tracing::warn!(error = %e, "AWS roots not usable; using the system's certificate store");
            builder.build_https()
        }
    }
}

/// The SDK's HTTP client without its trial run. Every SDK client, as it is built, has its
/// HTTP client build a connector (TLS configuration and all) and throw it away, so that a
/// system certificate store is loaded at start-up rather than on the first request. With
/// the roots compiled in there is nothing to load, and the first request builds the
/// connector it uses anyway, so the trial was only time (about 0.1 ms of every cold
/// start, per client). Everything else is the SDK's client's own.
#[derive(Debug)]
struct ConnectorOnFirstUse(SharedHttpClient);

impl HttpClient for ConnectorOnFirstUse {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.0.http_connector(settings, components)
    }

    fn validate_final_config(
        &self,
        components: &RuntimeComponents,
        cfg: &ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        self.0.validate_final_config(components, cfg)
    }

    fn connector_metadata(
        &self,
    ) -> Option<aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata> {
        self.0.connector_metadata()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use rustls::pki_types::pem::PemObject;

    /// Names that mark the roots of AWS endpoints' certificates.
    const AWS_ROOT_NAMES: [&[u8]; 2] = [
        b"Amazon Root CA ",
        b"Starfield Services Root Certificate Authority - G2",
    ];

    /// The AWS roots as Mozilla's set holds them today, as one PEM bundle.
    fn mozillas_aws_roots() -> String {
        webpki_root_certs::TLS_SERVER_ROOT_CERTS
            .iter()
            .filter(|cert| {
                AWS_ROOT_NAMES
                    .iter()
                    .any(|name| memchr::memmem::find(cert, name).is_some())
            })
            .map(|cert| {
                let body = STANDARD.encode(cert.as_ref());
                let lines: Vec<&str> = body
                    .as_bytes()
                    .chunks(64)
                    .map(|line| std::str::from_utf8(line).unwrap())
                    .collect();
                format!(
                    "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                    lines.join("\n")
                )
            })
            .collect()
    }

    #[test]
    fn the_aws_roots_file_is_what_mozillas_set_holds() {
        let expected = mozillas_aws_roots();
        if std::env::var_os("HERALD_WRITE_AWS_ROOTS").is_some() {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/tls/aws-roots.pem");
            std::fs::write(path, &expected).unwrap();
        }
        assert_eq!(
            AWS_ROOTS_PEM, expected,
            "webpki-root-certs changed the AWS roots: write the file again (HERALD_WRITE_AWS_ROOTS=1)"
        );
    }

    #[test]
    fn the_aws_roots_are_five_well_formed_certificates() {
        let der: Vec<_> =
            rustls::pki_types::CertificateDer::pem_slice_iter(AWS_ROOTS_PEM.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
        // Amazon Root CA 1, 2, 3, 4 and Starfield Services Root CA G2.
        assert_eq!(der.len(), 5);
        // Each is one of Mozilla's roots, whole.
        for cert in &der {
            assert!(webpki_root_certs::TLS_SERVER_ROOT_CERTS.contains(cert));
        }
    }

    #[test]
    fn the_webhook_config_trusts_mozillas_roots_and_speaks_h2_and_http1() {
        let config = webhook_client_config().unwrap();
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }
}
