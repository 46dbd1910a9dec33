//! Issue 13, "Faults, each a test": Placement answering 500s, 409s and slowly, through the
//! agent binary with a `FaultProxy` (from `pcitrack-placement-harness`) between the agent and
//! a real Placement 16.0.0 on SQLite. In each, the local API (devices, claims by spec,
//! allocate, free) answers within a few seconds while Placement misbehaves, `/v1/health` and
//! `/metrics` say what is behind, and once Placement behaves the agent converges: the
//! providers in Placement are exactly those `GET /v1/placement` reports (same uuids, none
//! twice, nothing else in Placement), with inventories equal to the device counts.
//!
//! Beside them, regressions a newcomer's bad input found: a `placement_consumer` that is not
//! a UUID, a `valid_interfaces` keystoneauth does not know.
//!
//! The tests print `SKIPPED` and pass when `PCITRACK_PLACEMENT_PYTHON` is unset (`.ci/run`
//! sets it, with `PCITRACK_REQUIRE_PLACEMENT`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pcitrack::client::Client;
use pcitrack_discovery::fixture::FakeSysfs;
use pcitrack_placement_harness::{Fault, FaultProxy, Placement};
use serde_json::{Value, json};

mod common;
use common::daemon::Daemon;

const T: Duration = Duration::from_secs(120);
/// The longest a local call may take while Placement misbehaves. Not a performance figure:
/// an agent that waited for Placement would take the proxy's delay or the client's timeout
/// times the retries, or hang.
const LOCAL: Duration = Duration::from_secs(5);
const HOST: &str = "cn-faults";
/// An Intel PF whose two VFs are reported on the PF's provider.
const PF: &str = "0000:3b:00.0";
/// A one-time-use GPU (type-PCI).
const GPU: &str = "0000:5e:00.0";
/// A second GPU, hot-plugged while Placement misbehaves.
const GPU2: &str = "0000:5f:00.0";
const SPECS: [&str; 2] = [
    r#"{"vendor_id": "8086", "product_id": "154c", "resource_class": "nic-vf", "traits": "fast"}"#,
    r#"{"vendor_id": "10de", "one_time_use": "true", "resource_class": "gpu", "traits": "big"}"#,
];
const GPU_SPEC: &str = r#"{"vendor_id": "10de", "product_id": "1eb8"}"#;
const VF_SPEC: &str = r#"{"vendor_id": "8086", "product_id": "154c"}"#;
/// The GPU providers' traits, as Nova 34's translator gives them (owner trait aside).
const GPU_TRAITS: [&str; 3] = [
    "COMPUTE_MANAGED_PCI_DEVICE",
    "CUSTOM_BIG",
    "HW_PCI_ONE_TIME_USE",
];

fn host() -> FakeSysfs {
    let sysfs = FakeSysfs::new();
    sysfs.add_pf_with_vfs(PF, 0x8086, 0x1572, 0x154c, 2);
    sysfs.add_device(GPU, 0x10de, 0x1eb8, 0x030000);
    sysfs
}

/// Reporting to `url` with noauth2's admin token, each call bounded by `timeout_secs`.
fn config(url: &str, timeout_secs: u64) -> String {
    let specs = SPECS
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "[pci]\nreport_in_placement = true\ndevice_spec = [{specs}]\n\n[placement]\n\
         auth_type = \"admin_token\"\ntoken = \"admin\"\nendpoint_override = \"{url}\"\n\
         host = \"{HOST}\"\ntimeout_secs = {timeout_secs}\n"
    )
}

fn rp_name(address: &str) -> String {
    format!("{HOST}_{}", address.to_uppercase())
}

/// The agent, its Placement and the proxy between them, reporting in step.
struct World {
    placement: Placement,
    proxy: FaultProxy,
    d: Daemon,
}

fn start(test: &str, timeout_secs: u64) -> Option<World> {
    start_with(test, timeout_secs, "")
}

/// [`start`] with `agent` lines (e.g. `resync_interval_secs = 2\n`) ahead of the
/// configuration, still in `[agent]`.
fn start_with(test: &str, timeout_secs: u64, agent: &str) -> Option<World> {
    let python = pcitrack_placement_harness::python(test)?;
    let placement = Placement::start_sqlite(&python);
    let proxy = FaultProxy::start(placement.url());
    let d = Daemon::start(
        host(),
        &format!("{agent}{}", config(proxy.url(), timeout_secs)),
    );
    assert!(
        d.wait_for(T, |d| status(d)["state"] == "in_step"),
        "{}\n{}",
        status(&d),
        d.log()
    );
    Some(World {
        placement,
        proxy,
        d,
    })
}

fn status(d: &Daemon) -> Value {
    d.get("/v1/health")["placement"].clone()
}

fn metric(d: &Daemon, name: &str) -> f64 {
    let r = d.client.get("/metrics").unwrap();
    String::from_utf8_lossy(&r.body)
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

const FAILURES: &str = "pcitrack_placement_reports_total{result=\"failure\"}";
const CONFLICTS: &str = "pcitrack_placement_conflicts_total";

/// One local call (`POST` with a body, else `GET`) on a thread of its own: its status and
/// body, or a failure naming the call when it takes longer than [`LOCAL`] (the agent
/// waited for Placement).
fn local(d: &Daemon, path: &str, body: Option<Value>) -> (u16, Value) {
    let socket = d.client.socket().to_path_buf();
    let owned = path.to_string();
    let (tx, rx) = mpsc::channel();
    let started = Instant::now();
    std::thread::spawn(move || {
        let client = Client::new(socket);
        let r = match &body {
            Some(b) => client.post(&owned, b),
            None => client.get(&owned),
        };
        let _ = tx.send(r.map(|r| {
            (
                r.status,
                serde_json::from_slice(&r.body).unwrap_or(Value::Null),
            )
        }));
    });
    let answer = rx.recv_timeout(LOCAL).unwrap_or_else(|_| {
        panic!(
            "{path}: no answer within {LOCAL:?}: the agent waits for Placement\n{}",
            d.log()
        )
    });
    let answer = answer.unwrap_or_else(|e| panic!("{path}: {e:#}"));
    assert!(started.elapsed() < LOCAL, "{path}: {:?}", started.elapsed());
    answer
}

/// Checks the local API answers while Placement misbehaves: devices, pools, health, and a
/// claim by spec of a VF freed again.
fn serves_locally(d: &Daemon, round: u32) {
    let (s, devices) = local(d, "/v1/devices", None);
    assert_eq!(s, 200, "{devices}");
    assert!(!devices.as_array().unwrap().is_empty());
    let (s, health) = local(d, "/v1/health", None);
    assert_eq!(s, 200, "{health}");
    let (s, pools) = local(d, "/v1/pools", None);
    assert_eq!(s, 200, "{pools}");
    let instance = format!("vm-local-{round}");
    let (s, v) = local(
        d,
        "/v1/claim",
        Some(json!({"instance": instance, "spec": VF_SPEC})),
    );
    assert_eq!(s, 200, "claim by spec: {v}");
    let (s, v) = local(d, "/v1/free", Some(json!({"instance": instance})));
    assert_eq!(s, 200, "free: {v}");
}

/// Claims, allocates and frees the GPU at `address`'s spec for `instance` (a one-time-use
/// device: its provider gets `reserved = total` afterwards), each call within [`LOCAL`].
fn use_gpu_once(d: &Daemon, instance: &str) -> String {
    let (s, v) = local(
        d,
        "/v1/claim",
        Some(json!({"instance": instance, "spec": GPU_SPEC})),
    );
    assert_eq!(s, 200, "{v}");
    let address = v.to_string();
    let (s, v) = local(d, "/v1/allocate", Some(json!({"instance": instance})));
    assert_eq!(s, 200, "{v}");
    let (s, v) = local(d, "/v1/free", Some(json!({"instance": instance})));
    assert_eq!(s, 200, "{v}");
    address
}

/// Every resource provider in Placement by name: uuid, parent, inventories, traits.
fn placement_providers(p: &Placement) -> BTreeMap<String, Value> {
    let all = p.get("/resource_providers");
    let mut out = BTreeMap::new();
    for rp in all["resource_providers"].as_array().unwrap() {
        let name = rp["name"].as_str().unwrap().to_string();
        let uuid = rp["uuid"].as_str().unwrap();
        let inventories = p.get(&format!("/resource_providers/{uuid}/inventories"));
        let traits: BTreeSet<String> =
            p.get(&format!("/resource_providers/{uuid}/traits"))["traits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_string())
                .collect();
        let row = json!({"uuid": uuid, "parent": rp["parent_provider_uuid"],
                         "inventories": inventories["inventories"], "traits": traits});
        assert!(
            out.insert(name.clone(), row).is_none(),
            "{name} twice in Placement: {all:#}"
        );
    }
    out
}

/// The agent converged to the host's state: in step, no error, the providers it reports
/// are the PF's and `gpus`' (with those `reserved`), and Placement holds exactly the root
/// and those providers (same uuids; nothing more, nothing twice), with the inventories and
/// traits reported and the device counts. Returns Placement's providers.
fn converged(w: &World, gpus: &[(&str, u32)]) -> BTreeMap<String, Value> {
    let done = |d: &Daemon| {
        let s = status(d);
        s["state"] == "in_step" && s["last_error"].is_null() && s["pending_changes"] == 0
    };
    let mut want: BTreeMap<String, Option<u32>> = [(rp_name(PF), None)].into();
    want.extend(gpus.iter().map(|(a, r)| (rp_name(a), Some(*r))));
    // The reported view is the host's now (a status still "in_step" from before the last
    // change is not convergence).
    let current = |shown: &Value| {
        let reported: BTreeMap<String, Option<u32>> = shown["reported"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .map(|p| {
                        let gpu = &p["inventories"]["CUSTOM_GPU"];
                        let reserved = (!gpu.is_null())
                            .then(|| u32::try_from(gpu["reserved"].as_u64().unwrap_or(0)).unwrap());
                        (p["name"].as_str().unwrap().to_string(), reserved)
                    })
                    .collect()
            })
            .unwrap_or_default();
        shown["in_step"] == true && reported == want
    };
    let mut last = Value::Null;
    let ok = w.d.wait_for(T, |d| {
        if done(d) {
            last = d.get("/v1/placement");
            if current(&last) {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
        false
    });
    assert!(
        ok,
        "never converged to {want:?}: {}\n{last:#}\n{}",
        status(&w.d),
        w.d.log()
    );
    let held = placement_providers(&w.placement);
    let root = &held[HOST];
    assert!(root["parent"].is_null(), "{held:#?}");
    let reported = last["reported"].as_array().unwrap();
    let mut names: BTreeSet<String> = [HOST.to_string()].into();
    for p in reported {
        let name = p["name"].as_str().unwrap();
        assert!(names.insert(name.to_string()), "{name} reported twice");
        let h = held
            .get(name)
            .unwrap_or_else(|| panic!("{name} reported, not in Placement: {held:#?}"));
        assert_eq!(h["uuid"], p["uuid"], "{name}");
        assert_eq!(h["parent"], root["uuid"], "{name}");
        for (rc, i) in p["inventories"].as_object().unwrap() {
            let hi = &h["inventories"][rc];
            assert_eq!(hi["total"], i["total"], "{name} {rc}: {h:#}");
            assert_eq!(hi["max_unit"], i["max_unit"], "{name} {rc}: {h:#}");
        }
        assert_eq!(
            h["inventories"].as_object().unwrap().len(),
            p["inventories"].as_object().unwrap().len(),
            "{name}: {h:#}"
        );
        assert_eq!(h["traits"], p["traits"], "{name}");
    }
    assert_eq!(
        held.keys().cloned().collect::<BTreeSet<_>>(),
        names,
        "Placement holds other providers than the agent reports"
    );
    assert_inventories(&held, gpus);
    held
}

/// Inventories equal the device counts: the PF's two VFs, one unit per GPU, `reserved`
/// as given.
fn assert_inventories(held: &BTreeMap<String, Value>, gpus: &[(&str, u32)]) {
    let vf = &held[&rp_name(PF)]["inventories"]["CUSTOM_NIC_VF"];
    assert_eq!(
        (vf["total"].as_u64(), vf["max_unit"].as_u64()),
        (Some(2), Some(2)),
        "{held:#?}"
    );
    let mut want = vec![rp_name(PF)];
    for (gpu, reserved) in gpus {
        let inv = &held[&rp_name(gpu)]["inventories"]["CUSTOM_GPU"];
        assert_eq!(inv["total"], 1, "{gpu}: {held:#?}");
        assert_eq!(inv["max_unit"], 1, "{gpu}: {held:#?}");
        assert_eq!(inv["reserved"], *reserved, "{gpu}: {held:#?}");
        want.push(rp_name(gpu));
    }
    want.push(HOST.to_string());
    assert_eq!(
        held.keys().cloned().collect::<BTreeSet<_>>(),
        want.into_iter().collect::<BTreeSet<_>>()
    );
}

/// Waits (polling slowly: each look reads the agent's health) until `cond` holds.
fn wait(d: &Daemon, what: &str, mut cond: impl FnMut(&Daemon) -> bool) {
    let ok = d.wait_for(T, |d| {
        if cond(d) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
        false
    });
    assert!(ok, "{what}: {}\n{}", status(d), d.log());
}

/// Someone else adds `CUSTOM_OUTSIDE_WRITER` to the GPU provider's traits, moving its
/// generation. Returns the provider's uuid.
fn outside_writer_adds_a_trait(placement: &Placement) -> String {
    let before = placement_providers(placement);
    let gpu_uuid = before[&rp_name(GPU)]["uuid"].as_str().unwrap().to_string();
    let (s, v) = placement.request("PUT", "/traits/CUSTOM_OUTSIDE_WRITER", None);
    assert!(s == 201 || s == 204, "{s} {v}");
    let generation =
        placement.get(&format!("/resource_providers/{gpu_uuid}"))["generation"].clone();
    let mut traits: Vec<Value> = before[&rp_name(GPU)]["traits"].as_array().unwrap().clone();
    traits.push(json!("CUSTOM_OUTSIDE_WRITER"));
    let (s, v) = placement.request(
        "PUT",
        &format!("/resource_providers/{gpu_uuid}/traits"),
        Some(&json!({"resource_provider_generation": generation, "traits": traits})),
    );
    assert_eq!(s, 200, "{v}");
    gpu_uuid
}

fn hot_plug_gpu2(d: &Daemon) {
    d.sysfs.add_device(GPU2, 0x10de, 0x1eb8, 0x030000);
    d.uevent("add", GPU2);
    wait(d, "GPU2 tracked", |d| {
        local(d, "/v1/devices", None)
            .1
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["address"] == GPU2)
    });
}

#[test]
fn placement_answering_500s_never_blocks_the_agent_which_converges_after() {
    const TEST: &str =
        "placement_faults::placement_answering_500s_never_blocks_the_agent_which_converges_after";
    let Some(w) = start(TEST, 5) else {
        return;
    };
    let d = &w.d;
    let failures = metric(d, FAILURES);

    // Every request gets a 500 until the fault is lifted.
    w.proxy.set(Fault::Fail {
        status: 500,
        count: u32::MAX,
    });
    // Changes while it fails: a device arrives, a one-time-use GPU is used (reserved).
    hot_plug_gpu2(d);
    let used = use_gpu_once(d, "vm-gpu");
    wait(d, "pending with the 500 named", |d| {
        let s = status(d);
        s["state"] == "pending"
            && s["pending_changes"].as_u64().unwrap_or(0) > 0
            && s["last_error"].as_str().is_some_and(|e| e.contains("500"))
    });
    let health = local(d, "/v1/health", None).1;
    assert_eq!(health["status"], "degraded", "{health:#}");
    assert_eq!(health["ok"], true, "{health:#}");
    // The reporter keeps retrying (backoff) while the local API keeps answering.
    let mut round = 0;
    wait(d, "two failures more", |d| {
        round += 1;
        serves_locally(d, round);
        metric(d, FAILURES) >= failures + 2.0
    });
    assert!(metric(d, "pcitrack_placement_pending_changes") >= 1.0);
    assert!(
        w.proxy.requests().len() >= 2,
        "the reporter tried: {:?}",
        w.proxy.requests()
    );

    w.proxy.set(Fault::None);
    let reserved = |a: &str| u32::from(used.contains(a));
    converged(&w, &[(GPU, reserved(GPU)), (GPU2, reserved(GPU2))]);
    assert_eq!(reserved(GPU) + reserved(GPU2), 1, "{used}");
    assert_eq!(local(d, "/v1/health", None).1["status"], "ok");
}

/// Nova sets a PCI provider's whole trait set (`pci_placement_translator.py`
/// `PciResourceProvider.update_provider_tree`: `provider_tree.update_traits(self.name,
/// self.traits)`, which replaces the set, `provider_tree.py` `_Provider.update_traits`), so
/// a trait an outside writer added to a provider pcitrack reports is removed at the next
/// report that touches the provider, as Nova would.
#[test]
fn placement_answering_409s_makes_the_agent_re_read_and_converge() {
    const TEST: &str =
        "placement_faults::placement_answering_409s_makes_the_agent_re_read_and_converge";
    let Some(w) = start(TEST, 5) else {
        return;
    };
    let d = &w.d;
    let conflicts = metric(d, CONFLICTS);

    // An outside writer moves the GPU provider's generation: a trait added to it.
    let gpu_uuid = outside_writer_adds_a_trait(&w.placement);

    // The GPU used once: the reporter writes its inventory with the generation it cached,
    // Placement answers 409, the reporter re-reads and sets inventories and traits.
    let _ = use_gpu_once(d, "vm-gpu");
    let held = converged(&w, &[(GPU, 1)]);
    let gpu_traits: BTreeSet<String> = held[&rp_name(GPU)]["traits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .filter(|t| t != pcitrack_placement::OWNER_TRAIT)
        .collect();
    assert_eq!(
        gpu_traits,
        GPU_TRAITS.iter().map(|t| t.to_string()).collect(),
        "the outside writer's trait is gone, as Nova would set the whole set"
    );
    assert_eq!(held[&rp_name(GPU)]["uuid"], gpu_uuid.as_str());
    let after_real = metric(d, CONFLICTS);
    assert!(
        after_real > conflicts,
        "Placement's own 409 counted: {after_real}"
    );

    // An injected 409 on the next write: re-read, retried, counted.
    w.proxy.set(Fault::Fail {
        status: 409,
        count: 1,
    });
    w.proxy.clear_requests();
    hot_plug_gpu2(d);
    serves_locally(d, 1);
    converged(&w, &[(GPU, 1), (GPU2, 0)]);
    assert_eq!(w.proxy.fault(), Fault::None, "the 409 was answered");
    let first = w.proxy.requests().first().cloned().unwrap();
    assert_ne!(first.0, "GET", "a cached tree: the first call is a write");
    assert!(
        metric(d, CONFLICTS) > after_real,
        "the injected 409 counted: {}",
        metric(d, CONFLICTS)
    );
}

/// A 409 to a write whose re-read then failed (another 409, a 5xx, a timeout) went
/// uncounted: the reporter added a report's conflicts to the metric only when that report
/// succeeded or failed with 409s alone.
#[test]
fn regression_a_409_whose_re_read_fails_is_still_counted_as_a_conflict() {
    const TEST: &str =
        "placement_faults::regression_a_409_whose_re_read_fails_is_still_counted_as_a_conflict";
    let Some(w) = start(TEST, 5) else {
        return;
    };
    let d = &w.d;
    let (conflicts, failures) = (metric(d, CONFLICTS), metric(d, FAILURES));
    // The write, the re-read after it, and the retry's read answer 409.
    w.proxy.set(Fault::Fail {
        status: 409,
        count: 3,
    });
    w.proxy.clear_requests();
    hot_plug_gpu2(d);
    serves_locally(d, 1);
    wait(d, "the 409s answered", |_| w.proxy.fault() == Fault::None);
    converged(&w, &[(GPU, 0), (GPU2, 0)]);
    let first = w.proxy.requests().first().cloned().unwrap();
    assert_ne!(first.0, "GET", "a cached tree: the first call is a write");
    assert!(
        metric(d, CONFLICTS) >= conflicts + 1.0,
        "the 409 to the write counted: {}",
        metric(d, CONFLICTS)
    );
    assert!(
        metric(d, FAILURES) >= failures + 2.0,
        "the 409s to the reads failed two reports: {}",
        metric(d, FAILURES)
    );
}

#[test]
fn a_slow_placement_never_blocks_local_serving_and_the_agent_converges_when_it_is_fast() {
    const TEST: &str = "placement_faults::a_slow_placement_never_blocks_local_serving_and_the_agent_converges_when_it_is_fast";
    // Each call to Placement may take 1 s; the proxy holds each request 3 s.
    let Some(w) = start(TEST, 1) else {
        return;
    };
    let d = &w.d;
    let failures = metric(d, FAILURES);
    w.proxy.set(Fault::Delay(Duration::from_secs(3)));
    w.proxy.clear_requests();

    hot_plug_gpu2(d);
    let used = use_gpu_once(d, "vm-gpu");
    // While the reporter waits on Placement (a call in flight), claims answer.
    wait(d, "a report in flight", |_| !w.proxy.requests().is_empty());
    serves_locally(d, 1);
    wait(d, "pending with a timeout", |d| {
        let s = status(d);
        s["state"] == "pending" && s["last_error"].is_string()
    });
    let mut round = 1;
    wait(d, "two timeouts", |d| {
        round += 1;
        serves_locally(d, round);
        metric(d, FAILURES) >= failures + 2.0
    });
    let error = status(d)["last_error"].as_str().unwrap().to_string();
    assert!(
        error.contains(&w.proxy.url().replace("http://", "")),
        "the error names the endpoint: {error}"
    );

    w.proxy.set(Fault::None);
    let reserved = |a: &str| u32::from(used.contains(a));
    let held = converged(&w, &[(GPU, reserved(GPU)), (GPU2, reserved(GPU2))]);
    // Requests the proxy delayed reached Placement after the agent gave up on them (a
    // create applied late, say): still nothing twice, nothing lost.
    std::thread::sleep(Duration::from_secs(4));
    let again = converged(&w, &[(GPU, reserved(GPU)), (GPU2, reserved(GPU2))]);
    assert_eq!(again, held);
}

/// `pcitrack claim --placement-consumer not-a-uuid` with no agent running said only that a
/// claim by consumer needs the agent, not that the consumer is not a UUID: the consumer is
/// now checked first (`ops::consumer_of`), on the database path as on the agent's.
#[test]
fn regression_a_consumer_that_is_not_a_uuid_is_named_so_without_an_agent() {
    let state = tempfile::tempdir().unwrap();
    let db = state.path().join("pcitrack.db");
    let out = common::command(state.path())
        .args(["claim", "--placement-consumer", "not-a-uuid", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("placement_consumer \"not-a-uuid\" is not a UUID"),
        "{err}"
    );
    // A good one still says a claim by consumer needs the agent.
    let consumer = "6f1a0c51-2b34-4c3e-9d6e-1f2a3b4c5d6e";
    let out = common::command(state.path())
        .args(["claim", "--placement-consumer", consumer, "--db"])
        .arg(&db)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("placement_consumer {consumer}: a claim by Placement consumer is answered by the running agent")),
        "{err}"
    );
}

/// `[placement] valid_interfaces = "internal,bogus"` was taken at start and could only fail
/// later, at the catalog lookup; keystoneauth refuses it when the configuration is read
/// (`keystoneauth1/loading/adapter.py` `process_conf_options`), and so does pcitrack now,
/// naming the value.
#[test]
fn regression_an_unknown_valid_interface_is_refused_naming_it() {
    let state = tempfile::tempdir().unwrap();
    let config = state.path().join("pcitrack.toml");
    for (value, refused) in [
        ("\"internal,bogus\"", Some("bogus")),
        ("[\"internalURL\"]", Some("internalURL")),
        ("\"internal, public\"", None),
        ("[\"admin\"]", None),
    ] {
        std::fs::write(
            &config,
            format!(
                "[pci]\nreport_in_placement = true\n[placement]\nauth_type = \"password\"\n\
                 auth_url = \"http://127.0.0.1:9/v3\"\nusername = \"u\"\npassword = \"p\"\n\
                 project_name = \"service\"\nuser_domain_name = \"Default\"\n\
                 project_domain_name = \"Default\"\nvalid_interfaces = {value}\n"
            ),
        )
        .unwrap();
        // `placement show` loads (and checks) the configuration before asking the agent.
        let out = common::command(state.path())
            .arg("--config")
            .arg(&config)
            .args(["placement", "show"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let message = format!(
            "[placement] valid_interfaces: {:?} is not a valid value",
            refused.unwrap_or("")
        );
        assert_eq!(err.contains(&message), refused.is_some(), "{value}: {err}");
        assert!(!out.status.success(), "{value}: no agent: {err}");
    }
}

#[test]
fn the_periodic_resync_puts_right_what_an_outside_writer_changed_on_a_quiet_host() {
    const TEST: &str = "placement_faults::the_periodic_resync_puts_right_what_an_outside_writer_changed_on_a_quiet_host";
    let Some(w) = start_with(TEST, 5, "resync_interval_secs = 2\n") else {
        return;
    };
    let (placement, proxy, d) = (&w.placement, &w.proxy, &w.d);
    // Someone else changes the GPU provider's traits; nothing changes on the host.
    let gpu_uuid = outside_writer_adds_a_trait(placement);
    // The periodic resync re-reads Placement (as Nova's resource_provider_association_refresh)
    // and sets the whole trait set again.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = placement.get(&format!("/resource_providers/{gpu_uuid}/traits"));
        let has = now["traits"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "CUSTOM_OUTSIDE_WRITER");
        if !has {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the outside writer's trait stayed on a quiet host: {now}\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        proxy
            .requests()
            .iter()
            .any(|(m, p)| m == "PUT" && p.ends_with("/traits") && p.contains(&gpu_uuid)),
        "{:?}",
        proxy.requests()
    );
}
