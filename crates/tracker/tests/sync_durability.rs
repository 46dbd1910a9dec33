//! A reconcile's commit is not synced to the disk (every start reconciles in full and writes
//! it again), every other commit is: after a sync, full or partial, that wrote something or
//! nothing, the store's handle is back to synced commits, and what the sync committed is
//! there for another handle.

mod common;

use std::collections::BTreeSet;

use common::{addr, plain, sriov_family};
use pcitrack_tracker::{DefaultCleanup, DeviceFilter, Durability, Tracker};

#[test]
fn a_sync_leaves_the_next_commit_synced_and_its_rows_committed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pcitrack.db");
    let mut t = Tracker::open(&path).unwrap();
    let synced = |t: &Tracker| t.store().synchronous().unwrap();
    assert_eq!(synced(&t), Durability::Full);

    let mut host = sriov_family(0, 0x10, 4, None, "physnet1");
    host.push(plain(0, 0x20, 0));
    let report = t.sync(&host, &DefaultCleanup).unwrap();
    assert_eq!(report.added.len(), 6);
    assert_eq!(synced(&t), Durability::Full, "after a sync that wrote");

    t.sync(&host, &DefaultCleanup).unwrap();
    assert_eq!(
        synced(&t),
        Durability::Full,
        "after a sync that wrote nothing"
    );

    let scope = BTreeSet::from([addr("0000:20:00.0")]);
    let report = t.sync_some(&[], &scope, &DefaultCleanup).unwrap();
    assert_eq!(report.deleted, [addr("0000:20:00.0")]);
    assert_eq!(synced(&t), Durability::Full, "after a partial sync");

    let mut other = Tracker::open(&path).unwrap();
    let rows = other.devices(&DeviceFilter::default()).unwrap();
    assert_eq!(
        rows.len(),
        5,
        "the partial sync's delete is committed: {rows:?}"
    );
}

/// A panic inside a sync's transaction (a cleanup policy's host code, an `expect`) is caught
/// by the agent (its locks are taken back from poisoning, "the tracker rolls back"). The
/// handle must not stay inside that transaction with `synchronous=NORMAL`: the next claim
/// must commit, synced. (Before this session's change the handle was already left in the
/// transaction; now it is also left at NORMAL, and a later sync reports "setting
/// synchronous=FULL again" instead of the transaction it could not start.)
#[test]
fn regression_a_panic_in_a_sync_leaves_the_handle_usable_and_synced() {
    use pcitrack_model::cleanup::{CleanupCandidate, CleanupVerdict};
    let dir = tempfile::tempdir().unwrap();
    let mut t = Tracker::open(dir.path().join("pcitrack.db")).unwrap();
    let mut host = sriov_family(0, 0x10, 4, None, "physnet1");
    host.push(plain(0, 0x20, 0));
    t.sync(&host, &DefaultCleanup).unwrap();
    let fewer = &host[..host.len() - 1];
    let boom = |_: &[CleanupCandidate], _: &[usize]| -> Vec<CleanupVerdict> { panic!("boom") };
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| t.sync(fewer, &boom)));
    assert!(caught.is_err(), "the cleanup panicked");
    assert_eq!(
        t.store().synchronous().unwrap(),
        Durability::Full,
        "after a panic in a sync"
    );
    t.sync(&host, &DefaultCleanup)
        .expect("a sync after the panic");
}
