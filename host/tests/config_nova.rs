//! A Nova 34 `[pci]` section through the binary: accepted by every command that loads the
//! configuration, a bad alias refused at start naming its entry, and a running agent that
//! reloads a bad alias keeps the last good configuration and says so (issue 12).

mod common;

use std::time::Duration;

use common::daemon::{Daemon, MLX, MLX_VF, add_connectx};
use common::pcitrack;
use pcitrack_discovery::fixture::FakeSysfs;
use rustix::process::Signal;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);

/// The `[pci]` section of a Nova 34 deployment (booleans as nova.conf writes them), with the
/// ConnectX VFs of [`add_connectx`] assignable and two aliases for them.
fn nova_34_pci() -> String {
    format!(
        r#"
[pci]
report_in_placement = "true"
device_spec = ['{{"vendor_id": "{MLX:04x}", "product_id": "{MLX_VF:04x}", "resource_class": "CUSTOM_MLX_VF", "traits": "CUSTOM_FAST"}}']
alias = ['{{"name": "vf", "vendor_id": "{MLX:04x}", "product_id": "{MLX_VF:04x}", "device_type": "type-VF"}}',
         '{{"name": "fast", "vendor_id": "{MLX:04x}", "product_id": "{MLX_VF:04x}", "resource_class": "CUSTOM_MLX_VF", "traits": "CUSTOM_FAST", "live_migratable": "no"}}']

[filter_scheduler]
pci_in_placement = false

# report_in_placement needs a Placement to report to; none answers here (reporting fails in
# the background, the agent serves locally all the same).
[placement]
auth_type = "admin_token"
token = "admin"
endpoint_override = "http://127.0.0.1:9"
"#
    )
}

/// [`nova_34_pci`] with the issue's typo appended as a third alias entry (`alias[2]`).
fn with_bad_alias() -> String {
    let good = nova_34_pci();
    let bad = good.replace(
        r#""live_migratable": "no"}']"#,
        r#""live_migratable": "no"}',
         '{"name": "vf2", "vendor_id": "8086", "product_id": "154c", "device_typ": "type-VF"}']"#,
    );
    assert_ne!(bad, good);
    bad
}

fn host() -> (FakeSysfs, Vec<String>) {
    let sysfs = FakeSysfs::new();
    let vfs = add_connectx(&sysfs, "0000:81:00.0", 2);
    (sysfs, vfs)
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn regression_a_nova_34_pci_section_is_accepted_by_sync_and_policy_eval() {
    let (sysfs, vfs) = host();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pcitrack.toml");
    std::fs::write(&config, nova_34_pci()).unwrap();
    let root = sysfs.root().display().to_string();
    let config_arg = config.display().to_string();
    let db = dir.path().join("t.db").display().to_string();
    let out = pcitrack(
        &[
            "--config",
            &config_arg,
            "sync",
            "--sysfs-root",
            &root,
            "--db",
            &db,
            "--format",
            "json",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["added"].as_array().unwrap().len(),
        vfs.len(),
        "{report}"
    );

    // The same commands refuse the file once it has a bad alias, naming the entry.
    std::fs::write(&config, with_bad_alias()).unwrap();
    let sync = pcitrack(
        &[
            "--config",
            &config_arg,
            "sync",
            "--sysfs-root",
            &root,
            "--db",
            &db,
        ],
        dir.path(),
    );
    let eval = pcitrack(
        &[
            "--config",
            &config_arg,
            "policy",
            "eval",
            "--sysfs-root",
            &root,
        ],
        dir.path(),
    );
    for out in [sync, eval] {
        assert!(!out.status.success());
        let e = stderr(&out);
        assert!(
            e.contains("[pci] alias[2]")
                && e.contains(
                    "Additional properties are not allowed ('device_typ' was unexpected)"
                ),
            "{e}"
        );
    }
}

#[test]
fn regression_run_refuses_a_bad_alias_at_start_naming_the_entry() {
    let (sysfs, _) = host();
    let mut d = Daemon::prepare(sysfs, &with_bad_alias());
    d.spawn_detached();
    let status = d.wait_exit(T).expect("the agent started on a bad alias");
    assert!(!status.success(), "{status:?}");
    let log = d.log();
    assert!(
        log.contains("[pci] alias[2]") && log.contains("'device_typ' was unexpected"),
        "{log}"
    );
}

#[test]
fn regression_a_reloaded_bad_alias_keeps_the_last_good_configuration_and_health_says_so() {
    let (sysfs, vfs) = host();
    let mut d = Daemon::start(sysfs, &nova_34_pci());
    assert!(d.wait_for(T, |d| d.tracked() == vfs), "log:\n{}", d.log());
    let health = d.get("/v1/health");
    assert_eq!(health["ok"], true, "{health}");
    assert!(health["config_error"].is_null(), "{health}");

    d.write_config(&with_bad_alias());
    d.signal(Signal::HUP);
    assert!(
        d.wait_for(T, |d| !d.get("/v1/health")["config_error"].is_null()),
        "log:\n{}",
        d.log()
    );
    let health = d.get("/v1/health");
    assert_eq!(health["ok"], false, "{health}");
    assert_eq!(health["status"], "degraded", "{health}");
    let error = health["config_error"].as_str().unwrap();
    assert!(
        error.contains("[pci] alias[2]") && error.contains("'device_typ' was unexpected"),
        "{error}"
    );
    let metrics = String::from_utf8(d.client.get("/metrics").unwrap().body).unwrap();
    // The file watcher and SIGHUP may both have read the bad file: at least one failure.
    let failures = metrics
        .lines()
        .find_map(|l| l.strip_prefix("pcitrack_config_reload_failures_total{reason=\"alias\"} "))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(failures.is_some_and(|n| n >= 1), "{metrics}");

    // The last good aliases still serve claims.
    let claim = json!({"instance": "vm-1", "alias": "vf", "count": 1});
    let reply = d.client.post("/v1/claim", &claim).unwrap();
    let claimed: Value = reply.json().unwrap();
    assert_eq!(claimed.as_array().map(Vec::len), Some(1), "{claimed}");

    // Fixing the file clears it.
    d.write_config(&nova_34_pci());
    d.signal(Signal::HUP);
    assert!(
        d.wait_for(T, |d| d.get("/v1/health")["ok"] == true),
        "log:\n{}",
        d.log()
    );
    assert!(d.get("/v1/health")["config_error"].is_null());
    d.signal(Signal::TERM);
    assert!(d.wait_exit(T).is_some_and(|s| s.success()));
}
