//! A command whose reader goes away (`pcitrack policy eval ... | head`) stops quietly with the
//! status a shell reports for a tool killed by SIGPIPE (141), instead of panicking on the
//! failed write. One test per command that can print more than a pipe holds.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use pcitrack_discovery::fixture::FakeSysfs;
use serde_json::json;

mod common;

use common::command;

/// Devices enough that every listing of them is several times a pipe's buffer (64 KiB), as
/// the JSON file `discover --format json` writes (plain PCI devices: building them is
/// instant, where a fake sysfs tree of this size takes many seconds).
fn devices_file(dir: &Path) -> PathBuf {
    let devices: Vec<serde_json::Value> = (0..3000u32)
        .map(|i| {
            json!({
                "address": format!("0000:{:02x}:{:02x}.{}", 0x10 + i / 256, (i / 8) % 32, i % 8),
                "vendor_id": "8086", "product_id": "154c",
                "subsystem_vendor_id": "8086", "subsystem_device_id": "0000",
                "class_code": "020000", "revision": "01", "numa_node": 0,
                "driver": "vfio-pci", "iommu_group": i, "dev_type": "type-PCI",
                "parent_addr": null, "vf_index": null, "sriov_totalvfs": null,
                "sriov_numvfs": null, "sriov_vf_device": null, "ifname": null,
                "mac_address": null, "net": [], "card_serial_number": null, "vpd": null
            })
        })
        .collect();
    let path = dir.join("devices.json");
    std::fs::write(&path, serde_json::to_vec(&devices).unwrap()).unwrap();
    path
}

/// The configuration: every device assignable, with long tags, so the rows are long.
const CONFIG: &str = r#"[pci]
device_spec = ['{"vendor_id": "8086", "product_id": "154c", "physical_network": "physnet-of-the-closed-pipe-test", "trusted": "true", "a_long_custom_tag": "so that every row of every listing is long"}']
"#;

/// Runs `cmd` with its standard output a pipe whose reader reads a few bytes and then
/// closes it; asserts the command stopped quietly with status 141.
fn assert_stops_quietly_when_the_reader_goes(what: &str, mut cmd: Command) {
    // The whole output, read to the end, is many pipe buffers long (else the command could
    // finish before the reader closes and the test would prove nothing).
    let full = cmd.output().unwrap();
    assert!(full.status.success(), "{what}: {full:?}");
    assert!(
        full.stdout.len() > 192 << 10,
        "{what}: only {} bytes of output",
        full.stdout.len()
    );

    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = child.stdout.take().unwrap();
    let mut head = [0u8; 64];
    reader.read_exact(&mut head).unwrap();
    drop(reader);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    assert!(
        !stderr.contains("error") && !stderr.contains("Broken pipe"),
        "{what}: a closed pipe is not an error to report: {stderr}"
    );
    assert_eq!(out.status.code(), Some(141), "{what}: {stderr}");
}

fn pcitrack(state: &Path, config: &Path, args: &[&str]) -> Command {
    let mut cmd = command(state);
    cmd.arg("--config").arg(config).args(args);
    cmd
}

#[test]
fn regression_policy_eval_panics_on_a_closed_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let (state, config) = (dir.path().join("state"), dir.path().join("pcitrack.toml"));
    std::fs::write(&config, CONFIG).unwrap();
    let devices = devices_file(dir.path());
    for format in ["table", "json"] {
        let mut cmd = pcitrack(&state, &config, &["policy", "eval", "--format", format]);
        cmd.arg("--devices").arg(&devices);
        assert_stops_quietly_when_the_reader_goes(&format!("policy eval ({format})"), cmd);
    }
}

#[test]
fn discover_stops_quietly_on_a_closed_pipe() {
    let dir = tempfile::tempdir().unwrap();
    // 2 PFs with 250 VFs each: over 250 KiB of JSON.
    let sysfs = FakeSysfs::generate_large(2, 250, 0);
    let (state, config) = (dir.path().join("state"), dir.path().join("pcitrack.toml"));
    std::fs::write(&config, CONFIG).unwrap();
    let mut cmd = pcitrack(&state, &config, &["discover", "--format", "json"]);
    cmd.arg("--sysfs-root").arg(sysfs.root());
    assert_stops_quietly_when_the_reader_goes("discover", cmd);
}

#[test]
fn devices_stops_quietly_on_a_closed_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let (state, config) = (dir.path().join("state"), dir.path().join("pcitrack.toml"));
    std::fs::write(&config, CONFIG).unwrap();
    let db = dir.path().join("pcitrack.db");
    let sync = pcitrack(&state, &config, &["sync"])
        .arg("--devices")
        .arg(devices_file(dir.path()))
        .arg("--db")
        .arg(&db)
        .output()
        .unwrap();
    assert!(sync.status.success(), "{sync:?}");
    for format in ["table", "json"] {
        let mut cmd = pcitrack(&state, &config, &["devices", "--format", format]);
        cmd.arg("--db").arg(&db);
        assert_stops_quietly_when_the_reader_goes(&format!("devices ({format})"), cmd);
    }
}
