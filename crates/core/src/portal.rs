//! The consumer portal: a page a producer embeds for one tenant, opened with a short-lived
//! session the producer asks Herald for. A session is a random token the page holds; Herald
//! keeps only its hash, the tenant, and when it ends.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::ids::TenantId;

/// What a session token begins with.
pub const TOKEN_PREFIX: &str = "hps_";
/// How long a session lasts unless the producer asks otherwise, and at most.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
pub const MAX_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// An open portal: which tenant's, until when. Stored under the token's hash.
#[derive(Clone, Debug, PartialEq)]
pub struct PortalSession {
    pub token_hash: String,
    pub tenant: TenantId,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Event types the producer offers this tenant, suggested when it picks an endpoint's.
    pub event_types: Vec<String>,
}

/// Most event types a session may suggest.
pub const MAX_SUGGESTED_TYPES: usize = 100;
/// The shortest session a producer may ask for.
pub const MIN_LIFETIME: Duration = Duration::from_secs(60);

impl PortalSession {
    /// A new session and its token (given to the producer once, never stored).
    pub fn open(
        tenant: TenantId,
        event_types: Vec<String>,
        lifetime: Duration,
        now: DateTime<Utc>,
        rng: &mut impl rand::Rng,
    ) -> (Self, String) {
        let mut secret = [0u8; 32];
        rng.fill(&mut secret);
        let token = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(secret));
        let session = Self {
            token_hash: token_hash(&token),
            tenant,
            created_at: now,
            expires_at: now + chrono::Duration::from_std(lifetime).unwrap_or_default(),
            event_types,
        };
        (session, token)
    }

    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        now < self.expires_at
    }
}

/// The key a token's session is kept under: its SHA-256, hex.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// How the portal looks and where it may be shown.
#[derive(Clone, Debug, PartialEq)]
pub struct PortalSettings {
    /// The producer's name, shown in the page's bar.
    pub name: Option<String>,
    /// `#rrggbb`, the bar's colour.
    pub color: Option<String>,
    /// A `data:image/…` URL: the page loads nothing from elsewhere.
    pub logo: Option<String>,
    /// The origins that may frame the page (CSP `frame-ancestors`); `'self'` when none.
    pub frame_ancestors: Vec<String>,
    /// The portal's URL when not the API's own (`…/portal/`), e.g. behind a CDN.
    pub base_url: Option<String>,
    /// A session's lifetime when the producer names none.
    pub default_lifetime: Duration,
}

impl Default for PortalSettings {
    fn default() -> Self {
        Self {
            name: None,
            color: None,
            logo: None,
            frame_ancestors: Vec::new(),
            base_url: None,
            default_lifetime: DEFAULT_LIFETIME,
        }
    }
}

/// Why a portal setting is refused.
pub fn check_color(color: &str) -> Result<(), String> {
    let hex = color.strip_prefix('#').unwrap_or("");
    if hex.len() == 6 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err("must be a colour like #1f4fd1".into())
    }
}

/// A logo is an inline image (`data:image/png;base64,…`), at most 64 KiB.
pub fn check_logo(logo: &str) -> Result<(), String> {
    let inline = [
        "data:image/png;base64,",
        "data:image/svg+xml;base64,",
        "data:image/jpeg;base64,",
        "data:image/webp;base64,",
    ]
    .iter()
    .any(|p| logo.starts_with(p));
    if !inline {
        return Err("must be a data: URL of a PNG, SVG, JPEG or WebP image (base64)".into());
    }
    if logo.len() > 64 * 1024 {
        return Err("must be at most 64 KiB".into());
    }
    Ok(())
}

/// An origin allowed to frame the portal: `https://app.example.com` (or `http://` on
/// loopback), no path, written exactly as the origin serializes (lower case, ASCII), and
/// naming one host: it goes into the page's `frame-ancestors` as written, so a tab or
/// line break the URL parser would have dropped, or a wildcard, never gets there.
pub fn check_frame_ancestor(origin: &str) -> Result<(), String> {
    let parsed = url::Url::parse(origin).map_err(|_| format!("`{origin}` is not an origin"))?;
    let local = matches!(parsed.host_str(), Some("localhost" | "127.0.0.1"));
    let one_host = match parsed.host() {
        Some(url::Host::Domain(domain)) => domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'),
        Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) => true,
        None => false,
    };
    let ok = (parsed.scheme() == "https" || (parsed.scheme() == "http" && local))
        && parsed.path() == "/"
        && parsed.query().is_none()
        && one_host
        && parsed.origin().ascii_serialization() == origin;
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{origin}` is not an https origin like https://app.example.com"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_kept_by_its_tokens_hash_until_it_ends() {
        let now = Utc::now();
        let tenant = TenantId::parse("acme").unwrap();
        let (session, token) = PortalSession::open(
            tenant.clone(),
            vec![],
            Duration::from_secs(60),
            now,
            &mut rand::rng(),
        );
        assert!(token.starts_with(TOKEN_PREFIX) && token.len() > 40);
        assert_eq!(session.token_hash, token_hash(&token));
        assert_ne!(session.token_hash, token, "the token itself is not kept");
        assert!(session.is_open(now + chrono::Duration::seconds(59)));
        assert!(!session.is_open(now + chrono::Duration::seconds(60)));
        let (other, other_token) = PortalSession::open(
            tenant,
            vec![],
            Duration::from_secs(60),
            now,
            &mut rand::rng(),
        );
        assert_ne!(token, other_token);
        assert_ne!(session.token_hash, other.token_hash);
    }

    #[test]
    fn brand_settings_are_checked() {
        assert!(check_color("#1f4fd1").is_ok());
        assert!(check_color("blue").is_err());
        assert!(check_logo("data:image/png;base64,iVBORw0KGgo=").is_ok());
        assert!(check_logo("https://cdn.example.com/logo.png").is_err());
        assert!(check_frame_ancestor("https://app.example.com").is_ok());
        assert!(check_frame_ancestor("http://127.0.0.1:5173").is_ok());
        assert!(check_frame_ancestor("http://app.example.com").is_err());
        assert!(check_frame_ancestor("https://app.example.com/x").is_err());
        assert!(check_frame_ancestor("*").is_err());
        // Exactly as it serializes: nothing the parser would drop or change.
        for written in [
            "https://app.exam\nple.com",
            "https://app.exam\tple.com",
            "https://app.example.com\r",
            "https://app.example.com/",
            "https://App.Example.com",
            "https://app.example.com:443",
        ] {
            assert!(check_frame_ancestor(written).is_err(), "{written:?}");
        }
        assert!(check_frame_ancestor("https://app.example.com:8443").is_ok());
        // One host: no wildcard.
        for wildcard in ["https://*", "https://*.example.com"] {
            assert!(check_frame_ancestor(wildcard).is_err(), "{wildcard}");
        }
    }
}
