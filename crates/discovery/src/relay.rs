//! A relay socket: a unix datagram socket that takes uevent packets in the kernel's or
//! libudev's framing and feeds them to the agent as if they came from netlink.
//!
//! Why: a test cannot make the kernel announce a device of a fake sysfs tree, and an agent in
//! a container without the host's netlink namespace needs its host to forward events. The
//! socket is created with mode 0600, so only its owner (the agent's user, root on a host)
//! can write to it; the netlink sender checks do not apply because the filesystem already
//! decides who may send.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::socket::{Received, UeventSource};
use crate::uevent::parse;

/// Largest packet accepted (the kernel's own limit on an event's environment is 2 KiB;
/// libudev's are larger, still far below this).
const MAX_PACKET: usize = 64 << 10;

/// A bound relay socket; the socket file is removed when it is dropped.
pub struct UeventRelay {
    socket: UnixDatagram,
    path: PathBuf,
}

impl UeventRelay {
    /// Binds `path` (replacing a stale socket file) with mode 0600.
    ///
    /// # Errors
    ///
    /// A stale file at `path` cannot be removed, or the socket cannot be bound there or
    /// given mode 0600.
    pub fn bind(path: &Path) -> io::Result<Self> {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let socket = UnixDatagram::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        Ok(Self {
            socket,
            path: path.to_path_buf(),
        })
    }

    /// The socket file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl UeventSource for UeventRelay {
    fn recv(&self, timeout: Duration) -> io::Result<Received> {
        // A zero timeout means "block forever" to set_read_timeout; poll instead. A signal
        // interrupts a receive with a timeout even under SA_RESTART: that is no failure of
        // the source, only nothing read this time.
        self.socket
            .set_read_timeout(Some(timeout.max(Duration::from_micros(1))))?;
        let mut buf = vec![0u8; MAX_PACKET];
        match self.socket.recv(&mut buf) {
            Ok(len) => Ok(match parse(&buf[..len]) {
                Ok(e) => Received::Event(e),
                Err(e) => Received::Dropped(format!("relay packet: {e}")),
            }),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(Received::Timeout)
            }
            Err(e) => Err(e),
        }
    }
}

impl Drop for UeventRelay {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relays_a_kernel_packet_and_drops_garbage_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("uevents.sock");
        let relay = UeventRelay::bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let sender = UnixDatagram::unbound().unwrap();
        let packet = b"remove@/devices/pci0000:00/0000:00:03.0\0ACTION=remove\0DEVPATH=/devices/pci0000:00/0000:00:03.0\0SUBSYSTEM=pci\0PCI_SLOT_NAME=0000:00:03.0\0SEQNUM=7\0";
        sender.send_to(packet, &path).unwrap();
        match relay.recv(Duration::from_secs(5)).unwrap() {
            Received::Event(e) => {
                assert_eq!(e.action, "remove");
                assert_eq!(e.pci_address().unwrap().to_string(), "0000:00:03.0");
            }
            other => panic!("expected an event, got {other:?}"),
        }
        sender.send_to(b"not a uevent", &path).unwrap();
        assert!(matches!(
            relay.recv(Duration::from_secs(5)).unwrap(),
            Received::Dropped(reason) if reason.contains("relay packet")
        ));
        assert!(matches!(
            relay.recv(Duration::from_millis(10)).unwrap(),
            Received::Timeout
        ));
        drop(relay);
        assert!(!path.exists(), "the socket file is removed on drop");
    }
}
