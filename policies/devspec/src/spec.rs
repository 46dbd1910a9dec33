//! One device_spec entry (Nova's `PciDeviceSpec`): parsing, in Nova's order.
//!
//! Order of checks, as in Nova: `vendor_id`, `product_id`, the `devname`/`address`
//! conflict, the address, then the `managed`, `live_migratable` and `one_time_use` tags,
//! then `one_time_use=true` (refused unless [`Settings::report_in_placement`]). The
//! remote-managed checks and `devname` need the host and happen when the whitelist is
//! [bound](crate::Whitelist::bind); the device-type check of `one_time_use` needs the
//! device and happens at match time ([`crate::Whitelist::check_one_time_use`]).

use pcitrack_model::PciAddress;

use crate::address_glob::GlobSpec;
use crate::address_regex::RegexSpec;
use crate::boolstr;
use crate::error::SpecError;
use crate::ids::{IdSpec, parse_id};
use crate::tags::{Tag, Tags};
use crate::value::Value;

/// Tags current Nova normalises to `"true"`/`"false"` and refuses when not boolean.
const BOOLEAN_TAGS: [&str; 3] = ["managed", "live_migratable", "one_time_use"];

/// The `[pci]` settings that change how a spec parses (Nova reads them from `CONF.pci`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settings {
    /// `[pci] report_in_placement` (default false): `one_time_use=true` needs it, because
    /// Nova keeps a used one-time-use device away from the scheduler through Placement's
    /// `reserved` inventory (pcitrack reserves the device in its tracker).
    pub report_in_placement: bool,
}

/// Which address form a spec uses, for introspection (Nova's class names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressKind {
    /// `PciAddressGlobSpec`.
    Glob,
    /// `PciAddressRegexSpec`.
    Regex,
}

/// A spec's compiled address.
#[derive(Debug, Clone)]
pub enum AddressSpec {
    /// A glob string.
    Glob(GlobSpec),
    /// A dict of regular expressions.
    Regex(Box<RegexSpec>),
}

impl AddressSpec {
    /// Whether a device address passes.
    #[inline]
    pub fn accepts(&self, a: PciAddress) -> bool {
        match self {
            AddressSpec::Glob(g) => g.accepts(a),
            AddressSpec::Regex(r) => r.accepts(a),
        }
    }

    /// The address named, when the spec is a single address (PF candidates).
    pub fn single_address(&self) -> Option<PciAddress> {
        match self {
            AddressSpec::Glob(g) => g.single_address(),
            AddressSpec::Regex(r) => r.single_address(),
        }
    }

    /// Nova's field texts: normalised glob fields or raw patterns.
    pub fn field_texts(&self) -> [&str; 4] {
        match self {
            AddressSpec::Glob(g) => g.field_texts(),
            AddressSpec::Regex(r) => r.patterns(),
        }
    }

    /// Glob or regex.
    pub fn kind(&self) -> AddressKind {
        match self {
            AddressSpec::Glob(_) => AddressKind::Glob,
            AddressSpec::Regex(_) => AddressKind::Regex,
        }
    }
}

/// What a spec selects devices by.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // one per spec, built once: boxing buys nothing
pub enum Target {
    /// An address (glob or regex; absent means `*:*:*.*`).
    Address(AddressSpec),
    /// A network interface name, resolved through the host at bind time.
    Devname(String),
}

/// One parsed device_spec.
#[derive(Debug, Clone)]
pub struct DeviceSpec {
    pub(crate) vendor: IdSpec,
    pub(crate) product: IdSpec,
    pub(crate) target: Target,
    /// `devname` as written, even when empty (then the address is used).
    devname_written: Option<String>,
    pub(crate) remote_managed: bool,
    tags: Tags,
}

impl DeviceSpec {
    /// Parses one spec object (a JSON object, or a TOML table read into a [`Value`]) with
    /// Nova's default settings (`report_in_placement` off).
    ///
    /// # Errors
    ///
    /// [`SpecError`] with Nova's class and message, as [`DeviceSpec::parse_with`].
    pub fn parse(spec: &Value) -> Result<Self, SpecError> {
        Self::parse_with(spec, Settings::default())
    }

    /// Parses one spec object under the given `[pci]` settings.
    ///
    /// # Errors
    ///
    /// [`SpecError`] with Nova's class and message: bad ids, `devname` with `address`, a bad
    /// address, a boolean tag that is not a boolean (`Cannot parse tag ...`), and
    /// `one_time_use=true` without `report_in_placement` (`nova/pci/devspec.py`
    /// `PciDeviceSpec._init_dev_details`).
    pub fn parse_with(spec: &Value, settings: Settings) -> Result<Self, SpecError> {
        let Value::Object(entries) = spec else {
            return Err(SpecError::invalid(format!(
                "Invalid entry: '{}'; Expecting dict",
                spec.py_str()
            )));
        };
        let mut rest: Vec<(String, Value)> = Vec::with_capacity(entries.len());
        let (mut vendor, mut product, mut devname, mut address) = (None, None, None, None);
        for (k, v) in entries {
            match k.as_str() {
                "vendor_id" => vendor = Some(v),
                "product_id" => product = Some(v),
                "devname" => devname = Some(v),
                "address" => address = Some(v),
                _ => rest.push((k.clone(), v.clone())),
            }
        }
        let vendor = parse_id("vendor_id", vendor)?;
        let product = parse_id("product_id", product)?;

        let devname_truthy = devname.is_some_and(Value::is_truthy);
        let address_truthy = address.is_some_and(Value::is_truthy);
        if devname_truthy && address_truthy {
            return Err(SpecError::devname_and_address());
        }
        let target = if devname_truthy {
            match devname {
                Some(Value::Str(name)) => Target::Devname(name.clone()),
                Some(other) => {
                    // Nova: a raw TypeError from os.path; refused cleanly here.
                    return Err(SpecError::invalid(format!(
                        "property devname ({}) is not a string.",
                        other.py_repr()
                    )));
                }
                None => unreachable!("truthy implies present"),
            }
        } else {
            Target::Address(parse_address(address.filter(|a| a.is_truthy()))?)
        };
        let devname_written = match devname {
            Some(Value::Str(s)) => Some(s.clone()),
            Some(Value::Null) => None,
            Some(other) if !other.is_truthy() => Some(other.py_str()),
            _ => None,
        };

        let remote_managed = boolstr::lenient(
            rest.iter()
                .find(|(k, _)| k == "remote_managed")
                .map(|(_, v)| v),
        );
        for tag in BOOLEAN_TAGS {
            if let Some((_, v)) = rest.iter_mut().find(|(k, _)| k == tag)
                && *v != Value::Null
            {
                let b = boolstr::strict(v).map_err(|reason| {
                    SpecError::invalid(format!("Cannot parse tag '{tag}': {reason}"))
                })?;
                *v = Value::Str(if b { "true" } else { "false" }.into());
            }
        }
        if !settings.report_in_placement
            && rest
                .iter()
                .any(|(k, v)| k == ONE_TIME_USE && v.as_str() == Some("true"))
        {
            // Nova: a used one-time-use device is kept from the scheduler by Placement's
            // `reserved` inventory, so the tag needs Placement reporting.
            return Err(SpecError::invalid(
                "one_time_use=true requires pci.report_in_placement to be enabled",
            ));
        }
        let tags = Tags(rest.into_iter().map(|(k, v)| Tag::new(k, v)).collect());
        Ok(DeviceSpec {
            vendor,
            product,
            target,
            devname_written,
            remote_managed,
            tags,
        })
    }

    /// Parses one spec from JSON text (one object).
    pub fn parse_json(text: &str) -> Result<Self, SpecError> {
        let value = crate::value::from_json(text)
            .map_err(|_| SpecError::invalid(format!("Invalid entry: '{text}'")))?;
        Self::parse(&value)
    }

    /// `vendor_id`, compiled.
    pub fn vendor_id(&self) -> &IdSpec {
        &self.vendor
    }

    /// `product_id`, compiled.
    pub fn product_id(&self) -> &IdSpec {
        &self.product
    }

    /// What the spec selects by.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The address, unless the spec uses `devname`.
    pub fn address(&self) -> Option<&AddressSpec> {
        match &self.target {
            Target::Address(a) => Some(a),
            Target::Devname(_) => None,
        }
    }

    /// `devname` as written (Nova keeps an empty one too).
    pub fn devname(&self) -> Option<&str> {
        self.devname_written.as_deref()
    }

    /// Whether the spec is remote-managed (oslo's lenient `bool_from_string`).
    pub fn remote_managed(&self) -> bool {
        self.remote_managed
    }

    /// The tags, as Nova's `get_tags()` returns them.
    pub fn tags(&self) -> &Tags {
        &self.tags
    }
}

/// The one-time-use tag.
pub(crate) const ONE_TIME_USE: &str = "one_time_use";

/// Nova's `WhitelistPciAddress(address or '*:*:*.*')`: a string is a glob, a dict a regex
/// spec, anything else a format error.
fn parse_address(address: Option<&Value>) -> Result<AddressSpec, SpecError> {
    match address {
        None => Ok(AddressSpec::Glob(GlobSpec::parse("*:*:*.*")?)),
        Some(Value::Str(s)) => Ok(AddressSpec::Glob(GlobSpec::parse(s)?)),
        Some(v @ Value::Object(_)) => Ok(AddressSpec::Regex(Box::new(RegexSpec::parse(v)?))),
        Some(other) => Err(SpecError::wrong_address(other.py_str())),
    }
}
