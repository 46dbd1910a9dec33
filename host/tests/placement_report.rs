//! Issue 13: the agent reports its PCI devices to a real OpenStack Placement (16.0.0 on
//! SQLite, from `pcitrack-placement-harness`), through the binary on fake sysfs trees: what
//! Placement holds equals the crate's view and Nova 34's translator for the same devices and
//! specs; the scheduler's query finds the host; nothing is sent when nothing changed; a used
//! one-time-use device is reserved; the provider uuids survive a restart; Placement stopped
//! mid-run never stops local serving and the agent converges when it is back; a bad
//! `[placement]` section is refused naming the key.
//!
//! The tests that need Placement print `SKIPPED` and pass when `PCITRACK_PLACEMENT_PYTHON` is
//! unset (`.ci/run` sets it, with `PCITRACK_REQUIRE_PLACEMENT`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use pcitrack_discovery::fixture::FakeSysfs;
use pcitrack_placement_harness::{FaultProxy, Placement};
use serde_json::{Value, json};

mod common;
use common::daemon::Daemon;

const T: Duration = Duration::from_secs(90);
const HOST: &str = "cn-test";
/// An Intel PF whose two VFs are reported (on the PF's provider).
const PF: &str = "0000:3b:00.0";
/// A one-time-use GPU (type-PCI).
const GPU: &str = "0000:5e:00.0";
/// A NIC with a physical_network: Neutron's, never reported.
const PHYS: &str = "0000:af:00.0";
const SPECS: [&str; 3] = [
    r#"{"vendor_id": "8086", "product_id": "154c", "resource_class": "nic-vf", "traits": "fast,HW_NIC_ACCEL_SSL"}"#,
    r#"{"vendor_id": "10de", "one_time_use": "true", "resource_class": "gpu", "traits": "big"}"#,
    r#"{"vendor_id": "15b3", "physical_network": "physnet1"}"#,
];
const GPU_SPEC: &str = r#"{"vendor_id": "10de", "product_id": "1eb8"}"#;

fn host() -> FakeSysfs {
    let sysfs = FakeSysfs::new();
    sysfs.add_pf_with_vfs(PF, 0x8086, 0x1572, 0x154c, 2);
    sysfs.add_device(GPU, 0x10de, 0x1eb8, 0x030000);
    sysfs.add_device(PHYS, 0x15b3, 0x1017, 0x020000);
    sysfs
}

fn specs() -> String {
    SPECS
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(",\n    ")
}

/// `[pci]` reporting to the Placement at `url` with noauth2's admin token.
fn config(url: &str) -> String {
    format!(
        "[pci]\nreport_in_placement = true\ndevice_spec = [\n    {}\n]\n\n[placement]\n\
         auth_type = \"admin_token\"\ntoken = \"admin\"\nendpoint_override = \"{url}\"\n\
         host = \"{HOST}\"\ntimeout_secs = 5\n",
        specs()
    )
}

fn rp_name(address: &str) -> String {
    format!("{HOST}_{}", address.to_uppercase())
}

/// The host's tree in Placement: children of the root by name, each with its uuid,
/// inventories (every field), traits and usages. Empty before the root exists.
fn tree(p: &Placement) -> BTreeMap<String, Value> {
    let roots = p.get(&format!("/resource_providers?name={HOST}"));
    let Some(root) = roots["resource_providers"].as_array().unwrap().first() else {
        return BTreeMap::new();
    };
    let root_uuid = root["uuid"].as_str().unwrap().to_string();
    let all = p.get(&format!("/resource_providers?in_tree={root_uuid}"));
    all["resource_providers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|rp| rp["uuid"] != root_uuid.as_str())
        .map(|rp| {
            let uuid = rp["uuid"].as_str().unwrap();
            assert_eq!(rp["parent_provider_uuid"], root_uuid.as_str(), "{rp}");
            let inventories = p.get(&format!("/resource_providers/{uuid}/inventories"));
            let traits = p.get(&format!("/resource_providers/{uuid}/traits"));
            let usages = p.get(&format!("/resource_providers/{uuid}/usages"));
            let traits: BTreeSet<String> = traits["traits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_string())
                .collect();
            (
                rp["name"].as_str().unwrap().to_string(),
                json!({"uuid": uuid, "inventories": inventories["inventories"],
                       "traits": traits, "usages": usages["usages"]}),
            )
        })
        .collect()
}

/// `{name: {"inventories": {rc: {total, max_unit, reserved}}, "traits": [..]}}` without
/// the owner traits (pcitrack's and Nova's): the part compared across the three sides.
fn comparable(
    providers: impl IntoIterator<Item = (String, Value, Value)>,
) -> BTreeMap<String, Value> {
    providers
        .into_iter()
        .map(|(name, inventories, traits)| {
            let inventories: BTreeMap<String, Value> = inventories
                .as_object()
                .unwrap()
                .iter()
                .map(|(rc, i)| {
                    let reserved = i.get("reserved").cloned().unwrap_or(Value::Null);
                    let reserved = if reserved.is_null() {
                        json!(0)
                    } else {
                        reserved
                    };
                    (
                        rc.clone(),
                        json!({"total": i["total"], "max_unit": i["max_unit"], "reserved": reserved}),
                    )
                })
                .collect();
            let traits: BTreeSet<String> = traits
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_string())
                .filter(|t| t != "OWNER_NOVA" && t != pcitrack_placement::OWNER_TRAIT)
                .collect();
            (name, json!({"inventories": inventories, "traits": traits}))
        })
        .collect()
}

fn held(tree: &BTreeMap<String, Value>) -> BTreeMap<String, Value> {
    comparable(
        tree.iter()
            .map(|(n, p)| (n.clone(), p["inventories"].clone(), p["traits"].clone())),
    )
}

fn placement_status(d: &Daemon) -> Value {
    d.get("/v1/health")["placement"].clone()
}

fn in_step(d: &Daemon) -> bool {
    placement_status(d)["state"] == "in_step"
}

fn post(d: &Daemon, path: &str, body: &Value) -> (u16, Value) {
    let r = d.client.post(path, body).unwrap();
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

fn metric(d: &Daemon, prefix: &str) -> Option<f64> {
    let r = d.client.get("/metrics").unwrap();
    String::from_utf8_lossy(&r.body)
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn show(d: &Daemon, args: &[&str]) -> (Option<i32>, String, String) {
    let out = common::command(&d.dir.path().join("state"))
        .arg("--config")
        .arg(d.config_path())
        .args(["placement", "show"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What Nova 34's `update_provider_tree_for_pci` reports for the agent's tracked devices and
/// the same specs (`crates/placement/tests/oracle/nova_translator.py`), or `None` without
/// Nova.
fn nova(d: &Daemon, test: &str) -> Option<BTreeMap<String, Value>> {
    let python = pcitrack_nova_oracle::python(test)?;
    let devices: Vec<Value> = d
        .get("/v1/devices")
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            json!({"address": r["address"], "vendor_id": r["vendor_id"],
                   "product_id": r["product_id"], "dev_type": r["dev_type"],
                   "parent_addr": r["parent_addr"], "status": r["status"],
                   "instance_uuid": r["instance_uuid"]})
        })
        .collect();
    let input = json!({"cases": [{
        "host": HOST,
        "root_uuid": "00000000-0000-0000-0000-000000000001",
        "device_spec": SPECS,
        "devname_address": PF,
        "devices": devices,
        "tree": [],
        "allocations": {},
    }]});
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/placement/tests/oracle/nova_translator.py");
    let answer = pcitrack_nova_oracle::run(&python, &script, &input);
    let case = &answer["cases"][0];
    assert!(case.get("error").is_none(), "Nova refused: {case}");
    Some(comparable(
        case["providers"].as_array().unwrap().iter().map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["inventory"].clone(),
                p["traits"].clone(),
            )
        }),
    ))
}

#[test]
fn the_agent_reports_what_nova_would_and_keeps_placement_in_step() {
    const TEST: &str =
        "placement_report::the_agent_reports_what_nova_would_and_keeps_placement_in_step";
    let Some(python) = pcitrack_placement_harness::python(TEST) else {
        return;
    };
    let placement = Placement::start_sqlite(&python);
    let proxy = FaultProxy::start(placement.url());
    let mut d = Daemon::start(host(), &config(proxy.url()));
    assert!(
        d.wait_for(T, in_step),
        "{}\n{}",
        placement_status(&d),
        d.log()
    );

    // Placement holds the providers Nova's rules give, pinned here...
    let first = tree(&placement);
    let expected: BTreeMap<String, Value> = [
        (
            rp_name(PF),
            json!({"inventories": {"CUSTOM_NIC_VF": {"total": 2, "max_unit": 2, "reserved": 0}},
                   "traits": ["COMPUTE_MANAGED_PCI_DEVICE", "CUSTOM_FAST", "HW_NIC_ACCEL_SSL"]}),
        ),
        (
            rp_name(GPU),
            json!({"inventories": {"CUSTOM_GPU": {"total": 1, "max_unit": 1, "reserved": 0}},
                   "traits": ["COMPUTE_MANAGED_PCI_DEVICE", "CUSTOM_BIG", "HW_PCI_ONE_TIME_USE"]}),
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(held(&first), expected, "{first:#?}");
    for p in first.values() {
        let traits = p["traits"].as_array().unwrap();
        assert!(
            traits.contains(&json!(pcitrack_placement::OWNER_TRAIT))
                && !traits.contains(&json!("OWNER_NOVA")),
            "{p}"
        );
    }
    // ... the agent's own view (GET /v1/placement) ...
    let shown = d.get("/v1/placement");
    assert_eq!(shown["in_step"], true, "{shown:#}");
    assert_eq!(shown["differences"], json!([]), "{shown:#}");
    let reported = comparable(shown["reported"].as_array().unwrap().iter().map(|p| {
        (
            p["name"].as_str().unwrap().to_string(),
            p["inventories"].clone(),
            p["traits"].clone(),
        )
    }));
    assert_eq!(reported, expected);
    for p in shown["reported"].as_array().unwrap() {
        assert_eq!(first[p["name"].as_str().unwrap()]["uuid"], p["uuid"]);
    }
    // ... and Nova 34's translator, for the same devices and specs.
    if let Some(nova) = nova(&d, TEST) {
        assert_eq!(nova, expected, "Nova 34 reports otherwise");
    }

    // The scheduler's query finds the host's providers.
    for (query, provider) in [
        ("resources=CUSTOM_GPU:1", rp_name(GPU)),
        (
            "resources=CUSTOM_NIC_VF:2&required=CUSTOM_FAST",
            rp_name(PF),
        ),
    ] {
        let c = placement.get(&format!("/allocation_candidates?{query}"));
        let uuid = first[&provider]["uuid"].as_str().unwrap();
        assert!(
            c["provider_summaries"].get(uuid).is_some()
                && !c["allocation_requests"].as_array().unwrap().is_empty(),
            "{query}: {c:#}"
        );
    }

    // A reconcile that changes nothing sends nothing.
    proxy.clear_requests();
    let (status, body) = post(&d, "/v1/reconcile", &json!({}));
    assert_eq!(status, 200, "{body}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(proxy.requests(), Vec::<(String, String)>::new());

    // A one-time-use device used once is reserved in Placement (reserved = total).
    let (s, v) = post(
        &d,
        "/v1/claim",
        &json!({"instance": "vm-1", "spec": GPU_SPEC}),
    );
    assert_eq!(s, 200, "{v}");
    let (s, v) = post(&d, "/v1/allocate", &json!({"instance": "vm-1"}));
    assert_eq!(s, 200, "{v}");
    let (s, v) = post(&d, "/v1/free", &json!({"instance": "vm-1"}));
    assert_eq!(s, 200, "{v}");
    let gpu_reserved =
        |_: &Daemon| tree(&placement)[&rp_name(GPU)]["inventories"]["CUSTOM_GPU"]["reserved"] == 1;
    assert!(
        d.wait_for(T, gpu_reserved),
        "{:#?}\n{}",
        tree(&placement),
        d.log()
    );
    let c = placement.get("/allocation_candidates?resources=CUSTOM_GPU:1");
    assert_eq!(c["allocation_requests"], json!([]), "{c:#}");

    // The provider uuids (and the root's) survive a restart: kept in the state database,
    // nothing created again, nothing refused as a foreign root.
    let before = tree(&placement);
    d.signal(rustix::process::Signal::TERM);
    assert!(d.wait_exit(T).is_some_and(|s| s.success()), "{}", d.log());
    let kept: i64 = rusqlite::Connection::open(d.db())
        .unwrap()
        .query_row(
            "SELECT count(*) FROM placement_providers WHERE root_name = ?1",
            [HOST],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(kept, 2);
    proxy.clear_requests();
    d.spawn();
    assert!(
        d.wait_for(T, |d| in_step(d)
            && placement_status(d)["last_success"].as_u64().is_some()),
        "{}\n{}",
        placement_status(&d),
        d.log()
    );
    let after = tree(&placement);
    let uuids = |t: &BTreeMap<String, Value>| {
        t.iter()
            .map(|(n, p)| (n.clone(), p["uuid"].clone()))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(uuids(&after), uuids(&before));
    assert_eq!(held(&after), held(&before));
    let written: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|(m, _)| m != "GET")
        .collect();
    assert_eq!(written, Vec::<(String, String)>::new(), "{}", d.log());

    // `pcitrack placement show`: both sides and no difference, exit 0.
    let (code, text, err) = show(&d, &[]);
    assert_eq!(code, Some(0), "{text}\n{err}");
    assert!(
        text.contains(&rp_name(GPU))
            && text.contains("CUSTOM_GPU")
            && text.contains("1/1/1")
            && text.contains("in step"),
        "{text}"
    );
    let (code, text, err) = show(&d, &["--format", "json"]);
    assert_eq!(code, Some(0), "{err}");
    let json: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["in_step"], true);
    assert_eq!(
        json["placement"].as_array().unwrap().len(),
        3,
        "root and two: {json:#}"
    );

    // Placement changed by hand: `show` lists the difference and exits 1.
    let uuid = after[&rp_name(GPU)]["uuid"].as_str().unwrap().to_string();
    let generation = placement.get(&format!("/resource_providers/{uuid}"))["generation"].clone();
    let (s, v) = placement.request(
        "PUT",
        &format!("/resource_providers/{uuid}/traits"),
        Some(&json!({"resource_provider_generation": generation,
                     "traits": ["COMPUTE_MANAGED_PCI_DEVICE", pcitrack_placement::OWNER_TRAIT]})),
    );
    assert_eq!(s, 200, "{v}");
    let (code, text, err) = show(&d, &[]);
    assert_eq!(code, Some(1), "{text}\n{err}");
    assert!(
        text.contains(&format!("set traits of {}", rp_name(GPU))),
        "{text}"
    );
}

#[test]
fn placement_stopped_mid_run_never_stops_local_serving_and_the_agent_converges() {
    const TEST: &str = "placement_report::placement_stopped_mid_run_never_stops_local_serving_and_the_agent_converges";
    let Some(python) = pcitrack_placement_harness::python(TEST) else {
        return;
    };
    let mut placement = Placement::start_sqlite(&python);
    let d = Daemon::start(host(), &config(placement.url()));
    assert!(
        d.wait_for(T, in_step),
        "{}\n{}",
        placement_status(&d),
        d.log()
    );
    let health = d.get("/v1/health");
    assert_eq!(health["status"], "ok", "{health:#}");

    placement.stop();
    // A second GPU arrives while Placement is down: discovery and claims go on.
    const GPU2: &str = "0000:5f:00.0";
    d.sysfs.add_device(GPU2, 0x10de, 0x1eb8, 0x030000);
    d.uevent("add", GPU2);
    assert!(
        d.wait_for(T, |d| d.tracked().contains(&GPU2.to_string())),
        "{}",
        d.log()
    );
    let (s, v) = post(
        &d,
        "/v1/claim",
        &json!({"instance": "vm-2", "spec": GPU_SPEC}),
    );
    assert_eq!(s, 200, "{v}");
    // Health says what is behind: degraded, but ok (the host serves locally).
    assert!(
        d.wait_for(T, |d| {
            let p = placement_status(d);
            p["state"] == "pending"
                && p["pending_changes"].as_u64().unwrap_or(0) > 0
                && p["last_error"].is_string()
        }),
        "{}\n{}",
        placement_status(&d),
        d.log()
    );
    let health = d.get("/v1/health");
    assert_eq!(health["status"], "degraded", "{health:#}");
    assert_eq!(health["ok"], true, "{health:#}");
    assert!(
        metric(&d, "pcitrack_placement_reports_total{result=\"failure\"}").unwrap_or(0.0) >= 1.0
    );
    assert!(metric(&d, "pcitrack_placement_pending_changes").unwrap_or(0.0) >= 1.0);

    // Back: the backlog is reported, nothing lost or doubled.
    placement.start_again();
    let converged = |d: &Daemon| {
        let p = placement_status(d);
        p["state"] == "in_step" && p["last_error"].is_null()
    };
    assert!(
        d.wait_for(T, converged),
        "{}\n{}",
        placement_status(&d),
        d.log()
    );
    let t = tree(&placement);
    assert_eq!(
        t.keys().cloned().collect::<Vec<_>>(),
        [rp_name(PF), rp_name(GPU), rp_name(GPU2)],
        "{t:#?}"
    );
    assert_eq!(t[&rp_name(GPU2)]["inventories"]["CUSTOM_GPU"]["total"], 1);
    assert_eq!(d.get("/v1/health")["status"], "ok");
    let last = metric(&d, "pcitrack_placement_last_success_timestamp_seconds").unwrap_or(0.0);
    assert!(last > 1.0e9, "{last}");
}

#[test]
fn a_bad_placement_section_is_refused_naming_the_key_and_a_reload_keeps_the_last_good_one() {
    // At start: refused, the key named, and the password never printed.
    let bad = format!(
        "[pci]\nreport_in_placement = true\ndevice_spec = [\n    {}\n]\n\n[placement]\n\
         auth_type = \"password\"\nauth_url = \"http://127.0.0.1:9/v3\"\n\
         password = \"s3cret-pw\"\nproject_name = \"service\"\nuser_domain_name = \"Default\"\n\
         project_domain_name = \"Default\"\n",
        specs()
    );
    let mut refused = Daemon::prepare(host(), &bad);
    refused.spawn_detached();
    let status = refused.wait_exit(T).expect("the agent refuses to start");
    assert!(!status.success());
    let log = refused.log();
    assert!(
        log.contains("[placement] auth_type = \"password\" needs username"),
        "{log}"
    );
    assert!(!log.contains("s3cret-pw"), "{log}");

    // Running against a Placement that does not answer: local serving goes on, health is
    // degraded with the error, ok stays true.
    let mut d = Daemon::start(host(), &config("http://127.0.0.1:9"));
    assert!(
        d.wait_for(T, |d| placement_status(d)["last_error"].is_string()),
        "{}\n{}",
        placement_status(&d),
        d.log()
    );
    let health = d.get("/v1/health");
    assert_eq!(health["status"], "degraded", "{health:#}");
    assert_eq!(health["ok"], true, "{health:#}");
    assert_eq!(health["placement"]["enabled"], true, "{health:#}");
    assert!(d.tracked().contains(&GPU.to_string()));

    // A reload with a bad section is refused, naming the key; the last good one stays.
    let unknown = config("http://127.0.0.1:9").replace("admin_token", "v3token");
    d.write_config(&unknown);
    d.signal(rustix::process::Signal::HUP);
    assert!(
        d.wait_for(T, |d| d.get("/v1/health")["config_error"]
            .as_str()
            .is_some_and(
                |e| e.contains("auth_type = \"v3token\" is not supported")
            )),
        "{}\n{}",
        d.get("/v1/health"),
        d.log()
    );
    let health = d.get("/v1/health");
    assert_eq!(health["ok"], false, "{health:#}");
    assert_eq!(health["placement"]["enabled"], true, "{health:#}");

    // `placement show` cannot compare (Placement unreadable): exit 2.
    let out = common::command(&d.dir.path().join("state"))
        .args(["placement", "show", "--socket"])
        .arg(d.client.socket())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
