//! Claims as Nova makes them, through the running agent (`/v1/claim`) and the CLI: several
//! aliases in one claim (a flavor's `pci_passthrough:alias`), all or nothing; the instance's
//! NUMA context, with the `socket` policy reading the fake tree's two sockets; and the answer
//! a consumer attaches the devices with.
//!
//! The host: NUMA nodes 0 and 1 on socket 0, 2 and 3 on socket 1; an Intel PF with two VFs
//! on each of nodes 0, 1 and 2 (VFs bound to vfio-pci, in IOMMU groups, with netdevs behind
//! the PF's `ens<bus>f0`), and a ConnectX NIC without NUMA information that the device_spec
//! marks `managed: no`.

use std::time::Duration;

use pcitrack::ops::ClaimRequest;
use pcitrack_discovery::fixture::FakeSysfs;
use pcitrack_tracker::NumaPolicy;
use serde_json::{Value, json};

mod common;
use common::daemon::Daemon;

const T: Duration = Duration::from_secs(30);

const CONFIG: &str = r#"[pci]
device_spec = ['{"vendor_id": "8086", "product_id": "154c", "physical_network": "physnet1"}',
               '{"vendor_id": "15b3", "product_id": "1018", "managed": "no"}']
alias = ['{"name": "vf", "vendor_id": "8086", "product_id": "154c", "device_type": "type-VF", "numa_policy": "required"}',
         '{"name": "nic", "vendor_id": "15b3", "product_id": "1018"}']
"#;

/// The host; with `sockets`, its NUMA nodes and CPUs (else a kernel without NUMA in sysfs).
fn host(sockets: bool) -> FakeSysfs {
    let sysfs = FakeSysfs::new();
    for (bus, node) in [(0x10u8, 0i32), (0x20, 1), (0x30, 2)] {
        let pf = format!("0000:{bus:02x}:00.0");
        let vfs = sysfs.add_pf_with_vfs(&pf, 0x8086, 0x1572, 0x154c, 2);
        sysfs
            .add_device(&pf, 0x8086, 0x1572, 0x020000)
            .numa(node)
            .driver("i40e")
            .net(&format!("ens{bus:x}f0"), "02:00:00:00:01:00", None);
        for (k, vf) in vfs.iter().enumerate() {
            sysfs
                .add_device(vf, 0x8086, 0x154c, 0x020000)
                .numa(node)
                .driver("vfio-pci")
                .link(
                    "iommu_group",
                    &format!("../../../kernel/iommu_groups/{bus}{k}"),
                )
                .net(
                    &format!("ens{bus:x}f0v{k}"),
                    &format!("02:00:00:00:{bus:02x}:{k:02x}"),
                    None,
                );
        }
    }
    sysfs
        .add_device("0000:40:00.0", 0x15b3, 0x1018, 0x020000)
        .driver("mlx5_core");
    if sockets {
        for (node, cpus, socket) in [
            (0, [0, 1], "0"),
            (1, [2, 3], "0"),
            (2, [4, 5], "1"),
            (3, [6, 7], "1"),
        ] {
            sysfs.add_numa_node(node, &format!("{}-{}", cpus[0], cpus[1]));
            for cpu in cpus {
                sysfs.add_cpu(cpu, socket);
            }
        }
    }
    sysfs
}

fn start(sockets: bool) -> Daemon {
    let d = Daemon::start(host(sockets), CONFIG);
    assert!(d.wait_for(T, |d| d.tracked().len() == 7), "{}", d.log());
    d
}

/// POSTs a claim; the status and the body.
fn claim(d: &Daemon, body: Value) -> (u16, Value) {
    let r = d.client.post("/v1/claim", &body).unwrap();
    (r.status, serde_json::from_slice(&r.body).unwrap())
}

fn nodes(answer: &Value) -> Vec<Value> {
    let mut n: Vec<Value> = answer
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["numa_node"].clone())
        .collect();
    n.sort_by_key(|v| v.as_i64());
    n
}

#[test]
fn a_claim_of_several_aliases_is_all_or_nothing_and_answers_what_to_attach() {
    let d = start(true);
    let (status, answer) = claim(
        &d,
        json!({"instance": "vm-1", "alias": "vf:2, nic:1", "numa_cells": [1]}),
    );
    assert_eq!(status, 200, "{answer}");
    let devices = answer.as_array().unwrap();
    assert_eq!(devices.len(), 3, "{answer}");
    // vf's `required` keeps both VFs on node 1; nic (legacy) takes the NIC without NUMA.
    assert_eq!(
        nodes(&answer),
        [json!(null), json!(1), json!(1)],
        "{answer}"
    );
    let vf = devices
        .iter()
        .find(|d| d["address"] == "0000:21:00.1")
        .unwrap();
    assert_eq!(vf["dev_type"], "type-VF");
    assert_eq!(vf["vendor_id"], "8086");
    assert_eq!(vf["product_id"], "154c");
    assert_eq!(vf["parent_addr"], "0000:20:00.0");
    assert_eq!(vf["iommu_group"], 321);
    assert_eq!(vf["driver"], "vfio-pci");
    assert_eq!(vf["managed"], "true", "no managed tag: Nova assumes true");
    assert_eq!(vf["parent_ifname"], "ens20f0");
    assert_eq!(vf["vf_index"], 1);
    assert_eq!(vf["tags"]["physical_network"], "physnet1");
    assert_eq!(vf["alias_name"], "vf");
    let nic = devices
        .iter()
        .find(|d| d["address"] == "0000:40:00.0")
        .unwrap();
    assert_eq!(nic["managed"], "false", "{nic}");
    assert_eq!(nic["vendor_id"], "15b3");
    // One generated request id per request, shared by its devices.
    let ids: Vec<&str> = devices
        .iter()
        .map(|d| d["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids[0], ids[1], "{answer}");
    assert_ne!(ids[0], ids[2], "{answer}");
    assert!(ids.iter().all(|id| id.len() == 36), "{ids:?}");
    let held = d.get("/v1/devices?instance=vm-1");
    assert_eq!(held.as_array().unwrap().len(), 3, "{held}");

    // The NIC is gone: a claim that also wants it gets nothing, not the VF it could have.
    let before = d.get("/v1/devices");
    let (status, refused) = claim(&d, json!({"instance": "vm-2", "alias": "vf:1,nic:1"}));
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("#1"),
        "{refused}"
    );
    assert_eq!(
        d.get("/v1/devices"),
        before,
        "a refused claim changed the database"
    );

    // Several requests with the client's ids, through the client.
    let req = ClaimRequest {
        instance: "vm-3".into(),
        requests: serde_json::from_value(json!([
            {"alias": "vf", "count": 1, "request_id": "port-1"},
            {"spec": {"vendor_id": "8086", "product_id": "154c"}, "request_id": "port-2"}
        ]))
        .unwrap(),
        numa_cells: vec![2],
        numa_policy: Some(NumaPolicy::Required),
        ..ClaimRequest::default()
    };
    let claimed = d.client.claim(&req).unwrap();
    let ids: Vec<_> = claimed
        .iter()
        .map(|c| c.request_id.as_deref().unwrap())
        .collect();
    assert_eq!(ids, ["port-1", "port-2"]);
    assert!(
        claimed.iter().all(|c| c.numa_node == Some(2)),
        "{claimed:?}"
    );
}

#[test]
fn socket_policy_reads_the_trees_sockets_through_the_agent_and_the_cli() {
    let mut d = start(true);
    // Two VFs on node 0, then the other node of socket 0 (node 1), never socket 1's node 2.
    let (status, answer) = claim(
        &d,
        json!({"instance": "vm-1", "alias": "vf:3", "numa_cells": [0], "numa_policy": "socket"}),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(nodes(&answer), [json!(0), json!(0), json!(1)], "{answer}");
    // Socket 1 (nodes 2 and 3) has only node 2's two VFs.
    let (status, refused) = claim(
        &d,
        json!({"instance": "vm-2", "alias": "vf:3", "numa_cells": [3], "numa_policy": "socket"}),
    );
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("NUMA affinity (socket)"),
        "{refused}"
    );

    // The CLI asks the agent...
    let out = common::command(&d.dir.path().join("state"))
        .arg("--config")
        .arg(d.config_path())
        .args([
            "claim",
            "--instance",
            "vm-3",
            "--alias",
            "vf:1",
            "--numa-cells",
            "2",
        ])
        .args(["--numa-policy", "socket", "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(nodes(&answer), [json!(2)], "{answer}");
    assert_eq!(answer[0]["vendor_id"], "8086", "{answer}");

    // ... and, with no agent, works on the database, reading the sockets itself.
    d.kill();
    let out = common::command(&d.dir.path().join("state"))
        .arg("--config")
        .arg(d.config_path())
        .args([
            "claim",
            "--instance",
            "vm-4",
            "--alias",
            "vf:2",
            "--numa-cells",
            "3",
        ])
        .args(["--numa-policy", "socket", "--format", "json"])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "socket 1 has one VF left: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = common::command(&d.dir.path().join("state"))
        .arg("--config")
        .arg(d.config_path())
        .args([
            "claim",
            "--instance",
            "vm-4",
            "--alias",
            "vf:1",
            "--numa-cells",
            "3",
        ])
        .args(["--numa-policy", "socket", "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(nodes(&answer), [json!(2)], "{answer}");
}

#[test]
fn regression_claim_numa_context_honours_required() {
    let d = start(true);
    // Was 422: the API knew no NUMA context, so `required` could not be asked for.
    let (status, refused) = claim(
        &d,
        json!({"instance": "vm-1", "spec": {"vendor_id": "8086", "product_id": "154c"},
               "count": 3, "numa_cells": [2], "numa_policy": "required"}),
    );
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("NUMA affinity (required)"),
        "{refused}"
    );
    let (status, answer) = claim(
        &d,
        json!({"instance": "vm-1", "spec": "{\"vendor_id\": \"8086\", \"product_id\": \"154c\"}",
               "count": 2, "numa_cells": [2], "numa_policy": "required"}),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(nodes(&answer), [json!(2), json!(2)], "{answer}");
}

#[test]
fn regression_socket_policy_without_socket_topology_fails_clearly() {
    let d = start(false);
    let (status, refused) = claim(
        &d,
        json!({"instance": "vm-1", "alias": "vf:3", "numa_cells": [0], "numa_policy": "socket"}),
    );
    assert_eq!(status, 409, "{refused}");
    let error = refused["error"].as_str().unwrap();
    assert!(error.contains("socket topology is unknown"), "{error}");
    // The claim's own shape errors are 400s naming the problem.
    let (status, bad) = claim(&d, json!({"instance": "vm-1", "alias": "vf:1", "count": 2}));
    assert_eq!(status, 400, "{bad}");
    assert!(
        bad["error"].as_str().unwrap().contains("own counts"),
        "{bad}"
    );
    let (status, bad) = claim(
        &d,
        json!({"instance": "vm-1", "alias": "vf", "numa_cells": [0], "numa_policy": "nearby"}),
    );
    assert_eq!(status, 422, "{bad}");
    assert!(bad["error"].as_str().unwrap().contains("nearby"), "{bad}");
}
