//! Flows written once over the ports, for every function that needs them.

pub mod erase;
pub mod publish;
