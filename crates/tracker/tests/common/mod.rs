//! Shared test helpers: the Nova vectors and device builders.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;

use pcitrack_model::{Assessment, DevType, Device, PciAddress};
use serde_json::Value;

/// Finds `shared/nova-pci` by walking up from the crate (CI puts `shared/` beside the clone).
pub fn vectors_dir() -> PathBuf {
    let start = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for dir in start.ancestors() {
        let candidate = dir.join("shared").join("nova-pci");
        if candidate.join("VECTORS.json").is_file() {
            return candidate;
        }
    }
    panic!(
        "shared/nova-pci/VECTORS.json not found in any parent of {}; the Nova vectors must sit \
         beside the repository clone (shared/nova-pci)",
        start.display()
    );
}

/// The vectors file.
pub fn vectors() -> Value {
    let path = vectors_dir().join("VECTORS.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// The vectors of one group.
pub fn group(name: &str) -> Vec<Value> {
    vectors()[name]
        .as_array()
        .unwrap_or_else(|| panic!("group {name} missing from VECTORS.json"))
        .clone()
}

pub fn addr(s: &str) -> PciAddress {
    s.parse().unwrap_or_else(|e| panic!("{e}"))
}

static IDS: Mutex<Option<HashMap<String, u16>>> = Mutex::new(None);

/// Nova's tests use ids such as `v1` and `p2`; real ids are 4 hex digits. Hex ids map to
/// themselves, the others to stable synthetic ids.
pub fn id(text: &str) -> u16 {
    if text.len() == 4
        && let Ok(v) = u16::from_str_radix(text, 16)
    {
        return v;
    }
    let mut guard = IDS.lock().unwrap();
    let map = guard.get_or_insert_with(HashMap::new);
    let next = 0xe000 + map.len() as u16;
    *map.entry(text.to_string()).or_insert(next)
}

/// The hex text pools use for an id written as in the vectors.
pub fn id_text(text: &str) -> String {
    format!("{:04x}", id(text))
}

pub fn dev_type(s: &str) -> DevType {
    s.parse().unwrap()
}

/// A device from a vector's dict (address, vendor_id, product_id, dev_type, parent_addr,
/// numa_node).
pub fn device_from(v: &Value) -> Device {
    let mut d = Device::new(
        addr(v["address"].as_str().unwrap()),
        id(v["vendor_id"].as_str().unwrap()),
        id(v["product_id"].as_str().unwrap()),
        dev_type(v["dev_type"].as_str().unwrap()),
    );
    d.parent_addr = v["parent_addr"].as_str().map(addr);
    d.numa_node = v["numa_node"].as_u64().map(|n| n as u32);
    d
}

/// A PF at `bus`:00.0 with `n` (at most 256) VFs on bus `bus + 1`, eight functions a slot.
pub fn sriov_family(
    domain: u32,
    bus: u8,
    n: u16,
    numa: Option<u32>,
    physnet: &str,
) -> Vec<Assessment> {
    let pf_addr = PciAddress::new(domain, bus, 0, 0).unwrap();
    let mut pf = Device::new(pf_addr, 0x8086, 0x1572, DevType::Pf);
    pf.numa_node = numa;
    pf.sriov_totalvfs = Some(n);
    pf.sriov_numvfs = Some(n);
    let mut out = vec![tagged(pf, physnet)];
    for i in 0..n {
        let a = PciAddress::new(domain, bus + 1, (i / 8) as u8, (i % 8) as u8).unwrap();
        let mut vf = Device::new(a, 0x8086, 0x154c, DevType::Vf);
        vf.parent_addr = Some(pf_addr);
        vf.numa_node = numa;
        vf.vf_index = Some(i);
        out.push(tagged(vf, physnet));
    }
    out
}

pub fn tagged(device: Device, physnet: &str) -> Assessment {
    let mut tags = BTreeMap::new();
    tags.insert("physical_network".to_string(), physnet.to_string());
    Assessment {
        device,
        assignable: true,
        tags,
        remote_managed: false,
        decided_by: "test".into(),
        reason: None,
    }
}

pub fn plain(domain: u32, bus: u8, function: u8) -> Assessment {
    let a = PciAddress::new(domain, bus, 0, function).unwrap();
    Assessment::assignable(Device::new(a, 0x10de, 0x1db4, DevType::Pci))
}

/// Spec from pairs.
pub fn spec(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The tracker's invariants (see `pcitrack_tracker::invariants`).
pub fn check_invariants<S: pcitrack_tracker::Store>(
    t: &mut pcitrack_tracker::Tracker<S>,
) -> Result<(), String> {
    pcitrack_tracker::invariants::check(t)
}
