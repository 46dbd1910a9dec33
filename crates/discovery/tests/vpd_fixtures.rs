//! Every VPD image in `shared/sysfs/fixtures/vpd`: the valid ones give what libvirt reads
//! from them (per `check-output.txt`), the invalid ones are rejected.

use std::collections::BTreeMap;
use std::path::PathBuf;

fn vpd_dir() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .map(|a| a.join("shared/sysfs/fixtures/vpd"))
        .find(|p| p.is_dir())
        .unwrap_or_else(|| panic!("no shared/sysfs/fixtures/vpd above {}", here.display()))
}

#[test]
fn every_image_is_judged_as_libvirt_judges_it() {
    let dir = vpd_dir();
    let expected = std::fs::read_to_string(dir.join("check-output.txt")).unwrap();
    let mut checked = 0;
    for line in expected
        .lines()
        .filter(|l| l.ends_with(".bin") || l.contains(".bin "))
    {
        let file = line.split_whitespace().next().unwrap();
        let bytes = std::fs::read(dir.join(file)).unwrap();
        let result = pcitrack_discovery::vpd::parse(&bytes);
        if line.contains("expect=INVALID") {
            let e = result.expect_err(file);
            assert!(!e.to_string().is_empty());
        } else {
            let vpd = result.unwrap_or_else(|e| panic!("{file}: {e}"));
            let dict = &line[line.find('{').unwrap()..];
            let json: serde_json::Value = serde_json::from_str(&dict.replace('\'', "\"")).unwrap();
            assert_eq!(vpd.identifier.as_deref(), json["name"].as_str(), "{file}");
            let map = |v: &serde_json::Value| -> BTreeMap<String, String> {
                v.as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect()
            };
            assert_eq!(vpd.read_only, map(&json["ro"]), "{file}");
            assert_eq!(vpd.read_write, map(&json["rw"]), "{file}");
            assert_eq!(vpd.part_number, vpd.read_only.get("PN").cloned());
            assert_eq!(vpd.card_serial_number, vpd.read_only.get("SN").cloned());
        }
        checked += 1;
    }
    assert_eq!(checked, 17, "every image in check-output.txt");
}

#[test]
fn errors_name_the_problem() {
    let dir = vpd_dir();
    let err = |f: &str| {
        pcitrack_discovery::vpd::parse(&std::fs::read(dir.join(f)).unwrap())
            .unwrap_err()
            .to_string()
    };
    assert!(err("libvirt-invalid-bad-checksum.bin").contains("checksum"));
    assert!(err("libvirt-invalid-no-vpd-r.bin").contains("no VPD-R"));
    assert!(err("libvirt-invalid-rw-in-vpd-r.bin").contains("RW keyword inside VPD-R"));
    assert!(err("libvirt-invalid-string-nonprintable.bin").contains("bad string"));
    assert!(err("libvirt-invalid-zero-byte.bin").contains("short read"));
}
