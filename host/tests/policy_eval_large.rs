//! `pcitrack policy eval --devices F --format json` on a file of thousands of records, out of
//! address order and many output buffers long, writes the bytes the rows of the chain's
//! assessments give (`PolicySet::assessments`, each row a `VerdictRow`), as it did before the
//! command wrote its rows straight from the devices and their verdicts.

use std::path::Path;

use pcitrack::config::Config;
use pcitrack::ops::VerdictRow;
use pcitrack_model::{DevType, Device, PciAddress};

mod common;

/// Several tag sets (a string `trusted`, a typed one, keys out of order), and devices no
/// spec matches; a VF's PF is elsewhere in the file.
const DEVICE_SPEC: &str = r#"[pci]
device_spec = [
  '{"vendor_id": "8086", "product_id": "154c", "address": "*:*:*.*", "physical_network": "physnet1", "trusted": "true"}',
  '{"vendor_id": "15b3", "product_id": "101e", "physical_network": "physnet2", "trusted": true}',
  '{"vendor_id": "15b3", "product_id": "1017", "physical_network": "physnet3"}',
  '{"vendor_id": "10de", "product_id": "20b5", "managed": "no", "zeta": "last", "alpha": "first"}',
]
"#;

/// `pfs` PFs per domain, each with `vfs` VFs, over `domains` domains, and a GPU and a plain
/// device per domain; in a scrambled order (a fixed permutation), not by address.
fn inventory(domains: u32, pfs: u8, vfs: u8) -> Vec<Device> {
    let mut devices = Vec::new();
    for domain in 0..domains {
        let at = |bus: u8, slot: u8, function: u8| PciAddress {
            domain,
            bus,
            slot,
            function,
        };
        for p in 0..pfs {
            let (vendor, pf_id, vf_id) = if p % 2 == 0 {
                (0x8086, 0x1572, 0x154c)
            } else {
                (0x15b3, 0x1017, 0x101e)
            };
            let pf_addr = at(0x20 + p, 0, 0);
            let mut pf = Device::new(pf_addr, vendor, pf_id, DevType::Pf);
            pf.sriov_totalvfs = Some(vfs.into());
            pf.sriov_numvfs = Some(vfs.into());
            pf.sriov_vf_device = Some(vf_id);
            devices.push(pf);
            for v in 0..vfs {
                let mut vf = Device::new(at(0x40 + p, v / 8, v % 8), vendor, vf_id, DevType::Vf);
                vf.parent_addr = Some(pf_addr);
                vf.vf_index = Some(v.into());
                vf.driver = Some("iavf".into());
                vf.numa_node = Some(domain % 2);
                devices.push(vf);
            }
        }
        devices.push(Device::new(at(0x81, 0, 0), 0x10de, 0x20b5, DevType::Pci));
        devices.push(Device::new(at(0x00, 0x1f, 3), 0x8086, 0xa1d2, DevType::Pci));
    }
    // A fixed scramble: stride through the list by a step prime to its length.
    let n = devices.len();
    let step = (1..n)
        .rev()
        .find(|s| gcd(*s, n) == 1 && *s < n / 3)
        .unwrap_or(1);
    let mut slots: Vec<Option<Device>> = devices.into_iter().map(Some).collect();
    (0..n)
        .map(|k| slots[(k * step) % n].take().unwrap())
        .collect()
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The rows of the chain's assessments of `devices`, in-process: the output before.
fn expected(config_path: &Path, devices: Vec<Device>) -> Vec<u8> {
    let config = Config::load(config_path).unwrap();
    let policies = pcitrack::policies::load(&config, None).unwrap();
    assert!(
        policies.loaded.errors.is_empty(),
        "{:?}",
        policies.loaded.errors
    );
    let rows: Vec<VerdictRow> = policies
        .loaded
        .set
        .assessments(devices)
        .iter()
        .map(VerdictRow::from)
        .collect();
    let mut text = serde_json::to_vec_pretty(&rows).unwrap();
    text.push(b'\n');
    text
}

/// `pcitrack.toml` in `dir`: the device_spec under test and a state directory inside `dir`.
fn write_config(dir: &std::path::Path) -> std::path::PathBuf {
    let config = dir.join("pcitrack.toml");
    std::fs::write(
        &config,
        format!(
            "{DEVICE_SPEC}[agent]\nstate_dir = {:?}\n",
            dir.join("state").display().to_string()
        ),
    )
    .unwrap();
    config
}

/// `pcitrack policy eval --format json --devices FILE` through the binary, with the
/// configuration `config` and the state directory inside `dir`.
fn eval_json(
    dir: &std::path::Path,
    config: &std::path::Path,
    file: &std::path::Path,
) -> std::process::Output {
    common::policy_eval_json(dir, config, file)
        .output()
        .unwrap()
}

#[test]
fn policy_eval_of_a_large_unsorted_file_writes_the_rows_of_its_assessments() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let devices = inventory(12, 6, 64);
    assert!(
        !devices.is_sorted_by_key(|d| d.address),
        "the file must be out of order"
    );
    let file = dir.path().join("devices.json");
    std::fs::write(&file, serde_json::to_vec(&devices).unwrap()).unwrap();

    let out = eval_json(dir.path(), &config, &file);
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Many times the 64 KiB buffer the rows are streamed through.
    assert!(
        out.stdout.len() > 16 * (64 << 10),
        "{} bytes",
        out.stdout.len()
    );

    let want = expected(&config, devices);
    if out.stdout != want {
        let (got, want) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&want),
        );
        let line = got
            .lines()
            .zip(want.lines())
            .position(|(g, w)| g != w)
            .unwrap_or_else(|| got.lines().count().min(want.lines().count()));
        panic!(
            "output differs from the assessments' rows at line {}: got {:?}, want {:?} \
             ({} vs {} bytes)",
            line + 1,
            got.lines().nth(line),
            want.lines().nth(line),
            got.len(),
            want.len()
        );
    }
    // Every shape of row is there: assigned with each tag set, and refused.
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let count = |f: &dyn Fn(&serde_json::Value) -> bool| rows.iter().filter(|r| f(r)).count();
    assert_eq!(rows.len(), 12 * (6 * 65 + 2));
    assert!(count(&|r| r["tags"]["trusted"] == "true") > 0);
    assert!(count(&|r| r["tags"]["trusted"] == true) > 0);
    assert!(count(&|r| r["tags"]["alpha"] == "first") > 0);
    assert!(count(&|r| r["assignable"] == false && r["reason"].is_string()) > 0);
}

/// A devices file may carry fields pcitrack does not know (another tool's notes, a label in
/// Latin-1). Before, the file was parsed as bytes and an unknown field's value was skipped
/// unread, whatever its encoding; a file with a non-UTF-8 byte there must still be read, and
/// give the rows it gave.
#[test]
fn regression_non_utf8_in_an_unknown_field_is_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let devices = inventory(1, 2, 2);
    let text = serde_json::to_string(&devices).unwrap();
    // `"note": "caf\xe9"` (Latin-1) added to the first record, before its address.
    let mut bytes = b"[{\"note\":\"caf\xe9\",".to_vec();
    bytes.extend_from_slice(&text.as_bytes()[2..]);
    let file = dir.path().join("devices.json");
    std::fs::write(&file, &bytes).unwrap();

    let out = eval_json(dir.path(), &config, &file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&expected(&config, devices))
    );
}
