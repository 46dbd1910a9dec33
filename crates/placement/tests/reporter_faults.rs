//! The reporter thread ([`ReporterHandle`]) against a real Placement 16.0.0 behind a
//! [`FaultProxy`]: 500s, a slow Placement, Placement stopped and started again. Each time the
//! reporter must leave its changes pending (status `pending`, last error set), keep retrying
//! with backoff, and converge: Placement ends up holding the view, no provider twice, no
//! inventory lost. Skipped (printed) when `PCITRACK_PLACEMENT_PYTHON` is unset.

mod common;

use std::time::Duration;

use common::*;
use pcitrack_placement::{ReportState, ReporterHandle, ReporterOptions};
use pcitrack_placement_harness::{Fault, FaultProxy, Placement, python};
use uuid::Uuid;

/// Fast retries, so that the tests do not wait a minute.
const FAST: ReporterOptions = ReporterOptions {
    initial_backoff: Duration::from_millis(200),
    max_backoff: Duration::from_secs(1),
    recheck: Duration::from_secs(1),
};

fn start(
    test: &str,
    timeout: Duration,
) -> Option<(Placement, FaultProxy, ReporterHandle, Persisted)> {
    let python = python(test)?;
    let placement = Placement::start_sqlite(&python);
    let proxy = FaultProxy::start(placement.url());
    let persisted = Persisted::default();
    let handle = ReporterHandle::spawn_with(
        client(proxy.url(), timeout),
        Box::new(persisted.callback()),
        FAST,
    );
    Some((placement, proxy, handle, persisted))
}

/// Placement holds exactly the handle's last view: same providers (no duplicates, `held`
/// panics on a name twice), same inventories and traits.
fn assert_converged(placement: &Placement, handle: &ReporterHandle) {
    let view = handle.last_view().expect("a view");
    let held = held(placement);
    assert_eq!(
        held.len(),
        view.providers.len() + 1,
        "root + view: {held:?}"
    );
    for p in &view.providers {
        let h = &held[&p.name];
        assert_eq!(h.uuid, p.uuid);
        assert_eq!(h.traits, p.traits);
        assert_eq!(h.inventories.len(), p.inventories.len());
        for (rc, w) in &p.inventories {
            assert_eq!(h.inventories[rc].0, u64::from(w.total), "{}", p.name);
        }
    }
}

#[test]
fn reporting_the_same_state_twice_sends_nothing() {
    let Some((placement, proxy, handle, _)) = start(
        "reporting_the_same_state_twice_sends_nothing",
        Duration::from_secs(20),
    ) else {
        return;
    };
    assert_eq!(handle.status().state, ReportState::Starting);
    handle.submit(input(host_devices()));
    let s = wait_for(&handle, 60, "the first report", |s| s.reports_total == 1);
    assert_eq!(s.state, ReportState::InStep);
    assert!(s.last_success.is_some());
    assert_converged(&placement, &handle);
    proxy.clear_requests();
    handle.submit(input(host_devices()));
    let s = wait_for(&handle, 60, "the second report", |s| s.reports_total == 2);
    assert_eq!(proxy.requests(), vec![], "no request at all");
    assert_eq!(s.pending_changes, 0);
    // A resync re-reads (and still writes nothing).
    handle.resync();
    wait_for(&handle, 60, "the resync", |s| s.reports_total == 3);
    assert!(!proxy.requests().is_empty());
    assert!(
        proxy.requests().iter().all(|(m, _)| m == "GET"),
        "{:?}",
        proxy.requests()
    );
    handle.shutdown();
}

#[test]
fn five_hundreds_leave_changes_pending_then_converge_without_duplicates() {
    let Some((placement, proxy, handle, _)) = start(
        "five_hundreds_leave_changes_pending_then_converge_without_duplicates",
        Duration::from_secs(20),
    ) else {
        return;
    };
    handle.submit(input(vec![pf("0000:04:00.0")]));
    wait_for(&handle, 60, "the first report", |s| s.reports_total == 1);
    // Mid-report failures: the read passes, the writes fail a few times.
    proxy.set(Fault::Fail {
        status: 500,
        count: 5,
    });
    handle.submit(input(host_devices()));
    let s = wait_for(&handle, 60, "a failure", |s| s.failures_total >= 1);
    assert!(
        s.last_error.as_deref().unwrap_or("").contains("500"),
        "{s:?}"
    );
    let s = wait_for(&handle, 60, "convergence", |s| {
        s.state == ReportState::InStep && s.reports_total >= 2
    });
    assert_eq!(s.pending_changes, 0);
    assert_eq!(s.last_error, None);
    assert!(s.failures_total >= 1);
    assert_converged(&placement, &handle);
    handle.shutdown();
}

#[test]
fn a_slow_placement_times_out_then_converges() {
    let Some((placement, proxy, handle, _)) = start(
        "a_slow_placement_times_out_then_converges",
        Duration::from_secs(2),
    ) else {
        return;
    };
    proxy.set(Fault::Delay(Duration::from_secs(4)));
    handle.submit(input(host_devices()));
    let s = wait_for(&handle, 60, "a timeout", |s| {
        s.state == ReportState::Pending
    });
    assert!(s.pending_changes >= 1);
    let error = s.last_error.unwrap();
    assert!(
        error.contains("GET http://127.0.0.1"),
        "names the call: {error}"
    );
    assert!(
        error.to_lowercase().contains("timeout") || error.contains("timed out"),
        "{error}"
    );
    proxy.set(Fault::None);
    wait_for(&handle, 60, "convergence", |s| {
        s.state == ReportState::InStep
    });
    assert_converged(&placement, &handle);
    handle.shutdown();
}

#[test]
fn placement_stopped_then_started_again_gets_the_backlog() {
    let Some((mut placement, _proxy, handle, _)) = start(
        "placement_stopped_then_started_again_gets_the_backlog",
        Duration::from_secs(5),
    ) else {
        return;
    };
    handle.submit(input(vec![pf("0000:04:00.0")]));
    wait_for(&handle, 60, "the first report", |s| s.reports_total == 1);
    placement.stop();
    // Two reconciles while Placement is down: the latest wins.
    handle.submit(input(vec![pf("0000:04:00.0"), pf("0000:05:00.0")]));
    handle.submit(input(host_devices()));
    let s = wait_for(&handle, 60, "pending", |s| s.state == ReportState::Pending);
    assert!(s.last_error.is_some());
    assert!(s.last_success.is_some(), "the first success is kept");
    placement.start_again();
    wait_for(&handle, 60, "the backlog", |s| {
        s.state == ReportState::InStep && s.reports_total == 2
    });
    assert_converged(&placement, &handle);
    let view = handle.last_view().unwrap();
    assert_eq!(view.providers.len(), 3);
    handle.shutdown();
}

#[test]
fn an_inventory_held_up_by_allocations_comes_down_on_an_idle_host() {
    let Some((placement, _proxy, handle, persisted)) = start(
        "an_inventory_held_up_by_allocations_comes_down_on_an_idle_host",
        Duration::from_secs(20),
    ) else {
        return;
    };
    handle.submit(input(host_devices()));
    wait_for(&handle, 60, "the first report", |s| s.reports_total == 1);
    let pf_rp = persisted.uuids()[&addr("0000:04:00.0")];
    let consumer = Uuid::from_u128(0xd1);
    assert_eq!(allocate(&placement, consumer, pf_rp, RC_1572, 1), 204);
    // The PF leaves the host while allocated: its provider stays at its usage.
    let without_pf: Vec<_> = host_devices()
        .into_iter()
        .filter(|d| d.address() != addr("0000:04:00.0"))
        .collect();
    handle.submit(input(without_pf));
    wait_for(&handle, 60, "the report without the PF", |s| {
        s.reports_total == 2
    });
    assert!(held(&placement).contains_key(&rp_name("0000:04:00.0")));
    // The allocation goes and nothing is submitted (an idle host): the reporter's recheck
    // re-reads Placement and deletes the provider, instead of advertising a gone device.
    assert_eq!(
        placement
            .request("DELETE", &format!("/allocations/{consumer}"), None)
            .0,
        204
    );
    // One GET by name per poll: `held` reads provider by provider and would race the
    // reporter's delete (a 404 between the list and the provider's inventories).
    let by_name = format!("/resource_providers?name={}", rp_name("0000:04:00.0"));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !placement.get(&by_name)["resource_providers"]
        .as_array()
        .is_none_or(Vec::is_empty)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the provider of a gone device stayed after its allocation went: {:?}",
            placement.get(&by_name)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_converged(&placement, &handle);
    handle.shutdown();
}
