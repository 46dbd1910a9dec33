//! A vendor's matcher dropped into the policies directory, tested with its own policy test
//! file, as a vendor would before shipping it.

mod common;
use common::{example_policy, pcitrack};

#[test]
fn the_connectx_example_passes_its_policy_tests() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::copy(
        example_policy("pcitrack-example-connectx-matcher"),
        policies.join("connectx.wasm"),
    )
    .unwrap();
    let test = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/policies/connectx-vf-matcher/policy-test.toml");
    let out = pcitrack(
        &[
            "policy".as_ref(),
            "test".as_ref(),
            test.as_os_str(),
            "--policies".as_ref(),
            policies.as_os_str(),
        ],
        dir.path(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("ok ") && stdout.contains("(3 expectations)"),
        "{stdout}"
    );
}
