//! The HTTP side: the webhook sender, the resolver behind its SSRF guard, and the TLS
//! configuration shared with the AWS clients.

pub mod resolver;
pub mod sender;
pub mod tls;
