//! Tracker behaviour at library level: the seed's field bug, cleanup verdicts, atomicity and
//! durability of the store, concurrency.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::*;
use pcitrack_model::cleanup::{CleanupCandidate, CleanupVerdict};
use pcitrack_model::{Assessment, DevType, DeviceStatus, PciAddress};
use pcitrack_tracker::{
    AliasTable, CleanupPolicy, DefaultCleanup, Deferral, DeviceFilter, PciRequest, SyncReport,
    Tracker, TrackerError, TransitionError,
};
use rusqlite::Connection;

fn pf_request() -> PciRequest {
    PciRequest::new(
        1,
        spec(&[("dev_type", "type-PF"), ("physical_network", "physnet0")]),
    )
}

fn vf_request(physnet: &str) -> PciRequest {
    PciRequest::new(1, spec(&[("physical_network", physnet)]))
}

fn status_of(t: &mut Tracker, a: PciAddress) -> Option<DeviceStatus> {
    t.devices(&DeviceFilter::default())
        .unwrap()
        .into_iter()
        .find(|d| d.address() == a)
        .map(|d| d.status)
}

/// Sets a device's status behind the tracker's back, as an operator or a restored backup would.
fn raw_set(path: &Path, a: PciAddress, status: &str, owner: Option<&str>) {
    let c = Connection::open(path).unwrap();
    let n = c
        .execute(
            "UPDATE pci_devices SET status = ?1, instance_uuid = ?2 WHERE address = ?3",
            rusqlite::params![status, owner, a.to_string()],
        )
        .unwrap();
    assert_eq!(n, 1);
}

/// The seed's field bug (Nova bug 1969496), end to end at library level: PF allocated and its
/// VFs unavailable; the hardware is swapped and the PF set back to available; a claim of the PF
/// must leave a consistent state; the VFs vanish; one sync deletes them; the PF can be claimed.
#[test]
fn regression_seed_field_bug_pf_swap_then_vfs_vanish() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pci.db");
    let mut t = Tracker::open(&path).unwrap();
    let family = sriov_family(0, 0x81, 4, Some(0), "physnet0");
    let pf = family[0].device.address;
    t.sync(&family, &DefaultCleanup).unwrap();
    let c = t.claim("i-old", &[pf_request()], None).unwrap();
    assert_eq!(c[0].address, pf);
    t.allocate("i-old").unwrap();
    for vf in &family[1..] {
        assert_eq!(
            status_of(&mut t, vf.device.address),
            Some(DeviceStatus::Unavailable)
        );
    }

    // Hardware swap: the PF is set back to available, the VFs keep their stale status.
    raw_set(&path, pf, "available", None);
    assert_eq!(status_of(&mut t, pf), Some(DeviceStatus::Available));

    // Claiming the PF is allowed (3af2ecc13f): nobody owns the VFs. Never half-applied.
    let c = t.claim("i-new", &[pf_request()], None).unwrap();
    assert_eq!(c.iter().map(|c| c.address).collect::<Vec<_>>(), vec![pf]);
    check_invariants(&mut t).unwrap();
    for vf in &family[1..] {
        assert_eq!(
            status_of(&mut t, vf.device.address),
            Some(DeviceStatus::Unclaimable)
        );
    }

    // The VFs vanish from the host: one sync deletes them all.
    let r = t.sync(&family[..1], &DefaultCleanup).unwrap();
    assert_eq!(r.deleted.len(), 4, "{r:?}");
    assert!(r.kept.is_empty(), "{r:?}");
    check_invariants(&mut t).unwrap();
    assert_eq!(t.devices(&DeviceFilter::default()).unwrap().len(), 1);

    // The PF can be claimed again once freed.
    t.free("i-new").unwrap();
    let c = t.claim("i-third", &[pf_request()], None).unwrap();
    assert_eq!(c[0].address, pf);
    check_invariants(&mut t).unwrap();
}

/// The same swap, but without the PF claim first: the next sync repairs the stale VFs to
/// available and says so.
#[test]
fn a_sync_repairs_stale_unavailable_children_and_reports_each() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pci.db");
    let mut t = Tracker::open(&path).unwrap();
    let family = sriov_family(0, 0x81, 3, Some(0), "physnet0");
    t.sync(&family, &DefaultCleanup).unwrap();
    t.claim("i1", &[pf_request()], None).unwrap();
    t.allocate("i1").unwrap();
    raw_set(&path, family[0].device.address, "available", None);
    let r = t.sync(&family, &DefaultCleanup).unwrap();
    assert_eq!(r.repaired.len(), 3, "{r:?}");
    assert!(
        r.repaired
            .iter()
            .all(|x| x.from == DeviceStatus::Unavailable && x.to == DeviceStatus::Available)
    );
    check_invariants(&mut t).unwrap();
    assert_eq!(t.pools().unwrap().free_devices().count(), 4);
    // A second sync has nothing left to repair.
    assert_eq!(
        t.sync(&family, &DefaultCleanup).unwrap(),
        Default::default()
    );
}

#[test]
fn a_pf_with_a_claimed_vf_and_a_vf_under_a_busy_pf_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pci.db");
    let mut t = Tracker::open(&path).unwrap();
    let family = sriov_family(0, 0x81, 2, Some(0), "physnet0");
    let (pf, vf) = (family[0].device.address, family[1].device.address);
    t.sync(&family, &DefaultCleanup).unwrap();
    t.claim("i-vf", &[vf_request("physnet0")], None).unwrap();
    // Make the PF look free, as a bad edit would: the claim must be refused, naming the VF.
    raw_set(&path, pf, "available", None);
    let e = t.claim("i-pf", &[pf_request()], None).unwrap_err();
    let text = e.to_string();
    assert!(
        matches!(
            e,
            TrackerError::Refused {
                source: TransitionError::ChildInvalidStatus { .. },
                ..
            }
        ),
        "{e}"
    );
    assert!(
        text.contains("Not all Virtual Functions of PF 0000:81:00.0 are free"),
        "{text}"
    );
    assert!(text.contains("is claimed (owned by i-vf)"), "{text}");
    assert!(text.contains("i-pf"), "{text}");

    // And the other way: a VF whose PF is in use.
    t.free("i-vf").unwrap();
    t.sync(&family, &DefaultCleanup).unwrap();
    t.claim("i-pf", &[pf_request()], None).unwrap();
    raw_set(&path, vf, "available", None);
    let e = t
        .claim("i-vf2", &[vf_request("physnet0")], None)
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("Physical Function 0000:81:00.0, related to VF")
            && e.to_string()
                .contains("is claimed instead of available, unclaimable or unavailable"),
        "{e}"
    );
}

#[test]
fn a_claim_is_all_or_nothing() {
    let mut t = Tracker::in_memory().unwrap();
    let mut devs = sriov_family(0, 0x81, 2, Some(0), "physnet0");
    devs.push(plain(0, 0x05, 0));
    t.sync(&devs, &DefaultCleanup).unwrap();
    let before = t.devices(&DeviceFilter::default()).unwrap();
    let e = t
        .claim(
            "i1",
            &[vf_request("physnet0"), vf_request("physnet9")],
            None,
        )
        .unwrap_err();
    assert!(matches!(e, TrackerError::NoDevices { .. }), "{e}");
    assert!(e.to_string().contains("request #1"), "{e}");
    assert_eq!(t.devices(&DeviceFilter::default()).unwrap(), before);
    check_invariants(&mut t).unwrap();
}

#[test]
fn claims_by_alias_record_the_request_and_numa() {
    let mut t = Tracker::in_memory().unwrap();
    t.sync(&[plain(0, 0x05, 0), plain(0, 0x05, 1)], &DefaultCleanup)
        .unwrap();
    let aliases = AliasTable::parse(&[
        r#"{"name":"gpu","vendor_id":"10de","product_id":"1db4","device_type":"type-PCI"}"#,
    ])
    .unwrap();
    let mut reqs = aliases.requests("gpu:2", None).unwrap();
    reqs[0].request_id = Some("req-1".into());
    let c = t.claim("i1", &reqs, None).unwrap();
    assert_eq!(c.len(), 2);
    let mine = t
        .devices(&DeviceFilter {
            instance: Some("i1".into()),
            ..Default::default()
        })
        .unwrap();
    assert!(
        mine.iter()
            .all(|d| d.request_id.as_deref() == Some("req-1"))
    );
    assert_eq!(t.allocate("i1").unwrap().len(), 2);
    let f = t.free("i1").unwrap();
    assert_eq!(f.freed.len(), 2);
    assert!(
        t.devices(&DeviceFilter::default())
            .unwrap()
            .iter()
            .all(|d| d.request_id.is_none())
    );
}

/// The seed commit's own case: PF allocated, VFs unavailable, then the VFs vanish. The default
/// rule deletes them; a pre-2022 rule (only available is deletable) keeps them, with reasons.
#[test]
fn swapping_the_cleanup_policy_changes_what_sync_deletes() {
    let pre_2022 = |views: &[CleanupCandidate], cands: &[usize]| -> Vec<CleanupVerdict> {
        cands
            .iter()
            .map(|&i| match views[i].status {
                DeviceStatus::Available => CleanupVerdict::Delete,
                s => CleanupVerdict::Keep(format!("pre-2022 rule: {s} is not deletable")),
            })
            .collect()
    };
    for (policy, deletes) in [
        (
            &DefaultCleanup as &dyn pcitrack_tracker::CleanupPolicy,
            true,
        ),
        (&pre_2022 as &dyn pcitrack_tracker::CleanupPolicy, false),
    ] {
        let mut t = Tracker::in_memory().unwrap();
        let family = sriov_family(0, 0x81, 2, Some(0), "physnet0");
        t.sync(&family, &DefaultCleanup).unwrap();
        t.claim("i1", &[pf_request()], None).unwrap();
        t.allocate("i1").unwrap();
        let r = t.sync(&family[..1], policy).unwrap();
        if deletes {
            assert_eq!(r.deleted.len(), 2, "{r:?}");
        } else {
            assert!(r.deleted.is_empty());
            assert_eq!(r.kept.len(), 2);
            assert!(r.kept[0].1.contains("pre-2022 rule: unavailable"));
            // Kept devices count their missing syncs, persisted.
            let r = t.sync(&family[..1], policy).unwrap();
            assert_eq!(r.kept.len(), 2);
            let vf = t
                .devices(&DeviceFilter {
                    dev_type: Some(DevType::Vf),
                    ..Default::default()
                })
                .unwrap();
            assert!(vf.iter().all(|d| d.missing_syncs == 2));
        }
        check_invariants(&mut t).unwrap();
    }
}

#[test]
fn no_verdict_deletes_a_device_in_use_it_goes_when_freed() {
    let always_delete = |_: &[CleanupCandidate], c: &[usize]| vec![CleanupVerdict::Delete; c.len()];
    let mut t = Tracker::in_memory().unwrap();
    let devs = vec![plain(0, 0x05, 0), plain(0, 0x05, 1)];
    t.sync(&devs, &DefaultCleanup).unwrap();
    let c = t
        .claim(
            "i1",
            &[PciRequest::new(2, spec(&[("vendor_id", "10de")]))],
            None,
        )
        .unwrap();
    assert_eq!(c.len(), 2);
    let r = t.sync(&devs[..1], &always_delete).unwrap();
    assert!(r.deleted.is_empty());
    assert_eq!(
        r.deferred,
        vec![(devs[1].device.address, Deferral::RemoveWhenFreed)]
    );
    assert_eq!(t.devices(&DeviceFilter::default()).unwrap().len(), 2);
    let f = t.free("i1").unwrap();
    assert_eq!(f.deleted, vec![devs[1].device.address]);
    assert_eq!(t.devices(&DeviceFilter::default()).unwrap().len(), 1);
    check_invariants(&mut t).unwrap();
}

/// Two plain devices tracked and allocated to `i1`, then the host stops reporting the second.
fn allocated_then_gone(cleanup: &dyn CleanupPolicy) -> (Tracker, PciAddress, SyncReport) {
    let mut t = Tracker::in_memory().unwrap();
    let devs = vec![plain(0, 0x05, 0), plain(0, 0x05, 1)];
    t.sync(&devs, &DefaultCleanup).unwrap();
    let gone = devs[1].device.address;
    let request = PciRequest::new(2, spec(&[("vendor_id", "10de")]));
    t.claim("i1", &[request], None).unwrap();
    t.allocate("i1").unwrap();
    let r = t.sync(&devs[..1], cleanup).unwrap();
    (t, gone, r)
}

/// Issue 15: the cleanup chain answered through Nova's rule (abstaining, or answering it
/// explicitly as the embedded guest does) defers the deletion of an allocated device that
/// left the host, and its free deletes it. Before the fix the rule's copies answered an
/// explicit keep for it, so the free made it available again.
#[test]
fn regression_allocated_device_leaving_host_is_deleted_by_its_free_under_nova_s_rule() {
    let explicit_rule = |c: &[CleanupCandidate], idx: &[usize]| -> Vec<CleanupVerdict> {
        idx.iter().map(|&i| c[i].nova_rule()).collect()
    };
    for (name, cleanup) in [
        ("abstaining chain", &DefaultCleanup as &dyn CleanupPolicy),
        (
            "chain answering the rule",
            &explicit_rule as &dyn CleanupPolicy,
        ),
    ] {
        let (mut t, gone, r) = allocated_then_gone(cleanup);
        assert!(r.deleted.is_empty(), "{name}: {r:?}");
        assert!(r.kept.is_empty(), "{name}: {r:?}");
        assert_eq!(
            r.deferred,
            vec![(gone, Deferral::RemoveWhenFreed)],
            "{name}"
        );
        let held = t.devices(&DeviceFilter::default()).unwrap();
        let held = held.iter().find(|d| d.address() == gone).unwrap();
        assert!(held.to_be_removed_when_freed, "{name}");
        assert_eq!(held.status, DeviceStatus::Allocated, "{name}");
        let f = t.free("i1").unwrap();
        assert_eq!(f.deleted, vec![gone], "{name}");
        assert_eq!(status_of(&mut t, gone), None, "{name}");
        check_invariants(&mut t).unwrap();
    }
}

/// A policy that keeps a device in use on purpose is obeyed: it is not marked for deletion,
/// and its free makes it available again. A keep also clears an earlier deferral.
#[test]
fn an_explicit_policy_keep_of_a_device_in_use_is_respected() {
    let keep = |_: &[CleanupCandidate], c: &[usize]| {
        vec![CleanupVerdict::Keep("the operator keeps it".into()); c.len()]
    };
    let (mut t, gone, r) = allocated_then_gone(&keep);
    assert!(r.deferred.is_empty(), "{r:?}");
    assert_eq!(r.kept, vec![(gone, "the operator keeps it".to_string())]);
    let f = t.free("i1").unwrap();
    assert!(f.deleted.is_empty(), "{f:?}");
    assert_eq!(status_of(&mut t, gone), Some(DeviceStatus::Available));

    let (mut t, gone, _) = allocated_then_gone(&DefaultCleanup);
    let r = t.sync(&[plain(0, 0x05, 0)], &keep).unwrap();
    assert_eq!(r.kept.len(), 1, "{r:?}");
    assert!(t.free("i1").unwrap().deleted.is_empty());
    assert_eq!(status_of(&mut t, gone), Some(DeviceStatus::Available));
    check_invariants(&mut t).unwrap();
}

#[test]
fn a_delete_verdict_on_an_owned_device_is_refused_and_a_bad_answer_keeps_all() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pci.db");
    let mut t = Tracker::open(&path).unwrap();
    let family = sriov_family(0, 0x81, 2, Some(0), "physnet0");
    t.sync(&family, &DefaultCleanup).unwrap();
    raw_set(&path, family[2].device.address, "unavailable", Some("i-x"));
    let always_delete = |_: &[CleanupCandidate], c: &[usize]| vec![CleanupVerdict::Delete; c.len()];
    let r = t.sync(&family[..2], &always_delete).unwrap();
    assert!(r.deleted.is_empty());
    assert!(
        r.kept[0].1.contains("is owned by i-x instead of None"),
        "{r:?}"
    );

    let too_short = |_: &[CleanupCandidate], _: &[usize]| Vec::new();
    let r = t.sync(&family[..1], &too_short).unwrap();
    assert!(r.deleted.is_empty());
    assert_eq!(r.kept.len(), 2);
    assert!(r.kept[0].1.starts_with("policy failed"), "{r:?}");
}

#[test]
fn a_new_vf_under_an_allocated_pf_is_not_handed_out() {
    let mut t = Tracker::in_memory().unwrap();
    let family = sriov_family(0, 0x81, 3, Some(0), "physnet0");
    t.sync(&family[..3], &DefaultCleanup).unwrap();
    t.claim("i1", &[pf_request()], None).unwrap();
    t.allocate("i1").unwrap();
    let r = t.sync(&family, &DefaultCleanup).unwrap();
    assert_eq!(r.added, vec![family[3].device.address]);
    assert_eq!(
        status_of(&mut t, family[3].device.address),
        Some(DeviceStatus::Unavailable)
    );
    check_invariants(&mut t).unwrap();
}

#[test]
fn a_change_to_a_device_in_use_waits_until_it_is_freed() {
    let mut t = Tracker::in_memory().unwrap();
    let mut devs = vec![plain(0, 0x05, 0)];
    t.sync(&devs, &DefaultCleanup).unwrap();
    t.claim(
        "i1",
        &[PciRequest::new(1, spec(&[("vendor_id", "10de")]))],
        None,
    )
    .unwrap();
    devs[0].device.numa_node = Some(1);
    let r = t.sync(&devs, &DefaultCleanup).unwrap();
    assert_eq!(r.deferred, vec![(devs[0].device.address, Deferral::Update)]);
    assert!(r.updated.is_empty());
    // Reported again unchanged: nothing more to write.
    let r = t.sync(&devs, &DefaultCleanup).unwrap();
    assert_eq!(r.deferred.len(), 1);
    let f = t.free("i1").unwrap();
    assert_eq!(f.updated, vec![devs[0].device.address]);
    let d = &t.devices(&DeviceFilter::default()).unwrap()[0];
    assert_eq!(d.profile.device.numa_node, Some(1));
    assert!(d.pending.is_none());
}

fn file_bytes(path: &Path) -> Vec<u8> {
    let mut out = std::fs::read(path).unwrap();
    let wal = path.with_extension("db-wal");
    if wal.exists() {
        out.extend(std::fs::read(wal).unwrap());
    }
    out
}

#[test]
fn a_refused_claim_leaves_the_file_byte_for_byte_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pci.db");
    let mut t = Tracker::open(&path).unwrap();
    let family = sriov_family(0, 0x81, 2, Some(0), "physnet0");
    t.sync(&family, &DefaultCleanup).unwrap();
    t.claim("i1", &[vf_request("physnet0")], None).unwrap();
    t.store().checkpoint().unwrap();
    let before = file_bytes(&path);
    // Refused by the pools (nothing matches) and by the state machine (PF edited to look free).
    assert!(t.claim("i2", &[vf_request("nope")], None).is_err());
    t.store().checkpoint().unwrap();
    assert_eq!(file_bytes(&path), before);
    raw_set(&path, family[0].device.address, "available", None);
    t.store().checkpoint().unwrap();
    let before = file_bytes(&path);
    assert!(t.claim("i2", &[pf_request()], None).is_err());
    t.store().checkpoint().unwrap();
    assert_eq!(file_bytes(&path), before);
}

#[test]
fn a_sync_with_nothing_changed_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pci.db");
    let mut t = Tracker::open(&path).unwrap();
    let mut devs = sriov_family(0, 0x81, 8, Some(0), "physnet0");
    devs.push(plain(0, 0x05, 0));
    t.sync(&devs, &DefaultCleanup).unwrap();
    t.claim("i1", &[vf_request("physnet0")], None).unwrap();
    t.store().checkpoint().unwrap();
    let observer = Connection::open(&path).unwrap();
    let dv = |c: &Connection| {
        c.query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0))
            .unwrap()
    };
    let dv_before = dv(&observer);
    let changes_before = t.store().total_changes();
    let bytes_before = file_bytes(&path);
    for _ in 0..3 {
        let r = t.sync(&devs, &DefaultCleanup).unwrap();
        assert_eq!(r, Default::default());
    }
    assert_eq!(t.store().total_changes(), changes_before);
    assert_eq!(dv(&observer), dv_before);
    assert_eq!(file_bytes(&path), bytes_before);
}

#[test]
fn a_second_handle_sees_the_first_ones_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pci.db");
    let mut a = Tracker::open(&path).unwrap();
    let mut b = Tracker::open(&path).unwrap();
    a.sync(&[plain(0, 0x05, 0)], &DefaultCleanup).unwrap();
    assert_eq!(b.pools().unwrap().free_devices().count(), 1);
    b.claim(
        "i1",
        &[PciRequest::new(1, spec(&[("vendor_id", "10de")]))],
        None,
    )
    .unwrap();
    assert_eq!(a.pools().unwrap().free_devices().count(), 0);
    assert!(
        a.claim(
            "i2",
            &[PciRequest::new(1, spec(&[("vendor_id", "10de")]))],
            None
        )
        .is_err()
    );
}

/// Two handles (as the CLI and the daemon would hold) claiming concurrently never hand one
/// device to two instances.
#[test]
fn concurrent_claims_never_share_a_device() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pci.db");
    let family = sriov_family(0, 0x81, 24, Some(0), "physnet0");
    Tracker::open(&path)
        .unwrap()
        .sync(&family, &DefaultCleanup)
        .unwrap();
    let threads: Vec<_> = (0..4)
        .map(|n| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut t = Tracker::open(&path).unwrap();
                let mut got = Vec::new();
                for i in 0..10 {
                    let inst = format!("t{n}-i{i}");
                    match t.claim(&inst, &[vf_request("physnet0")], None) {
                        Ok(c) => got.extend(c.into_iter().map(|c| (c.address, inst.clone()))),
                        Err(TrackerError::NoDevices { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                got
            })
        })
        .collect();
    let all: Vec<(PciAddress, String)> = threads
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let distinct: BTreeSet<PciAddress> = all.iter().map(|(a, _)| *a).collect();
    assert_eq!(
        distinct.len(),
        all.len(),
        "a device was handed out twice: {all:?}"
    );
    assert_eq!(all.len(), 24);
    let mut t = Tracker::open(&path).unwrap();
    for (a, inst) in &all {
        let d = t
            .devices(&DeviceFilter::default())
            .unwrap()
            .into_iter()
            .find(|d| d.address() == *a)
            .unwrap();
        assert_eq!(d.instance_uuid.as_deref(), Some(inst.as_str()));
    }
    check_invariants(&mut t).unwrap();
}

#[test]
fn the_schema_is_versioned_and_a_newer_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pci.db");
    drop(Tracker::open(&path).unwrap());
    assert_eq!(
        pcitrack_tracker::store::schema_version(&path).unwrap(),
        Some(pcitrack_tracker::store::SCHEMA_VERSION)
    );
    let c = Connection::open(&path).unwrap();
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    c.execute_batch("PRAGMA user_version = 7").unwrap();
    drop(c);
    let e = Tracker::open(&path)
        .err()
        .expect("a newer schema must be refused");
    assert!(e.to_string().contains("schema version 7 is newer"), "{e}");
}

/// A worker that claims, frees and syncs in a loop, for the kill test (run only when the
/// environment names a database).
#[test]
fn kill_worker() {
    let Ok(path) = std::env::var("PCITRACK_KILL_WORKER_DB") else {
        return;
    };
    let mut t = Tracker::open(&path).unwrap();
    let family = sriov_family(0, 0x81, 16, Some(0), "physnet0");
    let mut n = 0u64;
    loop {
        n += 1;
        let inst = format!("i{}", n % 5);
        let _ = t.claim(&inst, &[vf_request("physnet0")], None);
        let _ = t.allocate(&inst);
        if n.is_multiple_of(3) {
            let _ = t.free(&format!("i{}", (n + 2) % 5));
        }
        let cut = (n % 17) as usize;
        let _ = t.sync(&family[..family.len() - cut], &DefaultCleanup);
        if n.is_multiple_of(7) {
            let _ = t.claim(&inst, &[pf_request()], None);
        }
    }
}

/// SIGKILL at arbitrary instants leaves a file that passes SQLite's integrity check and the
/// tracker's invariants.
#[test]
fn a_kill_at_any_instant_leaves_a_consistent_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pci.db");
    let family = sriov_family(0, 0x81, 16, Some(0), "physnet0");
    Tracker::open(&path)
        .unwrap()
        .sync(&family, &DefaultCleanup)
        .unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut progressed = 0;
    for round in 0..6u64 {
        let c = Connection::open(&path).unwrap();
        let total = |c: &Connection| -> i64 {
            c.query_row("SELECT count(*) + sum(length(status)) + sum(coalesce(length(instance_uuid), 0)) FROM pci_devices", [], |r| r.get(0)).unwrap()
        };
        let before: (i64, String) = (
            total(&c),
            c.query_row(
                "SELECT group_concat(status || coalesce(instance_uuid, '')) FROM pci_devices",
                [],
                |r| r.get(0),
            )
            .unwrap(),
        );
        drop(c);
        let mut child = std::process::Command::new(&exe)
            .args(["--exact", "kill_worker", "--nocapture", "--test-threads=1"])
            .env("PCITRACK_KILL_WORKER_DB", &path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(150 + 37 * round));
        child.kill().unwrap();
        child.wait().unwrap();
        let c = Connection::open(&path).unwrap();
        let ok: String = c
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
        let after: (i64, String) = (
            total(&c),
            c.query_row(
                "SELECT group_concat(status || coalesce(instance_uuid, '')) FROM pci_devices",
                [],
                |r| r.get(0),
            )
            .unwrap(),
        );
        if after != before {
            progressed += 1;
        }
        drop(c);
        let mut t = Tracker::open(&path).unwrap();
        check_invariants(&mut t).unwrap_or_else(|e| panic!("round {round}: {e}"));
    }
    assert!(
        progressed >= 3,
        "the worker changed the file in only {progressed} of 6 rounds"
    );
}

#[test]
fn devices_filter_by_status_instance_and_type() {
    let mut t = Tracker::in_memory().unwrap();
    let family = sriov_family(0, 0x81, 2, Some(0), "physnet0");
    t.sync(&family, &DefaultCleanup).unwrap();
    t.claim("i1", &[vf_request("physnet0")], None).unwrap();
    let f = |status, instance: Option<&str>, dev_type| DeviceFilter {
        status,
        instance: instance.map(str::to_string),
        dev_type,
    };
    assert_eq!(
        t.devices(&f(Some(DeviceStatus::Claimed), None, None))
            .unwrap()
            .len(),
        1
    );
    assert_eq!(t.devices(&f(None, Some("i1"), None)).unwrap().len(), 1);
    assert_eq!(
        t.devices(&f(None, None, Some(DevType::Pf))).unwrap()[0].status,
        DeviceStatus::Unclaimable
    );
    let _ = Assessment::assignable(family[0].device.clone());
}

/// Everything discovery reports survives the database, including the fields that live in
/// columns and the ones `extra_info` leaves out when empty.
#[test]
fn a_full_device_record_round_trips_through_the_file() {
    use pcitrack_model::{NetInterface, Vpd};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pci.db");
    let mut pf = sriov_family(0x10000, 0xe1, 1, Some(3), "physnet0");
    let d = &mut pf[0].device;
    d.subsystem_vendor_id = Some(0x15d9);
    d.subsystem_device_id = Some(0x0001);
    d.class_code = 0x020000;
    d.revision = Some(0x02);
    d.driver = Some("i40e".into());
    d.iommu_group = Some(41);
    d.sriov_vf_device = Some(0x154c);
    d.ifname = Some("ens1f0".into());
    d.mac_address = Some("3c:fd:fe:00:00:01".into());
    d.net = vec![NetInterface {
        name: "ens1f0".into(),
        mac_address: Some("3c:fd:fe:00:00:01".into()),
        phys_port_name: Some("p0".into()),
        phys_switch_id: None,
    }];
    d.card_serial_number = Some("MT2113X00000".into());
    d.vpd = Some(Box::new(Vpd {
        identifier: Some("NIC".into()),
        part_number: Some("PN1".into()),
        card_serial_number: Some("MT2113X00000".into()),
        read_only: [("V0".to_string(), "x".to_string())].into(),
        read_write: Default::default(),
    }));
    pf[1].device.ifname = Some("ens1f0v0".into());
    pf[0].remote_managed = true;
    pf[0].decided_by = "devspec rule 2".into();
    Tracker::open(&path)
        .unwrap()
        .sync(&pf, &DefaultCleanup)
        .unwrap();
    let back = Tracker::open(&path)
        .unwrap()
        .devices(&DeviceFilter::default())
        .unwrap();
    assert_eq!(back.len(), 2);
    assert_eq!(back[0].profile.device, pf[0].device);
    assert_eq!(back[1].profile.device, pf[1].device);
    assert!(back[0].profile.remote_managed);
    assert_eq!(back[0].profile.decided_by, "devspec rule 2");
    assert_eq!(back[0].profile.tags["physical_network"], "physnet0");
    // A VF with a netdev gets its PF's interface as parent_ifname (a pool key).
    assert_eq!(back[1].profile.parent_ifname.as_deref(), Some("ens1f0"));
    let c = Connection::open(&path).unwrap();
    let (label, vendor): (String, String) = c
        .query_row(
            "SELECT label, vendor_id FROM pci_devices WHERE address = '10000:e1:00.0'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (label.as_str(), vendor.as_str()),
        ("label_8086_1572", "8086")
    );
}

/// Issue 14 (memory): the records of devices with the same tags share one copy of the tags,
/// both as a sync writes them and as a later handle reads them back from the file; devices
/// with other tags keep their own.
#[test]
fn devices_with_the_same_tags_share_one_copy_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pci.db");
    let mut host = sriov_family(0, 0x81, 4, Some(0), "physnet0");
    host.extend(sriov_family(0, 0x91, 2, Some(0), "physnet1"));
    let mut first = Tracker::open(&path).unwrap();
    first.sync(&host, &DefaultCleanup).unwrap();
    let check = |devices: Vec<pcitrack_tracker::TrackedDevice>| {
        assert_eq!(devices.len(), 8);
        let of = |physnet: &str| {
            devices
                .iter()
                .filter(|d| d.profile.tags["physical_network"] == physnet)
                .map(|d| std::sync::Arc::clone(&d.profile.tags))
                .collect::<Vec<_>>()
        };
        let (zero, one) = (of("physnet0"), of("physnet1"));
        assert_eq!((zero.len(), one.len()), (5, 3));
        assert!(zero.iter().all(|t| std::sync::Arc::ptr_eq(t, &zero[0])));
        assert!(one.iter().all(|t| std::sync::Arc::ptr_eq(t, &one[0])));
        assert!(!std::sync::Arc::ptr_eq(&zero[0], &one[0]));
    };
    check(first.devices(&DeviceFilter::default()).unwrap());
    check(
        Tracker::open(&path)
            .unwrap()
            .devices(&DeviceFilter::default())
            .unwrap(),
    );
}
