//! The fleet benchmark of issue 13: N simulated hosts reporting into one Placement 16.0.0
//! (4 gunicorn workers on a throw-away PostgreSQL cluster, Placement's default
//! `allocation_conflict_retry_count`), and what a scheduler sees of them.
//!
//! Each host is a root provider plus 16 PF providers x 16 VFs (`CUSTOM_VF`, trait
//! `CUSTOM_FLEET`, from the devices' `resource_class` and `traits` tags as a `[pci]
//! device_spec` gives them), built as fake `TrackedDevice`s and reported by the crate's
//! [`Reporter`] over its [`PlacementClient`]: the code the agent's reporter thread runs. The
//! figures, medians, at each fleet size of `PCITRACK_FLEET_HOSTS` (default `100`; e.g.
//! `"100,500"`, loaded one after the other into the same Placement):
//!
//! * report one host: a first report (the tree created: about 50 calls), alone on a quiet
//!   Placement (the first hosts) and under the load of `PCITRACK_FLEET_THREADS` client
//!   threads (default 4) reporting other hosts; and a report with nothing changed;
//! * allocation candidates: the query Nova's scheduler sends for two VFs with a trait
//!   (`resources_a1=CUSTOM_VF:1&required_a1=CUSTOM_FLEET&resources_a2=...&group_policy=none
//!   &limit=1000`) and a plain `resources=CUSTOM_VF:2`;
//! * claim: `PUT /allocations` of one VF;
//! * concurrent schedulers (once, at the end): 8 threads race for the 4 last units of a
//!   class (one more host, `CUSTOM_SCARCE`), each picking a candidate and allocating it,
//!   over several rounds. Placement's over-allocations (usage above total) are counted; then
//!   every consumer Placement accepted claims on that host's tracker as the agent does
//!   (the consumer's allocations read back, the allocated provider's devices as candidates,
//!   `Tracker::claim_among`), and the benchmark checks that no device went to two consumers.
//!
//! PLACEMENT.md's figures (measured on this machine kind with a Python client) are printed
//! beside ours. Needs `PCITRACK_PLACEMENT_PYTHON` (the Placement venv) and PostgreSQL's server
//! binaries; says `SKIPPED` otherwise. Not part of `cargo test`. Run:
//! `PCITRACK_PLACEMENT_PYTHON=... PCITRACK_FLEET_HOSTS=100,500 cargo bench --workspace
//! --locked --bench fleet`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use pcitrack_model::{Assessment, DevType, Device, PciAddress};
use pcitrack_placement::{Auth, ClientConfig, PciView, PlacementClient, ReportInput, Reporter};
use pcitrack_placement_harness::{Placement, Postgres};
use pcitrack_tracker::{
    CandidateRequest, DefaultCleanup, DeviceFilter, Profile, TrackedDevice, Tracker, TrackerError,
};
use serde_json::{Value, json};
use uuid::Uuid;

const PFS: u8 = 16;
const VFS: u16 = 16;
const RC: &str = "CUSTOM_VF";
const TRAIT: &str = "CUSTOM_FLEET";
const SCARCE_RC: &str = "CUSTOM_SCARCE";
/// Units of the scarce class the schedulers race for, schedulers, and rounds.
const SCARCE_UNITS: u16 = 4;
const SCHEDULERS: usize = 8;
const SCHEDULER_ROUNDS: usize = 5;
/// Hosts reported one at a time on a quiet Placement before the threaded load.
const ALONE: usize = 5;

/// PLACEMENT.md's "Scale figures": hosts, report per host (s), Nova-style query (s), plain
/// `RC:2` (s), claim (s; `None`: not measured).
const PLACEMENT_MD: [(usize, f64, f64, f64, Option<f64>); 3] = [
    (100, 1.1, 0.52, 0.35, None),
    (500, 1.1, 2.14, 1.62, Some(0.10)),
    (1000, 1.3, 5.9, 4.2, Some(0.12)),
];

fn main() {
    let Some(python) = pcitrack_placement_harness::python("fleet benchmark") else {
        return;
    };
    let Some(pg) = Postgres::start() else {
        println!("SKIPPED fleet benchmark: no PostgreSQL");
        return;
    };
    let sizes = env_list("PCITRACK_FLEET_HOSTS", "100");
    let threads = env_list("PCITRACK_FLEET_THREADS", "4")[0].max(1);
    let samples = env_list("PCITRACK_FLEET_SAMPLES", "5")[0].max(1);
    let placement = Placement::start_postgres(&python, &pg, 4);
    let client = PlacementClient::new(ClientConfig {
        auth: Auth::Token("admin".into()),
        endpoint_override: Some(placement.url().to_string()),
        timeout: Duration::from_secs(600),
    });
    println!(
        "fleet: Placement 16.0.0, 4 workers, PostgreSQL; hosts of {PFS} PF providers x {VFS} \
         VFs; sizes {sizes:?}; {threads} load threads; {samples} samples per query"
    );

    let mut rows = Vec::new();
    let mut loaded = 0;
    for &n in &sizes {
        let started = Instant::now();
        let load = load_hosts(&client, loaded..n, threads);
        loaded = n.max(loaded);
        let providers = placement.get("/resource_providers")["resource_providers"]
            .as_array()
            .map_or(0, Vec::len);
        println!(
            "{n} hosts ({providers} providers) loaded; {} new hosts in {:.1} s",
            load.reported,
            started.elapsed().as_secs_f64()
        );
        let nova_query = format!(
            "/allocation_candidates?resources_a1={RC}:1&required_a1={TRAIT}&\
             resources_a2={RC}:1&required_a2={TRAIT}&group_policy=none&limit=1000"
        );
        let (nova, nova_found) = query(&client, &nova_query, samples);
        let (plain, plain_found) = query(
            &client,
            &format!("/allocation_candidates?resources={RC}:2"),
            samples,
        );
        let claim = claims(&client, samples);
        println!(
            "  Nova-style query {:.3} s ({nova_found} candidates), plain {:.3} s \
             ({plain_found}), claim {:.3} s",
            nova.as_secs_f64(),
            plain.as_secs_f64(),
            claim.as_secs_f64()
        );
        rows.push(Row {
            hosts: n,
            providers,
            load,
            nova,
            plain,
            claim,
        });
    }

    let race = schedulers(&client);
    print_table(&rows, &race);
    assert_eq!(
        race.handed_twice, 0,
        "the host-side claim gave a device to two consumers"
    );
}

/// `name`'s comma-separated numbers, else `default`'s.
fn env_list(name: &str, default: &str) -> Vec<usize> {
    let text = std::env::var(name).unwrap_or_else(|_| default.to_string());
    let list: Vec<usize> = text
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .unwrap_or_else(|e| panic!("{name}={text:?}: {s:?} is not a number: {e}"))
        })
        .collect();
    assert!(!list.is_empty(), "{name} is empty");
    list
}

fn median(mut v: Vec<Duration>) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    v[v.len() / 2]
}

fn host_name(i: usize) -> String {
    format!("fleet-{i:05}")
}

/// The devices a `[pci] device_spec` entry matching the VFs with `resource_class` and
/// `traits` would give: `pfs` PFs (not themselves reported) with `vfs` VFs each, tagged.
fn assessments(pfs: u8, vfs: u16, class: &str) -> Vec<Assessment> {
    let mut out = Vec::new();
    for p in 0..pfs {
        let bus = 0x10 + 2 * p;
        let pf = PciAddress::new(0, bus, 0, 0).expect("PF address");
        for k in 0..vfs {
            let a = PciAddress::new(0, bus + 1, (k / 8) as u8, (k % 8) as u8).expect("VF address");
            let mut d = Device::new(a, 0x8086, 0x154c, DevType::Vf);
            d.parent_addr = Some(pf);
            d.vf_index = Some(k);
            let mut a = Assessment::assignable(d);
            a.tags.insert("resource_class".into(), class.into());
            a.tags.insert("traits".into(), "fleet".into());
            a.decided_by = "fleet".into();
            out.push(a);
        }
    }
    out
}

/// The tracked devices of a fresh host (what the agent hands its reporter after the first
/// reconcile).
fn tracked(assessed: &[Assessment]) -> Vec<TrackedDevice> {
    assessed
        .iter()
        .map(|a| {
            TrackedDevice::new(Profile {
                device: a.device.clone(),
                tags: a.tags.clone().into(),
                remote_managed: a.remote_managed,
                decided_by: a.decided_by.clone(),
                parent_ifname: None,
            })
        })
        .collect()
}

fn input(host: String, devices: Vec<TrackedDevice>) -> ReportInput {
    ReportInput {
        host,
        device_spec: Vec::new(),
        devices,
        known_uuids: BTreeMap::new(),
        root_uuid: None,
        adopt_root: false,
    }
}

/// Reports `input` as the agent's reporter thread does; the time, the calls and the view.
fn report(reporter: &mut Reporter, input: &ReportInput) -> (Duration, u32, PciView) {
    let started = Instant::now();
    let outcome = reporter
        .report(input, &|_, _| {})
        .unwrap_or_else(|e| panic!("reporting {}: {e}", input.host));
    (
        started.elapsed(),
        outcome.calls,
        PciView::clone(&outcome.view),
    )
}

#[derive(Default)]
struct Load {
    reported: usize,
    alone: Vec<Duration>,
    loaded: Vec<Duration>,
    calls: Vec<u32>,
    unchanged: Vec<Duration>,
}

/// Reports hosts `range`: the first [`ALONE`] one at a time, the rest from `threads`
/// threads; then reports a few of them again with nothing changed (no call).
fn load_hosts(client: &PlacementClient, range: std::ops::Range<usize>, threads: usize) -> Load {
    let devices = tracked(&assessments(PFS, VFS, "vf"));
    let mut load = Load::default();
    let alone_end = (range.start + ALONE).min(range.end);
    for i in range.start..alone_end {
        let mut reporter = Reporter::new(client.clone());
        let host = input(host_name(i), devices.clone());
        let (t, calls, _) = report(&mut reporter, &host);
        load.alone.push(t);
        load.calls.push(calls);
        if i + 3 > alone_end {
            let (t, calls, _) = report(&mut reporter, &host);
            assert_eq!(calls, 0, "a report with nothing changed made {calls} calls");
            load.unchanged.push(t);
        }
    }
    let next = AtomicUsize::new(alone_end);
    let times = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= range.end {
                        return;
                    }
                    let mut reporter = Reporter::new(client.clone());
                    let (t, calls, _) =
                        report(&mut reporter, &input(host_name(i), devices.clone()));
                    times.lock().unwrap().push((t, calls));
                }
            });
        }
    });
    for (t, calls) in times.into_inner().unwrap() {
        load.loaded.push(t);
        load.calls.push(calls);
    }
    load.reported = range.len();
    load
}

/// `samples` runs of a GET; the median and how many allocation requests came back.
fn query(client: &PlacementClient, path: &str, samples: usize) -> (Duration, usize) {
    let mut times = Vec::new();
    let mut found = 0;
    for _ in 0..samples {
        let started = Instant::now();
        let answer = client
            .request("GET", path, None)
            .unwrap_or_else(|e| panic!("{e}"));
        times.push(started.elapsed());
        found = answer["allocation_requests"].as_array().map_or(0, Vec::len);
    }
    (median(times), found)
}

/// `PUT /allocations/{consumer}` of the allocation request `candidate`.
fn allocate(client: &PlacementClient, consumer: Uuid, candidate: &Value) -> Result<(), String> {
    let body = json!({
        "allocations": candidate["allocations"],
        "project_id": "6b1a5f2c4b0d4f5e9c8a7b6d5e4f3a2b",
        "user_id": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        "consumer_generation": null,
        "consumer_type": "INSTANCE",
    });
    client
        .request("PUT", &format!("/allocations/{consumer}"), Some(&body))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn deallocate(client: &PlacementClient, consumer: Uuid) {
    client
        .request("DELETE", &format!("/allocations/{consumer}"), None)
        .unwrap_or_else(|e| panic!("{e}"));
}

/// `samples` claims of one VF, each on a candidate of its own, timed; deleted afterwards.
fn claims(client: &PlacementClient, samples: usize) -> Duration {
    let answer = client
        .request(
            "GET",
            &format!("/allocation_candidates?resources={RC}:1&limit={}", samples),
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let candidates = answer["allocation_requests"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut times = Vec::new();
    for candidate in &candidates {
        let consumer = Uuid::new_v4();
        let started = Instant::now();
        allocate(client, consumer, candidate).unwrap_or_else(|e| panic!("claim: {e}"));
        times.push(started.elapsed());
        deallocate(client, consumer);
    }
    median(times)
}

#[derive(Default)]
struct Race {
    rounds: usize,
    accepted: usize,
    capacity: usize,
    over_allocated_rounds: usize,
    over_units: u64,
    granted: usize,
    refused: usize,
    handed_twice: usize,
}

/// [`SCHEDULERS`] threads race for the [`SCARCE_UNITS`] units of one more host's
/// `CUSTOM_SCARCE` provider, [`SCHEDULER_ROUNDS`] times; Placement's over-allocations
/// counted, then every accepted consumer claims on the host's tracker as the agent does.
fn schedulers(client: &PlacementClient) -> Race {
    let assessed = assessments(1, SCARCE_UNITS, "scarce");
    let mut tracker = Tracker::in_memory().expect("an in-memory tracker");
    tracker
        .sync(&assessed, &DefaultCleanup)
        .expect("syncing the scarce host");
    let devices = tracker
        .devices(&DeviceFilter::default())
        .expect("the scarce host's devices");
    let mut reporter = Reporter::new(client.clone());
    let (_, _, view) = report(&mut reporter, &input("fleet-scarce".into(), devices));
    let rp = view.providers[0].uuid;
    let tracker = Mutex::new(tracker);
    let mut race = Race::default();
    for round in 0..SCHEDULER_ROUNDS {
        race.rounds += 1;
        race.capacity += usize::from(SCARCE_UNITS);
        let barrier = Barrier::new(SCHEDULERS);
        let accepted: Vec<Uuid> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..SCHEDULERS)
                .map(|k| {
                    let barrier = &barrier;
                    s.spawn(move || schedule(client, barrier, k))
                })
                .collect();
            hs.into_iter().filter_map(|h| h.join().unwrap()).collect()
        });
        race.accepted += accepted.len();
        let usages = client
            .request("GET", &format!("/resource_providers/{rp}/usages"), None)
            .unwrap_or_else(|e| panic!("{e}"));
        let used = usages["usages"][SCARCE_RC].as_u64().unwrap_or(0);
        if used > u64::from(SCARCE_UNITS) {
            race.over_allocated_rounds += 1;
            race.over_units += used - u64::from(SCARCE_UNITS);
        }
        // The instances land on the host and claim what Placement gave them, concurrently,
        // each through the tracker's lock as the agent's API does.
        let results: Vec<(Uuid, Result<Vec<PciAddress>, TrackerError>)> = std::thread::scope(|s| {
            let hs: Vec<_> = accepted
                .iter()
                .map(|&consumer| {
                    let (tracker, view) = (&tracker, &view);
                    s.spawn(move || (consumer, claim_on_host(client, tracker, view, consumer)))
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut given = BTreeSet::new();
        for (consumer, result) in &results {
            match result {
                Ok(addresses) => {
                    race.granted += 1;
                    for a in addresses {
                        if !given.insert(*a) {
                            race.handed_twice += 1;
                            eprintln!("round {round}: {a} handed twice (to {consumer} too)");
                        }
                    }
                }
                Err(TrackerError::TooFewFree { .. }) => race.refused += 1,
                Err(e) => panic!("round {round}: the claim of {consumer} failed: {e}"),
            }
        }
        let mut t = tracker.lock().unwrap();
        for (consumer, result) in &results {
            deallocate(client, *consumer);
            if result.is_ok() {
                t.free(&consumer.to_string()).expect("freeing a claim");
            }
        }
    }
    if race.refused as u64 != race.over_units {
        eprintln!(
            "note: {} claim(s) refused for {} unit(s) Placement over-allocated",
            race.refused, race.over_units
        );
    }
    race
}

/// One scheduler: asks for a candidate of one `CUSTOM_SCARCE` unit and allocates it,
/// retrying on Placement's 409 (as Nova's scheduler tries the next alternate) until it holds
/// one or no candidate is left. The consumer, when Placement accepted it.
fn schedule(client: &PlacementClient, barrier: &Barrier, k: usize) -> Option<Uuid> {
    let consumer = Uuid::new_v4();
    barrier.wait();
    for _ in 0..10 {
        let answer = client
            .request(
                "GET",
                &format!("/allocation_candidates?resources={SCARCE_RC}:1&limit=10"),
                None,
            )
            .unwrap_or_else(|e| panic!("{e}"));
        let candidates = answer["allocation_requests"].as_array()?.clone();
        if candidates.is_empty() {
            return None;
        }
        if allocate(client, consumer, &candidates[k % candidates.len()]).is_ok() {
            return Some(consumer);
        }
    }
    None
}

/// The agent's claim by consumer: the consumer's allocations read back from Placement, the
/// allocated providers' devices (the reporter's view) as candidates, `Tracker::claim_among`
/// for exactly the allocated counts, all or nothing.
fn claim_on_host(
    client: &PlacementClient,
    tracker: &Mutex<Tracker<pcitrack_tracker::SqliteStore>>,
    view: &PciView,
    consumer: Uuid,
) -> Result<Vec<PciAddress>, TrackerError> {
    let allocations = client
        .allocations(consumer)
        .unwrap_or_else(|e| panic!("{e}"));
    let requests: Vec<CandidateRequest> = view
        .allocated_here(&allocations)
        .into_iter()
        .map(|a| CandidateRequest {
            candidates: a.devices,
            count: a.count,
            request_id: Some(a.provider),
        })
        .collect();
    let claimed = tracker
        .lock()
        .unwrap()
        .claim_among(&consumer.to_string(), &requests)?;
    Ok(claimed.iter().map(|c| c.address).collect())
}

struct Row {
    hosts: usize,
    providers: usize,
    load: Load,
    nova: Duration,
    plain: Duration,
    claim: Duration,
}

fn print_table(rows: &[Row], race: &Race) {
    let s = |d: Duration| format!("{:.3} s", d.as_secs_f64());
    println!();
    println!(
        "| hosts | providers | report one host, alone / under load (calls) | unchanged | \
         Nova-style query (2 VFs, trait, limit 1000) | plain `{RC}:2` | claim | \
         PLACEMENT.md (report / Nova-style / plain / claim) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in rows {
        let theirs = PLACEMENT_MD
            .iter()
            .find(|t| t.0 == r.hosts)
            .map_or("-".to_string(), |t| {
                format!(
                    "~{} s / {} s / {} s / {}",
                    t.1,
                    t.2,
                    t.3,
                    t.4.map_or("-".into(), |c| format!("{c} s"))
                )
            });
        println!(
            "| {} | {} | {} / {} ({}) | {} | {} | {} | {} | {} |",
            r.hosts,
            r.providers,
            s(median(r.load.alone.clone())),
            if r.load.loaded.is_empty() {
                "-".to_string()
            } else {
                s(median(r.load.loaded.clone()))
            },
            r.load.calls.iter().max().copied().unwrap_or(0),
            s(median(r.load.unchanged.clone())),
            s(r.nova),
            s(r.plain),
            s(r.claim),
            theirs
        );
    }
    // Beyond the largest size measured, a straight line through the last two (the query
    // time grows about linearly with the providers in PLACEMENT.md's figures).
    if let [.., a, b] = rows
        && b.hosts < 1000
        && b.hosts > a.hosts
    {
        let at = |ya: Duration, yb: Duration| {
            let slope = (yb.as_secs_f64() - ya.as_secs_f64()) / (b.hosts - a.hosts) as f64;
            yb.as_secs_f64() + slope * (1000 - b.hosts) as f64
        };
        println!(
            "| 1000 (extrapolated from {} and {}, not measured) | 17000 | - | - | {:.2} s | \
             {:.2} s | - | ~1.3 s / 5.9 s / 4.2 s / 0.12 s |",
            a.hosts,
            b.hosts,
            at(a.nova, b.nova),
            at(a.plain, b.plain)
        );
    }
    println!();
    println!(
        "concurrent schedulers: {SCHEDULERS} threads x {} rounds for the last {SCARCE_UNITS} \
         units of {SCARCE_RC}: Placement accepted {} consumers for {} units; usage above total \
         in {} round(s) (+{} units); host-side claims: {} granted, {} refused as \
         over-allocated, {} device(s) handed twice",
        race.rounds,
        race.accepted,
        race.capacity,
        race.over_allocated_rounds,
        race.over_units,
        race.granted,
        race.refused,
        race.handed_twice
    );
}
