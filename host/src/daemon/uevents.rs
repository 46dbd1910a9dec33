//! Listening for uevents: each quiet burst of events starts one reconcile, of the devices
//! it names (an incremental pass), or of the whole host when events were lost.
//!
//! Subscribed before the first scan, so no event falls between the scan and the
//! subscription. One thread per source (the kernel's netlink socket, a relay socket); they
//! share the agent's one-at-a-time reconcile.

use std::sync::Arc;
use std::time::Duration;

use pcitrack_discovery::changes::next_burst;
use pcitrack_discovery::socket::UeventSource;

use super::agent::Agent;

/// How long a burst may stay open: the events of one action (a bind, a change) arrive
/// together, and a burst's pass is incremental, so a burst split in two costs one more pass
/// over a few devices, not a rescan; the quiet window is paid by every change before it is
/// visible (one device's change must show in the API within 20 ms). Events that queue while
/// a pass runs are all taken by the next burst at once. A cap keeps a flood from delaying
/// the reconcile past the 100 ms target.
const QUIET: Duration = Duration::from_millis(2);
const CAP: Duration = Duration::from_millis(40);
/// How long the thread waits for the first event of a burst: for ever. It blocks in the
/// kernel (`poll` with no timeout), so an idle agent makes no wake-ups for it (a 250 ms
/// look-up used to make 40 in 10 s, all of the idle agent's). The thread is detached: at
/// shutdown the process exits around it, and a burst that arrives while the agent stops
/// finds `reconcile` refusing ("the agent is stopping").
const WAIT: Duration = Duration::MAX;

/// Runs the listener for `source` on its own thread until the agent stops.
pub fn spawn(agent: Arc<Agent>, name: &'static str, source: Box<dyn UeventSource>) {
    let spawned = std::thread::Builder::new()
        .name(format!("uevents-{name}"))
        .spawn(move || {
            while !agent.stopping() {
                match next_burst(source.as_ref(), WAIT, QUIET, CAP) {
                    Ok(None) => {}
                    Ok(Some(burst)) => {
                        agent.metrics.uevents(burst.affected.len() as u64);
                        if burst.rescan {
                            tracing::warn!(source = name, "uevents were lost (socket overflow); full rescan");
                        }
                        tracing::debug!(source = name, devices = ?burst.affected, "uevent burst");
                        // Lost events leave nothing to go by but a full rescan; otherwise only
                        // the devices named (with their relatives) are re-read.
                        if burst.rescan {
                            let _ = agent.reconcile("uevent");
                        } else if !burst.affected.is_empty() {
                            let _ = agent.reconcile_devices(&burst.affected);
                        }
                    }
                    Err(e) => {
                        tracing::error!(source = name, error = %e, "uevent source failed; relying on the periodic resync");
                        return;
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(source = name, error = %e, "cannot start the uevent listener");
    }
}
