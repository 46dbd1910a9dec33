//! Opening the tracker's database file, for the agent and for the CLI's direct path alike
//! (both must create the same parent directories and name the file the same way in errors).

use std::path::Path;

use anyhow::Context;
use pcitrack_tracker::{SqliteStore, Tracker};

/// Opens (creating it and its directory if needed) the database at `path`.
///
/// # Errors
///
/// The directory cannot be created, or the file cannot be opened or migrated; the message
/// names the path.
pub fn open_tracker(path: &Path) -> anyhow::Result<Tracker<SqliteStore>> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    Tracker::open(path).with_context(|| format!("opening the database {}", path.display()))
}
