//! The functions' handlers on the in-memory ports (`herald_testkit`), fed with the files
//! of `events/`.

mod deadline;
mod deliver;
mod erase;
mod ingest;
mod manage;
pub(crate) mod per_host;
mod portal;
mod slow_lane;

/// What a JSON subscriber writes, as Herald's bootstraps log, kept for the test to read.
#[derive(Clone, Default)]
pub struct CapturedLogs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLogs {
    /// Captures this thread's lines at `level` and above until the guard is dropped (a
    /// current-thread test runtime's tasks run on it).
    pub fn install(level: tracing::Level) -> (Self, tracing::subscriber::DefaultGuard) {
        let logs = Self::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(level)
            .with_writer(move || writer.clone())
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    /// Every line written so far, parsed.
    fn all(&self) -> Vec<serde_json::Value> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// The `fields` of every line with this message.
    pub fn lines(&self, message: &str) -> Vec<serde_json::Value> {
        self.all()
            .into_iter()
            .filter(|line| line["fields"]["message"] == message)
            .map(|line| line["fields"].clone())
            .collect()
    }

    /// Every line at `level`.
    pub fn at(&self, level: &str) -> Vec<serde_json::Value> {
        self.all()
            .into_iter()
            .filter(|line| line["level"] == level)
            .collect()
    }
}
