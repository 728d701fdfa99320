//! Waiting for what happens in the background: polled until it holds, or a failure that
//! says what never came.

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

/// How long a test waits for work in the background (a delivery, a retry, a disable).
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Calls `check` every `every` until it answers `Some`, and returns that; panics with
/// `what` and the last answer's description after `patience`.
pub async fn until<T, F, Fut>(
    what: impl Display,
    patience: Duration,
    every: Duration,
    mut check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + patience;
    loop {
        match check().await {
            Ok(found) => return found,
            Err(last) if Instant::now() >= deadline => {
                panic!("{what} never happened within {patience:?}: {last}")
            }
            Err(_) => tokio::time::sleep(every).await,
        }
    }
}
