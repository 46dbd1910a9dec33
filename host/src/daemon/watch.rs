//! Watching the policies directory and the configuration file.
//!
//! notify reports raw filesystem events (an editor's save is often create, write, rename and
//! delete in a row; a copy is many writes). They only say "look again": the agent then
//! compares the directory with what it loaded. When to look: an event that says a file is
//! complete (a writer closed it, a file was renamed into place, a file was deleted) is acted
//! on at once, since waiting would only add latency; any other event (a write still in
//! progress) waits until the directory has been quiet for [`DEBOUNCE`]. A file caught
//! half-written anyway is refused and taken at its next event, so acting early is safe.
//! Watching directories (not files) catches a file replaced by rename, which is how careful
//! tools install files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changed {
    /// Something in the policies directory.
    Policies,
    /// The configuration file.
    Config,
}

/// Quiet time after an event of a write in progress before acting: long enough to see a
/// copy through, short enough to keep the reload target (a new policy serving within 100 ms).
pub const DEBOUNCE: Duration = Duration::from_millis(20);
/// Gathering time after an event that says a file is complete: only what is already queued.
const SETTLED: Duration = Duration::from_millis(1);

/// Whether `kind` says a file is complete: closed after writing, renamed, or removed.
fn settles(kind: &notify::EventKind) -> bool {
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode, ModifyKind};
    matches!(
        kind,
        EventKind::Access(AccessKind::Close(AccessMode::Write))
            | EventKind::Modify(ModifyKind::Name(_))
            | EventKind::Remove(_)
    )
}

/// Watches `policies_dir` (created if missing) and the directory of `config_file`; sends one
/// [`Changed`] per quiet burst. The returned watcher must be kept alive.
pub fn watch(
    policies_dir: &Path,
    config_file: Option<&Path>,
) -> anyhow::Result<(notify::RecommendedWatcher, mpsc::UnboundedReceiver<Changed>)> {
    std::fs::create_dir_all(policies_dir)
        .with_context(|| format!("creating the policies directory {}", policies_dir.display()))?;
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<(Changed, bool)>();
    let policies = policies_dir.to_path_buf();
    let config: Option<PathBuf> = config_file.map(Path::to_path_buf);
    let config_for_events = config.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                // An overflowed queue loses events: look at everything again.
                tracing::warn!(error = %e, "file watch error; rereading the policies");
                let _ = raw_tx.send((Changed::Policies, true));
                return;
            }
        };
        let settled = settles(&event.kind);
        if event.kind.is_access() && !settled {
            return;
        }
        for path in &event.paths {
            if config_for_events.as_deref() == Some(path.as_path()) {
                let _ = raw_tx.send((Changed::Config, settled));
            } else if path.parent() == Some(policies.as_path()) || path == &policies {
                let _ = raw_tx.send((Changed::Policies, settled));
            }
        }
    })
    .context("starting the file watcher")?;
    watcher
        .watch(policies_dir, RecursiveMode::NonRecursive)
        .with_context(|| format!("watching {}", policies_dir.display()))?;
    if let Some(dir) = config.as_deref().and_then(Path::parent) {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .with_context(|| format!("watching {}", dir.display()))?;
    }
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some((first, settled)) = raw_rx.recv().await {
            let mut config = first == Changed::Config;
            let mut window = if settled { SETTLED } else { DEBOUNCE };
            while let Ok(Some((next, settled))) = tokio::time::timeout(window, raw_rx.recv()).await
            {
                config |= next == Changed::Config;
                window = if settled { SETTLED } else { DEBOUNCE };
            }
            // A configuration reload reloads the policies too.
            let send = if config {
                Changed::Config
            } else {
                Changed::Policies
            };
            if tx.send(send).is_err() {
                break;
            }
        }
    });
    Ok((watcher, rx))
}
