//! What the CLI tests share: running the binary with its state kept in a temp dir.

pub mod daemon;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// `pcitrack` with its state directory set to `state` through `$STATE_DIRECTORY` (which wins
/// over the uid and `$XDG_STATE_HOME`), so no test writes to /var/lib/pcitrack even as root,
/// and with no systemd notification socket inherited from whoever runs the tests.
#[allow(dead_code)] // not every test file uses it
pub fn command(state: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pcitrack"));
    cmd.env("STATE_DIRECTORY", state)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID");
    cmd
}

/// `pcitrack --config CONFIG policy eval --format json --devices FILE` with its state
/// directory in `dir/state`, not yet run (add environment, then `.output()`).
#[allow(dead_code)] // not every test file uses it
pub fn policy_eval_json(dir: &Path, config: &Path, file: &Path) -> Command {
    let mut cmd = command(&dir.join("state"));
    cmd.arg("--config")
        .arg(config)
        .args(["policy", "eval", "--format", "json", "--devices"])
        .arg(file);
    cmd
}

/// Runs `pcitrack` with `args`, its state directory `state` (never /var/lib).
#[allow(dead_code)] // not every test file uses it
pub fn pcitrack<S: AsRef<OsStr>>(args: &[S], state: &Path) -> Output {
    command(state).args(args).output().unwrap()
}

/// An example policy (from `examples/policies/`) built into a component, once per test
/// binary, in the workspace's policy build directory.
#[allow(dead_code)] // not every test file uses it
pub fn example_policy(package: &str) -> PathBuf {
    static BUILT: OnceLock<Vec<(String, PathBuf)>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let exe = std::env::current_exe().unwrap();
        let target = exe.ancestors().nth(3).unwrap().to_path_buf();
        pcitrack_wasm_build::PolicyBuild {
            manifest: root.join("Cargo.toml"),
            packages: vec![
                "pcitrack-example-pre-2022-cleanup".into(),
                "pcitrack-example-grace-cleanup".into(),
                "pcitrack-example-connectx-matcher".into(),
                "pcitrack-example-vfio-group-matcher".into(),
                "pcitrack-test-hostile".into(),
                "pcitrack-test-delete-everything".into(),
            ],
            target_dir: target.join("policy-build"),
            profile: "policy".into(),
            target: pcitrack_wasm_build::POLICY_TARGET.into(),
        }
        .run()
        .unwrap()
    });
    built.iter().find(|(p, _)| p == package).unwrap().1.clone()
}

/// The test policy that reads a file through WASI (built for `wasm32-wasip2`): the agent must
/// refuse it for importing beyond the contract.
#[allow(dead_code)] // not every test file uses it
pub fn wasi_policy() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
            let exe = std::env::current_exe().unwrap();
            let target = exe.ancestors().nth(3).unwrap().to_path_buf();
            pcitrack_wasm_build::PolicyBuild {
                manifest: root.join("Cargo.toml"),
                packages: vec!["pcitrack-test-wasi-reader".into()],
                target_dir: target.join("policy-build"),
                profile: "policy".into(),
                target: "wasm32-wasip2".into(),
            }
            .run()
            .unwrap()
            .remove(0)
            .1
        })
        .clone()
}
