//! Herald's log lines during the bench, as the functions write them in Lambda: JSON, at
//! `info`, through Herald's filter, one write per line into a pipe that another thread
//! reads (Lambda reads a function's standard output the same way). So the handler's CPU
//! figures include its logging, and the AWS section can count the bytes and lines that
//! CloudWatch Logs would bill. The metrics' EMF lines (`herald_aws::lambda::metrics`) go to
//! the same pipe, as in Lambda, and are counted on their own too.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// Bytes and lines logged so far: all of them, and of them the EMF metrics lines.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Logged {
    pub bytes: u64,
    pub lines: u64,
    pub metric_bytes: u64,
    pub metric_lines: u64,
}

impl std::ops::Sub for Logged {
    type Output = Logged;
    fn sub(self, earlier: Logged) -> Logged {
        Logged {
            bytes: self.bytes - earlier.bytes,
            lines: self.lines - earlier.lines,
            metric_bytes: self.metric_bytes - earlier.metric_bytes,
            metric_lines: self.metric_lines - earlier.metric_lines,
        }
    }
}

#[derive(Default)]
struct Counters {
    bytes: AtomicU64,
    lines: AtomicU64,
}

static COUNTERS: OnceLock<Arc<Counters>> = OnceLock::new();
static METRIC_COUNTERS: OnceLock<Arc<Counters>> = OnceLock::new();

/// What has been logged since [`install`] (nothing when it was not called).
pub fn logged() -> Logged {
    let read = |c: &OnceLock<Arc<Counters>>| {
        c.get().map_or((0, 0), |c| {
            (
                c.bytes.load(Ordering::SeqCst),
                c.lines.load(Ordering::SeqCst),
            )
        })
    };
    let ((bytes, lines), (metric_bytes, metric_lines)) = (read(&COUNTERS), read(&METRIC_COUNTERS));
    Logged {
        bytes: bytes + metric_bytes,
        lines: lines + metric_lines,
        metric_bytes,
        metric_lines,
    }
}

#[derive(Clone)]
struct CountingPipe {
    pipe: Arc<std::io::PipeWriter>,
    counters: Arc<Counters>,
}

impl Write for CountingPipe {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let written = (&*self.pipe).write(bytes)?;
        let lines = bytes[..written].iter().filter(|&&b| b == b'\n').count();
        self.counters
            .bytes
            .fetch_add(written as u64, Ordering::SeqCst);
        self.counters
            .lines
            .fetch_add(lines as u64, Ordering::SeqCst);
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Makes Herald's JSON subscriber at `info` this process's, writing into a pipe drained
/// by a thread of its own.
pub fn install() {
    let (mut reader, writer) = std::io::pipe().expect("a pipe for the logs");
    std::thread::Builder::new()
        .name("bench-log-reader".into())
        .spawn(move || {
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        })
        .expect("the log reader's thread");
    let pipe = Arc::new(writer);
    let metrics = CountingPipe {
        pipe: Arc::clone(&pipe),
        counters: Arc::clone(METRIC_COUNTERS.get_or_init(Arc::default)),
    };
    herald_aws::lambda::metrics::enable_into(Box::new(metrics));
    let counters = Arc::clone(COUNTERS.get_or_init(Arc::default));
    let sink = CountingPipe { pipe, counters };
    let subscriber = herald_aws::lambda::telemetry::json_subscriber("info", move || sink.clone());
    tracing::subscriber::set_global_default(subscriber).expect("the bench's only subscriber");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_logged_are_counted_with_their_bytes() {
        install();
        let before = logged();
        tracing::info!(delivery_id = "msg_1", "record processed");
        tracing::debug!("not at info");
        let after = logged() - before;
        assert_eq!(after.lines, 1);
        assert!(after.bytes > 40, "{after:?}");
        assert_eq!(after.metric_lines, 0);
        let mut metrics = herald_aws::lambda::metrics::Metrics::new("deliver");
        metrics.count("Delivered", 1);
        metrics.emit();
        let after = logged() - before;
        assert_eq!((after.lines, after.metric_lines), (2, 1));
        assert!(
            after.metric_bytes > 100 && after.bytes > after.metric_bytes,
            "{after:?}"
        );
    }
}
