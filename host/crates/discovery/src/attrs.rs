//! Reading sysfs attributes: capped, never following links, never failing loudly.
//!
//! Every read is capped, so a huge or endless file cannot stall a scan; links are read with
//! `read_link` and only their last component is used, so a link loop cannot either; any
//! error (missing, permission denied, I/O) reads as "absent".
//!
//! A scan is bound by system calls, so a device directory is listed once and only the
//! attributes it has are opened: on most devices half of what discovery looks for (subsystem
//! ids, driver, IOMMU group, netdevs, VPD, SR-IOV files) is absent, and asking for each
//! would cost a failed lookup.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Read};
use std::mem::offset_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Largest attribute read, in bytes.
pub const ATTR_CAP: u64 = 64 << 10;
/// Largest VPD read, in bytes (VPD addresses are 15 bits).
pub const VPD_CAP: u64 = 32 << 10;
/// Largest directory listing kept, in bytes of `getdents64` records. A sysfs device
/// directory takes about 2 KiB (8 KiB for a PF with 255 `virtfn` links); past the cap the
/// listing is dropped and every attribute is tried, as if the directory could not be listed.
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

/// Opens a directory, relative to `at` (`AT_FDCWD` for the working directory), following
/// links.
fn open_dir(at: RawFd, path: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: `path` is NUL-terminated and `at` is a directory descriptor or AT_FDCWD; the
    // returned descriptor, if any, is owned by the `OwnedFd` alone.
    let fd = unsafe {
        libc::openat(
            at,
            path.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a non-negative `fd` was just returned by openat and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The directory of device links (`<root>/bus/pci/devices`), opened once so that each
/// device is opened relative to it: the kernel then walks only the device's link, not the
/// whole path from the root again.
pub struct DevicesDir {
    fd: OwnedFd,
}

impl DevicesDir {
    /// Opens the directory.
    pub fn open(path: &Path) -> io::Result<Self> {
        let c = CString::new(path.as_os_str().as_bytes())?;
        Ok(Self {
            fd: open_dir(libc::AT_FDCWD, &c)?,
        })
    }

    /// Opens and lists the device directory `name` (following its link).
    pub fn device(&self, name: &str) -> Option<DeviceDir> {
        let c = CString::new(name).ok()?;
        let fd = open_dir(self.fd.as_raw_fd(), &c).ok()?;
        let listing = Listing::read(&fd);
        Some(DeviceDir { fd, listing })
    }
}

/// A device directory opened once and listed once; its attributes are then opened relative
/// to it (`openat`, `readlinkat`), and only when listed.
pub struct DeviceDir {
    fd: OwnedFd,
    /// `None` when the directory could not be listed: then every attribute is tried.
    listing: Option<Listing>,
}

impl DeviceDir {
    /// Whether `name` is worth a system call: listed (as a link or of unknown type, when a
    /// link is wanted), or the directory could not be listed.
    pub fn may_have(&self, name: &str, link: bool) -> bool {
        let Some(listing) = &self.listing else {
            return true;
        };
        match listing.find(name.as_bytes()) {
            None => false,
            Some(kind) => !link || kind == libc::DT_LNK || kind == libc::DT_UNKNOWN,
        }
    }

    fn open_file(&self, name: &str) -> Option<File> {
        if !self.may_have(name, false) {
            return None;
        }
        let c = CString::new(name).ok()?;
        // SAFETY: valid directory descriptor and NUL-terminated name; the descriptor returned
        // is owned by the `File` alone.
        let fd = unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        // SAFETY: a non-negative `fd` was just returned by openat and is owned by nobody else.
        (fd >= 0).then(|| unsafe { File::from_raw_fd(fd) })
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
        if !self.may_have(name, true) {
            return None;
        }
        let c = CString::new(name).ok()?;
        let mut buf = [0u8; 4096];
        // SAFETY: valid descriptor, NUL-terminated name, and a buffer of the length given.
        let n = unsafe {
            libc::readlinkat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n <= 0 {
            return None;
        }
        let target = &buf[..n as usize];
        let last = target.rsplit(|&b| b == b'/').next()?;
        (!last.is_empty()).then(|| String::from_utf8_lossy(last).into_owned())
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
}

/// Offsets in a `linux_dirent64` record.
const RECLEN: usize = offset_of!(libc::dirent64, d_reclen);
const KIND: usize = offset_of!(libc::dirent64, d_type);
const NAME: usize = offset_of!(libc::dirent64, d_name);

/// A directory's entries: the raw `linux_dirent64` records `getdents64` returned (one
/// buffer, no allocation per name) and an index of them sorted by name, so that looking up
/// each of a PF's 255 `virtfnN` links does not walk the whole listing.
struct Listing {
    records: Vec<u8>,
    sorted: Vec<Entry>,
}

/// A listed entry: where its name is in the records, and its type (`DT_*`).
#[derive(Clone, Copy)]
struct Entry {
    start: u32,
    len: u16,
    kind: u8,
}

impl Listing {
    /// Lists the directory; `None` when it cannot be listed or the listing passes
    /// [`LISTING_CAP`].
    fn read(dir: &OwnedFd) -> Option<Self> {
        let records = read_records(dir)?;
        let mut sorted = Vec::new();
        let mut at = 0;
        while let Some(reclen) = records.get(at + RECLEN..at + RECLEN + 2) {
            let reclen = usize::from(u16::from_ne_bytes([reclen[0], reclen[1]]));
            let record = records.get(at..at + reclen).filter(|r| r.len() > NAME)?;
            let name = record[NAME..].split(|&b| b == 0).next()?;
            sorted.push(Entry {
                start: u32::try_from(at + NAME).ok()?,
                len: u16::try_from(name.len()).ok()?,
                kind: record[KIND],
            });
            at += reclen;
        }
        sorted.sort_unstable_by(|a, b| a.name(&records).cmp(b.name(&records)));
        Some(Self { records, sorted })
    }

    /// The type (`DT_*`) of the entry `name`, if listed.
    fn find(&self, name: &[u8]) -> Option<u8> {
        let i = self
            .sorted
            .binary_search_by(|e| e.name(&self.records).cmp(name))
            .ok()?;
        Some(self.sorted[i].kind)
    }
}

impl Entry {
    fn name<'a>(&self, records: &'a [u8]) -> &'a [u8] {
        &records[self.start as usize..][..usize::from(self.len)]
    }
}

/// The raw records of a directory listing, read with as few `getdents64` calls as it takes
/// (two for a device directory: one full, one finding the end).
fn read_records(dir: &OwnedFd) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    loop {
        buf.reserve(LISTING_CHUNK);
        let spare = buf.spare_capacity_mut();
        // SAFETY: `dir` is an open directory, and the kernel writes at most `spare.len()`
        // bytes into the vector's spare capacity.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                dir.as_raw_fd(),
                spare.as_mut_ptr(),
                spare.len(),
            )
        };
        let n = usize::try_from(n).ok()?;
        if n == 0 {
            return Some(buf);
        }
        // SAFETY: the kernel has just initialised these `n` bytes of spare capacity.
        unsafe { buf.set_len(buf.len() + n) };
        if buf.len() > LISTING_CAP {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A device directory with an attribute, a link and a subdirectory, among enough other
    /// entries that the sorted index is searched rather than walked.
    fn device_dir() -> (tempfile::TempDir, DeviceDir) {
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
        let dir = devices.device("0000:01:00.0").unwrap();
        (root, dir)
    }

    #[test]
    fn only_listed_attributes_are_read_and_links_must_be_links() {
        let (_root, dir) = device_dir();
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
    }

    #[test]
    fn an_unlisted_directory_tries_every_attribute() {
        let (_root, mut dir) = device_dir();
        dir.listing = None;
        assert!(dir.may_have("anything", true));
        assert_eq!(dir.hex("vendor", 4), Some(0x8086));
        assert_eq!(dir.hex("device", 4), None);
    }
}
