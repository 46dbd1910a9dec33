//! A fast reader of one [`Device`] record written the way `pcitrack discover --format json`
//! writes it (compact, every field, in the struct's order, plain values), for files of
//! hundreds of thousands of records. It reads that layout only and says `None` for any
//! other text, which the caller then reads with `serde_json` (and its errors): a record it
//! reads is the record `serde_json` reads from the same text.

use crate::hex::parse_hex_id;
use crate::{DevType, Device, PciAddress};

/// A cursor over the record's text.
struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    /// Steps over `literal` when the text goes on with it. Inlined: with the literal's
    /// length known, the comparison is a few loads instead of a call to `memcmp` (about 20
    /// keys per record, a call each).
    #[inline(always)]
    fn eat(&mut self, literal: &str) -> Option<()> {
        self.text[self.at..].starts_with(literal).then(|| {
            self.at += literal.len();
        })
    }

    /// A string with nothing to unescape: no `\`, no control character (which JSON
    /// refuses), as `serde_json` lends it.
    #[inline(always)]
    fn string(&mut self) -> Option<&'a str> {
        self.eat("\"")?;
        let rest = &self.text.as_bytes()[self.at..];
        let len = rest
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        if rest[len] != b'"' {
            return None;
        }
        let s = &self.text[self.at..self.at + len];
        self.at += len + 1;
        Some(s)
    }

    /// `null` as `None`, else `value`'s reading.
    #[inline(always)]
    fn opt<T>(&mut self, value: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.eat("null").is_some() {
            return Some(None);
        }
        value(self).map(Some)
    }

    /// A JSON integer (`0`, or digits not starting with `0`) that fits `u32`.
    fn integer(&mut self) -> Option<u32> {
        let rest = &self.text.as_bytes()[self.at..];
        let len = rest.iter().position(|b| !b.is_ascii_digit())?;
        if len == 0 || (len > 1 && rest[0] == b'0') || matches!(rest[len], b'.' | b'e' | b'E') {
            return None;
        }
        let value = self.text[self.at..self.at + len].parse().ok()?;
        self.at += len;
        Some(value)
    }

    fn hex(&mut self, max_digits: usize) -> Option<u32> {
        parse_hex_id(self.string()?, max_digits).ok()
    }

    fn address(&mut self) -> Option<PciAddress> {
        self.string()?.parse().ok()
    }
}

/// The record at the start of `text` and its length in bytes, when it is written in the
/// layout described above; `None` for anything else (including a record `serde_json`
/// would refuse).
pub fn device_prefix(text: &str) -> Option<(Device, usize)> {
    let c = &mut Cursor { text, at: 0 };
    c.eat("{\"address\":")?;
    let address = c.address()?;
    c.eat(",\"vendor_id\":")?;
    let vendor_id = c.hex(4)? as u16;
    c.eat(",\"product_id\":")?;
    let product_id = c.hex(4)? as u16;
    c.eat(",\"subsystem_vendor_id\":")?;
    let subsystem_vendor_id = c.opt(|c| c.hex(4))?.map(|v| v as u16);
    c.eat(",\"subsystem_device_id\":")?;
    let subsystem_device_id = c.opt(|c| c.hex(4))?.map(|v| v as u16);
    c.eat(",\"class_code\":")?;
    let class_code = c.hex(6)?;
    c.eat(",\"revision\":")?;
    let revision = c.opt(|c| c.hex(2))?.map(|v| v as u8);
    c.eat(",\"numa_node\":")?;
    let numa_node = c.opt(Cursor::integer)?;
    c.eat(",\"driver\":")?;
    let driver = c.opt(Cursor::string)?.map(str::to_string);
    c.eat(",\"iommu_group\":")?;
    let iommu_group = c.opt(Cursor::integer)?;
    c.eat(",\"dev_type\":")?;
    let dev_type = c.string()?;
    let dev_type = [DevType::Pci, DevType::Pf, DevType::Vf, DevType::Vdpa]
        .into_iter()
        .find(|t| t.as_str() == dev_type)?;
    c.eat(",\"parent_addr\":")?;
    let parent_addr = c.opt(Cursor::address)?;
    // `,"name":` then a `u16` or `null`.
    let small = |c: &mut Cursor<'_>, key: &str| -> Option<Option<u16>> {
        c.eat(key)?;
        c.opt(|c| c.integer().and_then(|v| u16::try_from(v).ok()))
    };
    let vf_index = small(c, ",\"vf_index\":")?;
    let sriov_totalvfs = small(c, ",\"sriov_totalvfs\":")?;
    let sriov_numvfs = small(c, ",\"sriov_numvfs\":")?;
    c.eat(",\"sriov_vf_device\":")?;
    let sriov_vf_device = c.opt(|c| c.hex(4))?.map(|v| v as u16);
    c.eat(",\"ifname\":")?;
    let ifname = c.opt(Cursor::string)?.map(str::to_string);
    c.eat(",\"mac_address\":")?;
    let mac_address = c.opt(Cursor::string)?.map(str::to_string);
    c.eat(",\"net\":")?;
    c.eat("[]")?;
    c.eat(",\"card_serial_number\":")?;
    let card_serial_number = c.opt(Cursor::string)?.map(str::to_string);
    c.eat(",\"vpd\":")?;
    c.eat("null")?;
    c.eat("}")?;
    let device = Device {
        address,
        vendor_id,
        product_id,
        subsystem_vendor_id,
        subsystem_device_id,
        class_code,
        revision,
        numa_node,
        driver,
        iommu_group,
        dev_type,
        parent_addr,
        vf_index,
        sriov_totalvfs,
        sriov_numvfs,
        sriov_vf_device,
        ifname,
        mac_address,
        net: Vec::new(),
        card_serial_number,
        vpd: None,
    };
    Some((device, c.at))
}

#[cfg(test)]
mod tests {
    use super::device_prefix;
    use crate::{DevType, Device};

    fn record(d: &Device) -> String {
        serde_json::to_string(d).unwrap()
    }

    #[test]
    fn reads_what_serde_reads_from_the_layout_discover_writes() {
        let mut vf = Device::new(
            "10000:e1:1f.7".parse().unwrap(),
            0x8086,
            0x154c,
            DevType::Vf,
        );
        vf.parent_addr = Some("10000:e1:00.0".parse().unwrap());
        vf.subsystem_vendor_id = Some(0x8086);
        vf.subsystem_device_id = Some(0);
        vf.class_code = 0x020000;
        vf.revision = Some(1);
        vf.numa_node = Some(0);
        vf.driver = Some("iavf".into());
        vf.iommu_group = Some(4_000_000_000);
        vf.vf_index = Some(65535);
        vf.ifname = Some("ens1f0v3".into());
        vf.mac_address = Some("52:54:00:12:34:56".into());
        vf.card_serial_number = Some("MT2116X09299 é".into());
        let mut pf = Device::new("0000:3b:00.0".parse().unwrap(), 0x15b3, 0x101d, DevType::Pf);
        pf.sriov_totalvfs = Some(8);
        pf.sriov_numvfs = Some(0);
        pf.sriov_vf_device = Some(0x101e);
        for d in [
            vf,
            pf,
            Device::new("0000:00:00.0".parse().unwrap(), 0, 0, DevType::Vdpa),
        ] {
            let text = record(&d);
            let (read, len) = device_prefix(&format!("{text},{{")).expect("the layout");
            assert_eq!(read, d);
            assert_eq!(len, text.len());
        }
    }

    #[test]
    fn anything_else_is_left_to_serde() {
        let d = Device::new("0000:3b:00.0".parse().unwrap(), 0x15b3, 0x101d, DevType::Pf);
        let text = record(&d);
        for (from, to) in [
            ("\"numa_node\":null", "\"numa_node\":01"),
            ("\"numa_node\":null", "\"numa_node\":1.0"),
            ("\"numa_node\":null", "\"numa_node\":-1"),
            ("\"numa_node\":null", "\"numa_node\":4294967296"),
            ("\"vf_index\":null", "\"vf_index\":65536"),
            ("\"driver\":null", "\"driver\":\"a\\\"b\""),
            ("\"driver\":null", "\"driver\":\"a\tb\""),
            ("\"net\":[]", "\"net\":[{\"name\":\"x\"}]"),
            ("\"vpd\":null", "\"vpd\":{}"),
            ("\"vendor_id\":\"15b3\"", "\"vendor_id\":\"15b3x\""),
            (
                "\"address\":\"0000:3b:00.0\"",
                "\"address\":\"0000:3b:20.0\"",
            ),
            ("\"dev_type\":\"type-PF\"", "\"dev_type\":\"type-pf\""),
            (",\"vpd\":null", ""),
            ("{", "{ "),
        ] {
            let changed = text.replacen(from, to, 1);
            assert_ne!(changed, text, "{to}");
            assert!(device_prefix(&changed).is_none(), "{changed}");
        }
    }
}
