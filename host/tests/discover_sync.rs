//! `pcitrack discover` and `pcitrack sync` on a fake sysfs tree, through the binary.

mod common;
use common::pcitrack;

use pcitrack_discovery::fixture::FakeSysfs;

#[test]
fn discover_prints_every_device_and_names_the_broken_one() {
    let t = FakeSysfs::new();
    t.add_pf_with_vfs("0000:3b:00.0", 0x8086, 0x1572, 0x154c, 3);
    t.add_broken("0000:99:00.0", &[]);
    let state = tempfile::tempdir().unwrap();
    let root = t.root().to_str().unwrap();
    let out = pcitrack(
        &["discover", "--sysfs-root", root, "--format", "json"],
        state.path(),
    );
    assert!(
        out.status.success(),
        "one bad device does not fail the command"
    );
    let devices: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let types: Vec<&str> = devices
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["dev_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["type-PF", "type-VF", "type-VF", "type-VF"]);
    assert_eq!(devices[2]["parent_addr"], "0000:3b:00.0");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("skipped 0000:99:00.0: vendor id missing or malformed"),
        "{stderr}"
    );
    let table = pcitrack(&["discover", "--sysfs-root", root], state.path());
    assert!(
        String::from_utf8_lossy(&table.stdout).contains("4 devices: 1 PF, 3 VF, 0 PCI; 1 skipped")
    );
}

#[test]
fn sync_tracks_assignable_devices_and_deletes_vfs_that_vanish() {
    let t = FakeSysfs::new();
    let vfs = t.add_pf_with_vfs("0000:3b:00.0", 0x8086, 0x1572, 0x154c, 2);
    let state = tempfile::tempdir().unwrap();
    let config = state.path().join("pcitrack.toml");
    std::fs::write(
        &config,
        "[pci]\ndevice_spec = ['{\"vendor_id\": \"8086\", \"product_id\": \"154c\", \"physical_network\": \"physnet1\"}']\n",
    )
    .unwrap();
    let db = state.path().join("t.db");
    let args = |extra: &[&'static str]| -> Vec<String> {
        let mut v: Vec<String> = vec![
            "--config".into(),
            config.display().to_string(),
            "sync".into(),
        ];
        v.extend([
            "--sysfs-root".into(),
            t.root().display().to_string(),
            "--db".into(),
            db.display().to_string(),
        ]);
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let run = |extra: &[&'static str]| {
        let a = args(extra);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let out = pcitrack(&a, state.path());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let first = run(&["--format", "json"]);
    assert_eq!(first["added"].as_array().unwrap().len(), 2, "{first}");
    let again = run(&["--format", "json"]);
    assert!(
        again["added"].as_array().unwrap().is_empty()
            && again["deleted"].as_array().unwrap().is_empty()
    );
    t.remove(&vfs[1]);
    let after = run(&["--format", "json"]);
    assert_eq!(after["deleted"], serde_json::json!([vfs[1]]), "{after}");
}

/// A device_spec tag given as a JSON boolean keeps its type in every output an operator
/// reads (`policy eval`, `devices`, `pools`), and the contract's carried form (U+0001 and
/// JSON text) never leaks into them.
#[test]
fn regression_typed_tags_print_typed_in_eval_devices_and_pools() {
    let t = FakeSysfs::new();
    let vfs = t.add_pf_with_vfs("0000:3b:00.0", 0x8086, 0x1572, 0x154c, 1);
    let state = tempfile::tempdir().unwrap();
    let config = state.path().join("pcitrack.toml");
    std::fs::write(
        &config,
        "[pci]\ndevice_spec = ['{\"vendor_id\": \"8086\", \"product_id\": \"154c\", \"trusted\": true, \"physical_network\": \"physnet1\"}']\n",
    )
    .unwrap();
    let db = state.path().join("t.db");
    let root = t.root().to_str().unwrap();
    let cfg = config.to_str().unwrap();
    let dbs = db.to_str().unwrap();
    let run = |args: &[&str]| -> serde_json::Value {
        let out = pcitrack(args, state.path());
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !out.stdout.contains(&1u8),
            "{args:?} printed the carried marker: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let eval = run(&[
        "--config",
        cfg,
        "policy",
        "eval",
        "--sysfs-root",
        root,
        "--format",
        "json",
    ]);
    let vf = eval
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == vfs[0].as_str())
        .expect("the VF is evaluated");
    assert_eq!(vf["tags"]["trusted"], serde_json::Value::Bool(true), "{vf}");
    assert_eq!(vf["tags"]["physical_network"], "physnet1", "{vf}");
    run(&[
        "--config",
        cfg,
        "sync",
        "--sysfs-root",
        root,
        "--db",
        dbs,
        "--format",
        "json",
    ]);
    let devices = run(&["--config", cfg, "devices", "--db", dbs, "--format", "json"]);
    assert_eq!(
        devices[0]["tags"]["trusted"],
        serde_json::Value::Bool(true),
        "{devices}"
    );
    let pools = run(&["--config", cfg, "pools", "--db", dbs, "--format", "json"]);
    assert!(pools.to_string().contains("\"trusted\":true"), "{pools}");
}

/// Issue 12, through the binary: a switchdev PF (`net/` holding the uplink `eth_rail1`, `p0`,
/// and the representor `eth1`, `pf0vf0`) is reported with its uplink by `discover`, and its
/// VFs' `parent_ifname` pool key after `sync` is the uplink (it was the representor); a VF
/// with a vDPA device is `vdpa`, and a malformed vDPA entry is named on stderr.
#[test]
fn regression_switchdev_representor_taken_as_pf_interface_in_discover_and_pools() {
    let t = FakeSysfs::new();
    let vfs = t.add_pf_with_vfs("0000:81:00.0", 0x15b3, 0x101d, 0x101e, 2);
    t.add_device("0000:81:00.0", 0x15b3, 0x101d, 0x020000)
        .driver("mlx5_core")
        .net("eth1", "aa:bb:cc:00:00:10", Some("pf0vf0"))
        .net("eth_rail1", "0c:42:a1:00:00:01", Some("p0"));
    for (i, vf) in vfs.iter().enumerate() {
        let d = t.add_device(vf, 0x15b3, 0x101e, 0x020000);
        d.link("physfn", "../0000:81:00.0").driver("mlx5_core").net(
            &format!("ens1f0v{i}"),
            &format!("0c:42:a1:00:01:0{i}"),
            None,
        );
        if i == 1 {
            d.vdpa("vdpa0");
        }
    }
    std::fs::write(t.root().join("bus/vdpa/devices/vdpa5"), "not a link\n").unwrap();
    let state = tempfile::tempdir().unwrap();
    let root = t.root().to_str().unwrap();
    let out = pcitrack(
        &["discover", "--sysfs-root", root, "--format", "json"],
        state.path(),
    );
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("skipped vdpa5: vDPA bus entry is not a readable link"),
        "{stderr}"
    );
    let devices: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pf = &devices[0];
    assert_eq!(
        (&pf["ifname"], &pf["mac_address"]),
        (
            &serde_json::json!("eth_rail1"),
            &serde_json::json!("0c:42:a1:00:00:01")
        ),
        "{pf}"
    );
    assert_eq!(devices[1]["dev_type"], "type-VF");
    assert_eq!(devices[2]["dev_type"], "vdpa");
    assert_eq!(devices[2]["parent_addr"], "0000:81:00.0");

    let config = state.path().join("pcitrack.toml");
    std::fs::write(
        &config,
        "[pci]\ndevice_spec = ['{\"vendor_id\": \"15b3\", \"product_id\": \"101e\", \"physical_network\": \"physnet1\"}']\n",
    )
    .unwrap();
    let (cfg, db) = (config.to_str().unwrap(), state.path().join("t.db"));
    let db = db.to_str().unwrap();
    let run = |args: &[&str]| -> serde_json::Value {
        let out = pcitrack(args, state.path());
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    run(&[
        "--config",
        cfg,
        "sync",
        "--sysfs-root",
        root,
        "--db",
        db,
        "--format",
        "json",
    ]);
    let pools = run(&["--config", cfg, "pools", "--db", db, "--format", "json"]);
    let text = pools.to_string();
    assert_eq!(
        text.matches("\"parent_ifname\":\"eth_rail1\"").count(),
        2,
        "the VF's and the vDPA device's pools: {pools}"
    );
    assert!(!text.contains("\"parent_ifname\":\"eth1\""), "{pools}");
    assert!(text.contains("\"dev_type\":\"vdpa\""), "{pools}");
}
