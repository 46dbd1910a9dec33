//! Tracker speed on a large host: 16 PFs with 255 VFs each plus 16 plain devices.
//!
//! Targets (medians): first sync into a fresh file under 100 ms, a sync with nothing changed
//! under 10 ms, a claim of one VF by physical_network under 2 ms. A partial sync of one
//! changed VF with its PF (a uevent's) is measured beside them.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use pcitrack_model::{Assessment, DevType, Device, PciAddress};
use pcitrack_tracker::{DefaultCleanup, Durability, PciRequest, SqliteStore, Tracker};

fn inventory() -> Vec<Assessment> {
    let mut out = Vec::new();
    let tag = |device: Device, physnet: String| {
        let mut tags = BTreeMap::new();
        tags.insert("physical_network".to_string(), physnet);
        Assessment {
            device,
            assignable: true,
            tags,
            remote_managed: false,
            decided_by: "bench".into(),
            reason: None,
        }
    };
    for p in 0..16u8 {
        let bus = 0x10 + 2 * p;
        let pf_addr = PciAddress::new(0, bus, 0, 0).unwrap();
        let mut pf = Device::new(pf_addr, 0x8086, 0x1572, DevType::Pf);
        pf.numa_node = Some(u32::from(p / 8));
        pf.sriov_totalvfs = Some(255);
        pf.sriov_numvfs = Some(255);
        pf.ifname = Some(format!("ens{p}f0"));
        let physnet = format!("physnet{}", p % 4);
        out.push(tag(pf, physnet.clone()));
        for i in 0..255u16 {
            let a = PciAddress::new(0, bus + 1, (i / 8) as u8, (i % 8) as u8).unwrap();
            let mut vf = Device::new(a, 0x8086, 0x154c, DevType::Vf);
            vf.parent_addr = Some(pf_addr);
            vf.numa_node = Some(u32::from(p / 8));
            vf.vf_index = Some(i);
            vf.driver = Some("iavf".into());
            out.push(tag(vf, physnet.clone()));
        }
    }
    for f in 0..16u8 {
        let a = PciAddress::new(0, 0x05 + f / 8, 0, f % 8).unwrap();
        let mut d = Device::new(a, 0x10de, 0x1db4, DevType::Pci);
        d.numa_node = Some(0);
        out.push(Assessment::assignable(d));
    }
    out
}

fn benches(c: &mut Criterion) {
    let inv = inventory();
    eprintln!("inventory: {} devices", inv.len());

    let mut g = c.benchmark_group("tracker");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(8));
    g.bench_function("first_sync_fresh_file", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                let t = Tracker::open(dir.path().join("pci.db")).unwrap();
                (dir, t)
            },
            |(dir, mut t)| {
                let r = t.sync(black_box(&inv), &DefaultCleanup).unwrap();
                assert_eq!(r.added.len(), inv.len());
                (dir, t)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();

    let dir = tempfile::tempdir().unwrap();
    let mut t = Tracker::open(dir.path().join("pci.db")).unwrap();
    t.sync(&inv, &DefaultCleanup).unwrap();

    let mut g = c.benchmark_group("tracker");
    g.bench_function("unchanged_sync", |b| {
        b.iter(|| {
            let r = t.sync(black_box(&inv), &DefaultCleanup).unwrap();
            assert!(r.added.is_empty() && r.updated.is_empty());
        })
    });

    // One VF's uevent: the agent re-reads it with its PF and reconciles those two (a
    // partial sync); its product id alternates, so every iteration writes one row.
    let (pf, vf) = (3 * 256, 3 * 256 + 1); // the 4th PF and its first VF
    let scope = std::collections::BTreeSet::from([inv[pf].device.address, inv[vf].device.address]);
    let mut changed = [inv[pf].clone(), inv[vf].clone()];
    let mut round = 0u16;
    g.bench_function("partial_sync_one_vf_changed", |b| {
        b.iter(|| {
            round = round.wrapping_add(1);
            changed[1].device.product_id = 0xbe00 + round % 2;
            let r = t
                .sync_some(black_box(&changed), &scope, &DefaultCleanup)
                .unwrap();
            assert_eq!(r.updated.len(), 1);
        })
    });

    let mut spec = BTreeMap::new();
    spec.insert("physical_network".to_string(), "physnet2".to_string());
    let req = [PciRequest::new(1, spec)];
    // One claim (timed) and its free (not timed) per iteration, so the inventory never runs
    // dry. With the default durability the median is mostly the disk's fsync; the NORMAL
    // variant shows the tracker's own cost.
    let mut claim_bench = |name: &str, t: &mut Tracker| {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let c = t.claim("bench-instance", black_box(&req), None).unwrap();
                    total += start.elapsed();
                    assert_eq!(c.len(), 1);
                    t.free("bench-instance").unwrap();
                }
                total
            })
        });
    };
    claim_bench("claim_one_vf_by_physnet", &mut t);
    let dir_normal = tempfile::tempdir().unwrap();
    let store =
        SqliteStore::open_with(dir_normal.path().join("pci.db"), Durability::Normal).unwrap();
    let mut t_normal = Tracker::with_store(store);
    t_normal.sync(&inv, &DefaultCleanup).unwrap();
    claim_bench("claim_one_vf_by_physnet_synchronous_normal", &mut t_normal);
    g.finish();
}

criterion_group!(tracker, benches);
criterion_main!(tracker);
