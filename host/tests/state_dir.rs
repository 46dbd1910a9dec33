//! Where the state goes when nothing names it, and that the tests keep theirs in their temp
//! dirs. The bug this pins: the state directory was chosen from `$USER` and the owner of
//! /proc/self, so the tests, run as root by CI, wrote compiled policies into
//! /var/lib/pcitrack/cache.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use pcitrack_discovery::fixture::FakeSysfs;

mod common;
use common::pcitrack;

/// The user the non-root test runs as when the tests run as root.
const NOBODY: u32 = 65534;

/// What can be seen of a directory without reading its files: whether it exists, its
/// modification time, and the same for each entry (one level down, where the cache and the
/// database live).
fn snapshot(dir: &Path) -> Vec<(PathBuf, i64, i64)> {
    let mut seen = Vec::new();
    let Ok(m) = std::fs::metadata(dir) else {
        return seen;
    };
    seen.push((dir.to_path_buf(), m.mtime(), m.mtime_nsec()));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if let Ok(m) = e.metadata() {
                seen.push((e.path(), m.mtime(), m.mtime_nsec()));
            }
        }
    }
    seen.sort();
    seen
}

#[test]
fn regression_tests_as_root_wrote_compiled_policies_to_var_lib_pcitrack() {
    let system = Path::new("/var/lib/pcitrack");
    let before = snapshot(system);
    let t = FakeSysfs::new();
    t.add_pf_with_vfs("0000:3b:00.0", 0x8086, 0x1572, 0x154c, 2);
    let state = tempfile::tempdir().unwrap();
    let out = pcitrack(
        &["sync", "--sysfs-root", t.root().to_str().unwrap()],
        state.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(state.path().join("pcitrack.db").is_file());
    assert!(
        state.path().join("cache").is_dir(),
        "the compiled-policy cache belongs in the test's state directory"
    );
    assert_eq!(
        snapshot(system),
        before,
        "pcitrack sync touched {}",
        system.display()
    );
}

#[test]
fn without_state_directory_a_non_root_user_keeps_state_under_xdg_state_home() {
    let dir = tempfile::tempdir().unwrap();
    let devices = dir.path().join("devices.json");
    std::fs::write(&devices, "[]").unwrap();
    let xdg = dir.path().join("xdg");
    let home = dir.path().join("home");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pcitrack"));
    cmd.args(["sync", "--devices"])
        .arg(&devices)
        .env_remove("STATE_DIRECTORY")
        .env("XDG_STATE_HOME", &xdg)
        .env("HOME", &home)
        // A stale $USER decides nothing any more.
        .env("USER", "root");
    let as_root = rustix::process::geteuid().is_root();
    if as_root {
        // Run the binary as nobody, in a directory nobody owns.
        std::os::unix::fs::chown(dir.path(), Some(NOBODY), Some(NOBODY)).unwrap();
        std::os::unix::fs::chown(&devices, Some(NOBODY), Some(NOBODY)).unwrap();
        cmd.uid(NOBODY).gid(NOBODY);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = xdg.join("pcitrack/pcitrack.db");
    assert!(db.is_file(), "no database at {}", db.display());
    assert!(xdg.join("pcitrack/cache").is_dir());
    assert!(!home.exists(), "HOME is only the fallback");
    if as_root {
        assert_eq!(std::fs::metadata(&db).unwrap().uid(), NOBODY);
    }
}
