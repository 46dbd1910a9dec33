//! Crash injection: the agent is SIGKILLed at random points while it reconciles a changing
//! host and serves claims, allocations and frees; after every kill the database file must
//! pass SQLite's integrity check and the tracker's invariants, and every acknowledged claim
//! must still be there; then the agent restarts and the loop goes on.
//!
//! Bounded in time: `PCITRACK_SOAK_SECS` (default 20 s, what CI runs); `scripts/soak.sh`
//! runs it longer and prints the figures.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pcitrack_discovery::fixture::FakeSysfs;
use pcitrack_model::DeviceStatus;
use pcitrack_tracker::{DeviceFilter, Tracker};
use serde_json::{Value, json};

mod common;

use common::daemon::Daemon;
use rustix::process::Signal;

/// What the agent acknowledged: instance → (devices, allocated?). An operation whose answer
/// was lost to the kill is `Unknown` until the database says.
#[derive(Debug, Clone, PartialEq)]
enum Held {
    Claimed(Vec<String>),
    Allocated(Vec<String>),
    /// A request in flight when the agent died: either outcome is acceptable.
    Unknown,
}

fn xorshift(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// Claims, allocates and frees through the API until `stop`, recording acknowledgements.
fn client_loop(
    d: &Daemon,
    ledger: &Mutex<BTreeMap<String, Held>>,
    stop: &AtomicBool,
    worker: usize,
    round: usize,
) {
    let client = d.client.clone();
    let mut seed = 0x1234_5678 ^ (worker as u64) << 8 ^ round as u64;
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let instance = format!("vm-{round}-{worker}-{n}");
        let count = 1 + xorshift(&mut seed) % 2;
        ledger
            .lock()
            .unwrap()
            .insert(instance.clone(), Held::Unknown);
        let claim = json!({"instance": instance, "count": count, "spec": "{\"vendor_id\": \"8086\", \"product_id\": \"154c\"}"});
        let Ok(r) = client.post("/v1/claim", &claim) else {
            return;
        };
        if r.status != 200 {
            ledger.lock().unwrap().remove(&instance);
            continue;
        }
        let mut got: Vec<String> = r
            .json::<Value>()
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["address"].as_str().unwrap().to_string())
            .collect();
        got.sort();
        ledger
            .lock()
            .unwrap()
            .insert(instance.clone(), Held::Claimed(got.clone()));
        let body = json!({"instance": instance});
        if !xorshift(&mut seed).is_multiple_of(3) {
            ledger
                .lock()
                .unwrap()
                .insert(instance.clone(), Held::Unknown);
            let Ok(r) = client.post("/v1/allocate", &body) else {
                return;
            };
            // A refusal (a claimed VF vanished and was taken away meanwhile) changes nothing.
            let held = if r.status == 200 {
                Held::Allocated(got.clone())
            } else {
                Held::Unknown
            };
            ledger.lock().unwrap().insert(instance.clone(), held);
        }
        // Keep some instances holding devices across kills; free the rest.
        if !xorshift(&mut seed).is_multiple_of(4) {
            ledger
                .lock()
                .unwrap()
                .insert(instance.clone(), Held::Unknown);
            let Ok(r) = client.post("/v1/free", &body) else {
                return;
            };
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            ledger.lock().unwrap().remove(&instance);
        }
    }
}

/// The database after a kill: integrity, invariants, and every acknowledged holding.
fn verify(d: &Daemon, ledger: &mut BTreeMap<String, Held>, kill: usize) {
    let conn = rusqlite::Connection::open(d.db()).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok", "integrity after kill {kill}");
    drop(conn);
    let mut tracker = Tracker::open(d.db()).unwrap();
    pcitrack_tracker::invariants::check(&mut tracker)
        .unwrap_or_else(|e| panic!("invariant violated after kill {kill}: {e}"));
    let devices = tracker.devices(&DeviceFilter::default()).unwrap();
    let mut by_instance: BTreeMap<String, (Vec<String>, bool)> = BTreeMap::new();
    for dev in &devices {
        if let Some(owner) = &dev.instance_uuid {
            let e = by_instance.entry(owner.clone()).or_default();
            e.0.push(dev.address().to_string());
            e.1 |= dev.status == DeviceStatus::Allocated;
        }
    }
    for v in by_instance.values_mut() {
        v.0.sort();
    }
    ledger.retain(|instance, held| {
        let found = by_instance.get(instance);
        match held {
            Held::Claimed(want) => {
                let (got, allocated) = found.unwrap_or_else(|| {
                    panic!("acknowledged claim of {instance} lost after kill {kill}")
                });
                assert_eq!(
                    (got, *allocated),
                    (&*want, false),
                    "{instance} after kill {kill}"
                );
                true
            }
            Held::Allocated(want) => {
                let (got, allocated) = found.unwrap_or_else(|| {
                    panic!("acknowledged allocation of {instance} lost after kill {kill}")
                });
                assert_eq!(
                    (got, *allocated),
                    (&*want, true),
                    "{instance} after kill {kill}"
                );
                true
            }
            // The database decides what an interrupted request did.
            Held::Unknown => match found {
                Some((got, true)) => {
                    *held = Held::Allocated(got.clone());
                    true
                }
                Some((got, false)) => {
                    *held = Held::Claimed(got.clone());
                    true
                }
                None => false,
            },
        }
    });
    for instance in by_instance.keys() {
        assert!(
            ledger.contains_key(instance),
            "{instance} holds devices nobody was acknowledged"
        );
    }
}

#[test]
fn sigkill_soak_keeps_the_database_consistent_and_loses_no_acknowledged_claim() {
    let budget = Duration::from_secs(
        std::env::var("PCITRACK_SOAK_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(20),
    );
    let sysfs = FakeSysfs::generate_large(4, 16, 4);
    let spec = "[pci]\ndevice_spec = ['{\"vendor_id\": \"8086\", \"product_id\": \"154c\"}', '{\"vendor_id\": \"8086\", \"product_id\": \"1572\"}']\n";
    let mut d = Daemon::start(sysfs, spec);
    let victims: Vec<String> = (0..4).map(|k| format!("0000:13:00.{k}")).collect();
    let mut ledger: BTreeMap<String, Held> = BTreeMap::new();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let started = Instant::now();
    let mut kills = 0;
    while started.elapsed() < budget {
        let shared = Arc::new(Mutex::new(std::mem::take(&mut ledger)));
        let stop = Arc::new(AtomicBool::new(false));
        let victims = &victims;
        std::thread::scope(|s| {
            for w in 0..4 {
                let (shared, stop, d) = (shared.clone(), stop.clone(), &d);
                s.spawn(move || client_loop(d, &shared, &stop, w, kills));
            }
            // The host changes under the agent: VFs come and go (some of them held).
            let (stop2, d2) = (stop.clone(), &d);
            s.spawn(move || {
                let mut gone = false;
                while !stop2.load(Ordering::Relaxed) {
                    gone = !gone;
                    for v in victims {
                        if gone {
                            d2.sysfs.remove(v);
                        } else {
                            d2.sysfs
                                .add_device(v, 0x8086, 0x154c, 0x020000)
                                .link("physfn", "../0000:12:00.0");
                        }
                        // Refused when the agent has just been killed: the restart's
                        // full scan picks the change up instead.
                        if d2
                            .try_uevent(if gone { "remove" } else { "add" }, v)
                            .is_err()
                        {
                            return;
                        }
                    }
                    if d2.client.post_raw("/v1/reconcile", Vec::new()).is_err() {
                        return;
                    }
                }
            });
            std::thread::sleep(Duration::from_millis(50 + xorshift(&mut seed) % 400));
            d.signal(Signal::KILL);
            stop.store(true, Ordering::Relaxed);
        });
        d.kill(); // reaps it
        kills += 1;
        ledger = Arc::try_unwrap(shared).unwrap().into_inner().unwrap();
        verify(&d, &mut ledger, kills);
        d.spawn();
        // After its start-up reconcile the agent agrees with the database it inherited.
        let tracked = d.get("/v1/devices");
        assert!(tracked.as_array().unwrap().len() >= 64, "{tracked}");
    }
    let held = ledger
        .values()
        .filter(|h| !matches!(h, Held::Unknown))
        .count();
    eprintln!(
        "soak: {kills} SIGKILLs in {:?}, 0 inconsistencies; {held} acknowledged holdings carried across kills",
        started.elapsed()
    );
    assert!(kills >= 3, "too few kills to mean anything: {kills}");
}
