//! The embedded cleanup policy, end to end through wasmtime.

use std::sync::Arc;

use pcitrack_model::{DevType, DeviceStatus, PciAddress};
use pcitrack_runtime::{
    CleanupCandidate, CleanupVerdict, EMBEDDED, Limits, Policy, PolicyEngine, PolicyKind,
    PolicyOrigin, PolicySet,
};

fn candidate(function: u8, status: DeviceStatus, owner: Option<&str>) -> CleanupCandidate {
    CleanupCandidate {
        address: PciAddress::new(0, 0x81, 0, function).unwrap(),
        vendor_id: 0x8086,
        product_id: 0x154c,
        dev_type: DevType::Vf,
        status,
        owner: owner.map(String::from),
        parent_addr: None,
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
    ];
    let out = set.cleanup(&tracked, &[0, 1, 2, 3, 4]);
    let verdicts: Vec<bool> = out
        .iter()
        .map(|o| o.verdict == CleanupVerdict::Delete)
        .collect();
    assert_eq!(verdicts, vec![true, true, true, false, false]);
    assert!(out.iter().all(|o| o.decided_by == "cleanup"));
}
