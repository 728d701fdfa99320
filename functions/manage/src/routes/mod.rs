//! One module per resource of the API; each route is a function the router calls.

pub mod deliveries;
pub mod erase;
pub mod events;
pub mod feed;
pub mod replay;
pub mod seal;
pub mod signing_keys;
pub mod subscriptions;
