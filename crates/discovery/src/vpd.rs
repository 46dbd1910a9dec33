//! PCI Vital Product Data (the `vpd` file), parsed as strictly as libvirt does: a VPD that
//! libvirt would reject is rejected whole, so pcitrack never reports a serial number libvirt
//! (and so Nova) would not.
//!
//! Format: a stream of resources. Large resources have bit 7 set and a little-endian 16-bit
//! length: 0x82 identifier string, 0x90 VPD-R (read-only keywords, ending with `RV`, whose
//! first byte makes the sum of every byte so far zero), 0x91 VPD-W (read-write keywords,
//! optionally ending with `RW`). Small resources carry a 3-bit length; type 0xF (byte 0x78)
//! ends the stream. A keyword is two characters, a length byte and the value.

use std::collections::BTreeMap;

use pcitrack_model::Vpd;
use thiserror::Error;

/// Why a VPD image was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VpdError {
    /// The data ends inside a resource or before the end tag.
    #[error("short read: the VPD ends at byte {len} inside a resource starting at {offset}")]
    ShortRead {
        /// Where the resource starts.
        offset: usize,
        /// How many bytes there are.
        len: usize,
    },
    /// The identifier string has bytes that are not printable.
    #[error("bad string: the identifier string at {offset} has non-printable bytes")]
    BadString {
        /// Where the string starts.
        offset: usize,
    },
    /// There is no VPD-R resource.
    #[error("no VPD-R resource (read-only keywords)")]
    NoVpdR,
    /// VPD-R does not end with `RV`.
    #[error("VPD-R at {offset} does not end with the RV keyword")]
    RvNotLast {
        /// Where VPD-R starts.
        offset: usize,
    },
    /// The checksum does not sum to zero (or `RV` has no checksum byte).
    #[error("bad checksum: the bytes up to the RV checksum at {offset} do not sum to zero")]
    BadChecksum {
        /// Where the checksum byte is (or would be).
        offset: usize,
    },
    /// `RW` appears in the read-only section.
    #[error("RW keyword inside VPD-R at {offset}")]
    RwInVpdR {
        /// Where the keyword is.
        offset: usize,
    },
    /// A keyword follows `RW` in VPD-W.
    #[error("VPD-W at {offset} continues after its RW keyword")]
    RwNotLast {
        /// Where VPD-W starts.
        offset: usize,
    },
    /// A keyword's value runs past its resource.
    #[error("keyword at {offset} overflows its resource")]
    FieldOverflow {
        /// Where the keyword starts.
        offset: usize,
    },
}

fn printable(b: &[u8]) -> bool {
    b.iter().all(|&c| (0x20..0x7f).contains(&c))
}

fn keyword_ok(k: &[u8]) -> bool {
    k.iter()
        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

/// Parses a VPD image.
///
/// # Errors
///
/// A [`VpdError`] wherever libvirt would reject the image: a short read, a non-printable
/// identifier string, no VPD-R or one not ending with `RV`, a bad checksum, `RW` misplaced,
/// a keyword running past its resource.
pub fn parse(data: &[u8]) -> Result<Vpd, VpdError> {
    let mut vpd = Vpd::default();
    let mut seen_r = false;
    let mut pos = 0;
    loop {
        let Some(&tag) = data.get(pos) else {
            return Err(VpdError::ShortRead {
                offset: pos,
                len: data.len(),
            });
        };
        let (start, len) = if tag & 0x80 != 0 {
            let Some(l) = data.get(pos + 1..pos + 3) else {
                return Err(VpdError::ShortRead {
                    offset: pos,
                    len: data.len(),
                });
            };
            (pos + 3, u16::from_le_bytes([l[0], l[1]]) as usize)
        } else {
            if (tag >> 3) & 0xf == 0xf {
                break;
            }
            (pos + 1, (tag & 7) as usize)
        };
        let Some(body) = data.get(start..start + len) else {
            return Err(VpdError::ShortRead {
                offset: pos,
                len: data.len(),
            });
        };
        match tag {
            0x82 => {
                if !printable(body) {
                    return Err(VpdError::BadString { offset: start });
                }
                vpd.identifier = Some(String::from_utf8_lossy(body).trim().to_string());
            }
            0x90 => {
                read_only(data, pos, start, len, &mut vpd.read_only)?;
                seen_r = true;
            }
            0x91 => read_write(pos, start, body, &mut vpd.read_write)?,
            _ => {}
        }
        pos = start + len;
    }
    if !seen_r {
        return Err(VpdError::NoVpdR);
    }
    vpd.part_number = vpd.read_only.get("PN").cloned();
    vpd.card_serial_number = vpd.read_only.get("SN").cloned();
    Ok(vpd)
}

/// Text value of a keyword, or `None` when it is not printable (libvirt skips such fields).
fn text(value: &[u8]) -> Option<String> {
    printable(value).then(|| String::from_utf8_lossy(value).trim().to_string())
}

fn read_only(
    data: &[u8],
    resource: usize,
    start: usize,
    len: usize,
    out: &mut BTreeMap<String, String>,
) -> Result<(), VpdError> {
    let end = start + len;
    let mut pos = start;
    while pos < end {
        if pos + 3 > end {
            return Err(VpdError::FieldOverflow { offset: pos });
        }
        let key = &data[pos..pos + 2];
        let vlen = data[pos + 2] as usize;
        let value = pos + 3;
        if value + vlen > end {
            return Err(VpdError::FieldOverflow { offset: pos });
        }
        match key {
            b"RV" => {
                if vlen == 0 {
                    return Err(VpdError::BadChecksum { offset: value });
                }
                let sum = data[..=value].iter().fold(0u8, |s, &b| s.wrapping_add(b));
                if sum != 0 {
                    return Err(VpdError::BadChecksum { offset: value });
                }
                if value + vlen != end {
                    return Err(VpdError::RvNotLast { offset: resource });
                }
                return Ok(());
            }
            b"RW" => return Err(VpdError::RwInVpdR { offset: pos }),
            k if keyword_ok(k) => {
                if let Some(t) = text(&data[value..value + vlen]) {
                    out.insert(String::from_utf8_lossy(k).into_owned(), t);
                }
            }
            _ => {}
        }
        pos = value + vlen;
    }
    Err(VpdError::RvNotLast { offset: resource })
}

fn read_write(
    resource: usize,
    start: usize,
    body: &[u8],
    out: &mut BTreeMap<String, String>,
) -> Result<(), VpdError> {
    let mut pos = 0;
    while pos < body.len() {
        if pos + 3 > body.len() {
            return Err(VpdError::FieldOverflow {
                offset: start + pos,
            });
        }
        let key = &body[pos..pos + 2];
        let vlen = body[pos + 2] as usize;
        let value = pos + 3;
        if value + vlen > body.len() {
            return Err(VpdError::FieldOverflow {
                offset: start + pos,
            });
        }
        if key == b"RW" {
            if value + vlen != body.len() {
                return Err(VpdError::RwNotLast { offset: resource });
            }
            return Ok(());
        }
        if keyword_ok(key)
            && let Some(t) = text(&body[value..value + vlen])
        {
            out.insert(String::from_utf8_lossy(key).into_owned(), t);
        }
        pos = value + vlen;
    }
    Ok(())
}
