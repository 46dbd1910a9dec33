//! Hot reload in two tiers, through the agent (issue 14): a policy file whose compiled
//! artifact is not in the cache serves on Winch's baseline build, then its Cranelift build
//! is swapped in (the listing says `optimized`) and cached; a newer file landing while the
//! first one's Cranelift build runs is not overwritten by that late build.

mod common;

use std::path::Path;
use std::time::Duration;

use common::daemon::{Daemon, add_connectx};
use pcitrack_discovery::fixture::FakeSysfs;
use pcitrack_runtime::{EMBEDDED, PolicyKind};
use serde_json::Value;

const T: Duration = Duration::from_secs(120);

const CONFIG: &str = "[policies.m]\nphysnets = { pf0 = \"physnet1\" }\n\
                      [pci]\ndevice_spec = ['{\"vendor_id\": \"15b3\"}']\n";

fn start() -> Daemon {
    let sysfs = FakeSysfs::new();
    add_connectx(&sysfs, "0000:81:00.0", 4);
    Daemon::start(sysfs, CONFIG)
}

/// The 660 KB default matcher, as a file: its bytes were never compiled from a file in this
/// state directory, so its Cranelift build takes long enough to watch.
fn big_matcher() -> &'static [u8] {
    EMBEDDED
        .iter()
        .find(|e| e.kind == PolicyKind::Matcher)
        .unwrap()
        .bytes
}

/// Lands `bytes` as `m.wasm` the careful way (write aside, rename).
fn land(d: &Daemon, bytes: &[u8]) {
    let tmp = d.dir.path().join(".m.tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, d.policies().join("m.wasm")).unwrap();
}

/// The listing's entry of policy `m`, once it is in the matcher chain.
fn m(d: &Daemon) -> Option<Value> {
    let report = d.get("/v1/policies");
    let serving = report["chain"]["matcher"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n == "m");
    let entry = report["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "m")
        .cloned();
    entry.filter(|_| serving)
}

fn artifacts(cache: &Path) -> usize {
    std::fs::read_dir(cache)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
                .count()
        })
        .unwrap_or(0)
}

/// Lands the big matcher and returns its listing entry once it serves, on its baseline
/// build (the premise of the tests below: its Cranelift build is still running).
fn land_big_matcher(d: &Daemon) -> Value {
    land(d, big_matcher());
    assert!(d.wait_for(T, |d| m(d).is_some()), "log:\n{}", d.log());
    let first = m(d).unwrap();
    assert_eq!(
        first["tier"], "baseline",
        "premise: its Cranelift build is still running"
    );
    first
}

/// The VFs' verdict rows.
fn vf_verdicts(d: &Daemon) -> Vec<Value> {
    d.get("/v1/verdicts")
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["dev_type"] == "type-VF")
        .cloned()
        .collect()
}

#[test]
fn a_landed_policy_serves_on_its_baseline_build_then_on_its_cached_optimised_one() {
    let d = start();
    let cache = d.dir.path().join("state/cache");
    assert_eq!(artifacts(&cache), 0);
    land(&d, big_matcher());
    assert!(d.wait_for(T, |d| m(d).is_some()), "log:\n{}", d.log());
    assert!(
        d.wait_for(T, |d| vf_verdicts(d).iter().all(|v| v["decided_by"] == "m")),
        "the baseline build does not decide; log:\n{}",
        d.log()
    );
    assert!(
        d.wait_for(T, |d| m(d).is_some_and(|p| p["tier"] == "optimized")),
        "never optimized; log:\n{}",
        d.log()
    );
    let entry = m(&d).unwrap();
    // Set only by a swap: the policy served on its baseline build first.
    let optimized_ms = entry["optimized_ms"].as_f64().expect("swapped in");
    assert!(
        optimized_ms >= entry["load_ms"].as_f64().unwrap(),
        "{entry}"
    );
    assert!(entry["optimize_error"].is_null(), "{entry}");
    assert_eq!(
        artifacts(&cache),
        1,
        "its Cranelift build is not in the cache"
    );
    assert!(vf_verdicts(&d).iter().all(|v| v["decided_by"] == "m"));

    // Landed again (same bytes, a new file in its place): straight from the cache.
    let first_load = entry["load_ms"].clone();
    land(&d, big_matcher());
    assert!(d.wait_for(T, |d| m(d).is_some_and(|p| p["load_ms"] != first_load)));
    let entry = m(&d).unwrap();
    assert_eq!(
        (&entry["tier"], &entry["code"]),
        (&Value::from("optimized"), &Value::from("cache")),
        "{entry}"
    );
}

#[test]
fn a_newer_file_is_not_overwritten_by_the_late_optimised_build_of_the_one_it_replaced() {
    let d = start();
    let cache = d.dir.path().join("state/cache");
    let first = land_big_matcher(&d);

    let connectx =
        std::fs::read(common::example_policy("pcitrack-example-connectx-matcher")).unwrap();
    land(&d, &connectx);
    assert!(
        d.wait_for(T, |d| m(d)
            .is_some_and(|p| p["description"] != first["description"])),
        "log:\n{}",
        d.log()
    );
    // The first file's Cranelift build finishes (neither swapped nor cached: no policy
    // holds it any more), and so does the second's.
    assert!(
        d.wait_for(T, |d| d.log().contains("not swapped")),
        "the first build was swapped or never ended; log:\n{}",
        d.log()
    );
    assert!(
        d.wait_for(T, |d| m(d).is_some_and(|p| p["tier"] == "optimized")),
        "log:\n{}",
        d.log()
    );
    assert_eq!(
        artifacts(&cache),
        1,
        "only the serving policy's build is cached"
    );
    let entry = m(&d).unwrap();
    assert_ne!(entry["description"], first["description"], "{entry}");
    // The connectx matcher decides, with its tags (the default matcher gives no physnet).
    assert!(
        d.wait_for(T, |d| vf_verdicts(d).iter().all(
            |v| v["decided_by"] == "m" && v.to_string().contains("physnet1")
        )),
        "verdicts: {:?}",
        vf_verdicts(&d)
    );
}

/// Review (issue 14): the same bytes landed again while their Cranelift build runs (a
/// configuration tool rewriting an unchanged file, a `touch`) must not start a second
/// Cranelift build of them: the first one's result is the artifact the second load needs.
/// Today the first build is thrown away ("not swapped") and a second one is made, and the
/// second baseline load competes with the first compile for the CPU (measured: 155 ms, then
/// 675 ms for the 660 KB matcher on a 4112-device tree).
#[test]
fn regression_relanded_same_bytes_compile_twice() {
    let d = start();
    let first = land_big_matcher(&d);
    land(&d, big_matcher());
    assert!(
        d.wait_for(T, |d| m(d)
            .is_some_and(|p| p["load_ms"] != first["load_ms"])),
        "the second landing was not loaded; log:\n{}",
        d.log()
    );
    assert!(
        d.wait_for(T, |d| m(d).is_some_and(|p| p["tier"] == "optimized")),
        "log:\n{}",
        d.log()
    );
    // Give a late first build time to log its end.
    std::thread::sleep(Duration::from_secs(3));
    let log = d.log();
    assert!(
        !log.contains("not swapped"),
        "a second Cranelift build of the same bytes was made; log:\n{log}"
    );
}
