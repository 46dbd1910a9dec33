//! Claims as Nova makes them: several requests at once, all or nothing, with the instance's
//! NUMA context (its cells, each request's `numa_policy`, the host's sockets).
//!
//! The host: four NUMA nodes on two sockets (nodes 0 and 1 on socket 0, 2 and 3 on socket
//! 1), a PF with two VFs on each of nodes 0, 1 and 2, a PF with one VF and a plain device
//! without NUMA information, and a plain device on node 3. `cases` pins which devices Nova
//! 34.0.0's `PciDeviceStats.consume_requests` hands to each request (or that it raises
//! `PciDeviceRequestFailed`); with `PCITRACK_NOVA_PYTHON` naming a Python with Nova
//! installed, `agrees_with_nova` asks Nova itself (`oracle/nova_numa_claims.py`).

mod common;

use common::sriov_family;
use pcitrack_model::{Assessment, DevType, Device, PciAddress};
use pcitrack_tracker::{
    AliasTable, DefaultCleanup, DeviceFilter, HostNumaCell, NumaContext, NumaPolicy, PciRequest,
    Tracker, TrackerError,
};
use serde_json::{Value, json};

fn host() -> Vec<Assessment> {
    let mut out = Vec::new();
    for (bus, node) in [(0x10, 0), (0x20, 1), (0x30, 2)] {
        out.extend(sriov_family(0, bus, 2, Some(node), "physnet1"));
    }
    out.extend(sriov_family(0, 0x50, 1, None, "physnet1"));
    for (bus, node) in [(0x40, None), (0x41, Some(3))] {
        let mut d = Device::new(
            PciAddress::new(0, bus, 0, 0).unwrap(),
            0x15b3,
            0x1018,
            DevType::Pci,
        );
        d.numa_node = node;
        out.push(Assessment::assignable(d));
    }
    out.sort_by_key(|a| a.device.address);
    out
}

/// The device_spec that makes Nova pool the same devices with the same tags.
const DEVICE_SPEC: [&str; 2] = [
    r#"{"vendor_id": "8086", "physical_network": "physnet1"}"#,
    r#"{"vendor_id": "15b3"}"#,
];

const ALIASES: [&str; 3] = [
    r#"{"name": "vf", "vendor_id": "8086", "product_id": "154c", "device_type": "type-VF", "numa_policy": "required"}"#,
    r#"{"name": "nic", "vendor_id": "15b3", "product_id": "1018"}"#,
    r#"{"name": "pf", "vendor_id": "8086", "product_id": "1572", "device_type": "type-PF"}"#,
];

fn aliases() -> AliasTable {
    AliasTable::parse(&ALIASES).unwrap()
}

/// Sockets by node: all known, or node 1's unknown.
fn sockets(known: bool) -> Vec<HostNumaCell> {
    [(0, 0), (1, 0), (2, 1), (3, 1)]
        .into_iter()
        .map(|(id, s)| HostNumaCell {
            id,
            socket: (known || id != 1).then_some(s),
        })
        .collect()
}

struct Case {
    name: &'static str,
    /// `NAME:COUNT,...` as in a flavor, and the flavor's policy override.
    alias: &'static str,
    policy: Option<NumaPolicy>,
    cells: Option<Vec<u32>>,
    host_cells: Vec<HostNumaCell>,
    /// Nova's answer: the addresses each request gets, or `None` (PciDeviceRequestFailed).
    nova: Option<Vec<Vec<&'static str>>>,
}

fn case(
    name: &'static str,
    alias: &'static str,
    policy: Option<NumaPolicy>,
    cells: Option<&[u32]>,
    host_cells: Vec<HostNumaCell>,
    nova: Option<Vec<Vec<&'static str>>>,
) -> Case {
    Case {
        name,
        alias,
        policy,
        cells: cells.map(<[u32]>::to_vec),
        host_cells,
        nova,
    }
}

fn cases() -> Vec<Case> {
    use NumaPolicy::*;
    let all = || sockets(true);
    vec![
        case(
            "required fits on the cell",
            "vf:2",
            Some(Required),
            Some(&[0]),
            all(),
            Some(vec![vec!["0000:11:00.1", "0000:11:00.0"]]),
        ),
        case(
            "required does not spill",
            "vf:3",
            Some(Required),
            Some(&[0]),
            all(),
            None,
        ),
        case(
            "the alias's own policy (required)",
            "vf:3",
            None,
            Some(&[0]),
            all(),
            None,
        ),
        case(
            "legacy takes devices without NUMA information",
            "vf:3",
            Some(Legacy),
            Some(&[0]),
            all(),
            Some(vec![vec!["0000:11:00.1", "0000:11:00.0", "0000:51:00.0"]]),
        ),
        case(
            "legacy goes no further",
            "vf:4",
            Some(Legacy),
            Some(&[0]),
            all(),
            None,
        ),
        case(
            "preferred: the cell's, then those without NUMA information, then any",
            "vf:4",
            Some(Preferred),
            Some(&[0]),
            all(),
            Some(vec![vec![
                "0000:11:00.1",
                "0000:11:00.0",
                "0000:51:00.0",
                "0000:21:00.1",
            ]]),
        ),
        case(
            "socket takes the other node of the socket",
            "vf:4",
            Some(Socket),
            Some(&[0]),
            all(),
            Some(vec![vec![
                "0000:11:00.1",
                "0000:11:00.0",
                "0000:21:00.1",
                "0000:21:00.0",
            ]]),
        ),
        case(
            "socket never takes devices without NUMA information",
            "vf:5",
            Some(Socket),
            Some(&[0]),
            all(),
            None,
        ),
        case(
            "socket 1 has no VFs beyond node 2",
            "vf:3",
            Some(Socket),
            Some(&[2]),
            all(),
            None,
        ),
        case(
            "socket prefers the cell itself",
            "vf:2",
            Some(Socket),
            Some(&[2]),
            all(),
            Some(vec![vec!["0000:31:00.1", "0000:31:00.0"]]),
        ),
        case(
            "socket with a node of unknown socket allows nothing beyond the cell",
            "vf:3",
            Some(Socket),
            Some(&[0]),
            sockets(false),
            None,
        ),
        case(
            "socket with a node of unknown socket, enough on the cell",
            "vf:2",
            Some(Socket),
            Some(&[0]),
            sockets(false),
            Some(vec![vec!["0000:11:00.1", "0000:11:00.0"]]),
        ),
        case(
            "socket with no host topology at all",
            "vf:3",
            Some(Socket),
            Some(&[0]),
            vec![],
            None,
        ),
        case(
            "no instance cells: NUMA is not considered",
            "vf:7",
            Some(Required),
            None,
            all(),
            Some(vec![vec![
                "0000:11:00.1",
                "0000:11:00.0",
                "0000:21:00.1",
                "0000:21:00.0",
                "0000:31:00.1",
                "0000:31:00.0",
                "0000:51:00.0",
            ]]),
        ),
        case(
            "an empty list of cells is no cells",
            "vf:3",
            Some(Required),
            Some(&[]),
            all(),
            Some(vec![vec!["0000:11:00.1", "0000:11:00.0", "0000:21:00.1"]]),
        ),
        case(
            "two aliases, each with its own policy",
            "vf:2, nic:1",
            None,
            Some(&[1]),
            all(),
            Some(vec![
                vec!["0000:21:00.1", "0000:21:00.0"],
                vec!["0000:40:00.0"],
            ]),
        ),
        case(
            "two aliases, the second cannot be met: nothing",
            "vf:2,nic:1",
            Some(Required),
            Some(&[0]),
            all(),
            None,
        ),
        case(
            "the socket's PF takes its VFs: nothing for the VF alias",
            "pf:1,vf:2,nic:1",
            Some(Socket),
            Some(&[3]),
            all(),
            None,
        ),
        case(
            "a PF takes its VFs out of the pools",
            "pf:1,vf:2",
            Some(Socket),
            Some(&[1]),
            all(),
            Some(vec![
                vec!["0000:20:00.0"],
                vec!["0000:11:00.1", "0000:11:00.0"],
            ]),
        ),
        case(
            "preferred over several cells",
            "vf:5,nic:2",
            Some(Preferred),
            Some(&[1, 2]),
            all(),
            Some(vec![
                vec![
                    "0000:21:00.1",
                    "0000:21:00.0",
                    "0000:31:00.1",
                    "0000:31:00.0",
                    "0000:51:00.0",
                ],
                vec!["0000:40:00.0", "0000:41:00.0"],
            ]),
        ),
    ]
}

fn requests(c: &Case) -> Vec<PciRequest> {
    aliases().requests(c.alias, c.policy).unwrap()
}

fn tracker() -> Tracker {
    let mut t = Tracker::in_memory().unwrap();
    t.sync(&host(), &DefaultCleanup).unwrap();
    t
}

/// pcitrack's answer, checking that a refused claim changed nothing.
fn ours(c: &Case) -> Result<Vec<Vec<String>>, TrackerError> {
    let mut t = tracker();
    let before = t.devices(&DeviceFilter::default()).unwrap();
    let reqs = requests(c);
    let numa = c.cells.as_deref().map(|cells| NumaContext {
        cells,
        host_cells: &c.host_cells,
    });
    match t.claim("vm", &reqs, numa) {
        Ok(claimed) => {
            let mut out = vec![Vec::new(); reqs.len()];
            for d in claimed {
                out[d.request_index].push(d.address.to_string());
            }
            Ok(out)
        }
        Err(e) => {
            assert_eq!(
                t.devices(&DeviceFilter::default()).unwrap(),
                before,
                "{}: a refused claim changed the database",
                c.name
            );
            Err(e)
        }
    }
}

fn pinned(c: &Case) -> Option<Vec<Vec<String>>> {
    c.nova.as_ref().map(|r| {
        r.iter()
            .map(|a| a.iter().map(|s| s.to_string()).collect())
            .collect()
    })
}

#[test]
fn numa_policies_and_several_aliases_choose_as_pinned_from_nova() {
    for c in cases() {
        assert_eq!(ours(&c).ok(), pinned(&c), "{}", c.name);
    }
}

/// A case as the oracle script reads it.
fn nova_input(c: &Case) -> Value {
    let devices: Vec<Value> = host()
        .iter()
        .map(|a| {
            let d = &a.device;
            json!({
                "address": d.address.to_string(),
                "vendor_id": format!("{:04x}", d.vendor_id),
                "product_id": format!("{:04x}", d.product_id),
                "dev_type": d.dev_type.as_str(),
                "numa_node": d.numa_node,
                "parent_addr": d.parent_addr.map(|p| p.to_string()),
            })
        })
        .collect();
    let requests: Vec<Value> = requests(c)
        .iter()
        .map(|r| json!({"count": r.count, "spec": r.spec, "numa_policy": r.numa_policy}))
        .collect();
    json!({
        "device_spec": DEVICE_SPEC,
        "host_cells": c.host_cells.iter().map(|h| json!({"id": h.id, "socket": h.socket})).collect::<Vec<_>>(),
        "devices": devices,
        "requests": requests,
        "cells": c.cells,
    })
}

#[test]
fn agrees_with_nova() {
    let Some(python) = pcitrack_nova_oracle::python("claims_nova::agrees_with_nova") else {
        return;
    };
    let cases = cases();
    let input: Vec<Value> = cases.iter().map(nova_input).collect();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/oracle/nova_numa_claims.py"
    );
    let answer = pcitrack_nova_oracle::run(&python, script.as_ref(), &Value::from(input));
    let nova: Vec<Option<Vec<Vec<String>>>> =
        serde_json::from_value(answer).expect("the oracle answers a list per case");
    assert_eq!(nova.len(), cases.len());
    for (c, nova) in cases.iter().zip(nova) {
        assert_eq!(
            pinned(c),
            nova,
            "{}: the pinned answer is not Nova's",
            c.name
        );
        assert_eq!(ours(c).ok(), nova, "{}", c.name);
    }
    println!("compared {} NUMA claim cases with Nova", cases.len());
}

#[test]
fn regression_claim_answer_ids_are_hex() {
    let mut t = tracker();
    let reqs = aliases().requests("nic:1", None).unwrap();
    let claimed = t.claim("vm", &reqs, None).unwrap();
    let answer = serde_json::to_value(&claimed).unwrap();
    // Was 5555 and 4120: decimal numbers where every other output prints hex.
    assert_eq!(answer[0]["vendor_id"], "15b3");
    assert_eq!(answer[0]["product_id"], "1018");
}

#[test]
fn regression_socket_policy_without_socket_topology_fails_clearly() {
    let mut t = tracker();
    let reqs = aliases()
        .requests("vf:3", Some(NumaPolicy::Socket))
        .unwrap();
    for (host_cells, names) in [
        (sockets(false), "NUMA node(s) 1"),
        (vec![], "no NUMA nodes were read"),
    ] {
        let numa = NumaContext {
            cells: &[0],
            host_cells: &host_cells,
        };
        let e = t.claim("vm", &reqs, Some(numa)).unwrap_err();
        let text = format!("{e}: {}", std::error::Error::source(&e).unwrap());
        assert!(text.contains("socket topology is unknown"), "{text}");
        assert!(text.contains(names), "{text}");
    }
}

#[test]
fn the_answer_carries_what_a_consumer_attaches_with() {
    let mut host = host();
    let vf = host
        .iter_mut()
        .find(|a| a.device.address.to_string() == "0000:21:00.0")
        .unwrap();
    vf.device.iommu_group = Some(42);
    vf.device.driver = Some("vfio-pci".into());
    vf.tags.insert("managed".into(), "false".into());
    let mut t = Tracker::in_memory().unwrap();
    t.sync(&host, &DefaultCleanup).unwrap();
    let mut reqs = aliases().requests("vf:1", None).unwrap();
    reqs[0].request_id = Some("req-1".into());
    let numa = NumaContext {
        cells: &[1],
        host_cells: &sockets(true),
    };
    // Consumption takes from the end of a pool: give the pool only the VF under test.
    let other =
        PciRequest::from_spec_json(r#"{"vendor_id": "8086", "product_id": "154c"}"#, 1).unwrap();
    t.claim("other", &[other], Some(numa)).unwrap();
    let claimed = t.claim("vm", &reqs, Some(numa)).unwrap();
    let a = serde_json::to_value(&claimed[0]).unwrap();
    assert_eq!(a["address"], "0000:21:00.0");
    assert_eq!(a["dev_type"], "type-VF");
    assert_eq!(a["numa_node"], 1);
    assert_eq!(a["iommu_group"], 42);
    assert_eq!(a["driver"], "vfio-pci");
    assert_eq!(a["managed"], "false");
    assert_eq!(a["vf_index"], 0);
    assert_eq!(a["parent_addr"], "0000:20:00.0");
    assert_eq!(a["request_id"], "req-1");
    assert_eq!(a["alias_name"], "vf");
    assert_eq!(a["tags"]["physical_network"], "physnet1");
    // Without the tag, what Nova's libvirt driver assumes: managed.
    let nic = t
        .claim("vm2", &aliases().requests("nic:1", None).unwrap(), None)
        .unwrap();
    assert_eq!(nic[0].managed, "true");
    let recorded = t
        .devices(&DeviceFilter {
            instance: Some("vm".into()),
            ..DeviceFilter::default()
        })
        .unwrap();
    assert_eq!(recorded[0].request_id.as_deref(), Some("req-1"));
}
