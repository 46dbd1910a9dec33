//! Fake sysfs trees for tests and benchmarks, laid out like the real one (device
//! directories under `devices/pci0000:00/`, `bus/pci/devices/<addr>` links to them, drivers,
//! `class/net` links, a config space file), so that both pcitrack and `lspci -A linux-sysfs`
//! can read them.
//!
//! Test support only: built under `cfg(test)` and the `test-support` feature (which the
//! crates whose tests and benchmarks use it enable in their dev-dependencies), so the agent's
//! binary carries neither this nor `tempfile`.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// A sysfs tree in a temporary directory, removed when dropped.
pub struct FakeSysfs {
    dir: TempDir,
}

/// One fake device's directory, to add attributes, links, a driver and netdevs to.
pub struct FakeDevice {
    root: PathBuf,
    path: PathBuf,
}

fn write(path: &Path, text: impl AsRef<[u8]>) {
    fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

impl Default for FakeSysfs {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeSysfs {
    /// An empty tree.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        for d in [
            "bus/pci/devices",
            "bus/pci/drivers",
            "devices/pci0000:00",
            "class/net",
        ] {
            fs::create_dir_all(dir.path().join(d)).expect("tree");
        }
        Self { dir }
    }

    /// The root to scan (what `/sys` is on a host).
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Keeps the tree on disk (it is no longer removed when dropped) and returns its root.
    pub fn keep(self) -> PathBuf {
        self.dir.keep()
    }

    /// `lspci -D -nn -vmm -k` reading this tree instead of `/sys` (pciutils' `linux-sysfs`
    /// access method with its `sysfs.path` option): the baseline the discovery tests and the
    /// benchmarks compare with. Returns the command, not yet run.
    pub fn lspci(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new("lspci");
        cmd.args(["-D", "-nn", "-vmm", "-k", "-A", "linux-sysfs", "-O"])
            .arg(format!(
                "sysfs.path={}",
                self.root().join("bus/pci").display()
            ));
        cmd
    }

    /// Adds a device with its ids, class (24 bits), a config space lspci can read and the
    /// `uevent` file the kernel gives every device (kept in step by the builder methods).
    pub fn add_device(&self, address: &str, vendor: u16, device: u16, class: u32) -> FakeDevice {
        let path = self.root().join("devices/pci0000:00").join(address);
        fs::create_dir_all(&path).expect("device dir");
        let link = self.root().join("bus/pci/devices").join(address);
        let _ = fs::remove_file(&link);
        symlink(format!("../../../devices/pci0000:00/{address}"), &link).expect("bus link");
        write(&path.join("vendor"), format!("0x{vendor:04x}\n"));
        write(&path.join("device"), format!("0x{device:04x}\n"));
        write(&path.join("class"), format!("0x{class:06x}\n"));
        write(&path.join("revision"), "0x01\n");
        write(&path.join("numa_node"), "-1\n");
        let mut config = [0u8; 64];
        config[0..2].copy_from_slice(&vendor.to_le_bytes());
        config[2..4].copy_from_slice(&device.to_le_bytes());
        config[8] = 1;
        config[9..12].copy_from_slice(&class.to_le_bytes()[..3]);
        write(&path.join("config"), config);
        let device = FakeDevice {
            root: self.root().to_path_buf(),
            path,
        };
        device.sync_uevent();
        device
    }

    /// A handle on a device added before, to change its attributes (its `uevent` follows).
    pub fn device(&self, address: &str) -> FakeDevice {
        FakeDevice {
            root: self.root().to_path_buf(),
            path: self.root().join("devices/pci0000:00").join(address),
        }
    }

    /// Adds a PF with `n` VFs (on the next bus, eight functions per slot), with the
    /// `physfn`/`virtfnN` links and `sriov_*` files the kernel creates. Returns the VFs'
    /// addresses.
    pub fn add_pf_with_vfs(
        &self,
        pf: &str,
        vendor: u16,
        pf_device: u16,
        vf_device: u16,
        n: u16,
    ) -> Vec<String> {
        let pf_addr: pcitrack_model::PciAddress = pf.parse().expect("PF address");
        let pf_dir = self.add_device(pf, vendor, pf_device, 0x020000);
        pf_dir
            .attr("sriov_totalvfs", &n.to_string())
            .attr("sriov_numvfs", &n.to_string())
            .attr("sriov_vf_device", &format!("{vf_device:04x}"));
        (0..n)
            .map(|k| {
                let vf = pcitrack_model::PciAddress::new(
                    pf_addr.domain,
                    pf_addr.bus.wrapping_add(1),
                    (k / 8) as u8,
                    (k % 8) as u8,
                )
                .expect("VF address")
                .to_string();
                self.add_device(&vf, vendor, vf_device, 0x020000)
                    .link("physfn", &format!("../{pf}"));
                pf_dir.link(&format!("virtfn{k}"), &format!("../{vf}"));
                vf
            })
            .collect()
    }

    /// Removes a device, as when its VFs are disabled or it is unplugged.
    pub fn remove(&self, address: &str) {
        let _ = fs::remove_file(self.root().join("bus/pci/devices").join(address));
        let _ = fs::remove_dir_all(self.root().join("devices/pci0000:00").join(address));
    }

    /// A device directory whose entries are as given, with no vendor file: discovery must
    /// skip it by name.
    pub fn add_broken(&self, address: &str, files: &[(&str, &str)]) -> FakeDevice {
        let d = self.add_device(address, 0, 0, 0);
        let _ = fs::remove_file(d.path.join("vendor"));
        d.sync_uevent();
        for (name, value) in files {
            d.attr(name, value);
        }
        d
    }

    /// Adds NUMA node `node` with its `cpulist` written as given (`"0-3,8"`, or garbage).
    pub fn add_numa_node(&self, node: u32, cpulist: &str) -> &Self {
        let dir = self.root().join(format!("devices/system/node/node{node}"));
        fs::create_dir_all(&dir).expect("node dir");
        write(&dir.join("cpulist"), format!("{cpulist}\n"));
        self
    }

    /// Adds CPU `cpu` with its `topology/physical_package_id` written as given (its socket).
    pub fn add_cpu(&self, cpu: u32, physical_package_id: &str) -> &Self {
        let dir = self
            .root()
            .join(format!("devices/system/cpu/cpu{cpu}/topology"));
        fs::create_dir_all(&dir).expect("cpu dir");
        write(
            &dir.join("physical_package_id"),
            format!("{physical_package_id}\n"),
        );
        self
    }

    /// A large host for benchmarks: `pfs` PFs with `vfs_per_pf` VFs each (on buses 0x10,
    /// 0x12, ...), plus `plain` devices on bus 0.
    pub fn generate_large(pfs: u8, vfs_per_pf: u16, plain: u8) -> Self {
        let tree = Self::new();
        for i in 0..pfs {
            let pf = format!("0000:{:02x}:00.0", 0x10 + 2 * i as u32);
            tree.add_pf_with_vfs(&pf, 0x8086, 0x1572, 0x154c, vfs_per_pf)
                .len();
        }
        for i in 0..plain {
            tree.add_device(
                &format!("0000:00:{:02x}.0", i % 32),
                0x8086,
                0xa1d2,
                0x060400,
            )
            .driver("pcieport");
        }
        tree
    }
}

impl FakeDevice {
    /// Writes an attribute file.
    pub fn attr(&self, name: &str, value: &str) -> &Self {
        write(&self.path.join(name), format!("{value}\n"));
        self.sync_uevent();
        self
    }

    /// Writes raw bytes to an attribute (VPD, garbage).
    pub fn bytes(&self, name: &str, value: &[u8]) -> &Self {
        write(&self.path.join(name), value);
        self.sync_uevent();
        self
    }

    /// A symbolic link in the device directory.
    pub fn link(&self, name: &str, target: &str) -> &Self {
        let p = self.path.join(name);
        let _ = fs::remove_file(&p);
        symlink(target, &p).expect("link");
        if name == "driver" {
            self.sync_uevent();
        }
        self
    }

    /// Rewrites the device's `uevent` file from its attributes, as the kernel prints it
    /// (`DRIVER`, `PCI_CLASS`, `PCI_ID`, `PCI_SUBSYS_ID`, `PCI_SLOT_NAME`), with the keys
    /// whose attributes read as discovery reads them: a malformed or missing attribute
    /// leaves its key out, so that discovery falls back to the attribute and reports it.
    /// The builder methods call it; a test that writes an id attribute or the `driver` link
    /// directly must call it too (the kernel never lets the two disagree).
    pub fn sync_uevent(&self) {
        let hex = |name: &str, digits: usize| {
            let bytes = fs::read(self.path.join(name)).ok()?;
            let text = std::str::from_utf8(&bytes).ok()?;
            pcitrack_model::parse_hex_id(text.trim(), digits).ok()
        };
        let mut text = String::new();
        if let Ok(target) = fs::read_link(self.path.join("driver")) {
            let target = target.to_string_lossy().into_owned();
            let last = target.rsplit('/').next().unwrap_or_default();
            if !last.is_empty() {
                text.push_str(&format!("DRIVER={last}\n"));
            }
        }
        if let Some(class) = hex("class", 6) {
            text.push_str(&format!("PCI_CLASS={class:04X}\n"));
        }
        if let (Some(v), Some(d)) = (hex("vendor", 4), hex("device", 4)) {
            text.push_str(&format!("PCI_ID={v:04X}:{d:04X}\n"));
        }
        if let (Some(v), Some(d)) = (hex("subsystem_vendor", 4), hex("subsystem_device", 4)) {
            text.push_str(&format!("PCI_SUBSYS_ID={v:04X}:{d:04X}\n"));
        }
        if let Some(name) = self.path.file_name() {
            text.push_str(&format!("PCI_SLOT_NAME={}\n", name.to_string_lossy()));
        }
        write(&self.path.join("uevent"), text);
    }

    /// Binds a driver (the `driver` link, and the driver's directory).
    pub fn driver(&self, name: &str) -> &Self {
        fs::create_dir_all(self.root.join("bus/pci/drivers").join(name)).expect("driver dir");
        self.link("driver", &format!("../../../bus/pci/drivers/{name}"))
    }

    /// Sets the NUMA node.
    pub fn numa(&self, node: i32) -> &Self {
        self.attr("numa_node", &node.to_string())
    }

    /// Adds a network interface, with its `/sys/class/net` link.
    pub fn net(&self, ifname: &str, mac: &str, phys_port_name: Option<&str>) -> &Self {
        let dir = self.path.join("net").join(ifname);
        fs::create_dir_all(&dir).expect("net dir");
        write(&dir.join("address"), format!("{mac}\n"));
        if let Some(p) = phys_port_name {
            write(&dir.join("phys_port_name"), format!("{p}\n"));
        }
        let address = self
            .path
            .file_name()
            .expect("device dir name")
            .to_string_lossy();
        let _ = symlink(
            format!("../../devices/pci0000:00/{address}/net/{ifname}"),
            self.root.join("class/net").join(ifname),
        );
        self
    }

    /// Adds a vDPA device `name` (`vdpa0`) as the kernel lays one out: a child directory of
    /// this device with its `vhost-vdpa-N` character device bound to `vhost_vdpa`, and the
    /// `bus/vdpa/devices/<name>` link to it.
    pub fn vdpa(&self, name: &str) -> &Self {
        let dir = self.path.join(name);
        let n = name.trim_start_matches(|c: char| !c.is_ascii_digit());
        fs::create_dir_all(dir.join(format!("vhost-vdpa-{n}"))).expect("vdpa dir");
        let bus = self.root.join("bus/vdpa");
        fs::create_dir_all(bus.join("devices")).expect("vdpa bus");
        fs::create_dir_all(bus.join("drivers/vhost_vdpa")).expect("vdpa driver");
        let _ = symlink(
            "../../../../bus/vdpa/drivers/vhost_vdpa",
            dir.join("driver"),
        );
        let address = self
            .path
            .file_name()
            .expect("device dir name")
            .to_string_lossy();
        let link = bus.join("devices").join(name);
        let _ = fs::remove_file(&link);
        symlink(
            format!("../../../devices/pci0000:00/{address}/{name}"),
            link,
        )
        .expect("vdpa bus link");
        self
    }

    /// The device directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
