//! Nova's exceptions for a bad device_spec, as one error type.
//!
//! Operators search for Nova's wording, so every error keeps Nova's exception class name and
//! message text; the class is carried separately so callers (and the vector tests) can check
//! it without parsing the message.

use thiserror::Error;

/// The Nova exception class an error corresponds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// `PciConfigInvalidSpec`: a value that does not parse or is out of range, a bad entry.
    PciConfigInvalidSpec,
    /// `PciDeviceWrongAddressFormat`: an address of the wrong shape or an invalid regex.
    PciDeviceWrongAddressFormat,
    /// `PciDeviceInvalidDeviceName`: `devname` and `address` given together.
    PciDeviceInvalidDeviceName,
    /// `PciDeviceRemoteManagedNotPresent`: a remote-managed `devname` that the host lacks.
    PciDeviceRemoteManagedNotPresent,
    /// `PciDeviceInvalidPFRemoteManaged`: a remote-managed spec that names a PF itself.
    PciDeviceInvalidPFRemoteManaged,
    /// `PciDeviceNotFoundById`: the PF named by a remote-managed spec has no VF id.
    PciDeviceNotFoundById,
}

impl ErrorClass {
    /// Nova's class name, e.g. `PciConfigInvalidSpec`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PciConfigInvalidSpec => "PciConfigInvalidSpec",
            Self::PciDeviceWrongAddressFormat => "PciDeviceWrongAddressFormat",
            Self::PciDeviceInvalidDeviceName => "PciDeviceInvalidDeviceName",
            Self::PciDeviceRemoteManagedNotPresent => "PciDeviceRemoteManagedNotPresent",
            Self::PciDeviceInvalidPFRemoteManaged => "PciDeviceInvalidPFRemoteManaged",
            Self::PciDeviceNotFoundById => "PciDeviceNotFoundById",
        }
    }
}

/// The prefix Nova (since f55da0802b, 2022-05) puts before every `PciConfigInvalidSpec` reason.
pub const INVALID_SPEC_PREFIX: &str = "Invalid [pci]device_spec config: ";

/// A device_spec that Nova would refuse, with Nova's class and message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message}")]
pub struct SpecError {
    /// Nova's exception class.
    pub class: ErrorClass,
    /// Nova's full message, prefix included.
    pub message: String,
}

impl SpecError {
    /// `PciConfigInvalidSpec` with `reason` after Nova's prefix.
    pub(crate) fn invalid(reason: impl AsRef<str>) -> Self {
        Self {
            class: ErrorClass::PciConfigInvalidSpec,
            message: format!("{INVALID_SPEC_PREFIX}{}", reason.as_ref()),
        }
    }

    /// `PciDeviceWrongAddressFormat` for `address` as Python's `str()` would print it.
    pub(crate) fn wrong_address(address: impl AsRef<str>) -> Self {
        Self {
            class: ErrorClass::PciDeviceWrongAddressFormat,
            message: format!(
                "The PCI address {} has an incorrect format.",
                address.as_ref()
            ),
        }
    }

    pub(crate) fn devname_and_address() -> Self {
        Self {
            class: ErrorClass::PciDeviceInvalidDeviceName,
            message: "Invalid PCI Whitelist: The PCI whitelist can specify devname or address, \
                      but not both"
                .into(),
        }
    }

    pub(crate) fn remote_managed_not_present() -> Self {
        Self {
            class: ErrorClass::PciDeviceRemoteManagedNotPresent,
            message: "Invalid PCI Whitelist: A device specified as \"remote_managed\" is not \
                      actually present on the host"
                .into(),
        }
    }

    /// Nova raises this one with a positional argument, so its message is only the address.
    pub(crate) fn pf_remote_managed(pf: impl AsRef<str>) -> Self {
        Self {
            class: ErrorClass::PciDeviceInvalidPFRemoteManaged,
            message: pf.as_ref().to_string(),
        }
    }

    pub(crate) fn not_found_by_id(id: impl AsRef<str>) -> Self {
        Self {
            class: ErrorClass::PciDeviceNotFoundById,
            message: format!("PCI device {} not found", id.as_ref()),
        }
    }

    /// Nova's class name (shortcut for `self.class.as_str()`).
    pub fn class_name(&self) -> &'static str {
        self.class.as_str()
    }
}
