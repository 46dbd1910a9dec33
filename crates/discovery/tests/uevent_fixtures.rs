//! Every uevent packet in `shared/sysfs/fixtures/uevent`, in both framings.

use std::path::PathBuf;

use pcitrack_discovery::uevent::parse;

fn dir() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .map(|a| a.join("shared/sysfs/fixtures/uevent"))
        .find(|p| p.is_dir())
        .unwrap_or_else(|| panic!("no shared/sysfs/fixtures/uevent above {}", here.display()))
}

#[test]
fn kernel_and_udev_framings_give_the_same_events_as_the_sequence() {
    let sequence = std::fs::read_to_string(dir().join("sequence.txt")).unwrap();
    let mut files: Vec<String> = std::fs::read_dir(dir().join("kernel-group1"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files.len(), 11);
    let mut last_seqnum = 0;
    for f in &files {
        let kernel = parse(&std::fs::read(dir().join("kernel-group1").join(f)).unwrap()).unwrap();
        let udev = parse(&std::fs::read(dir().join("udev-group2").join(f)).unwrap()).unwrap();
        // The file name says what it is: NN-action-address.
        let mut parts = f.trim_end_matches(".bin").splitn(3, '-');
        let (_, action, slot) = (
            parts.next(),
            parts.next().unwrap(),
            parts.next().unwrap().replace('_', ":"),
        );
        for e in [&kernel, &udev] {
            assert_eq!(e.action, action, "{f}");
            assert_eq!(e.subsystem, "pci");
            assert_eq!(e.pci_address().unwrap().to_string(), slot, "{f}");
        }
        assert!(!kernel.from_udev && udev.from_udev);
        assert_eq!(
            (kernel.seqnum, &kernel.devpath),
            (udev.seqnum, &udev.devpath)
        );
        assert!(kernel.seqnum > last_seqnum, "sequence numbers increase");
        last_seqnum = kernel.seqnum;
        assert!(
            sequence.contains(&format!("SEQNUM={}", kernel.seqnum)),
            "{f}"
        );
    }
}

#[test]
fn a_damaged_udev_header_is_refused_with_the_reason() {
    let f = dir().join("udev-group2/01-add-0000_a2_01.0.bin");
    let mut bytes = std::fs::read(f).unwrap();
    bytes[8] ^= 0xff;
    assert_eq!(
        parse(&bytes).unwrap_err().to_string(),
        "bad libudev header: magic is not 0xfeedcafe"
    );
    let mut bytes = std::fs::read(dir().join("udev-group2/01-add-0000_a2_01.0.bin")).unwrap();
    bytes[20..24].copy_from_slice(&u32::MAX.to_ne_bytes());
    assert!(
        parse(&bytes)
            .unwrap_err()
            .to_string()
            .contains("outside the packet")
    );
}
