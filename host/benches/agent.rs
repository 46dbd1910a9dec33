//! The running agent's latencies, end to end through the release binary:
//!
//! * reload, cold, in two tiers: a new matcher file lands (bytes never seen, so compiled)
//!   until it is in the effective chain (on Winch's baseline build), until its Cranelift
//!   build is swapped in (`/v1/policies` says `optimized`) and until the API serves its
//!   verdicts; for the 38 KB connectx example and the 660 KB default matcher. Baselines in
//!   the same run, alternating: loading the same bytes in this process with Cranelift (the
//!   old path, `Policy::load`, no cache) and with Winch;
//! * reload, cached: the same file lands again over itself (its artifact is in the cache);
//! * uevent to state: a VF leaves (or rejoins) the tree, its uevent is sent, until the API
//!   shows it gone (or back);
//! * claim/allocate/free under 16 concurrent clients: p50 and p99.
//!
//! Polling the API costs ~0.2 ms per look, included in every figure. Run with
//! `cargo bench --workspace --locked --bench agent` (`-- --quick`: the reload rows only).

use std::time::{Duration, Instant};

#[path = "../tests/common/mod.rs"]
mod common;

use common::daemon::{Daemon, MLX, MLX_VF, add_connectx};
use pcitrack_discovery::fixture::FakeSysfs;
use pcitrack_runtime::{
    Compilers, EMBEDDED, Limits, Policy, PolicyEngine, PolicyKind, PolicyOrigin,
};
use serde_json::{Value, json};

const ROUNDS: usize = 9;
const T: Duration = Duration::from_secs(60);

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The component with a custom section appended: different bytes (a different cache key,
/// so a cold compile), same behaviour.
fn unique(bytes: &[u8], round: usize) -> Vec<u8> {
    let name = b"pcitrack-bench";
    let payload = format!("round {round} {:?}", Instant::now());
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.extend_from_slice(payload.as_bytes());
    let mut out = bytes.to_vec();
    out.push(0);
    let mut len = section.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        out.push(if len == 0 { byte } else { byte | 0x80 });
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(&section);
    out
}

fn decided_by(d: &Daemon, name: &str) -> bool {
    d.get("/v1/verdicts")
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["dev_type"] == "type-VF")
        .all(|v| v["decided_by"] == name)
}

/// The listing's entry of `name` while it is in the matcher chain.
fn serving(d: &Daemon, name: &str) -> Option<Value> {
    let report = d.get("/v1/policies");
    let in_chain = report["chain"]["matcher"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n == name);
    let entry = report["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .cloned();
    entry.filter(|_| in_chain)
}

/// One cold landing: until in the chain, the tier it served with first, until optimised,
/// until its verdicts are in the API.
struct Landing {
    serving: Duration,
    /// The agent's own figure for the load (`load_ms`: compile, pre-link, first `init`).
    load: Duration,
    first_tier: String,
    optimized: Duration,
    visible: Duration,
}

/// Lands `bytes` as matcher `name`, times it, then removes it.
fn land(d: &Daemon, name: &str, bytes: &[u8]) -> Landing {
    let file = d.policies().join(format!("{name}.wasm"));
    let tmp = d.dir.path().join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).unwrap();
    let started = Instant::now();
    std::fs::rename(&tmp, &file).unwrap();
    let mut first = None;
    assert!(
        d.wait_for(T, |d| {
            first = serving(d, name);
            first.is_some()
        }),
        "log:\n{}",
        d.log()
    );
    let serving_at = started.elapsed();
    let first = first.unwrap();
    let first_tier = first["tier"].as_str().unwrap().to_string();
    let load = Duration::from_secs_f64(first["load_ms"].as_f64().unwrap() / 1e3);
    let mut visible = None;
    let mut optimized = None;
    assert!(
        d.wait_for(T, |d| {
            if visible.is_none() && decided_by(d, name) {
                visible = Some(started.elapsed());
            }
            if optimized.is_none() && serving(d, name).is_some_and(|p| p["tier"] == "optimized") {
                optimized = Some(started.elapsed());
            }
            visible.is_some() && optimized.is_some()
        }),
        "log:\n{}",
        d.log()
    );
    std::fs::remove_file(&file).unwrap();
    assert!(d.wait_for(T, |d| !decided_by(d, name)));
    Landing {
        serving: serving_at,
        load,
        first_tier,
        optimized: optimized.unwrap(),
        visible: visible.unwrap(),
    }
}

/// Lands `bytes` over the file `name` already serving (its artifact cached); the time until
/// the new version is in the chain (its listing entry changed), which must come from the
/// cache.
fn land_cached(d: &Daemon, name: &str, bytes: &[u8]) -> Duration {
    let before = serving(d, name).unwrap()["load_ms"].clone();
    let tmp = d.dir.path().join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).unwrap();
    let started = Instant::now();
    std::fs::rename(&tmp, d.policies().join(format!("{name}.wasm"))).unwrap();
    let mut now = None;
    assert!(d.wait_for(T, |d| {
        now = serving(d, name).filter(|p| p["load_ms"] != before);
        now.is_some()
    }));
    let t = started.elapsed();
    let now = now.unwrap();
    assert_eq!(
        (&now["code"], &now["tier"]),
        (&Value::from("cache"), &Value::from("optimized"))
    );
    t
}

/// In-process loads of fresh copies of `policy` with Cranelift (the old path) and with Winch,
/// alternating: (Cranelift, Winch) medians.
fn in_process(policy: &[u8], config: &str) -> (Duration, Duration) {
    let cranelift = PolicyEngine::new(Limits::default()).unwrap();
    let winch = PolicyEngine::with_compilers(Limits::default(), Compilers::Baseline).unwrap();
    let (mut c, mut w) = (Vec::new(), Vec::new());
    for r in 0..ROUNDS {
        for (engine, times) in [(&cranelift, &mut c), (&winch, &mut w)] {
            let bytes = unique(policy, 1000 + r);
            let t = Instant::now();
            Policy::load(engine, "p", &bytes, PolicyOrigin::Embedded, config, None).unwrap();
            times.push(t.elapsed());
        }
    }
    (median(c), median(w))
}

/// One evaluation of 4096 VFs by `policy` compiled by Cranelift and by Winch, alternating,
/// 9 legs: (Cranelift, Winch) medians. What a one-shot `policy eval` would pay for running
/// the baseline build instead of compiling (or loading) the optimised one.
fn eval_speed(policy: &[u8], config: &str) -> (Duration, Duration) {
    use pcitrack_model::{DevType, Device, PciAddress};
    let devices: Vec<Device> = (0..4096u32)
        .map(|i| {
            let address = PciAddress::new(0, (i / 256) as u8, (i / 8 % 32) as u8, (i % 8) as u8);
            Device::new(address.unwrap(), MLX, MLX_VF, DevType::Vf)
        })
        .collect();
    let set = |compilers| {
        let engine = PolicyEngine::with_compilers(Limits::default(), compilers).unwrap();
        let p = Policy::load(&engine, "p", policy, PolicyOrigin::Embedded, config, None).unwrap();
        pcitrack_runtime::PolicySet::new([std::sync::Arc::new(p)])
    };
    let (cranelift, winch) = (set(Compilers::Optimized), set(Compilers::Baseline));
    assert_eq!(cranelift.assess(&devices), winch.assess(&devices));
    let (mut c, mut w) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        for (set, times) in [(&cranelift, &mut c), (&winch, &mut w)] {
            let t = Instant::now();
            std::hint::black_box(set.assess(&devices));
            times.push(t.elapsed());
        }
    }
    (median(c), median(w))
}

/// Cold and cached landings of `policy` as matcher `name`, with the in-process baselines,
/// printed.
fn reload_rows(d: &Daemon, name: &str, policy: &[u8], config: &str) {
    let (cranelift, winch) = in_process(policy, config);
    let cold: Vec<Landing> = (0..ROUNDS)
        .map(|r| land(d, name, &unique(policy, r)))
        .collect();
    let baseline_first = cold.iter().filter(|l| l.first_tier == "baseline").count();
    let warm_bytes = unique(policy, 9999);
    // Landed and left in place: removing a file evicts its artifact.
    std::fs::write(d.dir.path().join(".w.tmp"), &warm_bytes).unwrap();
    std::fs::rename(
        d.dir.path().join(".w.tmp"),
        d.policies().join(format!("{name}.wasm")),
    )
    .unwrap();
    assert!(d.wait_for(T, |d| {
        serving(d, name).is_some_and(|p| p["tier"] == "optimized")
    }));
    let cached: Vec<Duration> = (0..ROUNDS)
        .map(|_| land_cached(d, name, &warm_bytes))
        .collect();
    std::fs::remove_file(d.policies().join(format!("{name}.wasm"))).unwrap();
    assert!(d.wait_for(T, |d| !decided_by(d, name)));
    let (eval_c, eval_w) = eval_speed(policy, config);
    let kb = policy.len() / 1024;
    let m = |f: fn(&Landing) -> Duration| median(cold.iter().map(f).collect());
    let serving_m = m(|l| l.serving);
    println!(
        "{name} ({kb} KB) in-process load: Cranelift (old path)          median {cranelift:>9.2?}"
    );
    println!(
        "{name} ({kb} KB) in-process load: Winch                        median {winch:>9.2?}  ({:.1}x faster)",
        cranelift.as_secs_f64() / winch.as_secs_f64()
    );
    println!(
        "{name} ({kb} KB) reload, cold: lands -> in the chain (baseline) median {serving_m:>9.2?}  ({:.2}x the Cranelift load; {baseline_first}/{ROUNDS} served baseline first)",
        serving_m.as_secs_f64() / cranelift.as_secs_f64()
    );
    println!(
        "{name} ({kb} KB)   of which the agent's load (load_ms)         median {:>9.2?}",
        m(|l| l.load)
    );
    println!(
        "{name} ({kb} KB) reload, cold: lands -> optimized swapped in    median {:>9.2?}",
        m(|l| l.optimized)
    );
    println!(
        "{name} ({kb} KB) reload, cold: lands -> its verdicts in the API median {:>9.2?}",
        m(|l| l.visible)
    );
    println!(
        "{name} ({kb} KB) reload, cached: lands -> in the chain          median {:>9.2?}",
        median(cached)
    );
    println!(
        "{name} ({kb} KB) one evaluation of 4096 VFs: Cranelift {eval_c:>9.2?}, Winch {eval_w:>9.2?} ({:.2}x)",
        eval_w.as_secs_f64() / eval_c.as_secs_f64()
    );
}

fn main() {
    let config = "[policies.connectx]\nphysnets = { pf0 = \"physnet1\" }\n\
                  [pci]\ndevice_spec = ['{\"vendor_id\": \"15b3\"}']\n";
    let sysfs = FakeSysfs::new();
    let mut vfs = add_connectx(&sysfs, "0000:81:00.0", 12);
    vfs.extend(add_connectx(&sysfs, "0000:83:00.0", 12));
    let d = Daemon::start(sysfs, config);
    let policy =
        std::fs::read(common::example_policy("pcitrack-example-connectx-matcher")).unwrap();
    let big = EMBEDDED
        .iter()
        .find(|e| e.kind == PolicyKind::Matcher)
        .unwrap()
        .bytes;
    // `-- --quick`: the reload rows only.
    let quick = std::env::args().any(|a| a == "--quick");
    reload_rows(
        &d,
        "connectx",
        &policy,
        r#"{"physnets": {"pf0": "physnet1"}}"#,
    );
    reload_rows(
        &d,
        "big",
        big,
        r#"{"device_spec": ["{\"vendor_id\": \"15b3\"}"], "alias": []}"#,
    );
    if quick {
        return;
    }

    let mut gone = Vec::new();
    let mut back = Vec::new();
    for r in 0..ROUNDS {
        let vf = &vfs[r % vfs.len()];
        d.sysfs.remove(vf);
        let t = Instant::now();
        d.uevent("remove", vf);
        assert!(d.wait_for(T, |d| !d.tracked().contains(vf)));
        gone.push(t.elapsed());
        d.sysfs.add_device(vf, MLX, MLX_VF, 0x020000).link(
            "physfn",
            if vf.starts_with("0000:82") {
                "../0000:81:00.0"
            } else {
                "../0000:83:00.0"
            },
        );
        let t = Instant::now();
        d.uevent("add", vf);
        assert!(d.wait_for(T, |d| d.tracked().contains(vf)));
        back.push(t.elapsed());
    }

    // Claims under load, release build.
    let clients = 16;
    let run_for = Duration::from_secs(3);
    let started = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|w| {
            let client = d.client.clone();
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut round = 0;
                while started.elapsed() < run_for {
                    round += 1;
                    let instance = format!("b-{w}-{round}");
                    let t = Instant::now();
                    let r = client
                        .post(
                            "/v1/claim",
                            &json!({"instance": instance, "spec": "{\"vendor_id\": \"15b3\"}"}),
                        )
                        .unwrap();
                    lat.push(t.elapsed());
                    if r.status != 200 {
                        continue;
                    }
                    let body = json!({"instance": instance});
                    let _: Value = client.post("/v1/allocate", &body).unwrap().json().unwrap();
                    let _: Value = client.post("/v1/free", &body).unwrap().json().unwrap();
                }
                lat
            })
        })
        .collect();
    let mut claims: Vec<Duration> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    claims.sort();

    println!(
        "uevent -> device gone from the API                           median {:>9.2?}",
        median(gone)
    );
    println!(
        "uevent -> device back in the API                             median {:>9.2?}",
        median(back)
    );
    println!(
        "claim under {clients} clients ({} claims in {run_for:?})              p50 {:>9.2?}  p99 {:>9.2?}",
        claims.len(),
        percentile(&claims, 0.5),
        percentile(&claims, 0.99)
    );
}
