//! A vendor matcher: NVIDIA/Mellanox ConnectX VFs are assignable, tagged with the port their
//! netdev sits behind. The port comes from the VF netdev's `phys_port_name` (`pf0vf3` →
//! port `pf0`), and the physical network from the configuration:
//!
//! ```toml
//! [policies.connectx]
//! physnets = { pf0 = "physnet1", pf1 = "physnet2" }
//! ```
//!
//! A ConnectX VF on a port with no physical network configured is rejected, with the port in
//! the reason. Every other device gets no opinion (abstain), so the default matcher, after
//! this one in the chain, decides for them as usual.

use std::collections::BTreeMap;

use pcitrack_policy_sdk::{DeviceKind, Inventory, MatchOutput, Matcher, PolicyInfo, Tag};

const MELLANOX: u16 = 0x15b3;

/// The ConnectX VF matcher.
pub struct ConnectxMatcher {
    physnets: BTreeMap<String, String>,
}

/// The port part of a representor name: `pf0vf3` → `pf0`, `p1` → `p1`.
pub fn port_of(phys_port_name: &str) -> &str {
    match phys_port_name.find("vf") {
        Some(i) if i > 0 => &phys_port_name[..i],
        _ => phys_port_name,
    }
}

impl Matcher for ConnectxMatcher {
    fn describe() -> PolicyInfo {
        PolicyInfo::new(
            "connectx-vf-matcher",
            env!("CARGO_PKG_VERSION"),
            "ConnectX VFs, tagged by representor port and physical network",
        )
    }

    fn init(config: &str) -> Result<Self, String> {
        let value: serde_json::Value = serde_json::from_str(if config.trim().is_empty() {
            "{}"
        } else {
            config
        })
        .map_err(|e| format!("the configuration is not JSON: {e}"))?;
        let mut physnets = BTreeMap::new();
        if let Some(map) = value.get("physnets") {
            let map = map
                .as_object()
                .ok_or("physnets must be a table of port = \"physnet\"")?;
            for (port, net) in map {
                let net = net
                    .as_str()
                    .ok_or_else(|| format!("physnets.{port} must be a string"))?;
                physnets.insert(port.clone(), net.to_string());
            }
        }
        Ok(ConnectxMatcher { physnets })
    }

    fn evaluate(
        &self,
        inventory: &Inventory,
        targets: &[u32],
        out: &mut MatchOutput,
    ) -> Result<(), String> {
        // One tag set per port, registered once per batch.
        let mut sets: BTreeMap<&str, u32> = BTreeMap::new();
        for &i in targets {
            let d = &inventory.devices[i as usize];
            if d.vendor_id != MELLANOX || d.kind != DeviceKind::VirtualFunction {
                out.abstain();
                continue;
            }
            let Some(port) = inventory
                .netdevs_of(i as usize)
                .find_map(|n| n.phys_port_name.as_deref())
                .map(port_of)
            else {
                out.reject("ConnectX VF without a netdev port name (phys_port_name)");
                continue;
            };
            match self.physnets.get_key_value(port) {
                Some((port, net)) => {
                    let set = *sets.entry(port.as_str()).or_insert_with(|| {
                        out.add_tag_set(vec![
                            Tag::new("physical_network", net.as_str()),
                            Tag::new("port", port.as_str()),
                        ])
                    });
                    out.assign(set);
                }
                None => out.reject(&format!("no physical network configured for port {port}")),
            }
        }
        Ok(())
    }
}

pcitrack_policy_sdk::export_matcher!(ConnectxMatcher);

#[cfg(test)]
mod tests {
    use super::*;
    use pcitrack_policy_sdk::{Device, MatchVerdict, Netdev, PciAddress};

    fn dev(function: u8, vendor_id: u16, kind: DeviceKind) -> Device {
        Device {
            address: PciAddress {
                domain: 0,
                bus: 0x82,
                slot: 0,
                function,
            },
            vendor_id,
            product_id: 0x101e,
            class_code: 0x020000,
            kind,
            parent: None,
            numa_node: None,
            vf_product_id: None,
            total_vfs: 0,
            vf_index: None,
        }
    }

    #[test]
    fn tags_connectx_vfs_by_port_and_leaves_the_rest_alone() {
        let inv = Inventory {
            devices: vec![
                dev(1, MELLANOX, DeviceKind::VirtualFunction),
                dev(2, MELLANOX, DeviceKind::VirtualFunction),
                dev(3, 0x8086, DeviceKind::VirtualFunction),
                dev(4, MELLANOX, DeviceKind::VirtualFunction),
            ],
            netdevs: vec![
                Netdev {
                    device: 0,
                    name: "eth1".into(),
                    phys_port_name: Some("pf0vf0".into()),
                    mac_address: None,
                },
                Netdev {
                    device: 1,
                    name: "eth2".into(),
                    phys_port_name: Some("pf1vf3".into()),
                    mac_address: None,
                },
            ],
            serial_numbers: vec![],
        };
        let m = ConnectxMatcher::init(r#"{"device_spec": [], "physnets": {"pf0": "physnet1"}}"#)
            .unwrap();
        let mut out = MatchOutput::default();
        m.evaluate(&inv, &[0, 1, 2, 3], &mut out).unwrap();
        let v = out.verdicts().to_vec();
        let MatchVerdict::Assign(set) = v[0] else {
            panic!("{v:?}")
        };
        assert_eq!(
            out.tag_set(set),
            [
                Tag::new("physical_network", "physnet1"),
                Tag::new("port", "pf0")
            ]
        );
        let MatchVerdict::Reject(r) = v[1] else {
            panic!("{v:?}")
        };
        assert_eq!(out.reason(r), "no physical network configured for port pf1");
        assert_eq!(v[2], MatchVerdict::Abstain);
        assert!(matches!(v[3], MatchVerdict::Reject(_)));
        assert_eq!(port_of("p0"), "p0");
        assert!(ConnectxMatcher::init(r#"{"physnets": {"pf0": 1}}"#).is_err());
    }
}
