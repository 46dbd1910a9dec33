//! `Tracker::sync_some`: a partial sync (the devices a uevent burst re-read) by the full
//! sync's rules, for its scope only.

mod common;

use std::cell::RefCell;
use std::collections::BTreeSet;

use common::{addr, plain, sriov_family};
use pcitrack_model::cleanup::{CleanupCandidate, CleanupVerdict};
use pcitrack_model::{DeviceStatus, PciAddress};
use pcitrack_tracker::{DefaultCleanup, DeviceFilter, PciRequest, Tracker};

fn scope(addresses: &[&str]) -> BTreeSet<PciAddress> {
    addresses.iter().map(|a| addr(a)).collect()
}

fn tracked(t: &mut Tracker) -> Vec<String> {
    t.devices(&DeviceFilter::default())
        .unwrap()
        .iter()
        .map(|d| d.address().to_string())
        .collect()
}

#[test]
fn devices_outside_the_scope_are_left_alone_and_a_gone_one_in_it_is_deleted() {
    let mut t = Tracker::in_memory().unwrap();
    let mut host = sriov_family(0, 0x10, 4, None, "physnet1");
    host.push(plain(0, 0x20, 0));
    t.sync(&host, &DefaultCleanup).unwrap();
    assert_eq!(tracked(&mut t).len(), 6);

    // The burst named the third VF, which is gone; its PF was re-read, unchanged.
    let report = t
        .sync_some(
            &host[..1],
            &scope(&["0000:10:00.0", "0000:11:00.2"]),
            &DefaultCleanup,
        )
        .unwrap();
    assert_eq!(report.deleted, [addr("0000:11:00.2")]);
    assert!(report.added.is_empty() && report.updated.is_empty());
    assert_eq!(
        tracked(&mut t),
        [
            "0000:10:00.0",
            "0000:11:00.0",
            "0000:11:00.1",
            "0000:11:00.3",
            "0000:20:00.0"
        ]
    );

    // A changed record in the scope is updated; one outside it is ignored.
    let mut changed = host[2].clone();
    changed.device.numa_node = Some(1);
    let mut outside = host[5].clone();
    outside.device.numa_node = Some(1);
    let report = t
        .sync_some(
            &[changed, outside],
            &scope(&["0000:11:00.1"]),
            &DefaultCleanup,
        )
        .unwrap();
    assert_eq!(report.updated, [addr("0000:11:00.1")]);
    let numa = |t: &mut Tracker, a: &str| {
        t.devices(&DeviceFilter::default())
            .unwrap()
            .into_iter()
            .find(|d| d.address() == addr(a))
            .unwrap()
            .profile
            .device
            .numa_node
    };
    assert_eq!(numa(&mut t, "0000:11:00.1"), Some(1));
    assert_eq!(numa(&mut t, "0000:20:00.0"), None);
}

#[test]
fn a_held_device_that_goes_is_deferred_and_its_pf_stays_unclaimable() {
    let mut t = Tracker::in_memory().unwrap();
    let host = sriov_family(0, 0x10, 2, None, "physnet1");
    t.sync(&host, &DefaultCleanup).unwrap();
    let request = PciRequest::from_spec_json(r#"{"product_id": "154c"}"#, 1).unwrap();
    let claimed = t.claim("vm", &[request], None).unwrap();
    let vf = claimed[0].address;
    let report = t
        .sync_some(&[], &BTreeSet::from([vf]), &DefaultCleanup)
        .unwrap();
    assert!(report.deleted.is_empty());
    let devices = t.devices(&DeviceFilter::default()).unwrap();
    let held = devices.iter().find(|d| d.address() == vf).unwrap();
    assert!(held.to_be_removed_when_freed);
    assert_eq!(held.status, DeviceStatus::Claimed);
    let pf = devices.iter().find(|d| d.address() == addr("0000:10:00.0"));
    assert_eq!(pf.unwrap().status, DeviceStatus::Unclaimable);
}

/// The cleanup chain sees devices outside the scope as the last sync left them, and a
/// partial sync counts as a sync only for the missing devices of its scope.
#[test]
fn the_cleanup_chain_counts_missing_syncs_for_the_scope_only() {
    let mut t = Tracker::in_memory().unwrap();
    let mut host = sriov_family(0, 0x10, 2, None, "physnet1");
    host.push(plain(0, 0x20, 0));
    t.sync(&host, &DefaultCleanup).unwrap();
    let seen: RefCell<Vec<Vec<(String, bool, u32)>>> = RefCell::new(Vec::new());
    let keep = |tracked: &[CleanupCandidate], candidates: &[usize]| {
        seen.borrow_mut().push(
            candidates
                .iter()
                .map(|&i| {
                    let c = &tracked[i];
                    (c.address.to_string(), c.reported, c.missing_syncs)
                })
                .collect(),
        );
        vec![CleanupVerdict::Keep("grace".into()); candidates.len()]
    };
    // A full sync without the plain device: missing once.
    t.sync(&host[..3], &keep).unwrap();
    // Two partial syncs about a VF that is gone: only it is a candidate, and the plain
    // device keeps its count.
    let vf = scope(&["0000:11:00.1"]);
    t.sync_some(&[], &vf, &keep).unwrap();
    t.sync_some(&[], &vf, &keep).unwrap();
    assert_eq!(
        *seen.borrow(),
        [
            vec![("0000:20:00.0".to_string(), false, 1)],
            vec![("0000:11:00.1".to_string(), false, 1)],
            vec![("0000:11:00.1".to_string(), false, 2)],
        ]
    );
    let missing: Vec<(String, u32)> = t
        .devices(&DeviceFilter::default())
        .unwrap()
        .iter()
        .filter(|d| d.missing_syncs > 0)
        .map(|d| (d.address().to_string(), d.missing_syncs))
        .collect();
    assert_eq!(
        missing,
        [
            ("0000:11:00.1".to_string(), 2),
            ("0000:20:00.0".to_string(), 1)
        ]
    );
}
