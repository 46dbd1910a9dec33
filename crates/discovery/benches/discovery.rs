//! Issue 3's figure: discovery of a 4112-device tree (16 PFs × 255 VFs + 16 plain devices)
//! against `lspci -D -nn -vmm -k` on the same tree, in one run. Medians.
//! Run: `cargo bench -p pcitrack-discovery --bench discovery`.

use std::time::Instant;

use pcitrack_discovery::fixture::FakeSysfs;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let tree = FakeSysfs::generate_large(16, 255, 16);
    let n = pcitrack_discovery::scan(tree.root()).devices.len();
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        let t = Instant::now();
        let r = pcitrack_discovery::scan(tree.root());
        ours.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(r.devices.len(), n);
        let t = Instant::now();
        let out = tree
            .lspci()
            .output()
            .expect("lspci (pciutils) is needed for the baseline");
        theirs.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(out.status.success());
    }
    let (o, t) = (median(ours), median(theirs));
    println!("discovery of {n} devices, median of 7 alternating runs:");
    println!(
        "  pcitrack scan():          {o:8.1} ms (with SR-IOV links, netdevs, VPD, NUMA, IOMMU)"
    );
    println!("  lspci -D -nn -vmm -k:     {t:8.1} ms");
    println!(
        "  ratio pcitrack/lspci:     {:8.2} (target: at most 0.5)",
        o / t
    );
}
