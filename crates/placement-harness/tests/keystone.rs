//! Placement behind keystonemiddleware with a real Keystone: a token from
//! `POST /v3/auth/tokens` (password method) is accepted, a bogus one gets 401, and the catalog
//! lists Placement's public and internal endpoints.

use pcitrack_placement_harness::{Keystone, Placement, keystone_python, python};

#[test]
fn keystone_token_is_accepted_by_placement_and_a_bogus_one_is_refused() {
    let test = "keystone_token_is_accepted_by_placement_and_a_bogus_one_is_refused";
    let Some(placement_python) = python(test) else {
        return;
    };
    let Some(keystone_python) = keystone_python(test) else {
        return;
    };
    let keystone = Keystone::start(&keystone_python);
    assert!(
        keystone.auth_url().ends_with("/v3"),
        "{}",
        keystone.auth_url()
    );
    let placement = Placement::start_sqlite_keystone(&placement_python, &keystone);

    let token = keystone.token_for(
        &keystone.username,
        &keystone.password,
        &keystone.project_name,
    );
    let (status, body) = placement.request_as(&token, "GET", "/resource_providers", None);
    assert_eq!(status, 200, "a Keystone token refused: {body}");
    let (status, body) = placement.request_as("not-a-token", "GET", "/resource_providers", None);
    assert_eq!(status, 401, "a bogus token: {body}");
    // `get` and `request` carry the admin's Keystone token.
    assert!(placement.get("/resource_providers")["resource_providers"].is_array());
    // Placement's root answers without a token (version discovery), as Nova expects.
    assert_eq!(placement.request_as("", "GET", "/", None).0, 200);

    // The catalog names Placement where a client looks for it (public and internal).
    let catalog = keystone_catalog(&keystone, &token);
    let placement_entry = catalog
        .iter()
        .find(|s| s["type"] == "placement")
        .unwrap_or_else(|| panic!("no placement service in the catalog: {catalog:?}"));
    let mut interfaces: Vec<(String, String, String)> = placement_entry["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["interface"].as_str().unwrap().to_string(),
                e["region_id"].as_str().unwrap().to_string(),
                e["url"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    interfaces.sort();
    let url = placement.url().to_string();
    assert_eq!(
        interfaces,
        vec![
            ("internal".to_string(), "RegionOne".to_string(), url.clone()),
            ("public".to_string(), "RegionOne".to_string(), url),
        ]
    );
}

fn keystone_catalog(keystone: &Keystone, token: &str) -> Vec<serde_json::Value> {
    let url = format!("{}/auth/catalog", keystone.auth_url());
    let mut response = ureq::get(&url)
        .header("X-Auth-Token", token)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let body: serde_json::Value = response.body_mut().read_json().unwrap();
    body["catalog"].as_array().cloned().unwrap_or_default()
}
