//! The harness starts a real Placement on SQLite, keeps its data across a stop and a start
//! on the same port, and stops it when dropped.

use pcitrack_placement_harness::{Placement, python};
use serde_json::json;

#[test]
fn sqlite_placement_keeps_a_provider_across_stop_and_start_again() {
    let Some(python) = python("sqlite_placement_keeps_a_provider_across_stop_and_start_again")
    else {
        return;
    };
    let mut placement = Placement::start_sqlite(&python);
    let url = placement.url().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let root = placement.get("/");
    assert_eq!(root["versions"][0]["max_version"], "1.39", "{root}");

    let uuid = "6e3a2f5c-0d4b-4d0f-9a43-5f1f6a4b1c01";
    let (status, created) = placement.request(
        "POST",
        "/resource_providers",
        Some(&json!({"name": "harness-host", "uuid": uuid})),
    );
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["generation"], 0, "{created}");
    let (status, body) = placement.request("PUT", "/resource_classes/CUSTOM_HARNESS", None);
    assert!(status == 201 || status == 204, "{status} {body}");
    let (status, body) = placement.request(
        "PUT",
        &format!("/resource_providers/{uuid}/inventories"),
        Some(&json!({"resource_provider_generation": 0,
                     "inventories": {"CUSTOM_HARNESS": {"total": 2, "max_unit": 2}}})),
    );
    assert_eq!(status, 200, "{body}");
    // A bogus path is a 404 through `request`, not a panic.
    assert_eq!(
        placement
            .request("GET", "/resource_providers/not-a-uuid/nothing", None)
            .0,
        404
    );

    placement.stop();
    assert!(
        ureq::get(&format!("{url}/")).call().is_err(),
        "Placement still answers at {url} after stop()"
    );
    placement.start_again();
    assert_eq!(placement.url(), url, "start_again keeps the port");
    let provider = placement.get(&format!("/resource_providers/{uuid}"));
    assert_eq!(provider["name"], "harness-host", "{provider}");
    let inventories = placement.get(&format!("/resource_providers/{uuid}/inventories"));
    assert_eq!(
        inventories["inventories"]["CUSTOM_HARNESS"]["total"], 2,
        "{inventories}"
    );

    drop(placement);
    assert!(
        ureq::get(&format!("{url}/")).call().is_err(),
        "Placement outlived its handle at {url}"
    );
}
