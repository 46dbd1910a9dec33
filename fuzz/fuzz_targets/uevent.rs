//! `uevent::parse` on arbitrary bytes, in both framings: the kernel's
//! (`action@devpath\0KEY=VALUE\0...`) and udev's (`libudev\0` header, then properties).
//!
//! Properties: never panics; an accepted event agrees with its own properties; and its
//! properties, framed again either way, parse to the same event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pcitrack_discovery::uevent::{self, UEvent};

fn properties(event: &UEvent) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in &event.env {
        out.extend_from_slice(k.as_bytes());
        out.push(b'=');
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

fn kernel_packet(event: &UEvent) -> Vec<u8> {
    let mut out = format!("{}@{}\0", event.action, event.devpath).into_bytes();
    out.extend(properties(event));
    out
}

/// The libudev monitor header (40 bytes: prefix, magic in network order, header size,
/// properties offset and length in host order, filter hashes), then the properties.
fn udev_packet(event: &UEvent) -> Vec<u8> {
    let props = properties(event);
    let mut out = b"libudev\0".to_vec();
    out.extend_from_slice(&0xfeed_cafe_u32.to_be_bytes());
    out.extend_from_slice(&40u32.to_ne_bytes());
    out.extend_from_slice(&40u32.to_ne_bytes());
    out.extend_from_slice(&(props.len() as u32).to_ne_bytes());
    out.resize(40, 0);
    out.extend(props);
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(event) = uevent::parse(data) else {
        return;
    };
    let env = |k: &str| event.env.get(k).map(String::as_str);
    assert_eq!(env("ACTION"), Some(event.action.as_str()));
    assert_eq!(env("DEVPATH"), Some(event.devpath.as_str()));
    assert_eq!(env("SUBSYSTEM"), Some(event.subsystem.as_str()));
    assert_eq!(
        env("SEQNUM").and_then(|s| s.parse::<u64>().ok()),
        Some(event.seqnum)
    );
    assert_eq!(
        event.pci_slot,
        env("PCI_SLOT_NAME").map(|s| s.parse().expect("accepted PCI_SLOT_NAME"))
    );
    assert_eq!(event.from_udev, data.starts_with(b"libudev\0"));
    if event
        .env
        .keys()
        .any(|k| k.is_empty() || k.contains(['=', '\0']))
    {
        panic!("bad key in {:?}", event.env);
    }
    let _ = event.pci_address();

    let udev = uevent::parse(&udev_packet(&event)).expect("re-framed for udev");
    assert_eq!(
        udev,
        UEvent {
            from_udev: true,
            ..event.clone()
        }
    );
    // The kernel's header splits at the first '@', so an action with one cannot be framed
    // that way (udev's framing has no header and can carry it).
    match uevent::parse(&kernel_packet(&event)) {
        Ok(kernel) => assert_eq!(
            kernel,
            UEvent {
                from_udev: false,
                ..event
            }
        ),
        Err(e) => assert!(event.action.contains('@'), "re-framed for the kernel: {e}"),
    }
});
