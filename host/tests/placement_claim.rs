//! Issue 13: a claim by Placement consumer, through the agent binary against a real
//! Placement (`pcitrack-placement-harness`: openstack-placement 16.0.0 on SQLite, noauth2).
//!
//! The scheduler's side is played with Placement's own REST API: the test writes the
//! consumer's allocation (`PUT /allocations/{consumer}`) against a provider the agent
//! reported, then asks the agent to claim by consumer. The host is the last line of defence:
//! when Placement has handed out more than is free here (the outcome of Placement's
//! double-allocation race, simulated by raising the inventory by hand), the agent refuses,
//! names the over-allocation, changes nothing and reports its inventory again.
//!
//! Skipped (printing `SKIPPED`) when `PCITRACK_PLACEMENT_PYTHON` is unset, a failure under
//! `PCITRACK_REQUIRE_PLACEMENT`.

use std::time::Duration;

use pcitrack_discovery::fixture::FakeSysfs;
use pcitrack_placement_harness::Placement;
use serde_json::{Value, json};

mod common;
use common::daemon::Daemon;

const T: Duration = Duration::from_secs(60);
const SPEC: &str = r#"{"vendor_id":"8086","product_id":"154c"}"#;
const RC: &str = "CUSTOM_PCI_8086_154C";
const HOST: &str = "claim-host";
const PF_A: &str = "0000:3b:00.0";
const PF_B: &str = "0000:5e:00.0";

/// Two X710 PFs with two VFs each; the spec matches the VFs, so each PF is one provider
/// of 2 units.
fn host() -> FakeSysfs {
    let sysfs = FakeSysfs::new();
    sysfs.add_pf_with_vfs(PF_A, 0x8086, 0x1572, 0x154c, 2);
    sysfs.add_pf_with_vfs(PF_B, 0x8086, 0x1572, 0x154c, 2);
    sysfs
}

fn config(placement: &Placement) -> String {
    format!(
        "[pci]\ndevice_spec = ['{SPEC}']\nreport_in_placement = true\n\n\
         [placement]\nauth_type = \"admin_token\"\ntoken = {:?}\nendpoint_override = {:?}\n\
         host = {HOST:?}\n",
        placement.token(),
        placement.url()
    )
}

/// The uuid of the provider Placement holds under `name`, once it is there.
fn provider_uuid(placement: &Placement, name: &str) -> Option<String> {
    let found = placement.get(&format!("/resource_providers?name={name}"));
    found["resource_providers"][0]["uuid"]
        .as_str()
        .map(String::from)
}

/// The provider's inventory of [`RC`] (total, generation), when there is one.
fn inventory(placement: &Placement, rp: &str) -> Option<(u64, u64)> {
    let inv = placement.get(&format!("/resource_providers/{rp}/inventories"));
    let total = inv["inventories"][RC]["total"].as_u64()?;
    Some((total, inv["resource_provider_generation"].as_u64()?))
}

/// Writes `consumer`'s allocation of `n` units of [`RC`] on `rp`, as a scheduler would.
fn allocate(placement: &Placement, consumer: &str, rp: &str, n: u32) {
    let body = json!({
        "allocations": {rp: {"resources": {RC: n}}},
        "project_id": "6b1a5f2c4b0d4f5e9c8a7b6d5e4f3a2b",
        "user_id": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        "consumer_generation": null,
        "consumer_type": "INSTANCE",
    });
    let (status, answer) =
        placement.request("PUT", &format!("/allocations/{consumer}"), Some(&body));
    assert_eq!(status, 204, "PUT /allocations/{consumer}: {answer}");
}

fn claim(d: &Daemon, consumer: &str) -> (u16, Value) {
    let r = d
        .client
        .post("/v1/claim", &json!({"placement_consumer": consumer}))
        .unwrap();
    (r.status, serde_json::from_slice(&r.body).unwrap())
}

#[test]
fn a_claim_by_consumer_takes_what_placement_allocated_and_refuses_an_over_allocation() {
    let Some(python) = pcitrack_placement_harness::python(
        "a_claim_by_consumer_takes_what_placement_allocated_and_refuses_an_over_allocation",
    ) else {
        return;
    };
    let placement = Placement::start_sqlite(&python);
    let d = Daemon::start(host(), &config(&placement));
    let name_b = format!("{HOST}_{}", PF_B.to_uppercase());
    let mut rp_b = None;
    assert!(
        d.wait_for(T, |_| {
            rp_b = provider_uuid(&placement, &name_b);
            rp_b.as_deref()
                .is_some_and(|rp| inventory(&placement, rp).is_some_and(|(t, _)| t == 2))
        }),
        "the agent did not report {name_b}; log:\n{}",
        d.log()
    );
    let rp_b = rp_b.unwrap();

    // Consumer U: two units on PF B's provider -> exactly PF B's two VFs, held by U.
    let u = "8d3c2b1a-0f9e-4d8c-b7a6-958473625140";
    allocate(&placement, u, &rp_b, 2);
    let (status, claimed) = claim(&d, u);
    assert_eq!(status, 200, "{claimed}\nlog:\n{}", d.log());
    let claimed = claimed.as_array().unwrap();
    assert_eq!(claimed.len(), 2, "{claimed:?}");
    for c in claimed {
        assert_eq!(
            c["parent_addr"], PF_B,
            "not behind the allocated provider: {c}"
        );
    }
    let held = d.get(&format!("/v1/devices?instance={u}"));
    assert_eq!(held.as_array().unwrap().len(), 2, "{held}");
    assert!(
        held.as_array()
            .unwrap()
            .iter()
            .all(|h| h["status"] == "claimed" && h["parent_addr"] == PF_B),
        "{held}"
    );

    // A retry (the client lost the answer) takes nothing more: the same two devices.
    let (status, again) = claim(&d, u);
    assert_eq!(status, 200, "{again}");
    let addresses = |v: &[Value]| -> Vec<String> {
        v.iter()
            .map(|c| c["address"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(addresses(again.as_array().unwrap()), addresses(claimed));

    // Placement over-allocates: the inventory raised by hand (what the race leaves behind
    // is usage above what the host has), then consumer V gets one more unit.
    let (_, generation) = inventory(&placement, &rp_b).unwrap();
    let (status, answer) = placement.request(
        "PUT",
        &format!("/resource_providers/{rp_b}/inventories/{RC}"),
        Some(&json!({"resource_provider_generation": generation, "total": 4, "max_unit": 4})),
    );
    assert_eq!(status, 200, "{answer}");
    let v = "1e2d3c4b-5a69-4788-8796-a5b4c3d2e1f0";
    allocate(&placement, v, &rp_b, 1);
    let before = d.get("/v1/devices");
    let (status, refused) = claim(&d, v);
    assert_eq!(status, 409, "{refused}");
    let message = refused["error"].as_str().unwrap();
    let want = format!(
        "Placement allocated 1 {RC} on provider {name_b} ({rp_b}) to consumer {v} but only 0 \
         of its devices are free on this host: over-allocated by Placement"
    );
    assert!(message.contains(&want), "{message}");
    assert_eq!(
        d.get("/v1/devices"),
        before,
        "a refused claim changed devices"
    );

    // The agent reports its inventory again: the phantom capacity goes (never below the
    // usage Placement holds, so Placement never sees usage above inventory).
    assert!(
        d.wait_for(T, |_| inventory(&placement, &rp_b)
            .is_some_and(|(t, _)| t == 3)),
        "inventory not re-reported: {:?}; log:\n{}",
        inventory(&placement, &rp_b),
        d.log()
    );
    let usages = placement.get(&format!("/resource_providers/{rp_b}/usages"));
    assert_eq!(usages["usages"][RC], 3, "{usages}");

    // A consumer with nothing on this host is refused naming it, through the CLI too (exit
    // non-zero); PF A's devices are untouched.
    let w = "2f3e4d5c-6b7a-4899-a0b1-c2d3e4f5a6b7";
    let (status, refused) = claim(&d, w);
    assert_eq!(status, 409, "{refused}");
    let message = refused["error"].as_str().unwrap();
    assert!(
        message.contains(w) && message.contains("no allocation"),
        "{message}"
    );
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_pcitrack"))
        .arg("--config")
        .arg(d.config_path())
        .args(["claim", "--placement-consumer", v])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&cli.stderr);
    assert!(!cli.status.success(), "{stderr}");
    assert!(stderr.contains("over-allocated by Placement"), "{stderr}");
    let free_a = d.get("/v1/devices?status=available");
    assert_eq!(free_a.as_array().unwrap().len(), 2, "{free_a}");
}

#[test]
fn a_claim_by_consumer_while_placement_is_down_is_refused_naming_placement_s_error() {
    let Some(python) = pcitrack_placement_harness::python(
        "a_claim_by_consumer_while_placement_is_down_is_refused_naming_placement_s_error",
    ) else {
        return;
    };
    let mut placement = Placement::start_sqlite(&python);
    let d = Daemon::start(host(), &config(&placement));
    let name_a = format!("{HOST}_{}", PF_A.to_uppercase());
    assert!(
        d.wait_for(T, |_| provider_uuid(&placement, &name_a).is_some()),
        "the agent did not report {name_a}; log:\n{}",
        d.log()
    );
    placement.stop();
    let u = "8d3c2b1a-0f9e-4d8c-b7a6-958473625141";
    let (status, refused) = claim(&d, u);
    assert_eq!(status, 409, "{refused}");
    let message = refused["error"].as_str().unwrap();
    assert!(
        message.contains("cannot read Placement's allocations") && message.contains(u),
        "{message}"
    );
    let held = d.get(&format!("/v1/devices?instance={u}"));
    assert_eq!(held, json!([]), "{held}");
    // A claim by spec still works while Placement is down.
    let r = d
        .client
        .post("/v1/claim", &json!({"instance": "local", "spec": SPEC}))
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}
