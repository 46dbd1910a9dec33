//! The kernel's uevent socket (`NETLINK_KOBJECT_UEVENT`), with the sender checks systemd
//! makes: a kernel-group message must come from port 0 (the kernel), a udev-group message
//! must carry root's credentials. Anything else is dropped, so an unprivileged process on
//! the host cannot feed the agent fake device events.
//!
//! The socket, its options and `recvmsg` with `SCM_CREDENTIALS` go through rustix's safe
//! wrappers; the judging of a packet (`judge`) is a plain function, tested on its own.

use std::io::{self, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::net::netlink::{self, SocketAddrNetlink};
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SocketFlags, SocketType,
    sockopt,
};

use crate::uevent::{UEvent, parse};

/// The kernel's multicast group.
pub const KERNEL_GROUP: u32 = 1;
/// systemd-udevd's re-broadcast group.
pub const UDEV_GROUP: u32 = 2;
/// Receive buffer asked for (libvirt uses 128 MiB): bursts of VF creation must not overflow.
const RCVBUF: usize = 128 << 20;
/// Largest packet read (the kernel caps an event's environment at 2 KiB; libudev's are
/// larger, still far below this).
const MAX_PACKET: usize = 64 << 10;

/// What one receive gave.
#[derive(Debug)]
pub enum Received {
    /// An event from a trusted sender.
    Event(UEvent),
    /// The socket overflowed and events were lost: rescan everything.
    Overflow,
    /// A packet that was dropped, and why (untrusted sender, unparsable).
    Dropped(String),
    /// Nothing arrived within the timeout.
    Timeout,
}

/// Where uevents come from: the kernel's netlink socket, or a relay socket (tests, or a
/// container whose host forwards its uevents).
pub trait UeventSource: Send {
    /// Waits up to `timeout` for one packet and judges it.
    ///
    /// # Errors
    ///
    /// The source itself failed (its socket was closed or cannot be read); a lost,
    /// untrusted or malformed packet is not an error but a [`Received`] value.
    fn recv(&self, timeout: Duration) -> io::Result<Received>;
}

impl UeventSource for UeventSocket {
    fn recv(&self, timeout: Duration) -> io::Result<Received> {
        UeventSocket::recv(self, timeout)
    }
}

/// A subscribed uevent socket.
pub struct UeventSocket {
    fd: OwnedFd,
}

impl UeventSocket {
    /// Opens the socket and joins `groups` (a bit mask of [`KERNEL_GROUP`], [`UDEV_GROUP`]).
    /// Subscribe before scanning, so no event falls between the scan and the subscription.
    ///
    /// # Errors
    ///
    /// The netlink socket cannot be created (no netlink in this namespace), asked to pass
    /// credentials, or bound to `groups`.
    pub fn open(groups: u32) -> io::Result<Self> {
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC,
            Some(netlink::KOBJECT_UEVENT),
        )?;
        // Forcing the size past `rmem_max` needs CAP_NET_ADMIN; without it, ask for what the
        // system allows. A smaller buffer only makes an overflow (and a rescan) likelier.
        if sockopt::set_socket_recv_buffer_size_force(&fd, RCVBUF).is_err() {
            let _ = sockopt::set_socket_recv_buffer_size(&fd, RCVBUF);
        }
        // Without credentials every udev-group message would be dropped.
        sockopt::set_socket_passcred(&fd, true)?;
        rustix::net::bind(&fd, &SocketAddrNetlink::new(0, groups))?;
        Ok(Self { fd })
    }

    /// Waits up to `timeout` for one packet and judges it. The read itself never blocks: a
    /// packet another reader took between the wait and the read is a timeout.
    ///
    /// # Errors
    ///
    /// Waiting on or reading the socket failed for another reason than an overflow
    /// (`ENOBUFS`, reported as [`Received::Overflow`]), no packet (`EAGAIN`) or a signal
    /// (`EINTR`), both reported as [`Received::Timeout`].
    pub fn recv(&self, timeout: Duration) -> io::Result<Received> {
        let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
        // A timeout too long for a timespec waits forever, as near enough.
        let timespec = Timespec::try_from(timeout).ok();
        match rustix::event::poll(&mut fds, timespec.as_ref()) {
            Ok(0) => return Ok(Received::Timeout),
            Ok(_) => {}
            Err(e) => return quiet(e),
        }
        let mut buf = vec![0u8; MAX_PACKET];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmCredentials(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let msg = match rustix::net::recvmsg(
            &self.fd,
            &mut [IoSliceMut::new(&mut buf)],
            &mut control,
            RecvFlags::DONTWAIT,
        ) {
            Ok(msg) => msg,
            Err(e) => return quiet(e),
        };
        let sender = msg
            .address
            .and_then(|a| SocketAddrNetlink::try_from(a).ok());
        let uid = control.drain().find_map(|m| match m {
            RecvAncillaryMessage::ScmCredentials(c) => Some(c.uid.as_raw()),
            _ => None,
        });
        Ok(judge(sender, uid, &buf[..msg.bytes.min(MAX_PACKET)]))
    }
}

/// What a failed wait or read means: `ENOBUFS` is the kernel saying events were lost (so
/// rescan), `EAGAIN` and `EINTR` that nothing was read this time; anything else is an error.
fn quiet(e: Errno) -> io::Result<Received> {
    match e {
        Errno::NOBUFS => Ok(Received::Overflow),
        Errno::AGAIN | Errno::INTR => Ok(Received::Timeout),
        e => Err(e.into()),
    }
}

/// Judges one packet by its sender, as systemd's `sd-device` monitor does: a message sent
/// to the udev group must carry root's credentials (`uid`, from `SCM_CREDENTIALS`); any other
/// must come from port 0, the kernel. A trusted packet is then parsed.
fn judge(sender: Option<SocketAddrNetlink>, uid: Option<u32>, packet: &[u8]) -> Received {
    let Some(sender) = sender else {
        return Received::Dropped("message without a netlink sender address".into());
    };
    if sender.groups() == UDEV_GROUP {
        if uid != Some(0) {
            return Received::Dropped("udev-group message without root credentials".into());
        }
    } else if sender.pid() != 0 {
        return Received::Dropped(format!(
            "kernel-group message from port {}, not the kernel",
            sender.pid()
        ));
    }
    match parse(packet) {
        Ok(e) => Received::Event(e),
        Err(e) => Received::Dropped(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACKET: &[u8] = b"change@/devices/pci0000:00/0000:00:03.0\0ACTION=change\0\
        DEVPATH=/devices/pci0000:00/0000:00:03.0\0SUBSYSTEM=pci\0PCI_SLOT_NAME=0000:00:03.0\0\
        SEQNUM=7777777777\0";

    fn from(pid: u32, groups: u32) -> Option<SocketAddrNetlink> {
        Some(SocketAddrNetlink::new(pid, groups))
    }

    fn dropped(r: Received) -> String {
        match r {
            Received::Dropped(reason) => reason,
            other => panic!("expected a drop, got {other:?}"),
        }
    }

    #[test]
    fn only_the_kernel_or_root_credentialed_udev_is_believed() {
        assert!(matches!(
            judge(from(0, KERNEL_GROUP), None, PACKET),
            Received::Event(e) if e.action == "change"
        ));
        assert!(dropped(judge(from(4242, KERNEL_GROUP), Some(0), PACKET)).contains("port 4242"));
        assert!(dropped(judge(from(4242, 0), Some(0), PACKET)).contains("not the kernel"));
        assert!(
            dropped(judge(from(0, UDEV_GROUP), Some(1000), PACKET)).contains("root credentials")
        );
        assert!(dropped(judge(from(0, UDEV_GROUP), None, PACKET)).contains("root credentials"));
        assert!(dropped(judge(None, Some(0), PACKET)).contains("sender address"));
        // The framing is the parser's business; a root udev sender still gets it checked.
        assert!(!dropped(judge(from(0, UDEV_GROUP), Some(0), b"garbage")).is_empty());
    }

    #[test]
    fn an_overflow_asks_for_a_rescan_and_a_signal_is_no_error() {
        assert!(matches!(quiet(Errno::NOBUFS), Ok(Received::Overflow)));
        assert!(matches!(quiet(Errno::AGAIN), Ok(Received::Timeout)));
        assert!(matches!(quiet(Errno::INTR), Ok(Received::Timeout)));
        assert!(quiet(Errno::BADF).is_err());
    }

    /// A user-space process sending straight to the agent's port: the real socket must
    /// report the sender's port and drop the packet.
    #[test]
    fn a_user_space_sender_is_dropped_by_the_real_socket() {
        let Ok(socket) = UeventSocket::open(KERNEL_GROUP) else {
            eprintln!("SKIPPED: no netlink uevent socket in this sandbox");
            return;
        };
        let port = SocketAddrNetlink::try_from(rustix::net::getsockname(&socket.fd).unwrap())
            .unwrap()
            .pid();
        let sender = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC,
            Some(netlink::KOBJECT_UEVENT),
        )
        .unwrap();
        rustix::net::sendto(
            &sender,
            PACKET,
            rustix::net::SendFlags::empty(),
            &SocketAddrNetlink::new(port, 0),
        )
        .unwrap();
        // A real kernel event may arrive first; only the forged one is dropped.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            match socket.recv(Duration::from_millis(500)).unwrap() {
                Received::Dropped(reason) => {
                    assert!(reason.contains("not the kernel"), "{reason}");
                    return;
                }
                Received::Event(e) => assert_ne!(e.seqnum, 7_777_777_777, "forged event believed"),
                _ => {}
            }
        }
        panic!("the forged packet never arrived");
    }
}
