//! The incremental reconcile (a uevent burst re-reads the devices it names, with their PF and
//! VFs, and reconciles those) against the full one: over random sequences of uevents on a
//! fake tree (PFs added and removed, VFs created and destroyed through `sriov_numvfs`, plain
//! devices, drivers bound and unbound with their interfaces, vDPA devices), applying each
//! burst's incremental reconcile leaves the same tracked devices as a full reconcile after
//! each burst, the last of them of the final tree, and the patched inventory is the final
//! tree's full scan. (Not one full reconcile of the final tree only: the tracker's rules keep
//! history, e.g. a change reported while a device was held stays pending after the device
//! goes, so two databases that saw different histories differ, full or not.) The policies are the embedded defaults with a device_spec that needs the
//! inventory (a `devname` naming a PF's interface matches its VFs), and some devices are
//! claimed before the sequence, so the in-use rules (deferred removals and changes, derived
//! `unavailable` statuses) are exercised too.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::daemon::Daemon;
use pcitrack::config::Config;
use pcitrack::pipeline;
use pcitrack_discovery::fixture::FakeSysfs;
use pcitrack_model::{Device, PciAddress};
use pcitrack_runtime::PolicySet;
use pcitrack_tracker::{DeviceFilter, PciRequest, TrackedDevice, Tracker};
use proptest::prelude::*;

const PFS: u8 = 3;
const MAX_VFS: u8 = 5;
const PLAIN: u8 = 3;

fn pf(i: u8) -> String {
    format!("0000:{:02x}:00.0", 0x10 + 2 * i)
}

fn vf(i: u8, k: u8) -> String {
    format!("0000:{:02x}:00.{k}", 0x11 + 2 * i)
}

fn plain(j: u8) -> String {
    format!("0000:00:{:02x}.0", j + 1)
}

/// Something that happens on the host; each makes the kernel send events naming devices.
#[derive(Debug, Clone)]
enum Op {
    AddPf(u8),
    RemovePf(u8),
    NumVfs(u8, u8),
    AddPlain(u8),
    RemovePlain(u8),
    /// Binds (true) or unbinds a driver on a PF, one of its VFs, or a plain device; a bound
    /// PF or plain device has an interface.
    BindPf(u8, bool),
    BindVf(u8, u8, bool),
    BindPlain(u8, bool),
    /// A vDPA device on a VF (added or removed).
    Vdpa(u8, u8, bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..PFS).prop_map(Op::AddPf),
        (0..PFS).prop_map(Op::RemovePf),
        (0..PFS, 0..=MAX_VFS).prop_map(|(i, n)| Op::NumVfs(i, n)),
        (0..PLAIN).prop_map(Op::AddPlain),
        (0..PLAIN).prop_map(Op::RemovePlain),
        (0..PFS, any::<bool>()).prop_map(|(i, b)| Op::BindPf(i, b)),
        (0..PFS, 0..MAX_VFS, any::<bool>()).prop_map(|(i, k, b)| Op::BindVf(i, k, b)),
        (0..PLAIN, any::<bool>()).prop_map(|(j, b)| Op::BindPlain(j, b)),
        (0..PFS, 0..MAX_VFS, any::<bool>()).prop_map(|(i, k, b)| Op::Vdpa(i, k, b)),
    ]
}

/// The fake host, and what its changes make the kernel name.
struct Host {
    tree: FakeSysfs,
}

impl Host {
    fn dir(&self, address: &str) -> std::path::PathBuf {
        self.tree.root().join("devices/pci0000:00").join(address)
    }

    fn exists(&self, address: &str) -> bool {
        self.dir(address).exists()
    }

    fn numvfs(&self, i: u8) -> u8 {
        std::fs::read_to_string(self.dir(&pf(i)).join("sriov_numvfs"))
            .map(|s| s.trim().parse().unwrap())
            .unwrap_or(0)
    }

    fn unbind(&self, address: &str, ifname: &str) {
        let _ = std::fs::remove_file(self.dir(address).join("driver"));
        let _ = std::fs::remove_dir_all(self.dir(address).join("net"));
        let _ = std::fs::remove_file(self.tree.root().join("class/net").join(ifname));
    }

    /// Applies `op` to the tree; returns the devices the kernel's events name.
    fn apply(&self, op: &Op) -> Vec<String> {
        match *op {
            Op::AddPf(i) if !self.exists(&pf(i)) => {
                self.tree
                    .add_device(&pf(i), 0x8086, 0x1572, 0x020000)
                    .attr("sriov_totalvfs", &MAX_VFS.to_string())
                    .attr("sriov_numvfs", "0")
                    .attr("sriov_vf_device", "154c");
                vec![pf(i)]
            }
            Op::RemovePf(i) if self.exists(&pf(i)) => {
                let mut named = self.apply(&Op::NumVfs(i, 0));
                self.unbind(&pf(i), &format!("pf{i}"));
                self.tree.remove(&pf(i));
                named.push(pf(i));
                named
            }
            Op::NumVfs(i, n) if self.exists(&pf(i)) => {
                let m = self.numvfs(i);
                let mut named = Vec::new();
                for k in n..m {
                    self.unbind(&vf(i, k), &format!("pf{i}v{k}"));
                    let vdpa = format!("bus/vdpa/devices/vdpa{}", i * 8 + k);
                    let _ = std::fs::remove_file(self.tree.root().join(vdpa));
                    self.tree.remove(&vf(i, k));
                    let _ = std::fs::remove_file(self.dir(&pf(i)).join(format!("virtfn{k}")));
                    named.push(vf(i, k));
                }
                for k in m..n {
                    self.tree
                        .add_device(&vf(i, k), 0x8086, 0x154c, 0x020000)
                        .link("physfn", &format!("../{}", pf(i)));
                    let link = self.dir(&pf(i)).join(format!("virtfn{k}"));
                    let _ = std::fs::remove_file(&link);
                    std::os::unix::fs::symlink(format!("../{}", vf(i, k)), link).unwrap();
                    named.push(vf(i, k));
                }
                std::fs::write(self.dir(&pf(i)).join("sriov_numvfs"), format!("{n}\n")).unwrap();
                named.push(pf(i));
                named
            }
            Op::AddPlain(j) if !self.exists(&plain(j)) => {
                self.tree.add_device(&plain(j), 0x8086, 0x10d3, 0x020000);
                vec![plain(j)]
            }
            Op::RemovePlain(j) if self.exists(&plain(j)) => {
                self.unbind(&plain(j), &format!("nic{j}"));
                self.tree.remove(&plain(j));
                vec![plain(j)]
            }
            Op::BindPf(i, bind) if self.exists(&pf(i)) => {
                self.bind(&pf(i), bind, "i40e", &format!("pf{i}"), i);
                vec![pf(i)]
            }
            Op::BindVf(i, k, bind) if self.exists(&vf(i, k)) => {
                self.bind(&vf(i, k), bind, "iavf", &format!("pf{i}v{k}"), k);
                vec![vf(i, k)]
            }
            Op::BindPlain(j, bind) if self.exists(&plain(j)) => {
                self.bind(&plain(j), bind, "e1000e", &format!("nic{j}"), 0x40 + j);
                vec![plain(j)]
            }
            Op::Vdpa(i, k, add) if self.exists(&vf(i, k)) => {
                let name = format!("vdpa{}", i * 8 + k);
                let link = self.tree.root().join("bus/vdpa/devices").join(&name);
                if add {
                    self.device(&vf(i, k)).vdpa(&name);
                } else {
                    let _ = std::fs::remove_file(link);
                    let _ = std::fs::remove_dir_all(self.dir(&vf(i, k)).join(&name));
                }
                vec![vf(i, k)]
            }
            _ => Vec::new(),
        }
    }

    /// A handle on an existing device's directory (rewriting only its ids, unchanged).
    fn device(&self, address: &str) -> pcitrack_discovery::fixture::FakeDevice {
        let read = |f: &str| {
            let s = std::fs::read_to_string(self.dir(address).join(f)).unwrap();
            u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).unwrap()
        };
        self.tree.add_device(
            address,
            read("vendor") as u16,
            read("device") as u16,
            read("class"),
        )
    }

    fn bind(&self, address: &str, bind: bool, driver: &str, ifname: &str, mac: u8) {
        self.unbind(address, ifname);
        if bind {
            self.device(address).driver(driver).net(
                ifname,
                &format!("02:00:00:00:00:{mac:02x}"),
                None,
            );
        }
    }
}

/// The embedded default policies with a device_spec that reads the inventory: `pf0`'s VFs
/// match by their PF's interface name, the others by ids. Loaded once for all the cases.
fn policies() -> &'static PolicySet {
    // The engine stays with its policies for the whole run.
    static LOADED: std::sync::OnceLock<pcitrack::policies::Policies> = std::sync::OnceLock::new();
    &LOADED
        .get_or_init(|| {
            let state = Box::leak(Box::new(tempfile::tempdir().unwrap()));
            load_policies(state.path())
        })
        .loaded
        .set
}

fn load_policies(state: &Path) -> pcitrack::policies::Policies {
    let text = format!(
        "[agent]\nstate_dir = {state:?}\n[pci]\ndevice_spec = [\
         '{{\"devname\": \"pf0\", \"physical_network\": \"physnet0\"}}', \
         '{{\"vendor_id\": \"8086\", \"product_id\": \"154c\", \"physical_network\": \"physnet1\"}}', \
         '{{\"vendor_id\": \"8086\", \"product_id\": \"1572\"}}', \
         '{{\"vendor_id\": \"8086\", \"product_id\": \"10d3\"}}']\n"
    );
    let config = Config::parse(&text, Path::new("test.toml")).unwrap();
    let policies = pcitrack::policies::load(&config, None).unwrap();
    assert!(
        policies.loaded.errors.is_empty(),
        "{:?}",
        policies.loaded.errors
    );
    policies
}

/// The rows to compare: everything a row holds, with the count of syncs a device has been
/// missing read as missing or not (a full sync counts for every missing device, a partial
/// one for those of its scope only).
fn rows(t: &mut Tracker) -> Vec<TrackedDevice> {
    t.devices(&DeviceFilter::default())
        .unwrap()
        .into_iter()
        .map(|mut d| {
            d.missing_syncs = d.missing_syncs.min(1);
            d
        })
        .collect()
}

fn full_sync(t: &mut Tracker, set: &PolicySet, root: &Path) -> Vec<Device> {
    let devices = pcitrack_discovery::scan(root).devices;
    pipeline::sync(t, set, &devices).unwrap();
    devices
}

fn check(set: &PolicySet, before: &[Op], claims: &[u8], bursts: &[Vec<Op>]) {
    let host = Host {
        tree: FakeSysfs::new(),
    };
    for op in before {
        host.apply(op);
    }
    let mut incremental = Tracker::in_memory().unwrap();
    let mut full = Tracker::in_memory().unwrap();
    let mut inventory = full_sync(&mut incremental, set, host.tree.root());
    full_sync(&mut full, set, host.tree.root());
    for (n, &c) in claims.iter().enumerate() {
        let product = ["154c", "1572", "10d3"][c as usize % 3];
        let spec = format!("{{\"vendor_id\": \"8086\", \"product_id\": \"{product}\"}}");
        let request = PciRequest::from_spec_json(&spec, 1).unwrap();
        let instance = format!("vm{n}");
        let a = incremental.claim(&instance, std::slice::from_ref(&request), None);
        let b = full.claim(&instance, &[request], None);
        assert_eq!(a.is_ok(), b.is_ok());
        if n % 2 == 0 {
            let _ = incremental.allocate(&instance);
            let _ = full.allocate(&instance);
        }
    }
    assert_same_rows(&mut incremental, &mut full, "after the claims");

    for burst in bursts {
        let named: BTreeSet<PciAddress> = burst
            .iter()
            .flat_map(|op| host.apply(op))
            .map(|a| a.parse().unwrap())
            .collect();
        if named.is_empty() {
            continue;
        }
        let rescan = pcitrack_discovery::rescan(host.tree.root(), &inventory, &named).unwrap();
        inventory = pipeline::patch(inventory, |d| d.address, &rescan.scope, rescan.devices);
        // The agent's two halves, as it runs them (host/src/daemon/agent.rs).
        let assessed = pipeline::evaluate_some(set, &inventory, &rescan.scope);
        pipeline::sync_some(&mut incremental, set, &assessed, &rescan.scope).unwrap();
        full_sync(&mut full, set, host.tree.root());
    }
    let final_scan = pcitrack_discovery::scan(host.tree.root()).devices;
    assert_eq!(
        inventory, final_scan,
        "the patched inventory is the full scan's"
    );
    assert_same_rows(&mut incremental, &mut full, "after the bursts");
}

fn assert_same_rows(a: &mut Tracker, b: &mut Tracker, when: &str) {
    let (a, b) = (rows(a), rows(b));
    if a != b {
        let show = |rows: &[TrackedDevice]| {
            rows.iter()
                .map(|d| format!("{d:?}"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        panic!(
            "{when}: incremental and full reconciles differ\nincremental:\n{}\nfull:\n{}",
            show(&a),
            show(&b)
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn incremental_reconciles_leave_the_database_a_full_one_does(
        before in prop::collection::vec(op(), 0..12),
        claims in prop::collection::vec(0u8..3, 0..4),
        bursts in prop::collection::vec(prop::collection::vec(op(), 1..4), 1..12),
    ) {
        check(policies(), &before, &claims, &bursts);
    }
}

/// A hand-written sequence that goes through every kind of change once, so a failure shows
/// without shrinking.
#[test]
fn every_kind_of_change_once() {
    let before = [
        Op::AddPf(0),
        Op::NumVfs(0, 3),
        Op::AddPf(1),
        Op::NumVfs(1, 2),
        Op::AddPlain(0),
    ];
    let bursts = [
        vec![Op::BindPf(0, true)],
        vec![Op::BindVf(0, 1, true)],
        vec![Op::NumVfs(0, 1)],
        vec![Op::Vdpa(1, 0, true)],
        vec![Op::RemovePf(1), Op::AddPlain(1)],
        vec![Op::BindPlain(0, true), Op::NumVfs(0, 4)],
        vec![Op::BindPf(0, false)],
        vec![Op::RemovePlain(0)],
    ];
    check(policies(), &before, &[0, 1, 0, 2], &bursts);
}

/// Through the running agent: on a large tree, one device's uevent makes its change visible
/// in `/v1/devices`, and `/v1/health` says the reconcile re-read that device and its PF only.
#[test]
fn one_devices_uevent_on_a_large_tree_is_reconciled_incrementally() {
    let tree = FakeSysfs::generate_large(4, 64, 4);
    let d = Daemon::start(
        tree,
        "[pci]\ndevice_spec = ['{\"vendor_id\": \"8086\", \"product_id\": \"154c\"}']\n",
    );
    let t = Duration::from_secs(60);
    assert_eq!(d.tracked().len(), 4 * 64);
    let first = d.get("/v1/health")["last_reconcile"].clone();
    assert_eq!(first["incremental"], false, "{first}");
    assert_eq!(first["reread"], 4 * 65 + 4, "{first}");

    let vf = "0000:11:02.3";
    let numa = |d: &Daemon| {
        d.get("/v1/devices")
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["address"] == vf)
            .map(|r| r["numa_node"].clone())
    };
    assert_eq!(numa(&d), Some(serde_json::Value::Null));
    std::fs::write(
        d.sysfs
            .root()
            .join("bus/pci/devices")
            .join(vf)
            .join("numa_node"),
        "1\n",
    )
    .unwrap();
    d.uevent("change", vf);
    assert!(
        d.wait_for(t, |d| numa(d) == Some(1.into())),
        "log:\n{}",
        d.log()
    );
    let last = d.get("/v1/health")["last_reconcile"].clone();
    assert_eq!(last["trigger"], "uevent", "{last}");
    assert_eq!(last["incremental"], true, "{last}");
    assert_eq!(last["reread"], 2, "the VF and its PF: {last}");
    assert_eq!(last["updated"], 1, "{last}");
    assert_eq!(last["discovered"], 4 * 65 + 4, "{last}");

    // A VF that goes: reported missing by its uevent, deleted (Nova's rule).
    d.sysfs.remove(vf);
    d.uevent("remove", vf);
    assert!(
        d.wait_for(t, |d| !d.tracked().iter().any(|a| a == vf)),
        "log:\n{}",
        d.log()
    );
    let last = d.get("/v1/health")["last_reconcile"].clone();
    assert_eq!(last["incremental"], true, "{last}");
    assert_eq!(last["deleted"], 1, "{last}");
    assert_eq!(d.tracked().len(), 4 * 64 - 1);
    assert_eq!(
        d.get("/v1/verdicts").as_array().unwrap().len(),
        4 * 65 + 4 - 1,
        "the verdicts follow the inventory"
    );
    let log = plain_text(&d.log());
    assert!(
        log.contains("reconciled duration_ms=") && log.contains("incremental=true reread=1"),
        "log:\n{log}"
    );
}

/// The log without its colours.
fn plain_text(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
