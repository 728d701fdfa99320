//! New signing keys in the forms a deployment reads (docs/DEPLOY.md, "Signing keys").

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};

/// `whsk_` and base64 of a new 32-byte ed25519 seed.
pub fn generate_ed25519() -> String {
    let seed: [u8; 32] = rand::random();
    format!("whsk_{}", B64.encode(seed))
}

/// A new RSA private key as a PKCS#8 PEM. Herald refuses keys under 2048 bits.
pub fn generate_rsa(bits: usize) -> anyhow::Result<String> {
    if !(2048..=8192).contains(&bits) {
        bail!("--bits must be from 2048 to 8192 (Herald refuses RSA keys under 2048 bits)");
    }
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, bits)
        .context("generating the RSA key")?;
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .context("encoding the RSA key as PEM")?;
    Ok(pem.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::webhook::keys::{
        DEFAULT_RSA_MD5_HEADER, DEFAULT_RSA_SHA512_HEADER, SigningKeys,
    };

    #[test]
    fn generated_keys_are_the_ones_a_deployment_accepts() {
        let ed25519 = generate_ed25519();
        let rsa = generate_rsa(2048).unwrap();
        let keys = SigningKeys::new(
            Some(&ed25519),
            Some(&rsa),
            DEFAULT_RSA_SHA512_HEADER,
            DEFAULT_RSA_MD5_HEADER,
        )
        .unwrap();
        assert!(keys.has_ed25519() && keys.has_rsa());
        assert_ne!(ed25519, generate_ed25519(), "each key is new");
    }

    #[test]
    fn small_rsa_keys_are_refused() {
        let error = generate_rsa(1024).unwrap_err().to_string();
        assert!(error.contains("2048"), "{error}");
    }
}
