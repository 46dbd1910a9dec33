//! Issue 12: `one_time_use` through the running agent. With `[pci] report_in_placement` on,
//! a one-time-use PF that has been allocated and freed does not return to the pools: it is
//! reserved (in `devices`, `pools` and the metrics), cannot be claimed, stays reserved across
//! a restart and when the host stops reporting it, and returns to the pools when an operator
//! releases it (`pcitrack release ADDRESS` or `POST /v1/release`).

use std::time::Duration;

use pcitrack_discovery::fixture::FakeSysfs;
use serde_json::{Value, json};

mod common;
use common::daemon::Daemon;

const T: Duration = Duration::from_secs(30);
const PF: &str = "0000:3b:00.0";
const GPU: &str = "0000:5e:00.0";
const PF_CLAIM: &str = r#"{"vendor_id":"8086","product_id":"1572","dev_type":"type-PF"}"#;

/// A PF with two VFs, and a GPU; the PF and the GPU are one-time-use, the VFs say
/// `one_time_use` too, which Nova allows on PCI and PF devices only.
fn start() -> (Daemon, Vec<String>) {
    let sysfs = FakeSysfs::new();
    let vfs = sysfs.add_pf_with_vfs(PF, 0x8086, 0x1572, 0x154c, 2);
    sysfs.add_device(GPU, 0x10de, 0x1eb8, 0x030000);
    let config = r#"
[pci]
report_in_placement = true
device_spec = ['{"vendor_id": "8086", "product_id": "1572", "one_time_use": "true"}',
               '{"vendor_id": "8086", "product_id": "154c", "one_time_use": "false"}',
               '{"vendor_id": "10de", "one_time_use": true, "resource_class": "gpu"}']

# report_in_placement needs a Placement to report to; none answers here (reporting fails in
# the background, the agent serves locally all the same).
[placement]
auth_type = "admin_token"
token = "admin"
endpoint_override = "http://127.0.0.1:9"
"#;
    let d = Daemon::start(sysfs, config);
    assert!(
        d.wait_for(T, |d| d.tracked() == [PF.to_string(), GPU.to_string()]),
        "{}\n{}",
        d.get("/v1/devices"),
        d.log()
    );
    (d, vfs)
}

fn post(d: &Daemon, path: &str, body: &Value) -> (u16, Value) {
    let r = d.client.post(path, body).unwrap();
    let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status, v)
}

fn use_once(d: &Daemon, instance: &str, spec: &str) -> String {
    let (s, claimed) = post(d, "/v1/claim", &json!({"instance": instance, "spec": spec}));
    assert_eq!(s, 200, "{claimed}");
    let (s, v) = post(d, "/v1/allocate", &json!({"instance": instance}));
    assert_eq!(s, 200, "{v}");
    let (s, v) = post(d, "/v1/free", &json!({"instance": instance}));
    assert_eq!(s, 200, "{v}");
    claimed[0]["address"].as_str().unwrap().to_string()
}

fn device(d: &Daemon, address: &str) -> Value {
    d.get("/v1/devices")
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == address)
        .cloned()
        .unwrap_or(Value::Null)
}

fn reserved_metric(d: &Daemon) -> String {
    let r = d.client.get("/metrics").unwrap();
    String::from_utf8_lossy(&r.body)
        .lines()
        .find(|l| l.starts_with("pcitrack_devices_reserved "))
        .unwrap_or("")
        .to_string()
}

#[test]
fn a_used_one_time_use_pf_is_reserved_until_released() {
    let (mut d, vfs) = start();
    // The VFs' spec sets one_time_use: refused for them, with Nova's message.
    let verdicts = d.get("/v1/verdicts");
    let vf = verdicts
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["address"] == vfs[0].as_str())
        .unwrap();
    assert_eq!(vf["assignable"], false, "{vf}");
    assert_eq!(
        vf["reason"],
        format!(
            "Only type-PCI and type-PF devices may set one_time_use and {} does not qualify",
            vfs[0]
        ),
        "{vf}"
    );

    assert_eq!(use_once(&d, "vm-1", PF_CLAIM), PF);
    let pf = device(&d, PF);
    assert_eq!(pf["status"], "available", "{pf}");
    assert_eq!(pf["reserved"], true, "{pf}");
    let pools = d.get("/v1/pools");
    let row = pools
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["key"]["dev_type"] == "type-PF")
        .cloned()
        .unwrap_or_else(|| panic!("no PF row in {pools}"));
    assert_eq!(
        (row["count"].clone(), row["reserved"].clone()),
        (json!(0), json!(1)),
        "{pools}"
    );
    assert_eq!(reserved_metric(&d), "pcitrack_devices_reserved 1");
    let (s, v) = post(
        &d,
        "/v1/claim",
        &json!({"instance": "vm-2", "spec": PF_CLAIM}),
    );
    assert_eq!(s, 409, "a reserved PF was handed out again: {v}");

    // A restart keeps the reservation.
    d.kill();
    d.spawn();
    assert_eq!(device(&d, PF)["reserved"], true, "{}", d.log());
    let (s, v) = post(
        &d,
        "/v1/claim",
        &json!({"instance": "vm-2", "spec": PF_CLAIM}),
    );
    assert_eq!(s, 409, "{v}");

    // Release through the CLI (which asks the agent).
    let out = common::command(&d.dir.path().join("state"))
        .arg("--config")
        .arg(d.config_path())
        .args(["release", PF, "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let released: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(released["reserved"], false, "{released}");
    assert_eq!(reserved_metric(&d), "pcitrack_devices_reserved 0");

    // Claimable again; used again, reserved again; released through the API.
    assert_eq!(use_once(&d, "vm-2", PF_CLAIM), PF);
    assert_eq!(device(&d, PF)["reserved"], true);
    let (s, v) = post(&d, "/v1/release", &json!({"address": PF}));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["reserved"], false, "{v}");
    let (s, v) = post(
        &d,
        "/v1/claim",
        &json!({"instance": "vm-3", "spec": PF_CLAIM}),
    );
    assert_eq!(s, 200, "{v}");

    // Clear refusals: not reserved, unknown, malformed.
    let (s, v) = post(&d, "/v1/release", &json!({"address": GPU}));
    assert_eq!(s, 409, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains(&format!("PCI device {GPU} is not reserved")),
        "{v}"
    );
    let (s, v) = post(&d, "/v1/release", &json!({"address": "0000:99:00.0"}));
    assert_eq!(s, 404, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("0000:99:00.0 is not tracked"),
        "{v}"
    );
    let (s, v) = post(&d, "/v1/release", &json!({"address": "nonsense"}));
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("nonsense"), "{v}");
    // A claimed PF is not reserved yet (pcitrack reserves on allocation).
    let (s, v) = post(&d, "/v1/release", &json!({"address": PF}));
    assert_eq!(s, 409, "{v}");
}

#[test]
fn a_reserved_device_the_host_stops_reporting_is_kept() {
    let (d, _) = start();
    let gpu = r#"{"vendor_id":"10de"}"#;
    assert_eq!(use_once(&d, "vm-1", gpu), GPU);
    assert_eq!(device(&d, GPU)["reserved"], true);
    d.sysfs.remove(GPU);
    let r = d.client.post_raw("/v1/reconcile", Vec::new()).unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // Nova's cleanup rule would delete an unowned available device; a reserved one stays.
    let kept = device(&d, GPU);
    assert_eq!(kept["reserved"], true, "{kept}\n{}", d.log());
    assert!(
        d.log()
            .contains("reserved one-time-use device: kept until released"),
        "{}",
        d.log()
    );
    // Released, the next reconcile applies the cleanup rule.
    let (s, v) = post(&d, "/v1/release", &json!({"address": GPU}));
    assert_eq!(s, 200, "{v}");
    let r = d.client.post_raw("/v1/reconcile", Vec::new()).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(device(&d, GPU), Value::Null, "{}", d.get("/v1/devices"));
}
