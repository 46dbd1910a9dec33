//! The field bug that started pcitrack, end to end through the CLI and the database file,
//! and swapping the cleanup rule by dropping a policy file, with no rebuild.
//!
//! Nova, 2022: after a hardware failure a PF stood `available` while its VFs stayed
//! `unavailable`; claiming the PF failed half-way ("Attempt to consume PCI device … from empty
//! pool") and start-up cleanup only deleted unreported devices in `available` state.

use std::path::PathBuf;
use std::process::Output;

use serde_json::{Value, json};

mod common;
use common::example_policy;

struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new(device_spec: &str) -> Host {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("policies")).unwrap();
        std::fs::write(
            dir.path().join("pcitrack.toml"),
            format!("[pci]\ndevice_spec = ['{device_spec}']\n[policies.grace-cleanup]\nmissing_syncs = 2\n"),
        )
        .unwrap();
        Host { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes the devices the host reports: a PF and its VFs.
    fn report(&self, vfs: &[&str]) {
        let mut devices = vec![
            json!({"address": "0000:81:00.0", "vendor_id": "15b3", "product_id": "101d",
            "class_code": "020000", "dev_type": "type-PF", "sriov_totalvfs": 2, "sriov_vf_device": "101e"}),
        ];
        for vf in vfs {
            devices.push(json!({"address": vf, "vendor_id": "15b3", "product_id": "101e", "class_code": "020000",
                "dev_type": "type-VF", "parent_addr": "0000:81:00.0"}));
        }
        std::fs::write(self.path("devices.json"), Value::Array(devices).to_string()).unwrap();
    }

    fn run(&self, args: &[&str]) -> Output {
        let config = self.path("pcitrack.toml");
        let db = self.path("pcitrack.db");
        let mut cmd = common::command(&self.path("state"));
        cmd.arg("--config").arg(&config).args(args);
        if args[0] != "policy" {
            cmd.arg("--db").arg(&db);
        }
        cmd.output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    fn sync(&self) -> Value {
        let devices = self.path("devices.json");
        let policies = self.path("policies");
        self.ok(&[
            "sync",
            "--devices",
            devices.to_str().unwrap(),
            "--policies",
            policies.to_str().unwrap(),
            "--format",
            "json",
        ])
    }

    fn statuses(&self) -> Vec<(String, String)> {
        let v = self.ok(&["devices", "--format", "json"]);
        v.as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["address"].as_str().unwrap().to_string(),
                    d["status"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// The PF allocated to `vm-1`, its VFs unavailable.
    fn allocate_pf(&self) {
        self.ok(&[
            "claim",
            "--instance",
            "vm-1",
            "--spec",
            r#"{"vendor_id": "15b3", "product_id": "101d", "dev_type": "type-PF"}"#,
            "--format",
            "json",
        ]);
        self.ok(&["allocate", "--instance", "vm-1", "--format", "json"]);
        assert_eq!(
            self.statuses(),
            vec![
                ("0000:81:00.0".into(), "allocated".into()),
                ("0000:81:00.1".into(), "unavailable".into()),
                ("0000:81:00.2".into(), "unavailable".into()),
            ]
        );
    }

    fn pool_count(&self) -> u64 {
        let v = self.ok(&["pools", "--format", "json"]);
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| p["count"].as_u64().unwrap())
            .sum()
    }
}

const SPEC: &str = r#"{"vendor_id": "15b3"}"#;

#[test]
fn regression_seed_field_bug_pf_swap_then_vfs_vanish() {
    let host = Host::new(SPEC);
    host.report(&["0000:81:00.1", "0000:81:00.2"]);
    assert_eq!(host.sync()["added"].as_array().unwrap().len(), 3);
    host.allocate_pf();

    // The hardware swap: the PF is set back to available in the database, its VFs stay
    // unavailable with no owner.
    let conn = rusqlite::Connection::open(host.path("pcitrack.db")).unwrap();
    conn.execute(
        "UPDATE pci_devices SET status = 'available', instance_uuid = NULL, request_id = NULL WHERE address = '0000:81:00.0'",
        [],
    )
    .unwrap();
    drop(conn);

    // A claim of the PF leaves a consistent state whatever it decides: either the PF is
    // claimed and its VFs unclaimable, or nothing changed.
    let before = host.statuses();
    let claim = host.run(&[
        "claim",
        "--instance",
        "vm-2",
        "--spec",
        r#"{"vendor_id": "15b3", "product_id": "101d", "dev_type": "type-PF"}"#,
    ]);
    let after = host.statuses();
    if claim.status.success() {
        assert_eq!(
            after[0],
            ("0000:81:00.0".to_string(), "claimed".to_string())
        );
        assert!(
            after[1..].iter().all(|(_, s)| s == "unclaimable"),
            "{after:?}"
        );
        host.ok(&["free", "--instance", "vm-2", "--format", "json"]);
    } else {
        assert_eq!(before, after, "a refused claim changes nothing");
    }
    // Pools are exactly the free devices, whatever happened.
    let now = host.statuses();
    assert_eq!(
        host.pool_count(),
        now.iter().filter(|(_, s)| s == "available").count() as u64,
        "{now:?}"
    );

    // The VFs vanish from the host; one sync deletes them.
    host.report(&[]);
    let report = host.sync();
    let mut deleted: Vec<&str> = report["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    deleted.sort();
    assert_eq!(deleted, ["0000:81:00.1", "0000:81:00.2"], "{report}");

    // And the PF can be claimed.
    let claimed = host.ok(&[
        "claim",
        "--instance",
        "vm-3",
        "--spec",
        r#"{"vendor_id": "15b3", "product_id": "101d", "dev_type": "type-PF"}"#,
        "--format",
        "json",
    ]);
    assert_eq!(claimed[0]["address"], "0000:81:00.0");
}

/// The seed commit's own case: a PF allocated, its VFs unavailable, then the VFs vanish.
fn seed_commit_case(policy: Option<&str>) -> Value {
    let host = Host::new(SPEC);
    if let Some(p) = policy {
        std::fs::copy(
            example_policy(p),
            host.path("policies").join(format!("{p}.wasm")),
        )
        .unwrap();
    }
    host.report(&["0000:81:00.1", "0000:81:00.2"]);
    host.sync();
    host.allocate_pf();
    host.report(&[]);
    host.sync()
}

#[test]
fn swapping_the_cleanup_policy_changes_what_sync_deletes_with_no_rebuild() {
    let default = seed_commit_case(None);
    assert_eq!(
        default["deleted"].as_array().unwrap().len(),
        2,
        "the default deletes the VFs: {default}"
    );

    let old = seed_commit_case(Some("pcitrack-example-pre-2022-cleanup"));
    assert!(old["deleted"].as_array().unwrap().is_empty(), "{old}");
    let kept: Vec<&str> = old["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k[1].as_str().unwrap())
        .collect();
    assert_eq!(kept.len(), 2, "{old}");
    assert!(
        kept.iter()
            .all(|r| r.contains("unavailable devices are kept")),
        "{kept:?}"
    );
}

#[test]
fn the_grace_period_policy_deletes_on_the_nth_missing_sync() {
    let host = Host::new(SPEC);
    std::fs::copy(
        example_policy("pcitrack-example-grace-cleanup"),
        host.path("policies/grace-cleanup.wasm"),
    )
    .unwrap();
    host.report(&["0000:81:00.1", "0000:81:00.2"]);
    host.sync();
    host.report(&["0000:81:00.1"]);
    let first = host.sync();
    assert!(first["deleted"].as_array().unwrap().is_empty(), "{first}");
    assert!(
        first["kept"][0][1]
            .as_str()
            .unwrap()
            .contains("missing for 1 of 2 syncs"),
        "{first}"
    );
    let second = host.sync();
    assert_eq!(second["deleted"], json!(["0000:81:00.2"]), "{second}");
}

#[test]
fn a_refused_claim_exits_non_zero_and_leaves_the_database_file_unchanged() {
    let host = Host::new(SPEC);
    host.report(&["0000:81:00.1"]);
    host.sync();
    host.ok(&[
        "claim",
        "--instance",
        "vm-1",
        "--spec",
        r#"{"product_id": "101e"}"#,
        "--format",
        "json",
    ]);
    // Fold the WAL into the file so that the bytes compared are the whole database.
    let conn = rusqlite::Connection::open(host.path("pcitrack.db")).unwrap();
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    drop(conn);
    let before = std::fs::read(host.path("pcitrack.db")).unwrap();
    let out = host.run(&[
        "claim",
        "--instance",
        "vm-2",
        "--spec",
        r#"{"product_id": "101e"}"#,
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("vm-2") && stderr.contains("refused"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(host.path("pcitrack.db")).unwrap(), before);
}
