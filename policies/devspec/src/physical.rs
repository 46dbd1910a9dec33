//! Full device addresses given as text or as a dict (Nova's `PhysicalPciAddress`), with
//! Nova's validation order (function, domain, bus, slot) and messages.
//!
//! pcitrack's inventory already carries parsed [`PciAddress`]es, so the matcher never needs
//! this; it exists for tools that read Nova-style device dicts (and is checked against
//! Nova's vectors). Differences, all deliberate: domains up to 0xFFFFFFFF are valid; a `*`
//! or negative field, which Nova keeps as text (`'*'`, `'-001'`), is refused because a
//! device address cannot hold it; non-string dict values are refused as a format error
//! (Nova: a raw `TypeError`).

use pcitrack_model::PciAddress;

use crate::address_glob::{MAX_BUS, MAX_DOMAIN, MAX_FUNC, MAX_SLOT};
use crate::error::SpecError;
use crate::field::{Field, parse_field};
use crate::value::Value;

/// Parses a device address the way Nova's `PhysicalPciAddress` does.
pub fn parse_physical_address(value: &Value) -> Result<PciAddress, SpecError> {
    let wrong = || SpecError::wrong_address(value.py_str());
    let fields: [String; 4] = match value {
        Value::Object(_) => {
            let mut out: [String; 4] = Default::default();
            for (i, key) in ["domain", "bus", "slot", "function"].iter().enumerate() {
                match value.get(key) {
                    Some(Value::Str(s)) => out[i] = s.clone(),
                    _ => return Err(wrong()),
                }
            }
            out
        }
        Value::Str(text) => {
            let (dbs, func) = text.split_once('.').unwrap_or((text, ""));
            let parts: Vec<&str> = dbs.split(':').collect();
            let [d, b, s] = parts[..] else {
                return Err(wrong());
            };
            [d.into(), b.into(), s.into(), func.into()]
        }
        _ => return Err(wrong()),
    };
    let value_of = |prop: &str, raw: &str, max: u64, width: usize| -> Result<u32, SpecError> {
        let parsed = parse_field(prop, raw, max, width)?;
        match parsed.field {
            Field::Is(v) => Ok(v),
            _ => Err(SpecError::invalid(format!(
                "property {prop} ('{raw}') does not parse as a hex number."
            ))),
        }
    };
    let function = value_of("func", &fields[3], MAX_FUNC, 1)?;
    let domain = value_of("domain", &fields[0], MAX_DOMAIN, 4)?;
    let bus = value_of("bus", &fields[1], MAX_BUS, 2)?;
    let slot = value_of("slot", &fields[2], MAX_SLOT, 2)?;
    Ok(PciAddress::new(domain, bus as u8, slot as u8, function as u8).expect("limits checked"))
}
