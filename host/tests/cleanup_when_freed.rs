//! Issue 15: an allocated device that leaves the host is deleted by its free, through the
//! agent's own wiring (the embedded cleanup policy, the runtime's chain, the tracker's sync)
//! and through the CLI on the database file.
//!
//! The bug: Nova's cleanup rule lived in three places and "never delete a device in use" in
//! two; the runtime's copy and the guest default turned the rule's delete of a device in use
//! into an explicit keep, which the tracker obeyed, so the device was not marked to be removed
//! when freed: the free made it `available` and answered `"deleted": []`. Nova (f37cdf0c41)
//! removes it on free.

use std::path::Path;
use std::time::Duration;

use pcitrack_discovery::fixture::FakeSysfs;
use serde_json::{Value, json};

mod common;
use common::daemon::Daemon;

const T: Duration = Duration::from_secs(30);
const SPEC: &str = r#"{"vendor_id":"8086","product_id":"154c"}"#;

/// One PF (not matched by the spec) with one VF (matched).
fn host() -> (FakeSysfs, String) {
    let sysfs = FakeSysfs::new();
    let vf = sysfs
        .add_pf_with_vfs("0000:3b:00.0", 0x8086, 0x1572, 0x154c, 1)
        .remove(0);
    (sysfs, vf)
}

/// The `to_be_removed_when_freed` column of `address` in the database file.
fn to_be_removed_when_freed(db: &Path, address: &str) -> bool {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(
        "SELECT to_be_removed_when_freed FROM pci_devices WHERE address = ?1",
        [address],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn regression_allocated_device_leaving_host_is_deleted_by_its_free() {
    let (sysfs, vf) = host();
    let d = Daemon::start(sysfs, &format!("[pci]\ndevice_spec = ['{SPEC}']\n"));
    assert!(
        d.wait_for(T, |d| d.tracked() == [vf.clone()]),
        "{}",
        d.log()
    );

    let claim = json!({"instance": "vm-1", "spec": SPEC});
    let claimed: Value = d.client.post("/v1/claim", &claim).unwrap().json().unwrap();
    assert_eq!(claimed[0]["address"], vf.as_str(), "{claimed}");
    let _: Value = d
        .client
        .post("/v1/allocate", &json!({"instance": "vm-1"}))
        .unwrap()
        .json()
        .unwrap();

    // The VF leaves the host (its directory and bus link), then a reconcile.
    d.sysfs.remove(&vf);
    let r = d.client.post_raw("/v1/reconcile", Vec::new()).unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let held = d.get("/v1/devices?instance=vm-1");
    assert_eq!(held[0]["address"], vf.as_str(), "{held}");
    assert_eq!(held[0]["status"], "allocated", "kept while held: {held}");
    assert!(
        to_be_removed_when_freed(&d.db(), &vf),
        "the reconcile did not mark it; log:\n{}",
        d.log()
    );

    let freed: Value = d
        .client
        .post("/v1/free", &json!({"instance": "vm-1"}))
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(freed["deleted"], json!([vf]), "{freed}");
    assert!(d.tracked().is_empty(), "{}", d.get("/v1/devices"));
}

/// The same steps through the CLI working on the database file (`sync`, `claim`,
/// `allocate`, `free` with `--db`).
#[test]
fn regression_allocated_device_leaving_host_is_deleted_by_its_free_through_the_cli() {
    let (sysfs, vf) = host();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pcitrack.toml");
    std::fs::write(&config, format!("[pci]\ndevice_spec = ['{SPEC}']\n")).unwrap();
    let db = dir.path().join("pcitrack.db");
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let run = |args: &[&str]| -> Value {
        let out = common::command(&dir.path().join("state"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .arg("--db")
            .arg(&db)
            .args(["--format", "json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let root = sysfs.root().to_str().unwrap().to_string();
    let sync = [
        "sync",
        "--sysfs-root",
        &root,
        "--policies",
        policies.to_str().unwrap(),
    ];

    assert_eq!(run(&sync)["added"], json!([vf]));
    run(&["claim", "--instance", "vm-1", "--spec", SPEC]);
    run(&["allocate", "--instance", "vm-1"]);
    sysfs.remove(&vf);
    let report = run(&sync);
    assert_eq!(report["deleted"], json!([]), "{report}");
    assert_eq!(report["kept"], json!([]), "{report}");
    assert_eq!(
        report["deferred"],
        json!([[vf, "RemoveWhenFreed"]]),
        "{report}"
    );
    assert!(to_be_removed_when_freed(&db, &vf));

    let freed = run(&["free", "--instance", "vm-1"]);
    assert_eq!(freed["deleted"], json!([vf]), "{freed}");
    assert_eq!(run(&["devices"]), json!([]));
}
