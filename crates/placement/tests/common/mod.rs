//! What the real-Placement tests share: fake tracked devices (as the tracker holds them,
//! built as `nova_translator.rs` builds them), a report input, a client on a URL, and a
//! wait for the reporter thread.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pcitrack_model::{DevType, Device, DeviceStatus, PciAddress};
use pcitrack_placement::{
    Auth, ClientConfig, PlacementClient, ReportInput, ReportStatus, ReporterHandle,
};
use pcitrack_placement_harness::Placement;
use pcitrack_tracker::{Profile, TrackedDevice};
use serde_json::{Value, json};
use uuid::Uuid;

pub const HOST: &str = "compute-1";
/// The class Nova gives an Intel 0x1572 device without a `resource_class` tag.
pub const RC_1572: &str = "CUSTOM_PCI_8086_1572";
/// The class of the VFs (0x154c) of the PF at 0000:81:00.0.
pub const RC_154C: &str = "CUSTOM_PCI_8086_154C";

pub fn addr(s: &str) -> PciAddress {
    s.parse().unwrap()
}

fn tracked(device: Device, tags: &[(&str, &str)]) -> TrackedDevice {
    TrackedDevice::new(Profile {
        device,
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<std::collections::BTreeMap<_, _>>()
            .into(),
        remote_managed: false,
        decided_by: String::new(),
        parent_ifname: None,
    })
}

/// A type-PF device 8086:1572 (its own provider, total 1).
pub fn pf(address: &str) -> TrackedDevice {
    tracked(
        Device::new(addr(address), 0x8086, 0x1572, DevType::Pf),
        &[("traits", "fast")],
    )
}

/// A VF 8086:154c of `parent` (counted on the PF's provider).
pub fn vf(address: &str, parent: &str) -> TrackedDevice {
    let mut d = Device::new(addr(address), 0x8086, 0x154c, DevType::Vf);
    d.parent_addr = Some(addr(parent));
    tracked(d, &[])
}

/// `d`, allocated to `instance`.
pub fn allocated(mut d: TrackedDevice, instance: &str) -> TrackedDevice {
    d.status = DeviceStatus::Allocated;
    d.instance_uuid = Some(instance.to_string());
    d
}

/// Two PFs of their own, and four VFs of the PF 0000:81:00.0: three providers.
pub fn host_devices() -> Vec<TrackedDevice> {
    vec![
        pf("0000:04:00.0"),
        pf("0000:05:00.0"),
        vf("0000:81:00.2", "0000:81:00.0"),
        vf("0000:81:00.3", "0000:81:00.0"),
        vf("0000:81:00.4", "0000:81:00.0"),
        vf("0000:81:00.5", "0000:81:00.0"),
    ]
}

pub fn input(devices: Vec<TrackedDevice>) -> ReportInput {
    ReportInput {
        host: HOST.into(),
        device_spec: Vec::new(),
        devices,
        known_uuids: BTreeMap::new(),
        root_uuid: None,
        adopt_root: false,
    }
}

/// A noauth2 client (`X-Auth-Token: admin`) of `url`.
pub fn client(url: &str, timeout: Duration) -> PlacementClient {
    PlacementClient::new(ClientConfig {
        auth: Auth::Token("admin".into()),
        endpoint_override: Some(url.to_string()),
        timeout,
    })
}

/// Provider uuids by address, and the root's.
type Kept = (BTreeMap<PciAddress, Uuid>, Option<Uuid>);

/// What `persist` was called with, merged.
#[derive(Clone, Default)]
pub struct Persisted(pub Arc<Mutex<Kept>>);

impl Persisted {
    pub fn callback(&self) -> impl Fn(&BTreeMap<PciAddress, Uuid>, Uuid) + Send + 'static {
        let me = self.clone();
        move |uuids, root| {
            let mut g = me.0.lock().unwrap();
            g.0.extend(uuids.iter().map(|(a, u)| (*a, *u)));
            g.1 = Some(root);
        }
    }

    pub fn root(&self) -> Option<Uuid> {
        self.0.lock().unwrap().1
    }

    pub fn uuids(&self) -> BTreeMap<PciAddress, Uuid> {
        self.0.lock().unwrap().0.clone()
    }
}

/// Waits (up to `secs`) until the reporter's status satisfies `done`.
pub fn wait_for(
    handle: &ReporterHandle,
    secs: u64,
    what: &str,
    done: impl Fn(&ReportStatus) -> bool,
) -> ReportStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = handle.status();
        if done(&s) {
            return s;
        }
        if Instant::now() > deadline {
            panic!("waited {secs} s for {what}; status: {s:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One provider as Placement holds it, read with the harness's raw REST (not the client
/// under test): name -> (inventories, traits, usages).
#[derive(Debug, PartialEq)]
pub struct Held {
    pub uuid: Uuid,
    pub parent: Option<Uuid>,
    pub inventories: BTreeMap<String, (u64, u64, u64)>,
    pub traits: BTreeSet<String>,
    pub usages: BTreeMap<String, u64>,
}

/// Every provider Placement holds, by name (all trees: duplicates would show).
pub fn held(placement: &Placement) -> BTreeMap<String, Held> {
    let mut out = BTreeMap::new();
    let list = placement.get("/resource_providers");
    for rp in list["resource_providers"].as_array().unwrap() {
        let uuid: Uuid = rp["uuid"].as_str().unwrap().parse().unwrap();
        let base = format!("/resource_providers/{uuid}");
        let inv = placement.get(&format!("{base}/inventories"));
        let traits = placement.get(&format!("{base}/traits"));
        let usages = placement.get(&format!("{base}/usages"));
        let name = rp["name"].as_str().unwrap().to_string();
        let previous = out.insert(
            name.clone(),
            Held {
                uuid,
                parent: rp["parent_provider_uuid"]
                    .as_str()
                    .map(|s| s.parse().unwrap()),
                inventories: inv["inventories"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(rc, v)| {
                        (
                            rc.clone(),
                            (
                                v["total"].as_u64().unwrap(),
                                v["max_unit"].as_u64().unwrap(),
                                v["reserved"].as_u64().unwrap(),
                            ),
                        )
                    })
                    .collect(),
                traits: traits["traits"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_str().unwrap().to_string())
                    .collect(),
                usages: usages["usages"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(rc, n)| (rc.clone(), n.as_u64().unwrap()))
                    .collect(),
            },
        );
        assert!(previous.is_none(), "two providers named {name}");
    }
    out
}

pub fn rp_name(address: &str) -> String {
    format!("{HOST}_{}", address.to_uppercase())
}

/// The traits pcitrack gives a PF 0x1572 of [`pf`].
pub fn pf_traits() -> BTreeSet<String> {
    [
        "COMPUTE_MANAGED_PCI_DEVICE",
        "CUSTOM_FAST",
        "CUSTOM_OWNER_PCITRACK",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Allocates `n` units of `rc` on provider `rp` to `consumer`; the status.
pub fn allocate(placement: &Placement, consumer: Uuid, rp: Uuid, rc: &str, n: u32) -> u16 {
    let body = json!({
        "allocations": {rp.to_string(): {"resources": {rc: n}}},
        "project_id": Uuid::from_u128(7).to_string(),
        "user_id": Uuid::from_u128(8).to_string(),
        "consumer_generation": Value::Null,
        "consumer_type": "INSTANCE",
    });
    placement
        .request("PUT", &format!("/allocations/{consumer}"), Some(&body))
        .0
}
