//! The embedded cleanup policy, end to end through wasmtime.

use std::sync::Arc;

use pcitrack_model::cleanup::{CleanupCandidate, CleanupVerdict};
use pcitrack_model::{DevType, DeviceStatus, PciAddress};
use pcitrack_runtime::{
    EMBEDDED, Limits, Policy, PolicyEngine, PolicyKind, PolicyOrigin, PolicySet,
};

fn candidate(function: u8, status: DeviceStatus, owner: Option<&str>) -> CleanupCandidate {
    CleanupCandidate {
        address: PciAddress::new(0, 0x81, 0, function).unwrap(),
        vendor_id: 0x8086,
        product_id: 0x154c,
        dev_type: DevType::Vf,
        status,
        owner: owner.map(String::from),
        parent: None,
        reported: false,
        missing_syncs: 1,
    }
}

#[test]
fn the_embedded_cleanup_policy_applies_novas_2022_rule() {
    let engine = PolicyEngine::new(Limits::default()).unwrap();
    let embedded = EMBEDDED
        .iter()
        .find(|p| p.kind == PolicyKind::Cleanup)
        .unwrap();
    let policy = Policy::load(
        &engine,
        embedded.name,
        embedded.bytes,
        PolicyOrigin::Embedded,
        "",
        None,
    )
    .unwrap();
    assert_eq!(policy.kind(), PolicyKind::Cleanup);
    assert_eq!(policy.info().0, "nova-cleanup");
    let set = PolicySet::new([Arc::new(policy)]);
    let tracked = vec![
        candidate(1, DeviceStatus::Available, None),
        candidate(2, DeviceStatus::Unavailable, None),
        candidate(3, DeviceStatus::Unclaimable, None),
        candidate(4, DeviceStatus::Allocated, Some("vm-1")),
        candidate(5, DeviceStatus::Available, Some("vm-2")),
        candidate(6, DeviceStatus::Claimed, Some("vm-3")),
    ];
    let out = set.cleanup(&tracked, &[0, 1, 2, 3, 4, 5]);
    let verdicts: Vec<bool> = out
        .iter()
        .map(|o| o.verdict == CleanupVerdict::Delete)
        .collect();
    // A device in use that left the host goes when freed (Nova f37cdf0c41): the policy says
    // delete and the tracker defers it; only the owned free device is kept.
    assert_eq!(verdicts, vec![true, true, true, true, false, true]);
    assert!(out.iter().all(|o| o.decided_by == "cleanup"));
    // The guest calls the vocabulary's rule: the same verdicts, reasons included.
    for (o, c) in out.iter().zip(&tracked) {
        assert_eq!(o.verdict, c.nova_rule(), "{}", c.address);
    }
}

/// What the chain said, unrewritten: with no cleanup policy every candidate is an abstention
/// (Nova's rule is applied by the tracker), in use or not.
#[test]
fn an_empty_cleanup_chain_abstains_on_every_candidate() {
    let tracked = vec![
        candidate(1, DeviceStatus::Available, None),
        candidate(2, DeviceStatus::Allocated, Some("vm-1")),
    ];
    let out = PolicySet::default().cleanup(&tracked, &[1, 0]);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].address, tracked[1].address);
    for o in &out {
        assert_eq!(o.verdict, CleanupVerdict::Abstain);
        assert_eq!(o.decided_by, pcitrack_runtime::BUILT_IN);
    }
}
