//! Per-device cost of a batched policy call against the same rule in native Rust, measured
//! in one run (issue 2's figure). Run: `cargo bench -p pcitrack-runtime --bench policy_call`.
//!
//! The native path is Nova's rule as the tracker applies it (`pcitrack_model::cleanup::
//! nova_rule`, one outcome per candidate); the WASM one goes through `PolicySet::cleanup`, the
//! API the tracker uses, with the embedded cleanup policy (the same function, compiled into a
//! component). The WASM figure
//! therefore includes everything a real call costs: copying 4096 records in, a fresh instance,
//! `init`, the rule, and the verdicts back out. Runs alternate so that a noisy neighbour hits
//! both alike; medians are reported.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use pcitrack_model::cleanup::CleanupCandidate;
use pcitrack_model::{DevType, DeviceStatus, PciAddress};
use pcitrack_runtime::{
    BUILT_IN, CleanupOutcome, EMBEDDED, Limits, Policy, PolicyEngine, PolicyKind, PolicyOrigin,
    PolicySet,
};

const BATCH: usize = 4096;
const ROUNDS: usize = 61;

fn tracked() -> Vec<CleanupCandidate> {
    let statuses = [
        DeviceStatus::Available,
        DeviceStatus::Unavailable,
        DeviceStatus::Unclaimable,
        DeviceStatus::Allocated,
        DeviceStatus::Claimed,
    ];
    (0..BATCH)
        .map(|i| {
            let status = statuses[i % statuses.len()];
            CleanupCandidate {
                address: PciAddress::new(0, (i / 256) as u8, ((i / 8) % 32) as u8, (i % 8) as u8)
                    .unwrap(),
                vendor_id: 0x8086,
                product_id: 0x154c,
                dev_type: DevType::Vf,
                status,
                owner: status.is_in_use().then(|| format!("instance-{i}")),
                parent: None,
                reported: false,
                missing_syncs: 1,
            }
        })
        .collect()
}

/// Nova's rule run natively over the candidates, in the shape the chain answers.
fn native(tracked: &[CleanupCandidate], candidates: &[usize]) -> Vec<CleanupOutcome> {
    candidates
        .iter()
        .map(|&i| CleanupOutcome {
            address: tracked[i].address,
            verdict: tracked[i].nova_rule(),
            decided_by: BUILT_IN.into(),
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
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
    let wasm = PolicySet::new([Arc::new(policy)]);
    let tracked = tracked();
    let candidates: Vec<usize> = (0..BATCH).collect();
    // Both must agree before their speed means anything.
    let verdicts = |o: Vec<CleanupOutcome>| o.into_iter().map(|o| o.verdict).collect::<Vec<_>>();
    assert_eq!(
        verdicts(wasm.cleanup(&tracked, &candidates)),
        verdicts(native(&tracked, &candidates))
    );
    let (mut n, mut w) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let t = Instant::now();
        black_box(native(black_box(&tracked), &candidates));
        n.push(t.elapsed().as_nanos() as f64 / BATCH as f64);
        let t = Instant::now();
        black_box(wasm.cleanup(black_box(&tracked), &candidates));
        w.push(t.elapsed().as_nanos() as f64 / BATCH as f64);
    }
    let (n, w) = (median(n), median(w));
    println!("cleanup rule, batch of {BATCH}, median of {ROUNDS} alternating rounds:");
    println!("  native Rust:            {n:8.1} ns/device");
    println!("  WASM (fresh instance):  {w:8.1} ns/device");
    println!(
        "  ratio WASM/native:      {:8.2}x (target: at most 3x)",
        w / n
    );
}
