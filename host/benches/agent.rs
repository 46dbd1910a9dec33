//! The running agent's latencies, end to end through the release binary:
//!
//! * reload, cold: a new matcher file lands (bytes never seen, so compiled) until the API
//!   serves its verdicts; baseline: loading the same bytes in this process (`Policy::load`,
//!   no cache), so the ratio shows what watching, debouncing, swapping and reconciling add;
//! * reload, cached: the same file lands again (its compiled artifact is in the cache);
//! * uevent to state: a VF leaves (or rejoins) the tree, its uevent is sent, until the API
//!   shows it gone (or back);
//! * claim/allocate/free under 16 concurrent clients: p50 and p99.
//!
//! Polling the API costs ~0.2 ms per look, included in every figure. Run with
//! `cargo bench -p pcitrack --bench agent`.

use std::time::{Duration, Instant};

#[path = "../tests/common/mod.rs"]
mod common;

use common::daemon::{Daemon, MLX, MLX_VF, add_connectx};
use pcitrack_discovery::fixture::FakeSysfs;
use pcitrack_runtime::{Limits, Policy, PolicyEngine, PolicyOrigin};
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

fn decided_by_connectx(d: &Daemon) -> bool {
    d.get("/v1/verdicts")
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["dev_type"] == "type-VF")
        .all(|v| v["decided_by"] == "connectx")
}

fn in_chain(d: &Daemon) -> bool {
    d.get("/v1/policies")["chain"]["matcher"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n == "connectx")
}

/// Lands `bytes` as a matcher; returns the time until it is in the effective chain (it
/// evaluates from then on) and until the reconcile it triggers shows its verdicts.
fn land(d: &Daemon, bytes: &[u8]) -> (Duration, Duration) {
    let tmp = d.dir.path().join(".connectx.tmp");
    std::fs::write(&tmp, bytes).unwrap();
    let started = Instant::now();
    std::fs::rename(&tmp, d.policies().join("connectx.wasm")).unwrap();
    assert!(d.wait_for(T, in_chain), "log:\n{}", d.log());
    let serving = started.elapsed();
    assert!(d.wait_for(T, decided_by_connectx), "log:\n{}", d.log());
    let visible = started.elapsed();
    std::fs::remove_file(d.policies().join("connectx.wasm")).unwrap();
    assert!(d.wait_for(T, |d| !decided_by_connectx(d)));
    (serving, visible)
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

    // Baseline: the same work in this process, no agent around it.
    let engine = PolicyEngine::new(Limits::default()).unwrap();
    let direct: Vec<Duration> = (0..ROUNDS)
        .map(|r| {
            let bytes = unique(&policy, 1000 + r);
            let t = Instant::now();
            Policy::load(
                &engine,
                "connectx",
                &bytes,
                PolicyOrigin::Embedded,
                "{}",
                None,
            )
            .unwrap();
            t.elapsed()
        })
        .collect();
    let direct = median(direct);

    let (cold, cold_visible): (Vec<_>, Vec<_>) =
        (0..ROUNDS).map(|r| land(&d, &unique(&policy, r))).unzip();
    let warm_bytes = unique(&policy, 9999);
    land(&d, &warm_bytes); // puts it in the cache
    let (cached, cached_visible): (Vec<_>, Vec<_>) =
        (0..ROUNDS).map(|_| land(&d, &warm_bytes)).unzip();

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

    let cold_m = median(cold);
    println!("baseline: Policy::load in-process (compile, pre-link, init)  median {direct:>9.2?}");
    println!(
        "reload, cold: file lands -> policy in the effective chain     median {cold_m:>9.2?}  ({:.2}x the baseline)",
        cold_m.as_secs_f64() / direct.as_secs_f64()
    );
    println!(
        "reload, cold: file lands -> its verdicts in the API          median {:>9.2?}",
        median(cold_visible)
    );
    println!(
        "reload, cached: file lands -> policy in the effective chain  median {:>9.2?}",
        median(cached)
    );
    println!(
        "reload, cached: file lands -> its verdicts in the API        median {:>9.2?}",
        median(cached_visible)
    );
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
