//! The agent end to end: the real binary on a fake sysfs tree, driven through its API,
//! its policies directory, its configuration file, signals and injected uevents.

use std::time::{Duration, Instant};

use pcitrack_discovery::fixture::FakeSysfs;
use serde_json::{Value, json};

mod common;

use common::daemon::{Daemon, MLX, MLX_VF, add_connectx};
use common::example_policy;
use rustix::process::Signal;

const T: Duration = Duration::from_secs(30);

fn connectx_host() -> (FakeSysfs, Vec<String>) {
    let sysfs = FakeSysfs::new();
    let vfs = add_connectx(&sysfs, "0000:81:00.0", 2);
    (sysfs, vfs)
}

fn policy<'a>(report: &'a Value, name: &str) -> &'a Value {
    find_policy(report, name).unwrap_or_else(|| panic!("no policy {name} in {report:#}"))
}

fn find_policy<'a>(report: &'a Value, name: &str) -> Option<&'a Value> {
    report["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
}

/// Whether the policies report shows `name`'s file refused.
fn refused(d: &Daemon, name: &str) -> bool {
    find_policy(&d.get("/v1/policies"), name).is_some_and(|p| !p["refused"].is_null())
}

#[test]
fn a_dropped_matcher_changes_verdicts_garbage_keeps_it_and_deleting_it_restores_the_default() {
    let (sysfs, vfs) = connectx_host();
    // No device_spec: the default matcher assigns nothing.
    let d = Daemon::start(
        sysfs,
        "[policies.connectx]\nphysnets = { pf0 = \"physnet1\" }\n",
    );
    assert!(d.tracked().is_empty());
    let verdicts = d.get("/v1/verdicts");
    assert_eq!(verdicts.as_array().unwrap().len(), 3);
    assert!(
        verdicts
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["assignable"] == false)
    );

    // A vendor matcher lands: the VFs become assignable, tagged with their physnet.
    let started = Instant::now();
    d.drop_policy(
        &example_policy("pcitrack-example-connectx-matcher"),
        "connectx.wasm",
        true,
    );
    assert!(
        d.wait_for(T, |d| d.tracked() == vfs),
        "VFs never became assignable; log:\n{}",
        d.log()
    );
    eprintln!("new matcher serving after {:?}", started.elapsed());
    let devices = d.get("/v1/devices");
    for dev in devices.as_array().unwrap() {
        assert_eq!(dev["tags"]["physical_network"], "physnet1", "{dev}");
        assert_eq!(dev["decided_by"], "connectx", "{dev}");
    }
    let report = d.get("/v1/policies");
    assert_eq!(report["chain"]["matcher"], json!(["connectx", "matcher"]));

    // Garbage over it: refused with its name and reason, the last good version serves on.
    std::fs::write(d.policies().join("connectx.wasm"), b"this is not wasm").unwrap();
    assert!(d.wait_for(T, |d| refused(d, "connectx")));
    let report = d.get("/v1/policies");
    let connectx = policy(&report, "connectx");
    assert_eq!(connectx["active"], true, "{connectx}");
    let error = connectx["refused"]["error"].as_str().unwrap();
    assert!(
        error.contains("connectx") && error.contains("not a WebAssembly file"),
        "{error}"
    );
    assert_eq!(report["chain"]["matcher"], json!(["connectx", "matcher"]));
    let r = d.client.post_raw("/v1/reconcile", Vec::new()).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(d.tracked(), vfs, "the previous matcher still decides");
    let health = d.get("/v1/health");
    assert_eq!(health["refused_policies"], json!(["connectx"]));

    // Deleted: the default is back, and with it nothing is assignable.
    std::fs::remove_file(d.policies().join("connectx.wasm")).unwrap();
    assert!(
        d.wait_for(T, |d| d.tracked().is_empty()),
        "log:\n{}",
        d.log()
    );
    assert_eq!(
        d.get("/v1/policies")["chain"]["matcher"],
        json!(["matcher"])
    );
    let metrics = d.client.get("/metrics").unwrap();
    let text = String::from_utf8(metrics.body).unwrap();
    assert!(
        text.contains("pcitrack_reloads_total{outcome=\"refused\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("pcitrack_reloads_total{outcome=\"loaded\"} 1"),
        "{text}"
    );
}

#[test]
fn a_half_written_policy_is_refused_then_taken_once_complete() {
    let (sysfs, vfs) = connectx_host();
    let d = Daemon::start(
        sysfs,
        "[policies.connectx]\nphysnets = { pf0 = \"physnet1\" }\n",
    );
    let bytes = std::fs::read(example_policy("pcitrack-example-connectx-matcher")).unwrap();
    let target = d.policies().join("connectx.wasm");
    std::fs::write(&target, &bytes[..bytes.len() / 3]).unwrap();
    assert!(d.wait_for(T, |d| refused(d, "connectx")));
    assert!(d.tracked().is_empty());
    std::fs::write(&target, &bytes).unwrap();
    assert!(d.wait_for(T, |d| d.tracked() == vfs), "log:\n{}", d.log());
    assert!(policy(&d.get("/v1/policies"), "connectx")["refused"].is_null());
}

#[test]
fn a_vf_removed_from_the_tree_goes_after_its_uevent_and_comes_back_after_the_next() {
    let (sysfs, vfs) = connectx_host();
    let spec = format!("[pci]\ndevice_spec = ['{{\"vendor_id\": \"{MLX:04x}\"}}']\n");
    let d = Daemon::start(sysfs, &spec);
    assert_eq!(d.tracked().len(), 3);
    d.sysfs.remove(&vfs[1]);
    let started = Instant::now();
    d.uevent("remove", &vfs[1]);
    assert!(
        d.wait_for(T, |d| !d.tracked().contains(&vfs[1])),
        "log:\n{}",
        d.log()
    );
    eprintln!(
        "VF gone from the API {:?} after its uevent",
        started.elapsed()
    );
    assert_eq!(d.tracked().len(), 2);
    d.sysfs
        .add_device(&vfs[1], MLX, MLX_VF, 0x020000)
        .link("physfn", "../0000:81:00.0");
    d.uevent("add", &vfs[1]);
    assert!(d.wait_for(T, |d| d.tracked().contains(&vfs[1])));
    let metrics = String::from_utf8(d.client.get("/metrics").unwrap().body).unwrap();
    assert!(
        metrics.contains("pcitrack_reconciles_total{trigger=\"uevent\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("pcitrack_devices{status=\"available\"} 3"),
        "{metrics}"
    );
}

/// With root and a real PCI device, the kernel itself announces the change: the agent
/// listens on netlink, the fake tree holds a device at the real device's address, and
/// writing `change` to the real device's `uevent` file makes the kernel send the event.
/// Without root (or without a PCI bus) there is no kernel event to wait for; that case is
/// said on stderr, and the injected-uevent test above covers the agent's side.
#[test]
fn a_real_kernel_uevent_reaches_the_agent_when_root() {
    let real = std::fs::read_dir("/sys/bus/pci/devices")
        .ok()
        .and_then(|mut it| it.find_map(|e| e.ok()))
        .map(|e| e.file_name().to_string_lossy().into_owned());
    let writable = real.as_ref().is_some_and(|a| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/sys/bus/pci/devices/{a}/uevent"))
            .is_ok()
    });
    let (Some(address), true) = (real, writable) else {
        eprintln!("no writable /sys/bus/pci/devices/*/uevent here (not root?): skipped");
        return;
    };
    let sysfs = FakeSysfs::new();
    sysfs.add_device(&address, 0x1af4, 0x1000, 0x020000);
    let mut d = Daemon::start(
        sysfs,
        "[pci]\ndevice_spec = ['{\"vendor_id\": \"1af4\"}']\n",
    );
    // Listen to the kernel too.
    let config = std::fs::read_to_string(d.config_path())
        .unwrap()
        .replace("netlink = false", "netlink = true");
    std::fs::write(d.config_path(), config).unwrap();
    d.kill();
    d.spawn();
    assert_eq!(d.tracked(), vec![address.clone()]);
    d.sysfs.remove(&address);
    std::fs::write(format!("/sys/bus/pci/devices/{address}/uevent"), "change").unwrap();
    assert!(
        d.wait_for(T, |d| d.tracked().is_empty()),
        "log:\n{}",
        d.log()
    );
}

#[test]
fn sigterm_stops_cleanly_and_sighup_reloads_the_configuration_or_keeps_the_last_good_one() {
    let (sysfs, vfs) = connectx_host();
    let mut d = Daemon::start(sysfs, "");
    assert!(d.tracked().is_empty());

    // A configuration that does not parse: refused, reported, the agent serves on.
    std::fs::write(d.config_path(), "[agent\nthis is not toml").unwrap();
    d.signal(Signal::HUP);
    assert!(d.wait_for(T, |d| !d.get("/v1/health")["config_error"].is_null()));
    let error = d.get("/v1/health")["config_error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.contains("pcitrack.toml"), "{error}");
    assert!(d.tracked().is_empty());

    // A good one: its device_spec takes effect.
    d.write_config(&format!("[pci]\ndevice_spec = ['{{\"vendor_id\": \"{MLX:04x}\", \"product_id\": \"{MLX_VF:04x}\"}}']\n"));
    d.signal(Signal::HUP);
    assert!(d.wait_for(T, |d| d.tracked() == vfs), "log:\n{}", d.log());
    assert!(d.get("/v1/health")["config_error"].is_null());

    d.signal(Signal::TERM);
    let status = d.wait_exit(T).expect("the agent did not stop on SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(
        !d.dir.path().join("state/pcitrack.sock").exists(),
        "socket left behind"
    );
}

#[test]
fn the_cli_talks_to_the_agent_over_its_socket() {
    let (sysfs, vfs) = connectx_host();
    let spec = format!(
        "[pci]\ndevice_spec = ['{{\"vendor_id\": \"{MLX:04x}\", \"product_id\": \"{MLX_VF:04x}\"}}']\n"
    );
    let d = Daemon::start(sysfs, &spec);
    let socket = d.dir.path().join("state/pcitrack.sock");
    let cli = |args: &[&str]| {
        let out = common::command(&d.dir.path().join("cli-state"))
            .args(args)
            .arg("--socket")
            .arg(&socket)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = cli(&[
        "claim",
        "--instance",
        "vm1",
        "--spec",
        r#"{"vendor_id": "15b3"}"#,
        "--count",
        "2",
        "--format",
        "json",
    ]);
    assert!(ok, "{err}");
    let claimed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(claimed.as_array().unwrap().len(), 2);
    let (ok, out, _) = cli(&["devices", "--instance", "vm1", "--format", "json"]);
    assert!(ok);
    let held: Vec<String> = serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["address"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(held, vfs);
    // The agent's refusal comes back as the CLI's error, naming what fell short.
    let (ok, _, err) = cli(&[
        "claim",
        "--instance",
        "vm2",
        "--spec",
        r#"{"vendor_id": "15b3"}"#,
    ]);
    assert!(!ok);
    assert!(err.contains("vm2"), "{err}");
    let (ok, out, err) = cli(&["free", "--instance", "vm1"]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    // Same answers as the API, by the same code.
    let (_, out, _) = cli(&["devices", "--format", "json"]);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        d.get("/v1/devices")
    );
}

#[test]
fn malformed_requests_get_an_error_naming_the_problem_and_change_nothing() {
    let (sysfs, _) = connectx_host();
    let spec = format!("[pci]\ndevice_spec = ['{{\"vendor_id\": \"{MLX:04x}\"}}']\n");
    let d = Daemon::start(sysfs, &spec);
    let before = d.get("/v1/devices");
    let cases: [(&str, &[u8], u16, &str); 5] = [
        ("/v1/claim", b"{not json", 400, "request body"),
        (
            "/v1/claim",
            br#"{"instance": "vm1", "spec": "{}", "colour": "red"}"#,
            422,
            "colour",
        ),
        (
            "/v1/claim",
            br#"{"instance": "vm1"}"#,
            400,
            "spec or an alias",
        ),
        (
            "/v1/claim",
            br#"{"instance": "vm1", "spec": "{vendor"}"#,
            400,
            "spec",
        ),
        ("/v1/free", br#"{}"#, 422, "instance"),
    ];
    for (path, body, status, needle) in cases {
        let r = d.client.post_raw(path, body.to_vec()).unwrap();
        let text = String::from_utf8_lossy(&r.body);
        assert_eq!(
            r.status,
            status,
            "{path} {}: {text}",
            String::from_utf8_lossy(body)
        );
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert!(v["error"].as_str().unwrap().contains(needle), "{text}");
    }
    let r = d.client.get("/v1/devices?status=broken").unwrap();
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    let r = d.client.get("/v1/nothing").unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(d.get("/v1/devices"), before);
}

#[test]
fn tcp_requires_the_bearer_token() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (sysfs, _) = connectx_host();
    let d = Daemon::start(
        sysfs,
        &format!("[api]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"s3cret-token-0123456789\"\n"),
    );
    let ask = |auth: Option<&str>| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let auth = auth
            .map(|a| format!("Authorization: Bearer {a}\r\n"))
            .unwrap_or_default();
        write!(
            s,
            "GET /v1/health HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    assert!(ask(None).starts_with("HTTP/1.1 401"), "{}", ask(None));
    assert!(ask(Some("wrong-token-000000000000")).starts_with("HTTP/1.1 401"));
    assert!(ask(Some("s3cret-token-0123456789")).starts_with("HTTP/1.1 200"));
    let _ = d;
}

#[test]
fn an_unreadable_device_listing_fails_the_reconcile_instead_of_emptying_the_inventory() {
    let (sysfs, vfs) = connectx_host();
    let spec = format!(
        "[pci]\ndevice_spec = ['{{\"vendor_id\": \"{MLX:04x}\", \"product_id\": \"{MLX_VF:04x}\"}}']\n"
    );
    let d = Daemon::start(sysfs, &spec);
    assert_eq!(d.tracked(), vfs);
    let listing = d.sysfs.root().join("bus/pci/devices");
    let aside = d.sysfs.root().join("bus/pci/devices.aside");
    std::fs::rename(&listing, &aside).unwrap();
    let r = d.client.post_raw("/v1/reconcile", Vec::new()).unwrap();
    let body = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(r.status, 503, "{body}");
    assert!(body.contains("bus/pci/devices"), "{body}");
    assert_eq!(d.tracked(), vfs, "nothing was deleted");
    let metrics = String::from_utf8(d.client.get("/metrics").unwrap().body).unwrap();
    assert!(
        metrics.contains("pcitrack_reconcile_failures_total 1"),
        "{metrics}"
    );
    std::fs::rename(&aside, &listing).unwrap();
    assert_eq!(
        d.client
            .post_raw("/v1/reconcile", Vec::new())
            .unwrap()
            .status,
        200
    );
}

#[test]
fn json_logs_carry_the_policy_and_device_as_fields() {
    let (sysfs, vfs) = connectx_host();
    let spec = format!(
        "[pci]\ndevice_spec = ['{{\"vendor_id\": \"{MLX:04x}\", \"product_id\": \"{MLX_VF:04x}\"}}']\n"
    );
    let mut d = Daemon::start(sysfs, &spec);
    // Restart with JSON logs from the configuration.
    let config = std::fs::read_to_string(d.config_path()).unwrap().replacen(
        "[agent]\n",
        "[agent]\nlog_format = \"json\"\n",
        1,
    );
    std::fs::write(d.config_path(), config).unwrap();
    d.kill();
    d.spawn();
    std::fs::write(d.policies().join("broken.wasm"), b"not wasm").unwrap();
    assert!(d.wait_for(T, |d| d.log().contains("policy refused")));
    d.sysfs.remove(&vfs[0]);
    d.uevent("remove", &vfs[0]);
    assert!(d.wait_for(T, |d| d.log().contains("device deleted")));
    let lines: Vec<Value> = d
        .log()
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["fields"]["device"].is_string()),
        "no line with a device field"
    );
    assert!(
        lines.iter().any(|l| l["fields"]["policy"] == "broken"),
        "no line with the refused policy's name"
    );
}
