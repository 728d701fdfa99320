//! Herald's test kit: in-memory fakes of every port, a fixed clock, a static resolver,
//! fixtures, and the helpers tests share. Depends on `herald-core` alone.

mod memory;
mod ports;
mod resolver;
pub mod signatures;
pub mod wait;

pub use memory::*;
pub use ports::{MemoryPorts, MemoryPortsWith, adapters, adapters_with};
pub use resolver::StaticResolver;
