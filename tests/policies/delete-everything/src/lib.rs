//! A cleanup policy that says "delete" for every candidate, whatever its status or owner: the
//! agent must still never delete a claimed or allocated device.

use pcitrack_policy_sdk::{Cleanup, CleanupOutput, PolicyInfo, TrackedDevice};

/// Deletes everything it is asked about.
pub struct DeleteEverything;

impl Cleanup for DeleteEverything {
    fn describe() -> PolicyInfo {
        PolicyInfo::new(
            "delete-everything",
            "0.0.0",
            "asks to delete every candidate",
        )
    }

    fn init(_config: &str) -> Result<Self, String> {
        Ok(DeleteEverything)
    }

    fn evaluate(
        &self,
        _tracked: &[TrackedDevice],
        candidates: &[u32],
        out: &mut CleanupOutput,
    ) -> Result<(), String> {
        for _ in candidates {
            out.delete();
        }
        Ok(())
    }
}

pcitrack_policy_sdk::export_cleanup!(DeleteEverything);
