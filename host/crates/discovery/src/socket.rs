//! The kernel's uevent socket (`NETLINK_KOBJECT_UEVENT`), with the sender checks systemd
//! makes: a kernel-group message must come from port 0 (the kernel), a udev-group message
//! must carry root's credentials. Anything else is dropped, so an unprivileged process on
//! the host cannot feed the agent fake device events.

use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use crate::uevent::{UEvent, parse};

/// The kernel's multicast group.
pub const KERNEL_GROUP: u32 = 1;
/// systemd-udevd's re-broadcast group.
pub const UDEV_GROUP: u32 = 2;
/// Receive buffer asked for (libvirt uses 128 MiB): bursts of VF creation must not overflow.
const RCVBUF: libc::c_int = 128 << 20;

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
    pub fn open(groups: u32) -> io::Result<Self> {
        // SAFETY: plain socket(2) call; the descriptor is owned by the OwnedFd below.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_KOBJECT_UEVENT,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let one: libc::c_int = 1;
        let set = |opt, val: &libc::c_int| {
            // SAFETY: valid socket and a pointer to an int of the size given.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (val as *const libc::c_int).cast(),
                    size_of::<libc::c_int>() as libc::socklen_t,
                )
            }
        };
        if set(libc::SO_RCVBUFFORCE, &RCVBUF) < 0 {
            set(libc::SO_RCVBUF, &RCVBUF);
        }
        set(libc::SO_PASSCRED, &one);
        // SAFETY: zeroed sockaddr_nl is a valid value; fields set below.
        let mut addr: libc::sockaddr_nl = unsafe { zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = groups;
        // SAFETY: valid socket and address of the size given.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { fd })
    }

    /// Waits up to `timeout` for one packet and judges it.
    pub fn recv(&self, timeout: Duration) -> io::Result<Received> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe {
            libc::poll(
                &mut pfd,
                1,
                timeout.as_millis().min(i32::MAX as u128) as i32,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n == 0 {
            return Ok(Received::Timeout);
        }
        let mut buf = vec![0u8; 64 << 10];
        let mut cmsg = [0u8; 64];
        // SAFETY: zeroed sockaddr_nl/msghdr are valid; pointers set below outlive the call.
        let mut addr: libc::sockaddr_nl = unsafe { zeroed() };
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_name = (&mut addr as *mut libc::sockaddr_nl).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cmsg.as_mut_ptr().cast();
        msg.msg_controllen = cmsg.len();
        // SAFETY: `msg` points at live buffers of the sizes given.
        let len = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
        if len < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENOBUFS) => Ok(Received::Overflow),
                Some(libc::EAGAIN) => Ok(Received::Timeout),
                _ => Err(e),
            };
        }
        let packet = &buf[..len as usize];
        let from_udev_group = addr.nl_groups == UDEV_GROUP;
        if from_udev_group {
            if credentials_uid(&msg) != Some(0) {
                return Ok(Received::Dropped(
                    "udev-group message without root credentials".into(),
                ));
            }
        } else if addr.nl_pid != 0 {
            return Ok(Received::Dropped(format!(
                "kernel-group message from port {}, not the kernel",
                addr.nl_pid
            )));
        }
        Ok(match parse(packet) {
            Ok(e) => Received::Event(e),
            Err(e) => Received::Dropped(e.to_string()),
        })
    }
}

/// The sender's uid from an `SCM_CREDENTIALS` control message.
fn credentials_uid(msg: &libc::msghdr) -> Option<u32> {
    // SAFETY: the CMSG_* helpers walk the control buffer recvmsg filled, within its length.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_CREDENTIALS {
                let cred = libc::CMSG_DATA(c) as *const libc::ucred;
                return Some((*cred).uid);
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    None
}
