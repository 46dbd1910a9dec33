//! The list of specs (Nova's `Whitelist`): parsing the configured entries, binding them to
//! a host, and finding the first spec a device matches.

use pcitrack_model::PciAddress;

use crate::error::SpecError;
use crate::field::Field;
use crate::host::{DeviceInput, HostView};
use crate::spec::{AddressSpec, DeviceSpec, ONE_TIME_USE, Settings, Target};
use crate::value::{Value, from_json};

/// One configured entry: JSON text as operators write it for Nova, or an already-parsed
/// value (a native TOML table, or a list of them).
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// A JSON object or list of objects, as text.
    Json(String),
    /// An object or list of objects.
    Native(Value),
}

/// The parsed `[pci] device_spec` list. An empty list makes nothing assignable.
#[derive(Debug, Clone, Default)]
pub struct Whitelist {
    specs: Vec<DeviceSpec>,
    settings: Settings,
}

impl Whitelist {
    /// Parses Nova's `[pci] device_spec` values: each a JSON object or a JSON list of
    /// objects. Errors are Nova's (`Invalid entry: ...` and the per-spec ones).
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, SpecError> {
        let entries: Vec<Entry> = entries
            .iter()
            .map(|t| Entry::Json(t.as_ref().to_string()))
            .collect();
        Self::parse_entries(&entries)
    }

    /// Parses entries that may be JSON text or native values (TOML tables), with Nova's
    /// default settings.
    pub fn parse_entries(entries: &[Entry]) -> Result<Self, SpecError> {
        Self::parse_entries_with(entries, Settings::default())
    }

    /// Parses entries under the given `[pci]` settings (see [`DeviceSpec::parse_with`]).
    ///
    /// # Errors
    ///
    /// The first entry's [`SpecError`], with Nova's message.
    pub fn parse_entries_with(entries: &[Entry], settings: Settings) -> Result<Self, SpecError> {
        let mut specs = Vec::new();
        for entry in entries {
            match entry {
                Entry::Json(text) => {
                    let value = from_json(text)
                        .map_err(|_| SpecError::invalid(format!("Invalid entry: '{text}'")))?;
                    push_entry(&mut specs, &value, text, settings)?;
                }
                Entry::Native(value) => push_entry(&mut specs, value, &value.py_str(), settings)?,
            }
        }
        Ok(Whitelist { specs, settings })
    }

    /// The settings the specs were parsed under.
    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// Whether spec `spec` may make a device of this kind assignable as far as
    /// `one_time_use` goes. With `report_in_placement` on, a VF or vDPA device (`is_child`)
    /// whose spec sets `one_time_use` at all, even to false, is refused with Nova's message
    /// (`nova/compute/pci_placement_translator.py` `PciResourceProvider.add_child`, which
    /// only runs then; Nova fails its whole Placement update, pcitrack refuses that device
    /// alone). `device` names the device where Nova names its Placement provider; it is
    /// written only into a refusal (the matcher passes the address itself: formatting it
    /// for every matched device was a measurable part of a large evaluation).
    ///
    /// # Errors
    ///
    /// The refusal, as the reason to report for the device.
    pub fn check_one_time_use(
        &self,
        spec: usize,
        is_child: bool,
        device: impl std::fmt::Display,
    ) -> Result<(), String> {
        let tagged = self
            .specs
            .get(spec)
            .is_some_and(|s| s.tags().get(ONE_TIME_USE).is_some());
        if self.settings.report_in_placement && is_child && tagged {
            return Err(format!(
                "Only type-PCI and type-PF devices may set one_time_use and {device} does not \
                 qualify"
            ));
        }
        Ok(())
    }

    /// The specs, in configured order.
    pub fn specs(&self) -> &[DeviceSpec] {
        &self.specs
    }

    /// Number of specs.
    pub fn len(&self) -> usize {
        self.specs.len()
    }

    /// True when no spec is configured (nothing is assignable).
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// Resolves everything that depends on the host: which single-address specs name a PF
    /// (and so also match its VFs), what each `devname` names, and Nova's remote-managed
    /// checks, which fail with Nova's errors. The first failing spec, in order, wins.
    pub fn bind<H: HostView + ?Sized>(&self, host: &H) -> Result<BoundWhitelist<'_>, SpecError> {
        let mut bound = Vec::with_capacity(self.specs.len());
        for spec in &self.specs {
            let resolution = resolve(spec, host)?;
            if spec.remote_managed {
                check_remote_managed(spec, resolution, host)?;
            }
            bound.push(BoundSpec {
                vendor: spec.vendor.field(),
                product: spec.product.field(),
                remote_managed: spec.remote_managed,
                resolution,
                address: spec.address(),
            });
        }
        Ok(BoundWhitelist { specs: bound })
    }
}

/// Nova's `_parse_white_list_from_config` for one entry; `shown` is how the entry is quoted
/// in messages.
fn push_entry(
    specs: &mut Vec<DeviceSpec>,
    value: &Value,
    shown: &str,
    settings: Settings,
) -> Result<(), SpecError> {
    match value {
        Value::Object(_) => specs.push(DeviceSpec::parse_with(value, settings)?),
        Value::List(items) => {
            for item in items {
                if !matches!(item, Value::Object(_)) {
                    return Err(SpecError::invalid(format!(
                        "Invalid entry: '{}'; Expecting dict",
                        item.py_str()
                    )));
                }
                specs.push(DeviceSpec::parse_with(item, settings)?);
            }
        }
        _ => {
            return Err(SpecError::invalid(format!(
                "Invalid entry: '{shown}'; Expecting list or dict"
            )));
        }
    }
    Ok(())
}

/// How a spec's address resolved on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// A `devname` the host does not have: the spec matches nothing.
    Absent,
    /// An address spec; `pf` is its single address when that is a PF on this host.
    Address {
        /// The PF whose VFs (by `parent_addr`) the spec also matches.
        pf: Option<PciAddress>,
    },
    /// A `devname` that names this device.
    Device {
        /// The device's address.
        address: PciAddress,
        /// Whether it is a PF (then its VFs match too).
        is_pf: bool,
    },
}

impl Resolution {
    /// The PF the spec names, if any (Nova's `is_physical_function`).
    pub fn pf(self) -> Option<PciAddress> {
        match self {
            Resolution::Address { pf } => pf,
            Resolution::Device { address, is_pf } => is_pf.then_some(address),
            Resolution::Absent => None,
        }
    }
}

fn resolve<H: HostView + ?Sized>(spec: &DeviceSpec, host: &H) -> Result<Resolution, SpecError> {
    let is_pf = |a: PciAddress| host.device(a).is_some_and(|f| f.is_pf);
    Ok(match &spec.target {
        Target::Address(a) => Resolution::Address {
            pf: a.single_address().filter(|&s| is_pf(s)),
        },
        Target::Devname(name) => match host.netdev(name) {
            None => Resolution::Absent,
            Some(address) => Resolution::Device {
                address,
                is_pf: is_pf(address),
            },
        },
    })
}

/// Nova's parse-time remote-managed checks (SPEC §1.4), with the PF's real address where
/// Nova prints a Python object repr, and its real device id where Nova reads a `product`
/// file that does not exist.
fn check_remote_managed<H: HostView + ?Sized>(
    spec: &DeviceSpec,
    resolution: Resolution,
    host: &H,
) -> Result<(), SpecError> {
    if resolution == Resolution::Absent {
        return Err(SpecError::remote_managed_not_present());
    }
    let Some(pf) = resolution.pf() else {
        return Ok(());
    };
    let facts = host
        .device(pf)
        .ok_or_else(|| SpecError::not_found_by_id(pf.to_string()))?;
    let vf_product_id = facts
        .vf_product_id
        .ok_or_else(|| SpecError::not_found_by_id(pf.to_string()))?;
    if spec.product.is_exactly(vf_product_id) && spec.vendor.is_any_or(facts.vendor_id) {
        Ok(())
    } else if spec.product.is_any_or(facts.product_id) && spec.vendor.is_any_or(facts.vendor_id) {
        Err(SpecError::pf_remote_managed(pf.to_string()))
    } else {
        Err(SpecError::invalid(format!(
            "the specified VF vendor ID {} and product ID {} do not match the expected VF \
             IDs based on the corresponding PF identified by PCI address {pf}",
            spec.vendor.text(),
            spec.product.text()
        )))
    }
}

/// The per-evaluation form of one spec: just what matching reads.
#[derive(Debug, Clone)]
struct BoundSpec<'w> {
    vendor: Field,
    product: Field,
    remote_managed: bool,
    resolution: Resolution,
    address: Option<&'w AddressSpec>,
}

impl BoundSpec<'_> {
    #[inline]
    fn matches(&self, dev: &DeviceInput<'_>) -> bool {
        if !self.vendor.accepts(dev.vendor_id.into())
            || !self.product.accepts(dev.product_id.into())
        {
            return false;
        }
        if self.remote_managed && dev.card_serial_number.is_none_or(str::is_empty) {
            return false;
        }
        match self.resolution {
            Resolution::Absent => false,
            Resolution::Device { address, is_pf } => {
                (is_pf && dev.parent_addr == Some(address)) || dev.address == address
            }
            Resolution::Address { pf } => {
                let spec = self.address.expect("address specs resolve to Address");
                (pf.is_some() && dev.parent_addr.is_some_and(|p| spec.accepts(p)))
                    || spec.accepts(dev.address)
            }
        }
    }
}

/// A whitelist bound to one host inventory; cheap to build, allocation-free to query.
#[derive(Debug, Clone)]
pub struct BoundWhitelist<'w> {
    specs: Vec<BoundSpec<'w>>,
}

impl BoundWhitelist<'_> {
    /// The index of the first spec `dev` matches (Nova's `device_assignable` /
    /// `get_devspec`), or `None`: not assignable.
    #[inline]
    pub fn find(&self, dev: &DeviceInput<'_>) -> Option<usize> {
        self.specs.iter().position(|s| s.matches(dev))
    }

    /// How spec `index` resolved on this host.
    pub fn resolution(&self, index: usize) -> Resolution {
        self.specs[index].resolution
    }
}
