//! What a finished policy call leaves resident in the pooling allocator's linear-memory slots:
//! nothing. Alone in its test binary, so no other test's instances share the process's
//! memory map. Read from `/proc/self/smaps`, as host/benches/memory.rs reads the agent's.

use std::sync::Arc;

use pcitrack_model::cleanup::CleanupCandidate;
use pcitrack_model::{DevType, DeviceStatus, PciAddress};
use pcitrack_runtime::{
    EMBEDDED, Limits, Policy, PolicyEngine, PolicyKind, PolicyOrigin, PolicySet,
};

/// Resident KiB in anonymous reservations of at least 1 GiB: wasmtime's linear-memory slots
/// (nothing else in this process reserves that much).
fn resident_in_memory_slots() -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("/proc/self/smaps");
    // (start, end, anonymous, rss) per mapping, in address order.
    let mut vmas: Vec<(u64, u64, bool, u64)> = Vec::new();
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if let Some((a, b)) = first.split_once('-')
            && !first.ends_with(':')
        {
            let anonymous = fields.nth(4).is_none();
            vmas.push((
                u64::from_str_radix(a, 16).unwrap(),
                u64::from_str_radix(b, 16).unwrap(),
                anonymous,
                0,
            ));
        } else if first == "Rss:"
            && let Some(v) = vmas.last_mut()
        {
            v.3 = fields.next().unwrap().parse().unwrap();
        }
    }
    // A glibc arena (64 MiB-aligned, at most 64 MiB) may sit right below the pool, its
    // inaccessible tail merged with the pool's by the kernel: it is malloc's, not a slot.
    let arena = |v: &(u64, u64, bool, u64)| v.0.is_multiple_of(64 << 20) && v.1 - v.0 <= 64 << 20;
    let mut total = 0;
    let mut i = 0;
    while i < vmas.len() {
        let mut j = i;
        while vmas[i].2
            && !arena(&vmas[i])
            && j + 1 < vmas.len()
            && vmas[j + 1].2
            && !arena(&vmas[j + 1])
            && vmas[j + 1].0 == vmas[j].1
        {
            j += 1;
        }
        if vmas[i].2 && vmas[j].1 - vmas[i].0 >= 1 << 30 {
            total += vmas[i..=j].iter().map(|v| v.3).sum::<u64>();
        }
        i = j + 1;
    }
    total
}

#[test]
fn regression_finished_calls_keep_their_linear_memory_resident() {
    let engine = PolicyEngine::new(Limits::default()).unwrap();
    if !engine.pooling() {
        println!("SKIPPED: this host cannot reserve the pooling allocator's address space");
        return;
    }
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
    let set = PolicySet::new([Arc::new(policy)]);
    // A batch as large as a big host's: the instance grows its memory to take it.
    let tracked: Vec<CleanupCandidate> = (0..4096usize)
        .map(|i| CleanupCandidate {
            address: PciAddress::new(0, (i / 256) as u8, ((i / 8) % 32) as u8, (i % 8) as u8)
                .unwrap(),
            vendor_id: 0x8086,
            product_id: 0x154c,
            dev_type: DevType::Vf,
            status: DeviceStatus::Available,
            owner: None,
            parent: None,
            reported: false,
            missing_syncs: 1,
        })
        .collect();
    let candidates: Vec<usize> = (0..tracked.len()).collect();
    for _ in 0..3 {
        assert_eq!(set.cleanup(&tracked, &candidates).len(), tracked.len());
    }
    // Every instance is gone; its slot must hold no pages (it held its first 4 MiB, zeroed by
    // writing, when wasmtime was told to keep them resident).
    let resident = resident_in_memory_slots();
    assert!(
        resident <= 64,
        "{resident} KiB stay resident in the linear-memory slots after the calls ended"
    );
}
