//! Parsing kernel uevents as they arrive on `NETLINK_KOBJECT_UEVENT`, in both framings: the
//! kernel's own (group 1: `action@devpath\0KEY=VALUE\0...`) and systemd-udevd's re-broadcast
//! (group 2: a 40-byte `libudev` header, then `KEY=VALUE\0...`).
//!
//! A packet is outside input: every field is checked, and a packet that does not parse is an
//! error naming what is wrong, never a panic.

use std::collections::BTreeMap;

use pcitrack_model::PciAddress;
use thiserror::Error;

/// A parsed uevent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UEvent {
    /// `add`, `remove`, `change`, `bind`, `unbind`, `move`, `online`, `offline`.
    pub action: String,
    /// The kernel object path (`/devices/pci0000:a2/0000:a2:01.0`).
    pub devpath: String,
    /// `SUBSYSTEM` (`pci` for the events discovery cares about).
    pub subsystem: String,
    /// `SEQNUM`, increasing per kernel event.
    pub seqnum: u64,
    /// `PCI_SLOT_NAME`, for PCI events.
    pub pci_slot: Option<PciAddress>,
    /// Every `KEY=VALUE` of the packet.
    pub env: BTreeMap<String, String>,
    /// True when it came through udev (group 2) rather than from the kernel.
    pub from_udev: bool,
}

/// Why a packet was not a uevent.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UeventError {
    /// Neither framing.
    #[error("not a uevent: neither `action@devpath` nor a libudev header at the start")]
    Framing,
    /// A libudev header with wrong magic or offsets.
    #[error("bad libudev header: {0}")]
    Header(&'static str),
    /// A property is not `KEY=VALUE` or not UTF-8.
    #[error("malformed property #{index}: {reason}")]
    Property {
        /// Which property (0-based).
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A required key is missing.
    #[error("missing {0}")]
    Missing(&'static str),
    /// A key has a value that does not parse.
    #[error("bad {key}: {value:?}")]
    BadValue {
        /// The key.
        key: &'static str,
        /// Its value.
        value: String,
    },
}

const UDEV_PREFIX: &[u8] = b"libudev\0";
const UDEV_MAGIC: u32 = 0xfeed_cafe;
const UDEV_HEADER: usize = 40;

/// Parses one packet in either framing.
///
/// # Errors
///
/// A [`UeventError`] naming what is wrong: neither framing, a bad libudev header, a property
/// that is not `KEY=VALUE` or not UTF-8, a missing required key, a value that does not parse.
pub fn parse(packet: &[u8]) -> Result<UEvent, UeventError> {
    if packet.starts_with(UDEV_PREFIX) {
        return parse_udev(packet);
    }
    let nul = packet
        .iter()
        .position(|&b| b == 0)
        .ok_or(UeventError::Framing)?;
    let head = std::str::from_utf8(&packet[..nul]).map_err(|_| UeventError::Framing)?;
    let (action, devpath) = head.split_once('@').ok_or(UeventError::Framing)?;
    let mut event = build(properties(&packet[nul + 1..])?, false)?;
    if event.action != action || event.devpath != devpath {
        return Err(UeventError::BadValue {
            key: "ACTION/DEVPATH",
            value: format!(
                "header says {head}, properties say {}@{}",
                event.action, event.devpath
            ),
        });
    }
    event.from_udev = false;
    Ok(event)
}

fn parse_udev(packet: &[u8]) -> Result<UEvent, UeventError> {
    if packet.len() < UDEV_HEADER {
        return Err(UeventError::Header("shorter than 40 bytes"));
    }
    let word = |at: usize| <[u8; 4]>::try_from(&packet[at..at + 4]).expect("4 bytes");
    if u32::from_be_bytes(word(8)) != UDEV_MAGIC {
        return Err(UeventError::Header("magic is not 0xfeedcafe"));
    }
    let off = u32::from_ne_bytes(word(16)) as usize;
    let len = u32::from_ne_bytes(word(20)) as usize;
    let props = off
        .checked_add(len)
        .filter(|&end| off >= UDEV_HEADER && end <= packet.len())
        .map(|end| &packet[off..end])
        .ok_or(UeventError::Header("properties outside the packet"))?;
    build(properties(props)?, true)
}

fn properties(bytes: &[u8]) -> Result<BTreeMap<String, String>, UeventError> {
    let mut env = BTreeMap::new();
    for (index, p) in bytes
        .split(|&b| b == 0)
        .filter(|p| !p.is_empty())
        .enumerate()
    {
        let text = std::str::from_utf8(p).map_err(|_| UeventError::Property {
            index,
            reason: "not UTF-8",
        })?;
        let (k, v) = text.split_once('=').ok_or(UeventError::Property {
            index,
            reason: "no '='",
        })?;
        if k.is_empty() {
            return Err(UeventError::Property {
                index,
                reason: "empty key",
            });
        }
        env.insert(k.to_string(), v.to_string());
    }
    Ok(env)
}

fn build(env: BTreeMap<String, String>, from_udev: bool) -> Result<UEvent, UeventError> {
    let get = |k: &'static str| env.get(k).cloned().ok_or(UeventError::Missing(k));
    let seqnum_text = get("SEQNUM")?;
    let seqnum = seqnum_text.parse().map_err(|_| UeventError::BadValue {
        key: "SEQNUM",
        value: seqnum_text,
    })?;
    let pci_slot = match env.get("PCI_SLOT_NAME") {
        None => None,
        Some(v) => Some(v.parse().map_err(|_| UeventError::BadValue {
            key: "PCI_SLOT_NAME",
            value: v.clone(),
        })?),
    };
    Ok(UEvent {
        action: get("ACTION")?,
        devpath: get("DEVPATH")?,
        subsystem: get("SUBSYSTEM")?,
        seqnum,
        pci_slot,
        env,
        from_udev,
    })
}

impl UEvent {
    /// The PCI device the event is about: `PCI_SLOT_NAME`, else the devpath's last part. A
    /// vDPA device's event (`SUBSYSTEM=vdpa`, created after its VF is bound) is about the
    /// PCI function it is a child of, whose type it changes (Nova's `vdpa`).
    pub fn pci_address(&self) -> Option<PciAddress> {
        let mut parts = self.devpath.rsplit('/');
        match self.subsystem.as_str() {
            "pci" => self
                .pci_slot
                .or_else(|| parts.next().and_then(|s| s.parse().ok())),
            "vdpa" => parts.nth(1).and_then(|s| s.parse().ok()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"\0",
            b"add",
            b"add@/x\0NOEQUALS\0",
            b"libudev\0",
            b"add@/x\0ACTION=add\0",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let e = parse(b"add@/d\0ACTION=add\0DEVPATH=/d\0SUBSYSTEM=pci\0SEQNUM=x\0").unwrap_err();
        assert_eq!(e.to_string(), "bad SEQNUM: \"x\"");
    }

    #[test]
    fn a_vdpa_event_is_about_its_pci_function() {
        let event = |devpath: &str, subsystem: &str| {
            let packet = format!(
                "add@{devpath}\0ACTION=add\0DEVPATH={devpath}\0SUBSYSTEM={subsystem}\0SEQNUM=7\0"
            );
            parse(packet.as_bytes()).unwrap().pci_address()
        };
        let vf = "/devices/pci0000:00/0000:00:02.2/0000:06:00.2";
        assert_eq!(
            event(&format!("{vf}/vdpa0"), "vdpa"),
            Some("0000:06:00.2".parse().unwrap())
        );
        assert_eq!(
            event(
                "/devices/pci0000:00/0000:06:00.0/mlx5_core.sf.2/vdpa1",
                "vdpa"
            ),
            None,
            "a subfunction's vDPA device is no PCI function's"
        );
        assert_eq!(
            event(&format!("{vf}/vdpa0/vhost-vdpa-0"), "vhost-vdpa"),
            None
        );
        assert_eq!(event(vf, "pci"), Some("0000:06:00.2".parse().unwrap()));
    }
}
