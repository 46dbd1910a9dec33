//! systemd's readiness protocol (`sd_notify(3)`), for `Type=notify` units: `READY=1` once the
//! agent has reconciled and its API listens (so units ordered after it start against a
//! working agent), `STOPPING=1` when shutdown begins, and `WATCHDOG=1` pings at half the
//! unit's `WatchdogSec=` while the agent's async runtime (which also serves the API) runs.
//! Without `$NOTIFY_SOCKET` (not started by systemd) every call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;

/// Sends `states`; a failure is logged, never fatal (the agent works without systemd).
fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify the service manager ($NOTIFY_SOCKET)");
    }
}

/// The agent has reconciled once and answers on its API.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Shutdown has begun.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// The ping interval systemd asks for: half of `$WATCHDOG_USEC` (when it is set and meant for
/// this process), as `sd_watchdog_enabled(3)` advises.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
        .filter(|d| !d.is_zero())
        .map(|d| d / 2)
}

/// Pings the watchdog every `interval` until the task is dropped or aborted.
pub fn spawn_watchdog(interval: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            send(&[NotifyState::Watchdog]);
        }
    })
}
