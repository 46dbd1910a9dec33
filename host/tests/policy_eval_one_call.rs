//! `pcitrack policy eval --devices F --format json` reads, parses and writes on several
//! threads, but runs the policy chain as one call per policy over the whole list, as the
//! agent's full reconcile does (README "Using it": cutting the chain into parts was measured
//! and refused, since a part's call would get the whole deadline and memory cap for a share of
//! the devices). These guard that: the rows must be the bytes one thread gives
//! (`PCITRACK_CLI_THREADS=1`) when a verdict depends on devices on the other side of the
//! parse cut (a PF's `devname` matching VFs across it), and a policy that fails on one device
//! only must fail as one whole call (the same rows, reasons, warnings and exit status, the
//! failure logged once), never as separate parts would.

use std::path::Path;
use std::process::Output;

use pcitrack_model::{DevType, Device, NetInterface, PciAddress};
use serde_json::Value;

mod common;

/// PFs (15b3:101d, netdev `pf<i>`) and this many VFs (15b3:101e) each.
const PFS: u32 = 7;
const VFS_PER_PF: u32 = 700;

/// A PF's VFs match by the PF's `devname` (resolved through the inventory's netdevs); every
/// other VF is remote-managed, assignable only with a card serial number (the tagger).
const SPECS: &str = r#"device_spec = [
  '{"devname": "pf3", "physical_network": "physnet1"}',
  '{"vendor_id": "15b3", "product_id": "101e", "physical_network": "physnet2", "remote_managed": "true"}',
]
"#;

/// PF `i` at `0000:<4i>:00.0`, its VFs on the next three buses; the VFs of even PFs carry a
/// card serial number. Sorted by address: PF 3 falls in the first half of the list, most of
/// its VFs in the second.
fn devices() -> Vec<Device> {
    let mut out = Vec::new();
    for pf in 0..PFS {
        let bus = (pf * 4) as u8;
        let pf_address = PciAddress {
            domain: 0,
            bus,
            slot: 0,
            function: 0,
        };
        let mut p = Device::new(pf_address, 0x15b3, 0x101d, DevType::Pf);
        p.net.push(NetInterface {
            name: format!("pf{pf}"),
            mac_address: None,
            phys_port_name: None,
            phys_switch_id: None,
        });
        p.sriov_totalvfs = Some(VFS_PER_PF as u16);
        p.sriov_numvfs = p.sriov_totalvfs;
        p.sriov_vf_device = Some(0x101e);
        out.push(p);
        for vf in 0..VFS_PER_PF {
            let address = PciAddress {
                domain: 0,
                bus: bus + 1 + (vf / 256) as u8,
                slot: ((vf % 256) / 8) as u8,
                function: (vf % 8) as u8,
            };
            let mut v = Device::new(address, 0x15b3, 0x101e, DevType::Vf);
            v.parent_addr = Some(pf_address);
            v.vf_index = Some(vf as u16);
            v.driver = Some("mlx5_core".into());
            if pf % 2 == 0 {
                v.card_serial_number = Some(format!("MT{pf:04}"));
            }
            out.push(v);
        }
    }
    out
}

/// `policy eval --format json` over the devices with `config` (and the policies in `dir`'s
/// `policies` when it exists), on `threads` threads.
fn eval(dir: &Path, config: &str, threads: u32) -> Output {
    let config_file = dir.join("pcitrack.toml");
    std::fs::write(&config_file, config).unwrap();
    let file = dir.join("devices.json");
    if !file.exists() {
        std::fs::write(&file, serde_json::to_vec(&devices()).unwrap()).unwrap();
    }
    let mut cmd = common::policy_eval_json(dir, &config_file, &file);
    let policies = dir.join("policies");
    if policies.exists() {
        cmd.arg("--policies").arg(&policies);
    }
    cmd.env("PCITRACK_CLI_THREADS", threads.to_string())
        .output()
        .unwrap()
}

/// Runs on 1, 2 and 3 threads; asserts the same exit status, warnings and rows, and returns
/// the one-thread run.
fn same_on_any_number_of_threads(dir: &Path, config: &str) -> Output {
    let one = eval(dir, config, 1);
    for threads in [2, 3] {
        let many = eval(dir, config, threads);
        assert_eq!(many.status, one.status, "{threads} threads");
        assert_eq!(
            untimed(&many.stderr),
            untimed(&one.stderr),
            "{threads} threads"
        );
        assert!(
            many.stdout == one.stdout,
            "{threads} threads: the rows differ ({} vs {} bytes)",
            many.stdout.len(),
            one.stdout.len()
        );
    }
    one
}

/// The log lines without their timestamps (the first word of each).
fn untimed(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .map(|l| l.split_once(' ').map_or(l, |(_, rest)| rest).to_string())
        .collect()
}

fn rows(out: &Output) -> Vec<Value> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn row<'a>(rows: &'a [Value], address: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["address"] == address)
        .unwrap_or_else(|| panic!("no row for {address}"))
}

#[test]
fn verdicts_that_depend_on_devices_across_the_parse_cut_are_those_of_one_thread() {
    let dir = tempfile::tempdir().unwrap();
    let out = same_on_any_number_of_threads(dir.path(), &format!("[pci]\n{SPECS}"));
    let rows = rows(&out);
    assert_eq!(rows.len(), (PFS * (1 + VFS_PER_PF)) as usize);
    // PF 3's last VF sits after the parse cut; its PF's netdev, before it, matched it.
    let vf = row(&rows, "0000:0f:17.3");
    assert_eq!(vf["tags"]["physical_network"], "physnet1", "{vf}");
    assert_eq!(vf["remote_managed"], false, "{vf}");
    // Remote-managed VFs: with a serial number assignable, without rejected by the tagger.
    let with_serial = row(&rows, "0000:19:02.0");
    assert_eq!(with_serial["assignable"], true, "{with_serial}");
    assert_eq!(with_serial["remote_managed"], true, "{with_serial}");
    let without = row(&rows, "0000:15:02.0");
    assert_eq!(without["assignable"], false, "{without}");
}

/// The hostile matcher panics in a call that holds the last device and assigns every
/// device in any other call: were the chain split in parts, the first part's call would
/// succeed. The rows must be those of one whole failed call (the matcher abstains, the default matcher
/// decides, the failure logged once), and a garbage answer's text must count the whole
/// call's devices.
#[test]
fn a_policy_failing_on_the_last_device_fails_as_one_whole_call_on_any_thread_count() {
    let hostile = common::example_policy("pcitrack-test-hostile");
    for misdeed in ["panic-last", "extra-verdicts"] {
        let dir = tempfile::tempdir().unwrap();
        let policies = dir.path().join("policies");
        std::fs::create_dir(&policies).unwrap();
        std::fs::copy(&hostile, policies.join("hostile.wasm")).unwrap();
        let config = format!("[pci]\n{SPECS}[policies.hostile]\nmisdeed = \"{misdeed}\"\n");
        let out = same_on_any_number_of_threads(dir.path(), &config);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let rows = rows(&out);
        assert!(
            rows.iter().all(|r| r["decided_by"] != "hostile"),
            "{misdeed}: verdicts of a partial call were kept"
        );
        if misdeed == "extra-verdicts" {
            let n = PFS * (1 + VFS_PER_PF);
            let whole = format!("{} verdicts for {n} devices", n + 5);
            assert!(stderr.contains(&whole), "{stderr}");
        }
        assert_eq!(
            stderr.matches("policy call failed").count(),
            1,
            "{misdeed}: {stderr}"
        );
    }
}
