//! What each policy has done: calls, failures by kind, the last error. Operators read these
//! through the agent's API and metrics to see a policy misbehave before it matters.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use serde::Serialize;

use crate::error::CallError;

/// Counters of one loaded policy version; a reloaded policy starts from zero.
#[derive(Debug, Default)]
pub struct PolicyStats {
    calls: AtomicU64,
    devices: AtomicU64,
    traps: AtomicU64,
    timeouts: AtomicU64,
    failures: AtomicU64,
    last_error: Mutex<Option<(SystemTime, String)>>,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    /// Evaluations (one per chain run that reached this policy).
    pub calls: u64,
    /// Devices those calls were asked about.
    pub devices: u64,
    /// Calls that trapped (panic, unreachable, stack overflow...).
    pub traps: u64,
    /// Calls stopped at the wall-clock deadline.
    pub timeouts: u64,
    /// Every failed call, traps and timeouts included (memory cap, error values, garbage).
    pub failures: u64,
    /// The last failure, as text.
    pub last_error: Option<String>,
    /// When it happened, in seconds since the Unix epoch.
    pub last_error_at: Option<u64>,
}

impl PolicyStats {
    /// Counts one call over `devices` devices and its outcome.
    pub(crate) fn record<T>(&self, devices: usize, result: &Result<T, CallError>) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.devices.fetch_add(devices as u64, Ordering::Relaxed);
        let Err(error) = result else { return };
        self.failures.fetch_add(1, Ordering::Relaxed);
        match error {
            CallError::Trap(_) => self.traps.fetch_add(1, Ordering::Relaxed),
            CallError::Timeout { .. } => self.timeouts.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
        // A poisoned lock only means another thread panicked mid-write of a string.
        let mut last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        *last = Some((SystemTime::now(), error.to_string()));
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let last = self
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        StatsSnapshot {
            calls: self.calls.load(Ordering::Relaxed),
            devices: self.devices.load(Ordering::Relaxed),
            traps: self.traps.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            last_error_at: last.as_ref().and_then(|(at, _)| {
                at.duration_since(SystemTime::UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_secs())
            }),
            last_error: last.map(|(_, e)| e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_calls_and_failures_by_kind() {
        let s = PolicyStats::default();
        s.record::<()>(3, &Ok(()));
        s.record::<()>(2, &Err(CallError::Trap("unreachable".into())));
        s.record::<()>(1, &Err(CallError::Timeout { deadline_ms: 50 }));
        s.record::<()>(
            1,
            &Err(CallError::Garbage("2 verdicts for 1 devices".into())),
        );
        let snap = s.snapshot();
        assert_eq!(
            (
                snap.calls,
                snap.devices,
                snap.traps,
                snap.timeouts,
                snap.failures
            ),
            (4, 7, 1, 1, 3)
        );
        assert_eq!(
            snap.last_error.as_deref(),
            Some("returned garbage: 2 verdicts for 1 devices")
        );
        assert!(snap.last_error_at.is_some());
    }
}
