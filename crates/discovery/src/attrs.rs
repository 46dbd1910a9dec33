//! Reading sysfs attributes: capped, never following links, never failing loudly.
//!
//! Every read is capped, so a huge or endless file cannot stall a scan; links are read with
//! `readlinkat` and only their last component is used, so a link loop cannot either; any
//! error (missing, permission denied, I/O) reads as "absent".
//!
//! A scan is bound by system calls, so a device directory is listed once and only the
//! attributes it has are opened: on most devices half of what discovery looks for (subsystem
//! ids, driver, IOMMU group, netdevs, VPD, SR-IOV files) is absent, and asking for each
//! would cost a failed lookup; and the ids, class and driver come from one read of the
//! device's `uevent` file where it has one ([`Uevent`]). The system calls (`openat`,
//! `getdents64`, `readlinkat` relative to the open directory) go through rustix's safe
//! wrappers.

use std::fs::File;
use std::io::{self, Read};
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{CWD, FileType, Mode, OFlags, RawDir};

/// Largest attribute read, in bytes.
pub const ATTR_CAP: u64 = 64 << 10;
/// Largest VPD read, in bytes (VPD addresses are 15 bits).
pub const VPD_CAP: u64 = 32 << 10;
/// Largest directory listing kept, in bytes of names. A sysfs device directory's names take
/// about 1 KiB (3 KiB for a PF with 255 `virtfn` links); past the cap the listing is dropped
/// and every attribute is tried, as if the directory could not be listed.
const LISTING_CAP: usize = 256 << 10;
/// Room given to each `getdents64` call: enough for a whole device directory in one call.
const LISTING_CHUNK: usize = 8 << 10;

/// The text of an attribute, trimmed; `None` when absent, unreadable or not UTF-8.
pub fn read_text(path: &Path) -> Option<String> {
    with_text(File::open(path).ok()?, |text| Some(text.to_string()))
}

/// Reads an attribute and hands its text, trimmed, to `parse`; `None` when unreadable or not
/// UTF-8.
///
/// sysfs hands a small attribute over in one `read`, so this is one read into a stack
/// buffer, parsed in place: no `statx`, no second read, no allocation. Attributes longer
/// than the buffer (none that discovery reads) fall back to the capped read.
fn with_text<T>(mut file: File, parse: impl FnOnce(&str) -> Option<T>) -> Option<T> {
    let mut buf = [0u8; 256];
    let n = file.read(&mut buf).ok()?;
    if n < buf.len() {
        return parse(std::str::from_utf8(&buf[..n]).ok()?.trim());
    }
    let mut all = buf.to_vec();
    file.take(ATTR_CAP).read_to_end(&mut all).ok()?;
    parse(std::str::from_utf8(&all).ok()?.trim())
}

/// Flags for opening a directory (following links: a device entry is a link).
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::CLOEXEC);

/// The directory of device links (`<root>/bus/pci/devices`), opened once so that each
/// device is opened relative to it: the kernel then walks only the device's link, not the
/// whole path from the root again.
pub struct DevicesDir {
    fd: OwnedFd,
}

impl DevicesDir {
    /// Opens the directory.
    ///
    /// # Errors
    ///
    /// It cannot be opened as a directory (missing, not a directory, permission denied).
    pub fn open(path: &Path) -> io::Result<Self> {
        Ok(Self {
            fd: rustix::fs::openat(CWD, path, DIR_FLAGS, Mode::empty())?,
        })
    }

    /// The names of the directory's entries (without `.` and `..`), in directory order.
    ///
    /// # Errors
    ///
    /// Listing it failed (`getdents64`: an I/O error, or the directory was removed).
    pub fn names(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for_each_entry(&self.fd, &mut Vec::new(), |name, _| {
            names.push(String::from_utf8_lossy(name).into_owned());
            true
        })?;
        Ok(names)
    }

    /// The last component of the target of the link at `path` (relative, `<entry>/physfn`)
    /// parsed as `T`.
    pub fn link_parsed<T: std::str::FromStr>(&self, path: &str) -> Option<T> {
        link_last(&self.fd, path, |last| {
            std::str::from_utf8(last).ok()?.parse().ok()
        })
    }

    /// Opens the device directory `name` (following its link) and lists it into `listing`,
    /// whose buffers a scan thread reuses from one device to the next.
    pub fn device<'a>(&self, name: &str, listing: &'a mut Listing) -> Option<DeviceDir<'a>> {
        let fd = rustix::fs::openat(&self.fd, name, DIR_FLAGS, Mode::empty()).ok()?;
        let listed = listing.read(&fd);
        Some(DeviceDir {
            fd,
            listing: listed.then_some(&*listing),
        })
    }
}

/// A device directory opened once and listed once; its attributes are then opened relative
/// to it (`openat`, `readlinkat`), and only when listed.
pub struct DeviceDir<'a> {
    fd: OwnedFd,
    /// `None` when the directory could not be listed: then every attribute is tried.
    listing: Option<&'a Listing>,
}

impl DeviceDir<'_> {
    /// Whether `name` is worth a system call: listed (as a link or of unknown type, when a
    /// link is wanted), or the directory could not be listed.
    pub fn may_have(&self, name: &str, link: bool) -> bool {
        let Some(listing) = &self.listing else {
            return true;
        };
        match listing.find(name.as_bytes()) {
            None => false,
            Some(maybe_link) => !link || maybe_link,
        }
    }

    fn open_file(&self, name: &str) -> Option<File> {
        if !self.may_have(name, false) {
            return None;
        }
        let flags = OFlags::RDONLY | OFlags::CLOEXEC;
        rustix::fs::openat(&self.fd, name, flags, Mode::empty())
            .ok()
            .map(File::from)
    }

    /// At most `cap` bytes of an attribute.
    pub fn bytes(&self, name: &str, cap: u64) -> Option<Vec<u8>> {
        let file = self.open_file(name)?;
        let mut buf = Vec::new();
        file.take(cap).read_to_end(&mut buf).ok()?;
        Some(buf)
    }

    /// The last component of a link's target.
    pub fn link_name(&self, name: &str) -> Option<String> {
        self.with_link(name, |last| {
            Some(String::from_utf8_lossy(last).into_owned())
        })
    }

    /// The last component of a link's target parsed as `T` (a PCI address, a group number):
    /// parsed where it was read, without a `String` per link (a PF has one per VF).
    pub fn link_parsed<T: std::str::FromStr>(&self, name: &str) -> Option<T> {
        self.with_link(name, |last| std::str::from_utf8(last).ok()?.parse().ok())
    }

    /// Reads a link, when listed, and hands the last component of its target (never empty)
    /// to `parse`.
    fn with_link<T>(&self, name: &str, parse: impl FnOnce(&[u8]) -> Option<T>) -> Option<T> {
        if !self.may_have(name, true) {
            return None;
        }
        link_last(&self.fd, name, parse)
    }

    /// A hexadecimal attribute of at most `digits` digits.
    pub fn hex(&self, name: &str, digits: usize) -> Option<u32> {
        with_text(self.open_file(name)?, |text| {
            pcitrack_model::parse_hex_id(text, digits).ok()
        })
    }

    /// A decimal attribute.
    pub fn dec<T: std::str::FromStr>(&self, name: &str) -> Option<T> {
        with_text(self.open_file(name)?, |text| text.parse().ok())
    }

    /// What the device's `uevent` file says, read only when the directory was listed and
    /// holds one; empty otherwise (then every value comes from its own attribute).
    pub fn uevent(&self) -> Uevent {
        if self.listing.is_none() {
            return Uevent::default();
        }
        self.open_file("uevent")
            .and_then(|file| with_text(file, |text| Some(Uevent::parse(text))))
            .unwrap_or_default()
    }

    /// A hexadecimal attribute of at most `digits` digits, or `known` (the same kernel field
    /// as `uevent` prints it) when the attribute is listed: the listing decides whether the
    /// device has it, `known` spares opening it.
    pub fn hex_or(&self, known: Option<u32>, name: &str, digits: usize) -> Option<u32> {
        if !self.may_have(name, false) {
            return None;
        }
        known.or_else(|| self.hex(name, digits))
    }

    /// The last component of a link's target, or `known` (the driver `uevent` names) when the
    /// link is listed.
    pub fn link_name_or(&self, known: Option<&str>, name: &str) -> Option<String> {
        if !self.may_have(name, true) {
            return None;
        }
        known.map(str::to_string).or_else(|| self.link_name(name))
    }
}

/// The values of a PCI device's `uevent` file that are also attributes of its own: the
/// kernel prints both from the same fields of its `struct pci_dev` (`pci_uevent` in
/// `drivers/pci/pci-driver.c`: `PCI_CLASS=%04X`, `PCI_ID=%04X:%04X`, `PCI_SUBSYS_ID=%04X:%04X`;
/// `dev_uevent`: `DRIVER=` the bound driver's name, which its `driver` link is named after).
/// One read of it stands for the `vendor`, `device`, `class`, `subsystem_*` files and the
/// `driver` link: a third of the system calls of reading a device. A value missing or
/// malformed here is read from its own attribute.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Uevent {
    /// `PCI_ID`'s vendor.
    pub vendor: Option<u32>,
    /// `PCI_ID`'s device.
    pub device: Option<u32>,
    /// `PCI_SUBSYS_ID`'s vendor.
    pub subsystem_vendor: Option<u32>,
    /// `PCI_SUBSYS_ID`'s device.
    pub subsystem_device: Option<u32>,
    /// `PCI_CLASS` (24 bits).
    pub class: Option<u32>,
    /// `DRIVER`.
    pub driver: Option<String>,
}

impl Uevent {
    /// Parses `KEY=VALUE` lines; other keys are ignored.
    pub fn parse(text: &str) -> Self {
        let pair = |v: &str| {
            let (a, b) = v.split_once(':')?;
            let hex = |s: &str| pcitrack_model::parse_hex_id(s, 4).ok();
            Some((hex(a)?, hex(b)?))
        };
        let mut u = Self::default();
        for (key, value) in text.lines().filter_map(|l| l.split_once('=')) {
            match key {
                "PCI_ID" => (u.vendor, u.device) = pair(value).unzip(),
                "PCI_SUBSYS_ID" => (u.subsystem_vendor, u.subsystem_device) = pair(value).unzip(),
                "PCI_CLASS" => u.class = pcitrack_model::parse_hex_id(value, 6).ok(),
                "DRIVER" if !value.is_empty() && !value.contains('/') => {
                    u.driver = Some(value.to_string());
                }
                _ => {}
            }
        }
        u
    }
}

/// Reads the link `name` (relative to `dir`) and hands the last component of its target
/// (never empty) to `parse`. The buffer is left uninitialised: the kernel fills what it
/// returns, and zeroing a page per link (a PF has one per VF) would be work for nothing.
fn link_last<T>(dir: &OwnedFd, name: &str, parse: impl FnOnce(&[u8]) -> Option<T>) -> Option<T> {
    let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
    let (target, _) = rustix::fs::readlinkat_raw(dir, name, &mut buf).ok()?;
    let last = target.rsplit(|&b| b == b'/').next()?;
    if last.is_empty() {
        return None;
    }
    parse(last)
}

/// A directory's entries: their names in one buffer (no allocation per name) and an index
/// of them sorted by name, so that looking up each of a PF's 255 `virtfnN` links does not
/// walk the whole listing. A scan thread keeps one and lists every device directory into
/// it, so its buffers (and the one `getdents64` fills) are allocated once per thread.
#[derive(Default)]
pub struct Listing {
    names: Vec<u8>,
    sorted: Vec<Entry>,
    dirents: Vec<u8>,
}

/// A listed entry: where its name is in the names buffer, and whether it may be a link
/// (a link, or a file system that does not say).
#[derive(Clone, Copy)]
struct Entry {
    start: u32,
    len: u16,
    maybe_link: bool,
}

impl Listing {
    /// Lists the directory in place of what was listed before; `false` when it cannot be
    /// listed or the listing passes [`LISTING_CAP`].
    fn read(&mut self, dir: &OwnedFd) -> bool {
        let Self {
            names,
            sorted,
            dirents,
        } = self;
        names.clear();
        sorted.clear();
        let mut fits = true;
        let listed = for_each_entry(dir, dirents, |name, kind| {
            let (Ok(start), Ok(len)) = (u32::try_from(names.len()), u16::try_from(name.len()))
            else {
                fits = false;
                return false;
            };
            names.extend_from_slice(name);
            sorted.push(Entry {
                start,
                len,
                maybe_link: matches!(kind, FileType::Symlink | FileType::Unknown),
            });
            fits = names.len() <= LISTING_CAP;
            fits
        });
        if listed.is_err() || !fits {
            return false;
        }
        sorted.sort_unstable_by(|a, b| a.name(names).cmp(b.name(names)));
        true
    }

    /// Whether the entry `name` may be a link, if listed.
    fn find(&self, name: &[u8]) -> Option<bool> {
        let i = self
            .sorted
            .binary_search_by(|e| e.name(&self.names).cmp(name))
            .ok()?;
        Some(self.sorted[i].maybe_link)
    }
}

impl Entry {
    fn name<'a>(&self, names: &'a [u8]) -> &'a [u8] {
        &names[self.start as usize..][..usize::from(self.len)]
    }
}

/// Hands each entry of an open directory (but `.` and `..`) to `visit` with its type, until
/// `visit` says stop; reads with as few `getdents64` calls as it takes (two for a device
/// directory: one full, one finding the end), into `buf` (given [`LISTING_CHUNK`] bytes of
/// room the first time), reused by every call.
fn for_each_entry(
    dir: &OwnedFd,
    buf: &mut Vec<u8>,
    mut visit: impl FnMut(&[u8], FileType) -> bool,
) -> io::Result<()> {
    buf.clear();
    buf.reserve(LISTING_CHUNK);
    let mut entries = RawDir::new(dir, buf.spare_capacity_mut());
    while let Some(entry) = entries.next() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        if !visit(name, entry.file_type()) {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A devices directory holding one device directory with an attribute, a link and a
    /// subdirectory, among enough other entries that the sorted index is searched rather
    /// than walked.
    fn devices_dir() -> (tempfile::TempDir, DevicesDir) {
        let root = tempfile::tempdir().unwrap();
        let dev = root.path().join("0000:01:00.0");
        std::fs::create_dir_all(dev.join("net")).unwrap();
        std::fs::write(dev.join("vendor"), "0x8086\n").unwrap();
        std::fs::write(dev.join("numa_node"), "1\n").unwrap();
        for n in 0..300 {
            std::os::unix::fs::symlink(
                format!("../0000:01:00.{n}"),
                dev.join(format!("virtfn{n}")),
            )
            .unwrap();
        }
        let devices = DevicesDir::open(root.path()).unwrap();
        (root, devices)
    }

    #[test]
    fn only_listed_attributes_are_read_and_links_must_be_links() {
        let (_root, devices) = devices_dir();
        let mut listing = Listing::default();
        let dir = devices.device("0000:01:00.0", &mut listing).unwrap();
        assert!(dir.listing.is_some(), "a small directory is listed");
        assert_eq!(dir.hex("vendor", 4), Some(0x8086));
        assert_eq!(dir.dec::<i32>("numa_node"), Some(1));
        assert_eq!(dir.hex("device", 4), None, "absent attribute");
        assert!(dir.may_have("net", false));
        assert!(dir.may_have("virtfn0", true));
        assert!(dir.may_have("virtfn299", true));
        assert!(!dir.may_have("virtfn300", true));
        assert!(!dir.may_have("vendor", true), "a file is not a link");
        assert_eq!(dir.link_name("virtfn17").as_deref(), Some("0000:01:00.17"));
        assert_eq!(dir.link_name("vendor"), None);
        assert_eq!(
            dir.link_parsed::<pcitrack_model::PciAddress>("virtfn17"),
            "0000:01:00.17".parse().ok()
        );
        assert_eq!(dir.link_parsed::<u32>("virtfn17"), None, "not a number");
    }

    #[test]
    fn a_reused_listing_holds_only_the_last_directory() {
        let (root, devices) = devices_dir();
        let other = root.path().join("0000:02:00.0");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join("device"), "0x1572\n").unwrap();
        let mut listing = Listing::default();
        drop(devices.device("0000:01:00.0", &mut listing).unwrap());
        let dir = devices.device("0000:02:00.0", &mut listing).unwrap();
        assert_eq!(dir.hex("device", 4), Some(0x1572));
        assert!(
            !dir.may_have("vendor", false),
            "the first directory's entry"
        );
        assert!(!dir.may_have("virtfn0", true), "the first directory's link");
        assert!(!dir.may_have("net", false));
    }

    #[test]
    fn the_devices_directory_lists_names_without_dot_entries() {
        let (root, _devices) = devices_dir();
        std::fs::create_dir(root.path().join("0000:02:00.0")).unwrap();
        let devices = DevicesDir::open(root.path()).unwrap();
        let mut names = devices.names().unwrap();
        names.sort();
        assert_eq!(names, ["0000:01:00.0", "0000:02:00.0"]);
    }

    #[test]
    fn an_unlisted_directory_tries_every_attribute() {
        let (_root, devices) = devices_dir();
        let mut listing = Listing::default();
        let mut dir = devices.device("0000:01:00.0", &mut listing).unwrap();
        dir.listing = None;
        assert!(dir.may_have("anything", true));
        assert_eq!(dir.hex("vendor", 4), Some(0x8086));
        assert_eq!(dir.hex("device", 4), None);
    }
}
