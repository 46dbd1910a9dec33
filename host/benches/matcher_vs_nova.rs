//! Issue 4's figure: the same `[pci] device_spec` and the same 4096 devices through Nova's
//! `Whitelist.device_assignable` (Python, timed in-process by `bench_nova.py`) and through
//! pcitrack's whole policy chain (embedded matcher and tagger, in wasmtime: inventory copied
//! in, a fresh instance, `init` parsing the specs, matching, verdicts out), in one run.
//!
//! Run: `PCITRACK_NOVA_PYTHON=/path/to/venv/bin/python cargo bench -p pcitrack --bench matcher_vs_nova`
//! (a Python with `pip install nova`; without one, only pcitrack's side is measured).
//!
//! The machine is shared and its load comes in phases: Nova's figure alone moved between 17
//! and 28 µs/device from one run to the next. So the two sides are measured in alternating
//! legs (Nova, then pcitrack, `LEGS` times), each leg's ratio is taken from the two
//! measurements next to each other, and the figure is the median of those ratios.

use std::hint::black_box;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use pcitrack::config::Config;
use pcitrack_model::{DevType, Device};
use serde_json::Value;

const ROUNDS: usize = 31;
/// Alternations of Nova and pcitrack.
const LEGS: usize = 9;
/// Nova's timed runs per leg.
const NOVA_RUNS: &str = "3";

fn hex(v: &Value) -> u16 {
    u16::from_str_radix(v.as_str().unwrap(), 16).unwrap()
}

fn device(v: &Value) -> Device {
    let mut d = Device::new(
        v["address"].as_str().unwrap().parse().unwrap(),
        hex(&v["vendor_id"]),
        hex(&v["product_id"]),
        v["dev_type"].as_str().unwrap().parse::<DevType>().unwrap(),
    );
    d.parent_addr = v["parent_addr"].as_str().map(|a| a.parse().unwrap());
    d.numa_node = v["numa_node"].as_u64().map(|n| n as u32);
    d.sriov_totalvfs = v["sriov_totalvfs"].as_u64().map(|n| n as u16);
    d.sriov_vf_device = v.get("vf_product_id").filter(|x| x.is_string()).map(hex);
    d
}

/// One Nova leg: `bench_nova.py`'s JSON report.
fn run_nova(
    python: &str,
    script: &std::path::Path,
    dump: Option<&std::path::Path>,
) -> Option<Value> {
    let mut cmd = Command::new(python);
    cmd.arg(script).arg("--runs").arg(NOVA_RUNS);
    if let Some(dir) = dump {
        cmd.arg("--dump").arg(dir);
    }
    match cmd.output() {
        Ok(out) if out.status.success() => Some(serde_json::from_slice(&out.stdout).unwrap()),
        Ok(out) => {
            eprintln!(
                "Nova's side failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            None
        }
        Err(e) => {
            eprintln!("no Python with Nova at {python} ({e}); set PCITRACK_NOVA_PYTHON");
            None
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let script = root.join("policies/devspec/oracle/bench_nova.py");
    let python = std::env::var("PCITRACK_NOVA_PYTHON")
        .unwrap_or_else(|_| "/work/nova-venv/bin/python".into());
    let dump = tempfile::tempdir().unwrap();
    let nova = run_nova(&python, &script, Some(dump.path()));
    let Some(nova) = nova else { return };
    let specs: Vec<String> = serde_json::from_str(
        &std::fs::read_to_string(dump.path().join("device_spec.json")).unwrap(),
    )
    .unwrap();
    let inv: Value =
        serde_json::from_str(&std::fs::read_to_string(dump.path().join("devices.json")).unwrap())
            .unwrap();
    let mut devices: Vec<Device> = inv["pfs"]
        .as_array()
        .unwrap()
        .iter()
        .chain(inv["devices"].as_array().unwrap())
        .map(device)
        .collect();
    devices.sort_by_key(|d| d.address);
    let targets = inv["devices"].as_array().unwrap().len();

    let mut config = Config::default();
    config.pci.device_spec = specs;
    // The compiled-policy cache goes to a temp dir, never to /var/lib/pcitrack.
    let state = tempfile::tempdir().unwrap();
    config.agent.state_dir = Some(state.path().to_path_buf());
    let policies = pcitrack::policies::load(&config, None).unwrap();
    assert!(
        policies.loaded.errors.is_empty(),
        "{:?}",
        policies.loaded.errors
    );
    let set = &policies.loaded.set;
    let out = set.assess(&devices);
    let vf_and_plain_assignable = out
        .iter()
        .zip(&devices)
        .filter(|(a, d)| a.assignable && d.dev_type != DevType::Pf)
        .count();
    let measure_ours = || {
        let per_device: Vec<f64> = (0..ROUNDS)
            .map(|_| {
                let t = Instant::now();
                black_box(set.assess(black_box(&devices)));
                t.elapsed().as_nanos() as f64 / devices.len() as f64
            })
            .collect();
        median(per_device)
    };
    // Leg 1 pairs the dump run above with the first measurement of ours.
    let mut legs: Vec<(f64, f64)> = vec![(
        nova["ns_per_device_median"].as_f64().unwrap(),
        measure_ours(),
    )];
    for _ in 1..LEGS {
        let Some(n) = run_nova(&python, &script, None) else {
            break;
        };
        let theirs = n["ns_per_device_median"].as_f64().unwrap();
        legs.push((theirs, measure_ours()));
    }
    for (i, (theirs, ours)) in legs.iter().enumerate() {
        eprintln!(
            "  leg {}: Nova {theirs:9.1} ns/device, pcitrack {ours:7.1} ns/device, {:.1}x",
            i + 1,
            theirs / ours
        );
    }
    let ratio = median(legs.iter().map(|(t, o)| t / o).collect());
    let theirs = median(legs.iter().map(|(t, _)| *t).collect());
    let ours = median(legs.iter().map(|(_, o)| *o).collect());
    // Where the time goes: the matcher chain alone, and a host-side walk with no policy.
    let matcher_only = pcitrack_runtime::PolicySet::new(
        set.chain(pcitrack_runtime::PolicyKind::Matcher)
            .iter()
            .cloned(),
    );
    let mut m = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        black_box(matcher_only.assess(black_box(&devices)));
        m.push(t.elapsed().as_nanos() as f64 / devices.len() as f64);
    }
    m.sort_by(|a, b| a.partial_cmp(b).unwrap());
    eprintln!("  (matcher chain alone: {:.1} ns/device)", m[ROUNDS / 2]);
    // The fixed cost of a call (fresh instance, init, crossing a tiny batch).
    let few = &devices[..16];
    let mut f = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        black_box(set.assess(black_box(few)));
        f.push(t.elapsed().as_nanos() as f64);
    }
    f.sort_by(|a, b| a.partial_cmp(b).unwrap());
    eprintln!(
        "  (chain on 16 devices: {:.1} us per assess)",
        f[ROUNDS / 2] / 1e3
    );
    println!(
        "device_spec matching, {} specs, {} devices (+{} PFs in the inventory):",
        nova["specs"],
        targets,
        devices.len() - targets
    );
    println!(
        "  Nova {} Whitelist.device_assignable: {theirs:9.1} ns/device (median over {} legs of {} runs), {} assignable",
        nova["nova_version"],
        legs.len(),
        nova["runs"],
        nova["assignable"]
    );
    println!(
        "  pcitrack chain (matcher+tagger, wasm):  {ours:9.1} ns/device (median over {} legs of {ROUNDS}), {vf_and_plain_assignable} assignable",
        legs.len()
    );
    println!("  speed-up: {ratio:.1}x, the median of the legs' ratios (target: at least 50x)");
    assert_eq!(
        nova["assignable"].as_u64().unwrap() as usize,
        vf_and_plain_assignable,
        "Nova and pcitrack disagree"
    );
}
