//! Contract 0.1.1's device facts (`host.get-device-facts`: IOMMU group, bound driver, socket)
//! reach a vendor policy from a fake sysfs tree, through `pcitrack policy eval` and through
//! the agent; a policy built against 0.1.0 runs beside it and decides as its 0.1.1 build does.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::daemon::{Daemon, add_connectx};
use common::{example_policy, pcitrack};
use pcitrack_discovery::fixture::FakeSysfs;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);

/// Two sockets, one NUMA node each (node 0: CPUs 0-1 on package 0; node 1: CPUs 2-3 on
/// package 1), and four devices:
/// - 0000:3b:00.0: vfio-pci, IOMMU group 42, node 1 → assigned, socket 1;
/// - 0000:3b:00.1: vfio-pci, group 43 (not configured) → abstain;
/// - 0000:3c:00.0: ixgbe, group 42 (not vfio-pci) → abstain;
/// - 0000:5e:00.0: vfio-pci, group 7, no NUMA node → assigned, no socket.
fn facts_host() -> FakeSysfs {
    let tree = FakeSysfs::new();
    for (node, cpus, package) in [(0, "0-1", "0"), (1, "2-3", "1")] {
        tree.add_numa_node(node, cpus);
        for cpu in [2 * node, 2 * node + 1] {
            tree.add_cpu(cpu, package);
        }
    }
    for (address, driver, group, numa) in [
        ("0000:3b:00.0", "vfio-pci", 42, 1),
        ("0000:3b:00.1", "vfio-pci", 43, 0),
        ("0000:3c:00.0", "ixgbe", 42, 0),
        ("0000:5e:00.0", "vfio-pci", 7, -1),
    ] {
        tree.add_device(address, 0x8086, 0x10fb, 0x020000)
            .driver(driver)
            .numa(numa)
            .link(
                "iommu_group",
                &format!("../../../kernel/iommu_groups/{group}"),
            );
    }
    tree
}

const FACTS_CONFIG: &str = "[policies.vfio-groups]\niommu_groups = [42, 7]\n";

/// The verdict rows of the assignable devices: address → tags.
fn assigned(rows: &Value) -> Vec<(String, Value)> {
    rows.as_array()
        .unwrap()
        .iter()
        .filter(|r| r["assignable"] == true)
        .map(|r| {
            (
                r["address"].as_str().unwrap().to_string(),
                r["tags"].clone(),
            )
        })
        .collect()
}

fn expected_facts_verdicts() -> Vec<(String, Value)> {
    vec![
        (
            "0000:3b:00.0".into(),
            json!({"iommu_group": "42", "socket": "1"}),
        ),
        ("0000:5e:00.0".into(), json!({"iommu_group": "7"})),
    ]
}

fn policy_eval(dir: &Path, tree: &Path, policies: &Path, config: &str) -> Value {
    let conf = dir.join("pcitrack.toml");
    std::fs::write(&conf, config).unwrap();
    let out = pcitrack(
        &[
            "--config".as_ref(),
            conf.as_os_str(),
            "policy".as_ref(),
            "eval".as_ref(),
            "--sysfs-root".as_ref(),
            tree.as_os_str(),
            "--policies".as_ref(),
            policies.as_os_str(),
            "--format".as_ref(),
            "json".as_ref(),
        ],
        dir,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn policies_dir(dir: &Path, files: &[(PathBuf, &str)]) -> PathBuf {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    for (from, name) in files {
        std::fs::copy(from, policies.join(name)).unwrap();
    }
    policies
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/runtime/tests/fixtures/contract-0.1.0")
        .join(name)
}

#[test]
fn policy_eval_gives_a_policy_the_iommu_group_driver_and_socket_of_the_tree() {
    let tree = facts_host();
    let dir = tempfile::tempdir().unwrap();
    let policies = policies_dir(
        dir.path(),
        &[(
            example_policy("pcitrack-example-vfio-group-matcher"),
            "vfio-groups.wasm",
        )],
    );
    let rows = policy_eval(dir.path(), tree.root(), &policies, FACTS_CONFIG);
    assert_eq!(assigned(&rows), expected_facts_verdicts(), "{rows:#}");
    for r in rows.as_array().unwrap() {
        if r["assignable"] == true {
            assert_eq!(r["decided_by"], "vfio-groups", "{r}");
        }
    }
}

#[test]
fn a_0_1_0_matcher_gives_the_verdicts_of_its_0_1_1_build() {
    let tree = FakeSysfs::new();
    add_connectx(&tree, "0000:82:00.0", 3);
    let config = "[policies.connectx]\nphysnets = { pf0 = \"physnet1\" }\n";
    let eval = |file: PathBuf| {
        let dir = tempfile::tempdir().unwrap();
        let policies = policies_dir(dir.path(), &[(file, "connectx.wasm")]);
        policy_eval(dir.path(), tree.root(), &policies, config)
    };
    let old = eval(fixture("connectx-vf-matcher.wasm"));
    let new = eval(example_policy("pcitrack-example-connectx-matcher"));
    assert_eq!(old, new);
    assert_eq!(assigned(&old).len(), 3, "{old:#}");
}

#[test]
fn the_agent_gives_the_facts_and_runs_a_0_1_0_policy_beside_it() {
    let tree = facts_host();
    let vfs = add_connectx(&tree, "0000:82:00.0", 2);
    let mut d = Daemon::prepare(
        tree,
        &format!("{FACTS_CONFIG}[policies.connectx]\nphysnets = {{ pf0 = \"physnet1\" }}\n"),
    );
    std::fs::copy(
        example_policy("pcitrack-example-vfio-group-matcher"),
        d.policies().join("vfio-groups.wasm"),
    )
    .unwrap();
    std::fs::copy(
        fixture("connectx-vf-matcher.wasm"),
        d.policies().join("connectx.wasm"),
    )
    .unwrap();

    d.spawn();
    let mut want = expected_facts_verdicts();
    want.extend(vfs.iter().map(|vf| {
        (
            vf.clone(),
            json!({"physical_network": "physnet1", "port": "pf0"}),
        )
    }));
    want.sort_by(|a, b| a.0.cmp(&b.0));
    let ok = d.wait_for(T, |d| {
        let mut got = assigned(&d.get("/v1/verdicts"));
        got.sort_by(|a, b| a.0.cmp(&b.0));
        got == want
    });
    assert!(
        ok,
        "verdicts {:#}\npolicies {:#}\nlog:\n{}",
        d.get("/v1/verdicts"),
        d.get("/v1/policies"),
        d.log()
    );
    let chain = &d.get("/v1/policies")["chain"]["matcher"];
    assert_eq!(*chain, json!(["connectx", "vfio-groups", "matcher"]));
}
