//! `pcitrack policy test` on the shipped example test files, and on a wrong expectation.

mod common;
use common::pcitrack;

use std::path::{Path, PathBuf};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/policy-tests")
}

#[test]
fn the_shipped_policy_tests_pass() {
    let state = tempfile::tempdir().unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 2);
    let mut args: Vec<&std::ffi::OsStr> = vec!["policy".as_ref(), "test".as_ref()];
    args.extend(files.iter().map(|f| f.as_os_str()));
    let out = pcitrack(&args, state.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("0 not met, 0 file(s) could not run"),
        "{stdout}"
    );
}

#[test]
fn a_wrong_expectation_fails_with_a_diff() {
    let state = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(examples().join("nova-basics.toml"))
        .unwrap()
        .replace(
            "tags = { physical_network = \"physnet1\" }",
            "tags = { physical_network = \"physnet9\" }",
        );
    let file = dir.path().join("wrong.toml");
    std::fs::write(&file, text).unwrap();
    let out = pcitrack(
        &["policy".as_ref(), "test".as_ref(), file.as_os_str()],
        state.path(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(stdout.contains("FAIL"), "{stdout}");
    assert!(
        stdout.contains(r#"0000:21:00.1 tags: expected {physical_network="physnet9"}, got {physical_network="physnet1"}"#),
        "{stdout}"
    );
}

#[test]
fn an_invalid_spec_in_a_test_file_is_reported_with_novas_reason() {
    let state = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[config.pci]\ndevice_spec = ['{\"vendor_id\": \"12345\"}']\n[[expect]]\naddress = '0000:00:01.0'\nassignable = false\n",
    )
    .unwrap();
    let out = pcitrack(
        &["policy".as_ref(), "test".as_ref(), file.as_os_str()],
        state.path(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stdout.contains("Invalid [pci]device_spec config"),
        "{stdout}"
    );
}

#[test]
fn a_test_file_listing_an_address_twice_is_refused_naming_it() {
    let state = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(examples().join("nova-basics.toml")).unwrap();
    // The file's first device, listed again at its end.
    let device = "\n[[device]]\naddress = \"0000:21:00.1\"\nvendor_id = \"8086\"\n\
                  product_id = \"154c\"\nclass_code = \"020000\"\ndev_type = \"type-VF\"\n";
    let file = dir.path().join("twice.toml");
    std::fs::write(&file, format!("{text}{device}")).unwrap();
    let out = pcitrack(
        &["policy".as_ref(), "test".as_ref(), file.as_os_str()],
        state.path(),
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains("twice.toml") && all.contains("device 0000:21:00.1 is listed 2 times"),
        "{all}"
    );
}
