//! TLS trust for Herald's two HTTPS clients, built from root certificates compiled into
//! the binary: start-up reads no certificate file. (Loading the system store, which both
//! clients did by default, was half of a cold start: hundreds of files opened and parsed,
//! once per client.)
//!
//! - Webhooks go to any public endpoint: Mozilla's root programme (`webpki-roots`),
//!   already in the form rustls verifies against, so nothing is parsed.
//! - AWS API calls go to AWS endpoints only: the Amazon Trust Services roots (Amazon Root
//!   CA 1–4 and Starfield Services Root CA G2, which AWS names as the roots of its
//!   endpoints' certificates), taken from Mozilla's set (`webpki-root-certs`).

use std::sync::Arc;

use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The rustls configuration of the webhook client: Mozilla's roots, HTTP/2 or 1.1.
pub fn webhook_client_config() -> Result<rustls::ClientConfig, rustls::Error> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Names that mark the roots of AWS endpoints' certificates.
const AWS_ROOTS: [&[u8]; 2] = [
    b"Amazon Root CA ",
    b"Starfield Services Root Certificate Authority - G2",
];

/// The Amazon Trust Services roots, as the PEM the AWS SDK's trust store takes.
fn aws_root_pems() -> Vec<String> {
    // The scan runs on every cold start over ~150 certificates: one searcher per name,
    // built once (comparing window by window cost about 0.7 ms, and building a searcher
    // per certificate a quarter of that).
    let finders: Vec<memchr::memmem::Finder<'_>> =
        AWS_ROOTS.iter().map(memchr::memmem::Finder::new).collect();
    webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .filter(|cert| finders.iter().any(|f| f.find(cert).is_some()))
        .map(|cert| {
            let body = STANDARD.encode(cert.as_ref());
            let lines: Vec<&str> = body
                .as_bytes()
                .chunks(64)
                .map(|line| std::str::from_utf8(line).unwrap_or_default())
                .collect();
            format!(
                "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                lines.join("\n")
            )
        })
        .collect()
}

/// The AWS SDK's HTTP client: its own (hyper, rustls with aws-lc), trusting only the
/// roots of AWS endpoints instead of loading the system's certificate files.
pub fn aws_http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    let mut store = TrustStore::empty();
    for pem in aws_root_pems() {
        store.add_pem_certificate(pem);
    }
    let context = TlsContext::builder().with_trust_store(store).build();
    let builder = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc));
    match context {
        Ok(context) => builder.tls_context(context).build_https(),
        // Not expected with a trust store of certificates only; the SDK's own default
        // (the system's store) then, said once in the log.
        Err(e) => {
            tracing::warn!(error = %e, "AWS roots not usable; using the system's certificate store");
            builder.build_https()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;

    #[test]
    fn the_aws_roots_are_found_and_well_formed() {
        let pems = aws_root_pems();
        // Amazon Root CA 1, 2, 3, 4 and Starfield Services Root CA G2.
        assert_eq!(pems.len(), 5, "{}", pems.len());
        for pem in &pems {
            let der: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(der.len(), 1);
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
