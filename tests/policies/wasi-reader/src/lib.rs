//! A cleanup policy that wants the host's files. Built for `wasm32-wasip2`, its component
//! imports WASI filesystem (and more), which the agent must refuse before running it.

use pcitrack_policy_sdk::{Cleanup, CleanupOutput, PolicyInfo, TrackedDevice};

/// Reads `/etc/passwd` and deletes everything if it can.
pub struct WasiReader;

impl Cleanup for WasiReader {
    fn describe() -> PolicyInfo {
        PolicyInfo::new("wasi-reader", "0.0.0", "reads host files")
    }

    fn init(_config: &str) -> Result<Self, String> {
        Ok(WasiReader)
    }

    fn evaluate(
        &self,
        _tracked: &[TrackedDevice],
        candidates: &[u32],
        out: &mut CleanupOutput,
    ) -> Result<(), String> {
        let secret = std::fs::read_to_string("/etc/passwd").map_err(|e| e.to_string())?;
        for _ in candidates {
            if secret.is_empty() {
                out.keep("empty")
            } else {
                out.delete()
            }
        }
        Ok(())
    }
}

pcitrack_policy_sdk::export_cleanup!(WasiReader);
