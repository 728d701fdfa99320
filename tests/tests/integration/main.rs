//! Herald's integration tests, one binary (one link of the AWS SDK): handler tests on the
//! in-memory fakes, adapter and pipeline tests against moto, the release bootstraps under
//! the runtime emulator and under `sam local`, the smoke check, and the example receiver.
//! `make test` starts moto; each test makes its own tables and queues.

mod adapters;
mod architecture;
mod cli;
mod crash;
mod deploy_code;
mod event_shapes;
mod example_receiver;
mod faults;
mod graphql;
mod handlers;
mod hostile_input;
mod lambda;
mod logs;
mod management;
mod openapi;
mod ordering;
mod pipeline;
mod portal_browser;
mod receiver;
mod sam_local;
mod sealed;
mod slow_receivers;
mod smoke;
mod soak;
mod tls;
mod traces;
mod wire;
