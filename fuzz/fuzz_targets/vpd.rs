//! `vpd::parse` on arbitrary bytes: a device's `vpd` file is written by its firmware.
//!
//! Properties: never panics; parsing is deterministic; the convenience fields mirror the
//! keyword maps; every kept keyword and string is printable and trimmed; and the result
//! depends only on the bytes up to the end tag, so a truncated image is either refused or
//! read exactly as the whole one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pcitrack_discovery::vpd;

fn printable_trimmed(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7f).contains(&b)) && s.trim() == s
}

fn keyword(k: &str) -> bool {
    k.len() == 2
        && k.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

fuzz_target!(|data: &[u8]| {
    let first = vpd::parse(data);
    assert_eq!(first, vpd::parse(data), "parsing is not deterministic");
    let Ok(v) = first else { return };

    assert_eq!(v.part_number, v.read_only.get("PN").cloned());
    assert_eq!(v.card_serial_number, v.read_only.get("SN").cloned());
    if let Some(id) = &v.identifier {
        assert!(printable_trimmed(id), "identifier {id:?}");
    }
    for (k, val) in &v.read_only {
        assert!(keyword(k) && k != "RV" && k != "RW", "VPD-R keyword {k:?}");
        assert!(printable_trimmed(val), "VPD-R {k} = {val:?}");
    }
    for (k, val) in &v.read_write {
        assert!(keyword(k) && k != "RW", "VPD-W keyword {k:?}");
        assert!(printable_trimmed(val), "VPD-W {k} = {val:?}");
    }

    // Whatever follows the end tag is not read.
    let mut longer = data.to_vec();
    longer.extend_from_slice(b"\x90\xff\xffgarbage");
    assert_eq!(
        vpd::parse(&longer).as_ref(),
        Ok(&v),
        "bytes after the end tag changed the result"
    );
    // A cut image is refused, or (cut after the end tag) read the same.
    for cut in [data.len() / 2, data.len().saturating_sub(1)] {
        if let Ok(short) = vpd::parse(&data[..cut]) {
            assert_eq!(short, v, "a prefix of {cut} bytes reads differently");
        }
    }
});
