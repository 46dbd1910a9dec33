//! Issue 14's start-up figure: the first `pcitrack sync` on an empty state directory against
//! the second one on the same directory (the release binary as a whole process, medians of
//! alternating runs), and, in this process, loading the three embedded defaults from the code
//! precompiled into the binary against compiling them with Cranelift (what every first start
//! did before the build precompiled them, and what an engine that refuses the precompiled code
//! still does). Run: `cargo bench --workspace --locked --bench first_start` (add `-- --quick`
//! for three rounds).

use std::time::{Duration, Instant};

#[path = "../tests/common/mod.rs"]
mod common;

use pcitrack_discovery::fixture::FakeSysfs;
use pcitrack_runtime::{
    CodeSource, EMBEDDED, Limits, Policy, PolicyEngine, PolicyOrigin, load_embedded,
};

/// What the agent passes every policy's `init` (`Config::policy_config`) for this file.
const POLICY_CONFIG: &str = r#"{"device_spec": ["{\"vendor_id\": \"8086\"}"], "alias": [], "report_in_placement": false, "pci_in_placement": false}"#;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

fn sync(state: &std::path::Path, config: &std::path::Path, sysfs: &FakeSysfs) -> Duration {
    let t = Instant::now();
    let out = common::command(state)
        .args(["sync", "--config"])
        .arg(config)
        .arg("--sysfs-root")
        .arg(sysfs.root())
        .output()
        .unwrap();
    let took = t.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn main() {
    let rounds = if std::env::args().any(|a| a == "--quick") {
        3
    } else {
        11
    };
    let sysfs = FakeSysfs::new();
    sysfs.add_pf_with_vfs("0000:3b:00.0", 0x8086, 0x1572, 0x154c, 4);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pcitrack.toml");
    std::fs::write(
        &config,
        "[pci]\ndevice_spec = ['{\"vendor_id\": \"8086\"}']\n",
    )
    .unwrap();

    let (mut first, mut second) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let state = tempfile::tempdir().unwrap();
        first.push(sync(state.path(), &config, &sysfs));
        second.push(sync(state.path(), &config, &sysfs));
    }

    let engine = PolicyEngine::new(Limits::default()).unwrap();
    let (mut precompiled, mut compiled) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        let (loaded, errors) = load_embedded(&engine, &|_| POLICY_CONFIG.into(), None, &[]);
        precompiled.push(t.elapsed());
        assert!(errors.is_empty(), "{errors:?}");
        assert!(
            loaded
                .iter()
                .all(|p| p.code_source() == CodeSource::Precompiled)
        );
        let t = Instant::now();
        for e in EMBEDDED {
            let p = Policy::load(
                &engine,
                e.name,
                e.bytes,
                PolicyOrigin::Embedded,
                POLICY_CONFIG,
                None,
            )
            .unwrap();
            assert_eq!(p.code_source(), CodeSource::Compiled);
        }
        compiled.push(t.elapsed());
    }

    let (first, second) = (median(first), median(second));
    let (precompiled, compiled) = (median(precompiled), median(compiled));
    println!("{rounds} rounds, medians");
    println!(
        "first `pcitrack sync`, empty state directory                 {first:>10.2?}  ({:.2}x the second)",
        ratio(first, second)
    );
    println!("second `pcitrack sync`, same state directory                {second:>10.2?}");
    println!("in-process: the 3 defaults from their precompiled code       {precompiled:>10.2?}");
    println!(
        "in-process: the 3 defaults compiled by Cranelift (baseline)  {compiled:>10.2?}  ({:.1}x the precompiled load)",
        ratio(compiled, precompiled)
    );
}
