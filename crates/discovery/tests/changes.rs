//! A burst of uevents becomes one set of inventory changes.

use std::collections::BTreeSet;
use std::path::PathBuf;

use pcitrack_discovery::changes::{Burst, InventoryChange, changes};
use pcitrack_discovery::fixture::FakeSysfs;
use pcitrack_discovery::scan;
use pcitrack_discovery::uevent::parse;

#[test]
fn the_fixture_burst_of_vf_creation_touches_each_device_once() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("shared/sysfs/fixtures/uevent/kernel-group1"))
        .find(|p| p.is_dir())
        .unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut burst = Burst::default();
    for f in &files[..7] {
        burst.add(&parse(&std::fs::read(f).unwrap()).unwrap());
    }
    let affected: Vec<String> = burst.affected.iter().map(|a| a.to_string()).collect();
    assert_eq!(
        affected,
        ["0000:a2:00.0", "0000:a2:01.0", "0000:a2:01.1"],
        "7 events, 3 devices"
    );
}

#[test]
fn vfs_appearing_and_vanishing_are_reported_with_their_pf() {
    let t = FakeSysfs::new();
    let known = scan(t.root()).devices;
    let vfs = t.add_pf_with_vfs("0000:3b:00.0", 0x8086, 0x1572, 0x154c, 2);
    let affected: BTreeSet<_> = vfs.iter().map(|v| v.parse().unwrap()).collect();
    let added = changes(t.root(), &known, &affected);
    let names: Vec<String> = added
        .iter()
        .map(|c| match c {
            InventoryChange::Added(d) => format!("+{}", d.address),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        names,
        ["+0000:3b:00.0", "+0000:3c:00.0", "+0000:3c:00.1"],
        "the PF is re-read with its VFs"
    );

    let known = scan(t.root()).devices;
    t.remove(&vfs[1]);
    t.add_device("0000:3b:00.0", 0x8086, 0x1572, 0x020000)
        .attr("sriov_totalvfs", "2")
        .attr("sriov_numvfs", "1");
    let gone = changes(t.root(), &known, &[vfs[1].parse().unwrap()].into());
    assert!(
        gone.contains(&InventoryChange::Removed(vfs[1].parse().unwrap())),
        "{gone:?}"
    );
    assert!(
        gone.iter().any(
            |c| matches!(c, InventoryChange::Changed { after, .. } if after.sriov_numvfs == Some(1))
        ),
        "{gone:?}"
    );
    assert!(
        changes(
            t.root(),
            &scan(t.root()).devices,
            &[vfs[0].parse().unwrap()].into()
        )
        .is_empty(),
        "nothing changed"
    );
}
