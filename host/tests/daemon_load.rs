//! Load and crash tests of the running agent: many clients claiming and freeing at once
//! (nobody gets a device twice, no acknowledged claim is lost), and SIGKILL in the middle of
//! reconciles (the database comes back consistent).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pcitrack::ops::DeviceRow;
use pcitrack_discovery::fixture::FakeSysfs;
use serde_json::{Value, json};

mod common;
use common::daemon::{Daemon, MLX, MLX_VF, add_connectx};

const CLIENTS: usize = 16;
const RUN_FOR: Duration = Duration::from_secs(4);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[test]
fn concurrent_claims_never_hand_a_device_to_two_instances_and_lose_nothing() {
    let sysfs = FakeSysfs::new();
    let mut vfs = add_connectx(&sysfs, "0000:81:00.0", 12);
    vfs.extend(add_connectx(&sysfs, "0000:83:00.0", 12));
    let spec = format!(
        "[pci]\ndevice_spec = ['{{\"vendor_id\": \"{MLX:04x}\", \"product_id\": \"{MLX_VF:04x}\"}}']\n"
    );
    let d = Daemon::start(sysfs, &spec);
    assert_eq!(d.tracked().len(), vfs.len());

    // Who holds what, as acknowledged by the agent. A claim acknowledged for a device that
    // is already here is a double allocation. Entries leave before their free is sent, so
    // a later claim of the same device is legitimate.
    let held: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let latencies: Arc<Mutex<BTreeMap<&'static str, Vec<Duration>>>> = Arc::default();
    let violations: Arc<Mutex<Vec<String>>> = Arc::default();
    let refused = Arc::new(Mutex::new(0usize));
    let started = Instant::now();
    let workers: Vec<_> = (0..CLIENTS)
        .map(|w| {
            let client = d.client.clone();
            let held = held.clone();
            let latencies = latencies.clone();
            let violations = violations.clone();
            let refused = refused.clone();
            std::thread::spawn(move || {
                let mut round = 0;
                let timed = |op: &'static str, f: &mut dyn FnMut() -> pcitrack::client::Reply| {
                    let t = Instant::now();
                    let r = f();
                    latencies
                        .lock()
                        .unwrap()
                        .entry(op)
                        .or_default()
                        .push(t.elapsed());
                    r
                };
                while started.elapsed() < RUN_FOR {
                    round += 1;
                    let instance = format!("vm-{w}-{round}");
                    let count = 1 + (round % 2) as u32;
                    let claim = json!({"instance": instance, "count": count,
                        "spec": format!("{{\"vendor_id\": \"{MLX:04x}\"}}")});
                    let r = timed("claim", &mut || client.post("/v1/claim", &claim).unwrap());
                    if r.status == 409 {
                        *refused.lock().unwrap() += 1;
                        continue;
                    }
                    let claimed: Value = r.json().unwrap();
                    let mut mine: Vec<String> = claimed
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|c| c["address"].as_str().unwrap().to_string())
                        .collect();
                    mine.sort();
                    if mine.len() != count as usize {
                        violations
                            .lock()
                            .unwrap()
                            .push(format!("{instance}: asked {count}, got {mine:?}"));
                    }
                    {
                        let mut h = held.lock().unwrap();
                        for a in &mine {
                            if let Some(other) = h.insert(a.clone(), instance.clone()) {
                                violations.lock().unwrap().push(format!(
                                    "{a} handed to {instance} while {other} held it"
                                ));
                            }
                        }
                    }
                    let body = json!({"instance": instance});
                    let r = timed("allocate", &mut || {
                        client.post("/v1/allocate", &body).unwrap()
                    });
                    let mut allocated: Vec<String> = r.json().unwrap();
                    allocated.sort();
                    if allocated != mine {
                        violations.lock().unwrap().push(format!(
                            "{instance}: claimed {mine:?}, allocated {allocated:?}"
                        ));
                    }
                    // What the agent says this instance holds must be exactly what it was given.
                    let r = timed("devices", &mut || {
                        client
                            .get(&format!("/v1/devices?instance={instance}"))
                            .unwrap()
                    });
                    let rows: Vec<DeviceRow> = r.json().unwrap();
                    let mut listed: Vec<String> = rows.iter().map(|r| r.address.clone()).collect();
                    listed.sort();
                    if listed != mine || rows.iter().any(|r| r.status.to_string() != "allocated") {
                        violations.lock().unwrap().push(format!(
                            "{instance}: holds {listed:?}, expected {mine:?} allocated"
                        ));
                    }
                    {
                        let mut h = held.lock().unwrap();
                        for a in &mine {
                            h.remove(a);
                        }
                    }
                    let r = timed("free", &mut || client.post("/v1/free", &body).unwrap());
                    let freed: Value = r.json().unwrap();
                    if freed["freed"].as_array().map(Vec::len) != Some(mine.len()) {
                        violations
                            .lock()
                            .unwrap()
                            .push(format!("{instance}: free gave {freed}"));
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let violations = violations.lock().unwrap();
    assert!(
        violations.is_empty(),
        "{} violations:\n{}",
        violations.len(),
        violations.join("\n")
    );
    // Nothing leaked: every device is free again and pooled.
    let devices = d.get("/v1/devices");
    assert!(
        devices
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "available"),
        "{devices:#}"
    );
    let pooled: u64 = d
        .get("/v1/pools")
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["count"].as_u64().unwrap())
        .sum();
    assert_eq!(pooled, vfs.len() as u64);

    let mut latencies = latencies.lock().unwrap();
    let claims = latencies.get("claim").map(Vec::len).unwrap_or(0);
    assert!(
        claims > CLIENTS,
        "the load test made too few claims to mean anything: {claims}"
    );
    eprintln!(
        "load: {CLIENTS} clients for {RUN_FOR:?}, {} claims refused for lack of devices",
        refused.lock().unwrap()
    );
    for (op, samples) in latencies.iter_mut() {
        samples.sort();
        eprintln!(
            "load: {op:<8} n={:<6} p50={:>8.2?} p99={:>8.2?} max={:>8.2?}",
            samples.len(),
            percentile(samples, 0.50),
            percentile(samples, 0.99),
            samples.last().copied().unwrap_or_default()
        );
    }
}

/// Kills the agent with SIGKILL at arbitrary points while it reconciles a changing host and
/// serves claims; after each restart the database must pass SQLite's integrity check, agree
/// with the host once reconciled, and still hold every acknowledged claim.
#[test]
fn sigkill_during_reconciles_leaves_a_consistent_database() {
    let sysfs = FakeSysfs::generate_large(4, 32, 8);
    let spec = "[pci]\ndevice_spec = ['{\"vendor_id\": \"8086\", \"product_id\": \"154c\"}']\n";
    let mut d = Daemon::start(sysfs, spec);
    let total = d.tracked().len();
    assert_eq!(total, 128);
    let claim = json!({"instance": "survivor", "spec": "{\"vendor_id\": \"8086\"}", "count": 3});
    let claimed: Value = d.client.post("/v1/claim", &claim).unwrap().json().unwrap();
    let mut survivors: Vec<String> = claimed
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["address"].as_str().unwrap().to_string())
        .collect();
    survivors.sort();

    let victims: Vec<String> = (0..8).map(|k| format!("0000:11:00.{k}")).collect();
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    const KILLS: usize = 6;
    for round in 0..KILLS {
        // The host changes (some VFs vanish or come back) and reconciles are asked for.
        let client = d.client.clone();
        let gone = round % 2 == 0;
        for v in &victims {
            if gone {
                d.sysfs.remove(v);
            } else {
                d.sysfs
                    .add_device(v, 0x8086, 0x154c, 0x020000)
                    .link("physfn", "../0000:10:00.0");
            }
        }
        let pounding = std::thread::spawn(move || {
            for _ in 0..20 {
                if client.post_raw("/v1/reconcile", Vec::new()).is_err() {
                    break;
                }
            }
        });
        std::thread::sleep(Duration::from_millis(next() % 60));
        d.kill();
        let _ = pounding.join();

        let conn = rusqlite::Connection::open(d.db()).unwrap();
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok", "after kill {round}");
        drop(conn);

        d.spawn();
        let tracked = d.tracked();
        let expected = if gone { total - victims.len() } else { total };
        assert_eq!(tracked.len(), expected, "after kill {round} and restart");
        let held: Vec<String> = d
            .get("/v1/devices?instance=survivor")
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["address"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            held, survivors,
            "an acknowledged claim was lost after kill {round}"
        );
    }
    eprintln!("crash: {KILLS} SIGKILLs during reconciles survived, database consistent each time");
}
