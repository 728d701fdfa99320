//! A webhook's request: its body rendered in the subscription's format (with an optional
//! selection of the data), and its signatures.

pub mod build;
pub mod graphql;
pub mod keys;
pub mod render;
pub mod select;
pub mod sign;
pub mod tenant_keys;
