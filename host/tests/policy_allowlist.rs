//! `[policies] allowed_sha256`: only policy files whose digest is listed run. Through the CLI
//! (`policy list`, `policy check`, `sync`) and through the running agent, where an unlisted
//! file is refused like any file that fails to load (named, with its digest, in the log, the
//! API and the metrics) and the last good version of that policy serves on.

use std::path::Path;
use std::time::Duration;

use pcitrack_discovery::fixture::FakeSysfs;
use pcitrack_runtime::sha256_hex;
use serde_json::json;

mod common;

use common::daemon::{Daemon, add_connectx};
use common::{example_policy, pcitrack};
use rustix::process::Signal;

const T: Duration = Duration::from_secs(30);

/// The ConnectX example matcher, and a second, different but equally valid version of it: the
/// same component with a custom section appended (a new digest, the same behaviour).
fn two_versions() -> (Vec<u8>, Vec<u8>) {
    let v1 = std::fs::read(example_policy("pcitrack-example-connectx-matcher")).unwrap();
    let mut v2 = v1.clone();
    // Custom section (id 0), 7 bytes: name "test" (length 4), payload "v2".
    v2.extend_from_slice(&[0x00, 0x07, 0x04, b't', b'e', b's', b't', b'v', b'2']);
    assert_ne!(sha256_hex(&v1), sha256_hex(&v2));
    (v1, v2)
}

fn allowlist(digests: &[&str]) -> String {
    let quoted: Vec<String> = digests.iter().map(|d| format!("'{d}'")).collect();
    format!("[policies]\nallowed_sha256 = [{}]\n", quoted.join(", "))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_cli_refuses_an_unlisted_policy_file_naming_it_and_its_digest() {
    let (v1, v2) = two_versions();
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let file = policies.join("connectx.wasm");
    std::fs::write(&file, &v2).unwrap();
    let config = dir.path().join("pcitrack.toml");
    let state = dir.path().join("state");
    let list = |config: &Path| {
        pcitrack(
            &[
                "--config".as_ref(),
                config.as_os_str(),
                "policy".as_ref(),
                "list".as_ref(),
                "--policies".as_ref(),
                policies.as_os_str(),
                "--format".as_ref(),
                "json".as_ref(),
            ],
            &state,
        )
    };

    // Only v1 listed: the file on disk (v2) is refused and left out of the chain.
    std::fs::write(&config, allowlist(&[&sha256_hex(&v1)])).unwrap();
    let out = list(&config);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("connectx")
            && stderr.contains(&sha256_hex(&v2))
            && stderr.contains("allowed_sha256"),
        "{stderr}"
    );
    let chain: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        chain
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["name"] != "connectx"),
        "{chain}"
    );
    // The embedded defaults are always allowed.
    assert!(
        chain
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "matcher"),
        "{chain}"
    );

    // `policy check` says why, and prints the digest to list.
    let check = |config: &Path| {
        pcitrack(
            &[
                "--config".as_ref(),
                config.as_os_str(),
                "policy".as_ref(),
                "check".as_ref(),
                file.as_os_str(),
            ],
            &state,
        )
    };
    let out = check(&config);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains(&sha256_hex(&v2)),
        "{}",
        text(&out.stderr)
    );

    // `sync` reports the refusal and runs without it.
    let devices = dir.path().join("devices.json");
    std::fs::write(&devices, "[]").unwrap();
    let out = pcitrack(
        &[
            "--config".as_ref(),
            config.as_os_str(),
            "sync".as_ref(),
            "--devices".as_ref(),
            devices.as_os_str(),
            "--policies".as_ref(),
            policies.as_os_str(),
        ],
        &state,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&sha256_hex(&v2)),
        "{}",
        text(&out.stderr)
    );

    // Listed (in capitals, as some tools print it): accepted.
    std::fs::write(
        &config,
        allowlist(&[&sha256_hex(&v1), &sha256_hex(&v2).to_uppercase()]),
    )
    .unwrap();
    let out = list(&config);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let chain: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        chain
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "connectx"),
        "{chain}"
    );
    let out = check(&config);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!("sha256:      {}", sha256_hex(&v2))),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn an_allowlist_entry_that_is_not_a_digest_refuses_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pcitrack.toml");
    std::fs::write(&config, allowlist(&["sha256:abc"])).unwrap();
    let out = pcitrack(
        &[
            "--config".as_ref(),
            config.as_os_str(),
            "policy".as_ref(),
            "list".as_ref(),
        ],
        dir.path(),
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("pcitrack.toml")
            && stderr.contains("allowed_sha256 entry 0")
            && stderr.contains("sha256:abc"),
        "{stderr}"
    );
}

#[test]
fn the_agent_refuses_an_unlisted_file_keeps_the_last_good_version_and_takes_it_once_listed() {
    let sysfs = FakeSysfs::new();
    let vfs = add_connectx(&sysfs, "0000:81:00.0", 2);
    let (v1, v2) = two_versions();
    let (d1, d2) = (sha256_hex(&v1), sha256_hex(&v2));
    let settings = "[policies.connectx]\nphysnets = { pf0 = \"physnet1\" }\n";
    let mut d = Daemon::start(sysfs, &format!("{}{settings}", allowlist(&[&d1])));

    // The listed version loads and decides.
    let scratch = tempfile::tempdir().unwrap();
    let (f1, f2) = (scratch.path().join("v1"), scratch.path().join("v2"));
    std::fs::write(&f1, &v1).unwrap();
    std::fs::write(&f2, &v2).unwrap();
    d.drop_policy(&f1, "connectx.wasm", true);
    assert!(d.wait_for(T, |d| d.tracked() == vfs), "log:\n{}", d.log());

    // An unlisted version lands over it: refused, named with its digest; v1 serves on.
    d.drop_policy(&f2, "connectx.wasm", true);
    let refusal = |d: &Daemon| {
        d.get("/v1/policies")["policies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "connectx")
            .map(|p| {
                p["refused"]["error"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .unwrap_or_default()
    };
    assert!(
        d.wait_for(T, |d| !refusal(d).is_empty()),
        "log:\n{}",
        d.log()
    );
    let error = refusal(&d);
    assert!(
        error.contains("connectx") && error.contains(&d2) && error.contains("allowed_sha256"),
        "{error}"
    );
    assert_eq!(
        d.get("/v1/policies")["chain"]["matcher"],
        json!(["connectx", "matcher"])
    );
    let r = d.client.post_raw("/v1/reconcile", Vec::new()).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(d.tracked(), vfs, "the last good version still decides");
    let health = d.get("/v1/health");
    assert_eq!(health["refused_policies"], json!(["connectx"]));
    assert_eq!(health["policy_errors"][0]["policy"], "connectx");
    assert!(
        health["policy_errors"][0]["error"]
            .as_str()
            .unwrap()
            .contains(&d2),
        "{health}"
    );
    assert!(d.log().contains(&d2), "the log names the digest");
    let metrics = text(&d.client.get("/metrics").unwrap().body);
    assert!(
        metrics.contains("pcitrack_reloads_total{outcome=\"refused\"} 1"),
        "{metrics}"
    );

    // Listed, and SIGHUP: accepted.
    d.write_config(&format!("{}{settings}", allowlist(&[&d1, &d2])));
    d.signal(Signal::HUP);
    assert!(
        d.wait_for(T, |d| refusal(d).is_empty()),
        "log:\n{}",
        d.log()
    );
    let health = d.get("/v1/health");
    assert_eq!(health["refused_policies"], json!([]), "{health}");
    assert!(health["config_error"].is_null(), "{health}");
    assert_eq!(
        d.get("/v1/policies")["chain"]["matcher"],
        json!(["connectx", "matcher"])
    );
    assert_eq!(d.tracked(), vfs);
    d.signal(Signal::TERM);
    assert!(d.wait_exit(T).is_some_and(|s| s.success()));
}
