//! Placement's own fault, the premise of the host-side defence (PLACEMENT.md, "Double
//! allocation under real concurrency"): Placement 16.0.0 with 4 API workers on PostgreSQL and
//! the default `allocation_conflict_retry_count` (10) accepts two consumers racing for the last
//! unit of a resource class; with `allocation_conflict_retry_count = 1` it does not.

use std::sync::Barrier;

use pcitrack_placement_harness::{Placement, PlacementOptions, Postgres, python};
use serde_json::{Value, json};

const RP: &str = "5d6b3c9e-1f0a-4a51-8f0e-0c5b7d2a9e01";

/// One provider with inventory 1 of CUSTOM_X.
fn one_unit(placement: &Placement) {
    let (status, body) = placement.request("PUT", "/resource_classes/CUSTOM_X", None);
    assert!(status == 201 || status == 204, "{status} {body}");
    let (status, body) = placement.request(
        "POST",
        "/resource_providers",
        Some(&json!({"name": "race-host", "uuid": RP})),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = placement.request(
        "PUT",
        &format!("/resource_providers/{RP}/inventories"),
        Some(&json!({"resource_provider_generation": body["generation"],
                     "inventories": {"CUSTOM_X": {"total": 1, "max_unit": 1}}})),
    );
    assert_eq!(status, 200, "{body}");
}

/// Two fresh consumers PUT an allocation of the one unit, released together; then both
/// allocations are deleted. Whether Placement accepted both (and usage went to 2 of 1).
fn race(placement: &Placement, round: u32) -> bool {
    let consumers = [1u32, 2].map(|i| format!("{round:08x}-0000-4000-8000-{i:012x}"));
    let barrier = Barrier::new(2);
    let statuses: Vec<(u16, Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = consumers
            .iter()
            .map(|consumer| {
                let barrier = &barrier;
                s.spawn(move || {
                    let body = json!({
                        "allocations": {RP: {"resources": {"CUSTOM_X": 1}}},
                        "project_id": "7a1d0e3f-0000-4000-8000-000000000001",
                        "user_id": "7a1d0e3f-0000-4000-8000-000000000002",
                        "consumer_generation": null,
                        "consumer_type": "INSTANCE",
                    });
                    barrier.wait();
                    placement.request("PUT", &format!("/allocations/{consumer}"), Some(&body))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("racer thread"))
            .collect()
    });
    for (status, body) in &statuses {
        assert!(
            *status == 204 || *status == 409,
            "unexpected answer {status}: {body}"
        );
    }
    let both = statuses.iter().all(|(status, _)| *status == 204);
    if both {
        let usages = placement.get(&format!("/resource_providers/{RP}/usages"));
        assert_eq!(
            usages["usages"]["CUSTOM_X"], 2,
            "both accepted, usage 2 of 1: {usages}"
        );
    }
    for consumer in &consumers {
        let (status, body) = placement.request("DELETE", &format!("/allocations/{consumer}"), None);
        assert!(status == 204 || status == 404, "{status} {body}");
    }
    both
}

#[test]
fn placement_on_postgres_double_allocates_with_the_default_retry_count_and_not_with_one() {
    let test =
        "placement_on_postgres_double_allocates_with_the_default_retry_count_and_not_with_one";
    let Some(python) = python(test) else { return };
    let Some(pg) = Postgres::start() else { return };

    let placement = Placement::start_postgres(&python, &pg, 4);
    one_unit(&placement);
    let mut seen_at = None;
    for round in 1..=40 {
        if race(&placement, round) {
            seen_at = Some(round);
            break;
        }
    }
    match seen_at {
        Some(round) => println!("default retry count: both consumers got 204 in round {round}"),
        None => panic!(
            "Placement 16.0.0 (4 workers, PostgreSQL, default allocation_conflict_retry_count) \
             never accepted both racing consumers in 40 rounds; PLACEMENT.md measured it in about half"
        ),
    }
    drop(placement);

    let options = PlacementOptions {
        allocation_conflict_retry_count: Some(1),
        ..PlacementOptions::workers(4)
    };
    let placement = Placement::start_postgres_with(&python, &pg, &options);
    one_unit(&placement);
    let doubles = (1..=20)
        .filter(|round| race(&placement, 1000 + round))
        .count();
    println!("allocation_conflict_retry_count = 1: {doubles} double allocations in 20 rounds");
    assert_eq!(
        doubles, 0,
        "double allocations with allocation_conflict_retry_count = 1"
    );
}
