//! Device types and tracker statuses, with Nova's spellings.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A name that is not one of the allowed values.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown {what} {name:?}; expected one of: {expected}")]
pub struct UnknownName {
    /// What kind of value was expected.
    pub what: &'static str,
    /// The name that was given.
    pub name: String,
    /// The accepted names.
    pub expected: &'static str,
}

/// Nova's `PciDeviceType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum DevType {
    /// A plain PCI device (`type-PCI`).
    #[serde(rename = "type-PCI")]
    Pci,
    /// An SR-IOV physical function (`type-PF`).
    #[serde(rename = "type-PF")]
    Pf,
    /// An SR-IOV virtual function (`type-VF`).
    #[serde(rename = "type-VF")]
    Vf,
    /// A vDPA device; behaves as a VF in every parent/child rule (`vdpa`).
    #[serde(rename = "vdpa")]
    Vdpa,
}

impl DevType {
    /// Nova's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DevType::Pci => "type-PCI",
            DevType::Pf => "type-PF",
            DevType::Vf => "type-VF",
            DevType::Vdpa => "vdpa",
        }
    }

    /// VFs and vDPA devices have a parent PF.
    pub fn is_child(self) -> bool {
        matches!(self, DevType::Vf | DevType::Vdpa)
    }
}

impl fmt::Display for DevType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DevType {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "type-PCI" => DevType::Pci,
            "type-PF" => DevType::Pf,
            "type-VF" => DevType::Vf,
            "vdpa" => DevType::Vdpa,
            _ => {
                return Err(UnknownName {
                    what: "device type",
                    name: s.to_string(),
                    expected: "type-PCI, type-PF, type-VF, vdpa",
                });
            }
        })
    }
}

/// Nova's `PciDeviceStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceStatus {
    /// Free to be claimed.
    Available,
    /// Reserved for an instance that is being built.
    Claimed,
    /// In use by an instance.
    Allocated,
    /// A relative (PF or VF) is allocated.
    Unavailable,
    /// A relative (PF or VF) is claimed.
    Unclaimable,
    /// No longer reported or assignable; waiting to be deleted.
    Removed,
    /// Deleted from the store.
    Deleted,
}

impl DeviceStatus {
    /// Every status, in Nova's order.
    pub const ALL: [DeviceStatus; 7] = [
        DeviceStatus::Available,
        DeviceStatus::Claimed,
        DeviceStatus::Allocated,
        DeviceStatus::Unavailable,
        DeviceStatus::Unclaimable,
        DeviceStatus::Removed,
        DeviceStatus::Deleted,
    ];

    /// Nova's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Available => "available",
            DeviceStatus::Claimed => "claimed",
            DeviceStatus::Allocated => "allocated",
            DeviceStatus::Unavailable => "unavailable",
            DeviceStatus::Unclaimable => "unclaimable",
            DeviceStatus::Removed => "removed",
            DeviceStatus::Deleted => "deleted",
        }
    }

    /// Claimed or allocated: an instance holds the device, so it is never deleted.
    pub fn is_in_use(self) -> bool {
        matches!(self, DeviceStatus::Claimed | DeviceStatus::Allocated)
    }
}

impl fmt::Display for DeviceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeviceStatus {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeviceStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "device status",
                name: s.to_string(),
                expected: "available, claimed, allocated, unavailable, unclaimable, removed, deleted",
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_in_nova_spelling() {
        for t in [DevType::Pci, DevType::Pf, DevType::Vf, DevType::Vdpa] {
            assert_eq!(t.as_str().parse::<DevType>().unwrap(), t);
            assert_eq!(
                serde_json::to_string(&t).unwrap(),
                format!("\"{}\"", t.as_str())
            );
        }
        for s in DeviceStatus::ALL {
            assert_eq!(s.as_str().parse::<DeviceStatus>().unwrap(), s);
        }
        assert!(
            "type-pf"
                .parse::<DevType>()
                .unwrap_err()
                .to_string()
                .contains("type-pf")
        );
    }
}
