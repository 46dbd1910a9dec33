//! The hostile-policy corpus against the running agent: each policy is dropped into the
//! policies directory of an agent holding an allocated device; each must be refused at load
//! or contained at run time, with the agent serving throughout and the database unchanged by
//! it. Prints one line per case (the README's reliability table comes from them).

use std::path::Path;
use std::time::Duration;

use pcitrack_discovery::fixture::FakeSysfs;
use serde_json::{Value, json};

mod common;
use common::daemon::{Daemon, add_connectx};
use common::{example_policy, wasi_policy};

const T: Duration = Duration::from_secs(30);

/// Misdeeds at run time: the policy loads, and every call fails.
const AT_RUN_TIME: [&str; 10] = [
    "loop",
    "memory",
    "panic",
    "unreachable",
    "recursion",
    "million-tags",
    "huge-string",
    "extra-verdicts",
    "bad-index",
    "log-flood",
];
/// Misdeeds at load: refused.
const AT_LOAD: [&str; 2] = ["refuse", "loop-init"];

fn policy(d: &Daemon, name: &str) -> Option<Value> {
    d.get("/v1/policies")["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
}

fn in_matcher_chain(d: &Daemon, name: &str) -> bool {
    d.get("/v1/policies")["chain"]["matcher"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n == name)
}

fn drop_file(d: &Daemon, from: &Path, name: &str) {
    d.drop_policy(from, name, true);
}

fn remove(d: &Daemon, file: &str, name: &str) {
    std::fs::remove_file(d.policies().join(file)).unwrap();
    assert!(
        d.wait_for(T, |d| policy(d, name).is_none()),
        "{name} never went away"
    );
}

#[test]
fn every_hostile_policy_is_refused_or_contained_and_the_database_is_untouched() {
    let sysfs = FakeSysfs::new();
    let vfs = add_connectx(&sysfs, "0000:81:00.0", 4);
    let mut config = String::from(
        "[pci]\ndevice_spec = ['{\"vendor_id\": \"15b3\", \"product_id\": \"101e\"}']\n",
    );
    for m in AT_RUN_TIME.iter().chain(&AT_LOAD).chain(&["flip"]) {
        config.push_str(&format!("[policies.hostile-{m}]\nmisdeed = \"{m}\"\n"));
    }
    let mut d = Daemon::start(sysfs, &config);
    let claim = json!({"instance": "vm-1", "spec": "{\"vendor_id\": \"15b3\"}"});
    let claimed: Value = d.client.post("/v1/claim", &claim).unwrap().json().unwrap();
    let held = claimed[0]["address"].as_str().unwrap().to_string();
    let _: Value = d
        .client
        .post("/v1/allocate", &json!({"instance": "vm-1"}))
        .unwrap()
        .json()
        .unwrap();
    let before = d.get("/v1/devices");
    let hostile = example_policy("pcitrack-test-hostile");
    let mut table: Vec<String> = Vec::new();

    for m in AT_RUN_TIME {
        let name = format!("hostile-{m}");
        drop_file(&d, &hostile, &format!("{name}.wasm"));
        assert!(
            d.wait_for(T, |d| in_matcher_chain(d, &name)),
            "{name} not loaded; log:\n{}",
            d.log()
        );
        let r = d.client.post_raw("/v1/reconcile", Vec::new()).unwrap();
        assert_eq!(
            r.status,
            200,
            "{name}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(d.get("/v1/health")["status"], "ok");
        assert_eq!(d.get("/v1/devices"), before, "{name} changed the database");
        // The default matcher decided: the broken policy had no say.
        for v in d.get("/v1/verdicts").as_array().unwrap() {
            if v["dev_type"] == "type-VF" {
                assert_eq!(v["decided_by"], "matcher", "{name}: {v}");
            }
        }
        let p = policy(&d, &name).unwrap();
        let error = p["stats"]["last_error"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: {p}"))
            .to_string();
        assert!(p["stats"]["failures"].as_u64().unwrap() >= 1, "{name}: {p}");
        table.push(format!(
            "{name}: contained at run time ({})",
            error.chars().take(90).collect::<String>()
        ));
        remove(&d, &format!("{name}.wasm"), &name);
    }

    for m in AT_LOAD {
        let name = format!("hostile-{m}");
        drop_file(&d, &hostile, &format!("{name}.wasm"));
        assert!(
            d.wait_for(T, |d| policy(d, &name)
                .is_some_and(|p| !p["refused"].is_null())),
            "{name}"
        );
        let p = policy(&d, &name).unwrap();
        assert_eq!(p["active"], false, "{name}: {p}");
        assert!(!in_matcher_chain(&d, &name));
        assert_eq!(d.get("/v1/devices"), before, "{name} changed the database");
        table.push(format!(
            "{name}: refused at load ({})",
            p["refused"]["error"]
                .as_str()
                .unwrap()
                .chars()
                .take(90)
                .collect::<String>()
        ));
        remove(&d, &format!("{name}.wasm"), &name);
    }

    // Not a policy at all: garbage, a truncated component, a core module.
    let bytes = std::fs::read(&hostile).unwrap();
    let core = hostile.with_file_name("pcitrack_test_hostile.wasm");
    let scratch = tempfile::tempdir().unwrap();
    let cases: [(&str, Vec<u8>); 4] = [
        ("garbage", b"\x7fELF this is not wasm".to_vec()),
        ("truncated", bytes[..bytes.len() / 2].to_vec()),
        ("core-module", std::fs::read(&core).unwrap()),
        // Imports WASI (filesystem, clocks, random...), beyond the contract.
        ("wasi-reader", std::fs::read(wasi_policy()).unwrap()),
    ];
    for (name, content) in cases {
        let file = scratch.path().join(name);
        std::fs::write(&file, content).unwrap();
        drop_file(&d, &file, &format!("{name}.wasm"));
        assert!(
            d.wait_for(T, |d| policy(d, name)
                .is_some_and(|p| !p["refused"].is_null())),
            "{name}"
        );
        assert_eq!(d.get("/v1/devices"), before, "{name} changed the database");
        let p = policy(&d, name).unwrap();
        table.push(format!(
            "{name}: refused at load ({})",
            p["refused"]["error"]
                .as_str()
                .unwrap()
                .chars()
                .take(90)
                .collect::<String>()
        ));
        remove(&d, &format!("{name}.wasm"), name);
    }

    // A policy that would change its answers between calls gets a fresh instance each time.
    drop_file(&d, &hostile, "hostile-flip.wasm");
    assert!(d.wait_for(T, |d| in_matcher_chain(d, "hostile-flip")));
    let _ = d.client.post_raw("/v1/reconcile", Vec::new()).unwrap();
    let first = d.get("/v1/verdicts");
    let _ = d.client.post_raw("/v1/reconcile", Vec::new()).unwrap();
    assert_eq!(
        d.get("/v1/verdicts"),
        first,
        "answers changed between calls"
    );
    table.push(
        "hostile-flip: contained (fresh instance per call: the same answers every time)".into(),
    );
    remove(&d, "hostile-flip.wasm", "hostile-flip");
    assert!(d.wait_for(T, |d| d.get("/v1/devices") == before));

    // A cleanup policy that deletes everything: the allocated device survives its removal
    // from the host; a free one that vanished is deleted.
    drop_file(
        &d,
        &example_policy("pcitrack-test-delete-everything"),
        "delete-everything.wasm",
    );
    assert!(d.wait_for(T, |d| {
        policy(d, "delete-everything").is_some_and(|p| p["active"] == true)
    }));
    let free = vfs.iter().find(|v| **v != held).unwrap().clone();
    d.sysfs.remove(&held);
    d.sysfs.remove(&free);
    d.uevent("remove", &held);
    d.uevent("remove", &free);
    assert!(
        d.wait_for(T, |d| !d.tracked().contains(&free)),
        "log:\n{}",
        d.log()
    );
    let rows = d.get("/v1/devices?instance=vm-1");
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    assert_eq!(rows[0]["address"], held.as_str());
    assert_eq!(rows[0]["status"], "allocated");
    table.push("delete-everything (cleanup): contained (the allocated device that left the host is kept; a free one is deleted)".into());

    assert!(d.alive(), "the agent died; log:\n{}", d.log());
    for line in &table {
        eprintln!("corpus: {line}");
    }
}
