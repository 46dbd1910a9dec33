//! What the CLI tests share: running the binary with its state kept in a temp dir.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};

/// Runs `pcitrack` with `args`, its state directory under `state` (never /var/lib).
pub fn pcitrack<S: AsRef<OsStr>>(args: &[S], state: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pcitrack"))
        .args(args)
        .env("XDG_STATE_HOME", state)
        .env("USER", "nobody")
        .output()
        .unwrap()
}
