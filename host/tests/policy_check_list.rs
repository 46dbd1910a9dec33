//! `pcitrack policy check` and `pcitrack policy list` through the binary.

mod common;
use common::pcitrack;

#[test]
fn check_refuses_a_file_that_is_not_a_policy_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("evil.wasm");
    std::fs::write(&file, "#!/bin/sh\n").unwrap();
    let out = pcitrack(&["policy", "check", file.to_str().unwrap()], dir.path());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refused: evil: not a WebAssembly file"),
        "{stderr}"
    );
}

#[test]
fn list_shows_the_defaults_and_a_refused_replacement_leaves_the_default_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let out = pcitrack(
        &[
            "policy",
            "list",
            "--policies",
            policies.to_str().unwrap(),
            "--format",
            "json",
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let chain: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<(&str, &str)> = chain
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["kind"].as_str().unwrap(), e["policy"].as_str().unwrap()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("matcher", "nova-device-spec"),
            ("tagger", "nova-remote-managed"),
            ("cleanup", "nova-cleanup")
        ]
    );

    std::fs::write(policies.join("cleanup.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let out = pcitrack(
        &["policy", "list", "--policies", policies.to_str().unwrap()],
        dir.path(),
    );
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refused: cleanup: a core WebAssembly module"),
        "{stderr}"
    );
    // A refused replacement replaces nothing: the embedded default stays in the chain.
    assert!(
        stdout.lines().any(|l| l.starts_with("cleanup")
            && l.contains("nova-cleanup")
            && l.ends_with("embedded")),
        "{stdout}"
    );
}
