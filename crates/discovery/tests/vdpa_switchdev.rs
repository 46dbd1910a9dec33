//! vDPA devices and switchdev PFs on fake sysfs trees: a VF with a vDPA device is Nova's
//! `vdpa` device, and a PF's interface is its uplink, never one of its representors.

use std::collections::BTreeMap;
use std::os::unix::fs::symlink;

use pcitrack_discovery::fixture::FakeSysfs;
use pcitrack_discovery::{ScanReport, scan};
use pcitrack_model::{DevType, Device, PciAddress};

fn a(s: &str) -> PciAddress {
    s.parse().unwrap()
}

fn by_address(r: &ScanReport) -> BTreeMap<PciAddress, &Device> {
    r.devices.iter().map(|d| (d.address, d)).collect()
}

/// A VPD image with a serial number and a valid checksum.
fn vpd_with_serial(sn: &str) -> Vec<u8> {
    let mut v = vec![0x82, 3, 0, b'N', b'I', b'C', 0x90];
    let len = 3 + sn.len() + 4;
    v.extend_from_slice(&(len as u16).to_le_bytes());
    v.extend_from_slice(b"SN");
    v.push(sn.len() as u8);
    v.extend_from_slice(sn.as_bytes());
    v.extend_from_slice(b"RV\x01");
    let sum = v.iter().fold(0u8, |s, &b| s.wrapping_add(b));
    v.push(0u8.wrapping_sub(sum));
    v.push(0x78);
    v
}

#[test]
fn a_vf_with_a_vdpa_device_is_a_vdpa_device_of_its_pf() {
    let t = FakeSysfs::new();
    let vfs = t.add_pf_with_vfs("0000:06:00.0", 0x15b3, 0x101d, 0x101e, 3);
    t.add_device("0000:06:00.0", 0x15b3, 0x101d, 0x020000)
        .bytes("vpd", &vpd_with_serial("MT2113X00000"))
        .vdpa("vdpa9");
    let vf1 = t.add_device(&vfs[1], 0x15b3, 0x101e, 0x020000);
    vf1.link("physfn", "../0000:06:00.0")
        .driver("mlx5_core")
        .net("ens1f0v1", "0c:42:a1:00:00:03", None)
        .vdpa("vdpa0");
    t.add_device("0000:00:05.0", 0x1af4, 0x1041, 0x020000)
        .vdpa("vdpa1");
    // A subfunction's vDPA device: its parent is an auxiliary device, not a PCI function.
    let sf = t
        .root()
        .join("devices/pci0000:00/0000:06:00.0/mlx5_core.sf.2/vdpa2");
    std::fs::create_dir_all(&sf).unwrap();
    symlink(
        "../../../devices/pci0000:00/0000:06:00.0/mlx5_core.sf.2/vdpa2",
        t.root().join("bus/vdpa/devices/vdpa2"),
    )
    .unwrap();

    let r = scan(t.root());
    assert!(r.skipped.is_empty(), "{:?}", r.skipped);
    let by = by_address(&r);
    let vdpa = by[&a(&vfs[1])];
    assert_eq!(
        (vdpa.dev_type, vdpa.parent_addr, vdpa.vf_index),
        (DevType::Vdpa, Some(a("0000:06:00.0")), Some(1)),
        "Nova's vdpa device: the VF, with its PF as parent"
    );
    assert_eq!(vdpa.driver.as_deref(), Some("mlx5_core"));
    assert_eq!(vdpa.ifname.as_deref(), Some("ens1f0v1"));
    assert_eq!(
        vdpa.card_serial_number, None,
        "as in Nova, only a type-VF falls back to its PF's serial number"
    );
    let vf0 = by[&a(&vfs[0])];
    assert_eq!(vf0.dev_type, DevType::Vf, "a VF without vDPA stays a VF");
    assert_eq!(vf0.card_serial_number.as_deref(), Some("MT2113X00000"));
    assert_eq!(
        by[&a("0000:06:00.0")].dev_type,
        DevType::Pf,
        "a PF with a vDPA device keeps its type, as in Nova"
    );
    assert_eq!(
        by[&a("0000:00:05.0")].dev_type,
        DevType::Pci,
        "a plain PCI device with a vDPA device keeps its type, as in Nova"
    );
    let types: Vec<DevType> = r.devices.iter().map(|d| d.dev_type).collect();
    assert_eq!(
        types.iter().filter(|&&t| t == DevType::Vdpa).count(),
        1,
        "{types:?}"
    );
}

#[test]
fn a_malformed_vdpa_entry_is_skipped_by_name_and_hides_nothing() {
    let t = FakeSysfs::new();
    let vfs = t.add_pf_with_vfs("0000:06:00.0", 0x15b3, 0x101d, 0x101e, 2);
    t.add_device(&vfs[0], 0x15b3, 0x101e, 0x020000)
        .link("physfn", "../0000:06:00.0")
        .vdpa("vdpa0");
    let bus = t.root().join("bus/vdpa/devices");
    std::fs::write(bus.join("vdpa1"), "not a link\n").unwrap();
    symlink("vdpa2", bus.join("vdpa2")).unwrap();
    symlink(
        "../../../devices/pci0000:00/0000:77:00.1/vdpa3",
        bus.join("vdpa3"),
    )
    .unwrap();
    symlink(
        format!("../../../devices/pci0000:00/{}/vdpa0", vfs[1]),
        bus.join("vdpa4"),
    )
    .unwrap();

    let r = scan(t.root());
    let skipped: BTreeMap<&str, &str> = r
        .skipped
        .iter()
        .map(|s| (s.entry.as_str(), s.reason.as_str()))
        .collect();
    assert_eq!(
        skipped.keys().copied().collect::<Vec<_>>(),
        ["vdpa1", "vdpa2", "vdpa3", "vdpa4"],
        "{skipped:?}"
    );
    assert!(
        skipped["vdpa1"].contains("not a readable link"),
        "{skipped:?}"
    );
    assert!(skipped["vdpa2"].contains("names no parent"), "{skipped:?}");
    assert!(
        skipped["vdpa3"].contains("0000:77:00.1, which is not among the PCI devices"),
        "{skipped:?}"
    );
    assert!(skipped["vdpa4"].contains("another device"), "{skipped:?}");
    let by = by_address(&r);
    assert_eq!(
        by[&a(&vfs[0])].dev_type,
        DevType::Vdpa,
        "the good entry counts"
    );
    assert_eq!(
        by[&a(&vfs[1])].dev_type,
        DevType::Vf,
        "a malformed entry types nothing"
    );
    assert_eq!(r.devices.len(), 3);
}

#[test]
fn no_vdpa_bus_is_no_vdpa_device() {
    let t = FakeSysfs::new();
    t.add_pf_with_vfs("0000:06:00.0", 0x15b3, 0x101d, 0x101e, 2);
    let r = scan(t.root());
    assert!(r.skipped.is_empty(), "{:?}", r.skipped);
    assert!(r.devices.iter().all(|d| d.dev_type != DevType::Vdpa));
}

/// A PF in switchdev mode: its uplink and representors in `net/`, created in the order
/// given (the directory order follows creation on most file systems).
fn switchdev_pf(netdevs: &[(&str, &str, &str)]) -> (FakeSysfs, Vec<String>) {
    let t = FakeSysfs::new();
    let vfs = t.add_pf_with_vfs("0000:81:00.0", 0x15b3, 0x101d, 0x101e, 2);
    let pf = t.add_device("0000:81:00.0", 0x15b3, 0x101d, 0x020000);
    pf.driver("mlx5_core");
    for (name, mac, port) in netdevs {
        pf.net(name, mac, Some(port));
    }
    (t, vfs)
}

/// The smallest input: `eth_rail1` (`p0`) and `eth1` (`pf0vf0`). Discovery took the
/// first netdev by name, the representor `eth1`, as the PF's interface and MAC (and the VFs'
/// `parent_ifname`, a pool key, followed). Whatever the names' order and the directory
/// order, the uplink is the PF's interface.
#[test]
fn regression_switchdev_representor_taken_as_pf_interface() {
    let uplink = ("eth_rail1", "0c:42:a1:00:00:01", "p0");
    let rep = ("eth1", "aa:bb:cc:00:00:10", "pf0vf0");
    // The uplink's name sorting first this time.
    let uplink_first = ("enp129s0f0np0", "0c:42:a1:00:00:01", "p0");
    let sf_rep = ("eth2", "aa:bb:cc:00:00:11", "pf0sf1");
    let host_rep = ("eth0", "aa:bb:cc:00:00:12", "c1pf0vf3");
    for (netdevs, want) in [
        (vec![uplink, rep], "eth_rail1"),
        (vec![rep, uplink], "eth_rail1"),
        (vec![uplink_first, rep, sf_rep], "enp129s0f0np0"),
        (vec![sf_rep, host_rep, rep, uplink_first], "enp129s0f0np0"),
    ] {
        let (t, vfs) = switchdev_pf(&netdevs);
        let r = scan(t.root());
        assert!(r.skipped.is_empty(), "{:?}", r.skipped);
        let by = by_address(&r);
        let pf = by[&a("0000:81:00.0")];
        assert_eq!(pf.ifname.as_deref(), Some(want), "{netdevs:?}");
        assert_eq!(
            pf.mac_address.as_deref(),
            Some("0c:42:a1:00:00:01"),
            "the uplink's MAC: {netdevs:?}"
        );
        assert_eq!(
            pf.net.len(),
            netdevs.len(),
            "every netdev stays listed, representors included"
        );
        assert_eq!(by[&a(&vfs[0])].parent_addr, Some(pf.address));
    }
}

#[test]
fn a_netdev_without_a_port_name_is_the_interface_as_before_and_a_pf_never_takes_a_representor() {
    let t = FakeSysfs::new();
    t.add_device("0000:01:00.0", 0x8086, 0x1572, 0x020000)
        .net("ens1f1", "3c:fd:fe:00:00:02", None)
        .net("ens1f0", "3c:fd:fe:00:00:01", None);
    t.add_device("0000:02:00.0", 0x15b3, 0x101d, 0x020000)
        .attr("sriov_totalvfs", "4")
        .net("eth1", "aa:bb:cc:00:00:10", Some("pf0vf0"))
        .net("eth2", "aa:bb:cc:00:00:11", Some("pf0vf1"));
    let r = scan(t.root());
    let by = by_address(&r);
    let legacy = by[&a("0000:01:00.0")];
    assert_eq!(
        (legacy.ifname.as_deref(), legacy.mac_address.as_deref()),
        (Some("ens1f0"), Some("3c:fd:fe:00:00:01"))
    );
    let reps_only = by[&a("0000:02:00.0")];
    assert_eq!(reps_only.dev_type, DevType::Pf);
    assert_eq!(
        (
            reps_only.ifname.as_deref(),
            reps_only.mac_address.as_deref()
        ),
        (None, None),
        "its uplink is elsewhere (another network namespace): no interface, not a representor"
    );
}

/// A vDPA device is created after its VF is bound (`vdpa dev add ... mgmtdev pci/<VF>`), and
/// its only uevent is on the vDPA bus: that event re-reads the VF, which becomes `vdpa`.
#[test]
fn a_vdpa_uevent_rereads_its_vf_which_becomes_vdpa() {
    use pcitrack_discovery::changes::{Burst, InventoryChange, changes};
    let t = FakeSysfs::new();
    let vfs = t.add_pf_with_vfs("0000:06:00.0", 0x15b3, 0x101d, 0x101e, 2);
    let known = scan(t.root()).devices;
    t.add_device(&vfs[1], 0x15b3, 0x101e, 0x020000)
        .link("physfn", "../0000:06:00.0")
        .vdpa("vdpa0");
    let devpath = format!("/devices/pci0000:00/{}/vdpa0", vfs[1]);
    let packet =
        format!("add@{devpath}\0ACTION=add\0DEVPATH={devpath}\0SUBSYSTEM=vdpa\0SEQNUM=9\0");
    let mut burst = Burst::default();
    burst.add(&pcitrack_discovery::uevent::parse(packet.as_bytes()).unwrap());
    let found = changes(t.root(), &known, &burst.affected);
    let [InventoryChange::Changed { before, after }] = found.as_slice() else {
        panic!("one change, the VF's: {found:?}");
    };
    assert_eq!(after.address, a(&vfs[1]));
    assert_eq!(
        (before.dev_type, after.dev_type),
        (DevType::Vf, DevType::Vdpa)
    );
}
