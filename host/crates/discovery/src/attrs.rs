//! Reading sysfs attributes: capped, never following links, never failing loudly.
//!
//! Every read is capped, so a huge or endless file cannot stall a scan; links are read with
//! `read_link` and only their last component is used, so a link loop cannot either; any
//! error (missing, permission denied, I/O) reads as "absent".

use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Largest attribute read, in bytes.
pub const ATTR_CAP: u64 = 64 << 10;
/// Largest VPD read, in bytes (VPD addresses are 15 bits).
pub const VPD_CAP: u64 = 32 << 10;

/// The text of an attribute, trimmed; `None` when absent, unreadable or not UTF-8.
///
/// sysfs hands a small attribute over in one `read`, so this is open, one read into a stack
/// buffer, close: three system calls, where `read_to_string` would add a `statx` and a
/// second read. Attributes longer than the buffer (none that discovery reads) fall back to
/// the capped read.
pub fn read_text(path: &Path) -> Option<String> {
    small_text(File::open(path).ok()?)
}

/// One read into a stack buffer, or the capped read for a longer attribute.
fn small_text(mut file: File) -> Option<String> {
    let mut buf = [0u8; 256];
    let n = file.read(&mut buf).ok()?;
    let text = if n < buf.len() {
        std::str::from_utf8(&buf[..n]).ok()?.to_string()
    } else {
        let mut rest = Vec::new();
        file.take(ATTR_CAP).read_to_end(&mut rest).ok()?;
        let mut all = buf.to_vec();
        all.extend(rest);
        String::from_utf8(all).ok()?
    };
    Some(text.trim().to_string())
}

/// A device directory opened once; its attributes are then opened relative to it
/// (`openat`, `readlinkat`), so the kernel walks one path component per attribute instead
/// of the whole `<root>/bus/pci/devices/<addr>/...` path through its symlink every time.
/// On a 4096-device host that walk is most of the cost of a scan.
pub struct DeviceDir {
    fd: OwnedFd,
}

impl DeviceDir {
    /// Opens the directory (following the `bus/pci/devices` link once).
    pub fn open(path: &Path) -> Option<Self> {
        let c = CString::new(path.as_os_str().as_bytes()).ok()?;
        // SAFETY: `c` is a valid NUL-terminated path; the returned descriptor, if any, is
        // owned by the `OwnedFd` alone.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        // SAFETY: a non-negative `fd` was just returned by open and is owned by nobody else.
        (fd >= 0).then(|| Self {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    fn open_file(&self, name: &str) -> Option<File> {
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

    /// An attribute's text, trimmed (see [`read_text`]).
    pub fn text(&self, name: &str) -> Option<String> {
        small_text(self.open_file(name)?)
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
        pcitrack_model::parse_hex_id(&self.text(name)?, digits).ok()
    }

    /// A decimal attribute.
    pub fn dec<T: std::str::FromStr>(&self, name: &str) -> Option<T> {
        self.text(name)?.parse().ok()
    }
}
