//! Random sequences of claim, allocate, free and sync, with devices appearing and vanishing,
//! never break the tracker's invariants: no owned device deleted, PF/VF statuses consistent,
//! pools equal to the free devices.

mod common;

use std::collections::BTreeMap;

use common::*;
use pcitrack_model::cleanup::{CleanupCandidate, CleanupVerdict};
use pcitrack_model::{Assessment, PciAddress};
use pcitrack_tracker::{DefaultCleanup, PciRequest, Tracker, TrackerError};
use proptest::prelude::*;

/// The universe: two PFs with three VFs each, two plain devices.
fn universe() -> Vec<Assessment> {
    let mut all = sriov_family(0, 0x81, 3, Some(0), "physnet0");
    all.extend(sriov_family(0, 0x83, 3, Some(1), "physnet1"));
    all.push(plain(0, 0x05, 0));
    all.push(plain(0, 0x05, 1));
    all
}

#[derive(Debug, Clone)]
enum Op {
    /// Report the devices whose bit is set; `unassignable` bits report them as not assignable.
    Sync {
        present: u16,
        unassignable: u16,
        policy: u8,
    },
    Claim {
        instance: u8,
        what: u8,
        count: u8,
    },
    Allocate {
        instance: u8,
    },
    Free {
        instance: u8,
    },
    FreeDevice {
        index: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (any::<u16>(), any::<u16>(), 0u8..3).prop_map(|(present, u, policy)| Op::Sync {
            present,
            unassignable: u & 0x0101,
            policy
        }),
        4 => (0u8..4, 0u8..4, 1u8..3).prop_map(|(instance, what, count)| Op::Claim { instance, what, count }),
        2 => (0u8..4).prop_map(|instance| Op::Allocate { instance }),
        2 => (0u8..4).prop_map(|instance| Op::Free { instance }),
        1 => (0u8..10).prop_map(|index| Op::FreeDevice { index }),
    ]
}

fn request(what: u8, count: u8) -> PciRequest {
    let s = match what {
        0 => spec(&[("physical_network", "physnet0")]),
        1 => spec(&[("physical_network", "physnet1")]),
        2 => spec(&[("dev_type", "type-PF")]),
        _ => spec(&[("vendor_id", "10de")]),
    };
    PciRequest::new(count as u32, s)
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let all = universe();
    let mut t = Tracker::in_memory().unwrap();
    t.sync(&all, &DefaultCleanup).unwrap();
    // The model of ownership: what the tracker promised to whom.
    let mut owned: BTreeMap<PciAddress, String> = BTreeMap::new();
    let keep_all = |_: &[CleanupCandidate], c: &[usize]| {
        vec![CleanupVerdict::Keep("test keeps".into()); c.len()]
    };
    let delete_all = |_: &[CleanupCandidate], c: &[usize]| vec![CleanupVerdict::Delete; c.len()];
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Sync {
                present,
                unassignable,
                policy,
            } => {
                let reported: Vec<Assessment> = all
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| present & (1 << i) != 0)
                    .map(|(i, a)| {
                        let mut a = a.clone();
                        a.assignable = unassignable & (1 << i) == 0;
                        a
                    })
                    .collect();
                let r = match policy {
                    0 => t.sync(&reported, &DefaultCleanup),
                    1 => t.sync(&reported, &keep_all),
                    _ => t.sync(&reported, &delete_all),
                }
                .unwrap();
                for d in &r.deleted {
                    prop_assert!(!owned.contains_key(d), "step {step}: deleted owned {d}");
                }
            }
            Op::Claim {
                instance,
                what,
                count,
            } => {
                let inst = format!("i{instance}");
                match t.claim(&inst, &[request(*what, *count)], None) {
                    Ok(c) => {
                        for d in c {
                            prop_assert!(owned.insert(d.address, inst.clone()).is_none());
                        }
                    }
                    Err(TrackerError::NoDevices { .. } | TrackerError::Refused { .. }) => {}
                    Err(e) => return Err(TestCaseError::fail(format!("step {step}: {e}"))),
                }
            }
            Op::Allocate { instance } => {
                t.allocate(&format!("i{instance}")).unwrap();
            }
            Op::Free { instance } => {
                let inst = format!("i{instance}");
                let f = t.free(&inst).unwrap();
                for a in f.freed {
                    prop_assert_eq!(owned.remove(&a), Some(inst.clone()));
                }
                prop_assert!(owned.values().all(|o| *o != inst));
            }
            Op::FreeDevice { index } => {
                let a = all[*index as usize].device.address;
                match t.free_device(a, None) {
                    Ok(f) => {
                        prop_assert_eq!(f.freed, vec![a]);
                        prop_assert!(owned.remove(&a).is_some());
                    }
                    Err(TrackerError::NotTracked { .. } | TrackerError::Refused { .. }) => {
                        prop_assert!(!owned.contains_key(&a));
                    }
                    Err(e) => return Err(TestCaseError::fail(format!("step {step}: {e}"))),
                }
            }
        }
        check_invariants(&mut t)
            .map_err(|e| TestCaseError::fail(format!("step {step} {op:?}: {e}")))?;
        let devices = t.devices(&Default::default()).unwrap();
        let in_use: BTreeMap<PciAddress, String> = devices
            .iter()
            .filter(|d| d.status.is_in_use())
            .map(|d| (d.address(), d.instance_uuid.clone().unwrap()))
            .collect();
        prop_assert_eq!(
            &in_use,
            &owned,
            "step {}: owners differ from the model",
            step
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]
    #[test]
    fn random_operations_keep_the_invariants(ops in proptest::collection::vec(op(), 1..40)) {
        run(&ops)?;
    }
}
