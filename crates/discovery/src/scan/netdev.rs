//! A device's network interfaces (`net/`), and which of them is the device's own interface.
//!
//! In switchdev mode a PF's `net/` holds its uplink and the representors of its VFs and SFs
//! (since Linux 5.8 representors hang off the PF's PCI device), so "the first netdev" is
//! not the PF's interface. The netdevs tell themselves apart by `phys_port_name`, whose forms
//! are the kernel's devlink port names (`net/devlink/port.c`,
//! `__devlink_port_phys_port_name_get`): `p<N>` (`p<N>s<M>` when split) for a physical port,
//! `pf<M>` / `pf<M>vf<N>` / `pf<M>sf<N>` for PF, VF and SF representors, with a `c<C>` prefix
//! for another controller's (a SmartNIC's host).

use std::path::Path;

use pcitrack_model::{DevType, NetInterface};

use crate::attrs::read_text;

/// Every netdev under a device's `net/` directory, sorted by name.
pub(super) fn net_interfaces(dir: &Path) -> Vec<NetInterface> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut net: Vec<NetInterface> = entries
        .flatten()
        .map(|e| {
            let p = e.path();
            NetInterface {
                name: e.file_name().to_string_lossy().into_owned(),
                mac_address: read_text(&p.join("address")),
                phys_port_name: read_text(&p.join("phys_port_name")).filter(|s| !s.is_empty()),
                phys_switch_id: read_text(&p.join("phys_switch_id")).filter(|s| !s.is_empty()),
            }
        })
        .collect();
    net.sort_by(|a, b| a.name.cmp(&b.name));
    net
}

/// The device's own interface among `net` (sorted by name): its uplink (`p<N>`) if it has
/// one, else the first netdev that is not a representor (legacy mode: no `phys_port_name`).
/// A PF's interface is never a representor: a PF whose `net/` holds only representors (its
/// uplink is in another network namespace) has none. Another device keeps its first netdev
/// as its interface whatever the port name, as no representor hangs off a VF.
///
/// Nova (`nova/pci/utils.py` `get_ifname_by_pci_address`, for the PF's MAC and the VFs'
/// `parent_ifname`) takes whichever entry `os.listdir` lists last, which in switchdev mode
/// may be a representor.
pub(super) fn own_interface(net: &[NetInterface], dev_type: DevType) -> Option<&NetInterface> {
    let role = |n: &NetInterface| port_role(n.phys_port_name.as_deref());
    net.iter()
        .find(|n| role(n) == PortRole::Uplink)
        .or_else(|| net.iter().find(|n| role(n) == PortRole::Other))
        .or_else(|| net.first().filter(|_| dev_type != DevType::Pf))
}

/// What a netdev's `phys_port_name` says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PortRole {
    /// A physical port: `p<N>` or `p<N>s<M>`.
    Uplink,
    /// A PF, VF or SF representor: `[c<C>]pf<M>[vf<N>|sf<N>]`.
    Representor,
    /// No port name, or one of another form (drivers without devlink ports).
    Other,
}

/// Classifies a `phys_port_name`.
pub(super) fn port_role(phys_port_name: Option<&str>) -> PortRole {
    let Some(name) = phys_port_name else {
        return PortRole::Other;
    };
    let uplink = name
        .strip_prefix('p')
        .and_then(number)
        .is_some_and(|rest| rest.is_empty() || rest.strip_prefix('s').and_then(number) == Some(""));
    if uplink {
        return PortRole::Uplink;
    }
    let pci = match name.strip_prefix('c').and_then(number) {
        Some(rest) => rest,
        None => name,
    };
    let representor = pci.strip_prefix("pf").and_then(number).is_some_and(|rest| {
        rest.is_empty()
            || [rest.strip_prefix("vf"), rest.strip_prefix("sf")]
                .into_iter()
                .flatten()
                .any(|n| number(n) == Some(""))
    });
    if representor {
        PortRole::Representor
    } else {
        PortRole::Other
    }
}

/// `s` without its leading decimal number; `None` when it does not start with a digit.
fn number(s: &str) -> Option<&str> {
    let rest = s.trim_start_matches(|c: char| c.is_ascii_digit());
    (rest.len() < s.len()).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_names_as_the_kernel_writes_them() {
        for uplink in ["p0", "p1", "p12", "p0s1", "p3s12"] {
            assert_eq!(port_role(Some(uplink)), PortRole::Uplink, "{uplink}");
        }
        for rep in [
            "pf0",
            "pf0vf0",
            "pf1vf15",
            "pf0sf3",
            "c1pf0",
            "c1pf0vf2",
            "c12pf1sf88",
        ] {
            assert_eq!(port_role(Some(rep)), PortRole::Representor, "{rep}");
        }
        for other in [
            "", "p", "ps1", "p0s", "p0x", "pf", "pfvf0", "pf0vf", "pf0xf1", "c0", "cpf0", "n0",
            "0", "eth0", "P0",
        ] {
            assert_eq!(port_role(Some(other)), PortRole::Other, "{other:?}");
        }
        assert_eq!(port_role(None), PortRole::Other);
    }

    fn netdev(name: &str, port: Option<&str>) -> NetInterface {
        NetInterface {
            name: name.into(),
            mac_address: None,
            phys_port_name: port.map(str::to_string),
            phys_switch_id: None,
        }
    }

    #[test]
    fn the_uplink_wins_then_a_plain_netdev_and_a_pf_never_takes_a_representor() {
        let own = |net: &[NetInterface], t| own_interface(net, t).map(|n| n.name.clone());
        let switchdev = [
            netdev("eth1", Some("pf0vf0")),
            netdev("eth2", None),
            netdev("eth_rail1", Some("p0")),
        ];
        assert_eq!(own(&switchdev, DevType::Pf).as_deref(), Some("eth_rail1"));
        let legacy = [netdev("eth1", Some("pf0vf0")), netdev("eth2", None)];
        assert_eq!(own(&legacy, DevType::Pf).as_deref(), Some("eth2"));
        let only_reps = [
            netdev("eth1", Some("pf0vf0")),
            netdev("eth3", Some("c1pf0")),
        ];
        assert_eq!(own(&only_reps, DevType::Pf), None);
        assert_eq!(own(&only_reps, DevType::Vf).as_deref(), Some("eth1"));
        assert_eq!(own(&[], DevType::Pci), None);
    }
}
