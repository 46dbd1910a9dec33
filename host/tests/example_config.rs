//! The shipped example configuration is valid, and the embedded policies accept it.

use std::path::Path;

use pcitrack::config::Config;

#[test]
fn the_example_configuration_loads_and_its_specs_are_accepted() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/pcitrack.toml");
    let mut config = Config::load(&path).unwrap();
    assert_eq!(config.pci.device_spec.len(), 3);
    config.agent.state_dir = Some(tempfile::tempdir().unwrap().keep());
    let policies = pcitrack::policies::load(&config, None).unwrap();
    assert!(
        policies.loaded.errors.is_empty(),
        "{:?}",
        policies.loaded.errors
    );
}

#[test]
fn the_example_digest_allowlist_parses_once_uncommented() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/pcitrack.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut in_list = false;
    let uncommented: String = text
        .lines()
        .map(|l| {
            if l.starts_with("# allowed_sha256 = [") {
                in_list = true;
            }
            let line = if in_list { &l[2..] } else { l };
            if in_list && l == "# ]" {
                in_list = false;
            }
            format!("{line}\n")
        })
        .collect();
    assert_ne!(
        uncommented,
        format!("{text}\n"),
        "no allowlist example to uncomment"
    );
    let config = Config::parse(&uncommented, &path).unwrap();
    assert_eq!(
        config.policies.allowed_sha256.as_ref().map(Vec::len),
        Some(1)
    );
    assert!(config.allowed_digests().unwrap().unwrap().permits(b""));
}

#[test]
fn an_invalid_device_spec_is_refused_with_novas_reason() {
    let mut config = Config::default();
    config.agent.state_dir = Some(tempfile::tempdir().unwrap().keep());
    config.pci.device_spec = vec![r#"{"vendor_id": "80860"}"#.into()];
    let policies = pcitrack::policies::load(&config, None).unwrap();
    let reasons: Vec<String> = policies
        .loaded
        .errors
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert!(
        reasons.iter().any(|r| r
            .starts_with("matcher: refused its configuration: Invalid [pci]device_spec config")),
        "{reasons:?}"
    );
}

#[test]
fn the_systemd_unit_runs_the_agent_with_the_example_configuration_path() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/pcitrack.service"),
    )
    .unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    // The agent speaks sd_notify: READY=1 after its first reconcile, STOPPING=1, watchdog.
    let setting = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {key}= in the unit"))
    };
    assert_eq!(setting("Type"), "notify");
    assert_eq!(setting("NotifyAccess"), "main");
    assert_eq!(setting("StateDirectory"), "pcitrack");
    assert!(
        unit.lines().any(|l| l.starts_with("#WatchdogSec=")),
        "the watchdog is offered, commented out"
    );
    let args: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(
        args[1..],
        ["--config", "/etc/pcitrack/pcitrack.toml", "run"]
    );
    // The binary accepts exactly that command line.
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_pcitrack"))
        .args(&args[1..])
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--sysfs-root"));
}
