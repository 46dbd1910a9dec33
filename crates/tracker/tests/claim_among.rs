//! Claims over explicit candidates (`Tracker::claim_among`), the tracker's half of a claim by
//! Placement consumer: exactly the count, only among the candidates, free by the pools' one
//! rule, all or nothing.

mod common;

use std::path::Path;

use common::*;
use pcitrack_model::{DeviceStatus, PciAddress};
use pcitrack_tracker::{CandidateRequest, DefaultCleanup, DeviceFilter, Tracker, TrackerError};

fn addresses(family: &[pcitrack_model::Assessment]) -> Vec<PciAddress> {
    family.iter().map(|a| a.device.address).collect()
}

fn among(candidates: &[PciAddress], count: u32, id: &str) -> CandidateRequest {
    CandidateRequest {
        candidates: candidates.to_vec(),
        count,
        request_id: Some(id.into()),
    }
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
fn a_claim_among_candidates_takes_exactly_the_count_from_them_and_records_the_request() {
    let mut t = Tracker::in_memory().unwrap();
    let one = sriov_family(0, 0x81, 4, Some(0), "physnet0");
    let two = sriov_family(0, 0x85, 4, Some(0), "physnet0");
    let mut all = one.clone();
    all.extend(two.clone());
    t.sync(&all, &DefaultCleanup).unwrap();
    let vfs_of_two = &addresses(&two)[1..];
    let claimed = t
        .claim_among("consumer-u", &[among(vfs_of_two, 3, "rp-two")])
        .unwrap();
    assert_eq!(claimed.len(), 3);
    for c in &claimed {
        assert!(vfs_of_two.contains(&c.address), "{c:?}");
        assert_eq!(c.request_id.as_deref(), Some("rp-two"));
        assert_eq!(c.request_index, 0);
    }
    let held = t
        .devices(&DeviceFilter {
            instance: Some("consumer-u".into()),
            ..DeviceFilter::default()
        })
        .unwrap();
    assert_eq!(held.len(), 3);
    assert!(held.iter().all(|d| d.status == DeviceStatus::Claimed));
    // The state machine ran: the PF of claimed VFs is no longer free.
    let pf_two = two[0].device.address;
    let pf = t.devices(&DeviceFilter::default()).unwrap();
    let pf = pf.iter().find(|d| d.address() == pf_two).unwrap();
    assert_eq!(pf.status, DeviceStatus::Unclaimable);
    // The other provider's devices were not touched.
    assert!(
        t.devices(&DeviceFilter::default())
            .unwrap()
            .iter()
            .filter(|d| addresses(&one).contains(&d.address()))
            .all(|d| d.status == DeviceStatus::Available)
    );
    check_invariants(&mut t).unwrap();
}

#[test]
fn a_candidate_another_instance_holds_is_not_free_and_a_short_claim_is_refused_naming_it() {
    let mut t = Tracker::in_memory().unwrap();
    let family = sriov_family(0, 0x81, 4, Some(0), "physnet0");
    t.sync(&family, &DefaultCleanup).unwrap();
    let vfs = &addresses(&family)[1..];
    t.claim_among("first", &[among(vfs, 3, "a")]).unwrap();
    let before = t.devices(&DeviceFilter::default()).unwrap();
    let e = t.claim_among("second", &[among(vfs, 2, "b")]).unwrap_err();
    assert!(
        matches!(
            e,
            TrackerError::TooFewFree {
                request: 0,
                wanted: 2,
                candidates: 4,
                free: 1,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("only 1 are free"), "{e}");
    assert_eq!(t.devices(&DeviceFilter::default()).unwrap(), before);
    // The PF is not free either while its VFs are held: a PF candidate is refused.
    let pf = [family[0].device.address];
    let e = t.claim_among("third", &[among(&pf, 1, "c")]).unwrap_err();
    assert!(matches!(e, TrackerError::TooFewFree { free: 0, .. }), "{e}");
}

#[test]
fn a_refused_claim_among_candidates_leaves_the_file_byte_for_byte_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pci.db");
    let mut t = Tracker::open(&path).unwrap();
    let one = sriov_family(0, 0x81, 2, Some(0), "physnet0");
    let two = sriov_family(0, 0x85, 2, Some(0), "physnet0");
    let mut all = one.clone();
    all.extend(two.clone());
    t.sync(&all, &DefaultCleanup).unwrap();
    t.store().checkpoint().unwrap();
    let before = file_bytes(&path);
    // The first request fits, the second wants more than its provider has: nothing is taken.
    let e = t
        .claim_among(
            "u",
            &[
                among(&addresses(&one)[1..], 2, "one"),
                among(&addresses(&two)[1..], 3, "two"),
            ],
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            TrackerError::TooFewFree {
                request: 1,
                wanted: 3,
                free: 2,
                ..
            }
        ),
        "{e}"
    );
    t.store().checkpoint().unwrap();
    assert_eq!(file_bytes(&path), before);
    assert!(
        t.devices(&DeviceFilter::default())
            .unwrap()
            .iter()
            .all(|d| d.status == DeviceStatus::Available)
    );
    check_invariants(&mut t).unwrap();
}

#[test]
fn a_dependant_taken_by_an_earlier_request_is_not_free_for_a_later_one() {
    let mut t = Tracker::in_memory().unwrap();
    let family = sriov_family(0, 0x81, 2, Some(0), "physnet0");
    t.sync(&family, &DefaultCleanup).unwrap();
    let all = addresses(&family);
    // A VF first, then its PF: the VF's claim takes the PF out of the pools.
    let e = t
        .claim_among(
            "u",
            &[among(&all[1..2], 1, "vf"), among(&all[..1], 1, "pf")],
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            TrackerError::TooFewFree {
                request: 1,
                free: 0,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        t.devices(&DeviceFilter::default())
            .unwrap()
            .iter()
            .all(|d| d.status == DeviceStatus::Available)
    );
}

#[test]
fn unknown_candidates_are_never_free() {
    let mut t = Tracker::in_memory().unwrap();
    t.sync(&[plain(0, 0x05, 0)], &DefaultCleanup).unwrap();
    let stranger = PciAddress::new(0, 0x06, 0, 0).unwrap();
    let e = t
        .claim_among("u", &[among(&[stranger], 1, "x")])
        .unwrap_err();
    assert!(
        matches!(
            e,
            TrackerError::TooFewFree {
                free: 0,
                candidates: 1,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn a_repeated_claim_among_candidates_answers_what_the_instance_holds_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pci.db");
    let mut t = Tracker::open(&path).unwrap();
    let family = sriov_family(0, 0x81, 4, Some(0), "physnet0");
    t.sync(&family, &DefaultCleanup).unwrap();
    let vfs = &addresses(&family)[1..];
    let first = t.claim_among("u", &[among(vfs, 2, "a")]).unwrap();
    t.store().checkpoint().unwrap();
    let before = file_bytes(&path);
    let again = t.claim_among("u", &[among(vfs, 2, "a")]).unwrap();
    assert_eq!(again, first);
    t.store().checkpoint().unwrap();
    assert_eq!(file_bytes(&path), before, "a repeated claim wrote");
    // The allocation grows by one: one more device, the two held ones answered again.
    let grown = t.claim_among("u", &[among(vfs, 3, "a")]).unwrap();
    assert_eq!(grown.len(), 3);
    assert_eq!(&grown[..2], &first[..]);
    // Another instance cannot take what "u" holds: one candidate is left.
    let e = t.claim_among("w", &[among(vfs, 2, "b")]).unwrap_err();
    assert!(matches!(e, TrackerError::TooFewFree { free: 1, .. }), "{e}");
}
