//! How long the API server may stay out of reach before a drain gives up.

use std::time::Duration;

use tokio::time::Instant;

/// How long the API server may be unreachable before a drain gives up
/// (the node stays cordoned; a re-run finishes the job).
pub const LOST_AFTER: Duration = Duration::from_secs(30);

/// Tracks how long calls have failed in a row without reaching the server.
#[derive(Debug, Default)]
pub(crate) struct Reachability {
    failing_since: Option<Instant>,
}

impl Reachability {
    pub(crate) fn reached(&mut self) {
        self.failing_since = None;
    }

    /// Records a failure; true once failures have lasted `limit`.
    pub(crate) fn lost(&mut self, limit: Duration) -> bool {
        let since = *self.failing_since.get_or_insert_with(Instant::now);
        since.elapsed() >= limit
    }
}
