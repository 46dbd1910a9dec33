//! The client and one report ([`Reporter`]) against a real Placement 16.0.0 (SQLite,
//! noauth2) started by `pcitrack-placement-harness`; skipped (printed) when
//! `PCITRACK_PLACEMENT_PYTHON` is unset. Requests go through a [`FaultProxy`] so that the
//! tests see every call the client makes.

mod common;

use std::time::Duration;

use common::*;
use pcitrack_placement::{
    Auth, ClientConfig, ClientError, KeystonePassword, PlacementClient, ReportError, Reporter,
    ViewError,
};
use pcitrack_placement_harness::{Fault, FaultProxy, Placement, python};
use serde_json::json;
use uuid::Uuid;

const TIMEOUT: Duration = Duration::from_secs(20);

fn start(test: &str) -> Option<(Placement, FaultProxy)> {
    let python = python(test)?;
    let placement = Placement::start_sqlite(&python);
    let proxy = FaultProxy::start(placement.url());
    Some((placement, proxy))
}

fn writes(proxy: &FaultProxy) -> Vec<(String, String)> {
    proxy
        .requests()
        .into_iter()
        .filter(|(m, _)| m != "GET")
        .collect()
}

#[test]
fn a_report_writes_the_view_and_a_second_report_sends_nothing() {
    let Some((placement, proxy)) =
        start("a_report_writes_the_view_and_a_second_report_sends_nothing")
    else {
        return;
    };
    let persisted = Persisted::default();
    let mut reporter = Reporter::new(client(proxy.url(), TIMEOUT));
    let first = reporter
        .report(&input(host_devices()), &persisted.callback())
        .unwrap();
    // Empty Placement: 1 read (no root yet), 2 classes + 2 traits, root + 3 providers,
    // 3 inventories, 3 trait sets.
    assert_eq!(first.calls, 1 + 4 + 4 + 3 + 3, "{:?}", proxy.requests());
    assert_eq!(proxy.requests().len() as u32, first.calls);

    let held = held(&placement);
    assert_eq!(held.len(), 4, "root and three providers: {held:?}");
    let root = &held[HOST];
    assert_eq!(Some(root.uuid), persisted.root());
    assert_eq!(root.parent, None);
    let pf = &held[&rp_name("0000:04:00.0")];
    assert_eq!(pf.parent, Some(root.uuid));
    assert_eq!(pf.inventories[RC_1572], (1, 1, 0));
    assert_eq!(pf.traits, pf_traits());
    let vfs = &held[&rp_name("0000:81:00.0")];
    assert_eq!(vfs.inventories[RC_154C], (4, 4, 0));
    assert_eq!(
        persisted.uuids()[&addr("0000:81:00.0")],
        vfs.uuid,
        "the VFs' provider uuid is kept under the PF's address"
    );
    // What the view says is what Placement holds.
    for p in &first.view.providers {
        let h = &held[&p.name];
        assert_eq!(h.uuid, p.uuid);
        assert_eq!(h.traits, p.traits);
        for (rc, w) in &p.inventories {
            assert_eq!(h.inventories[rc], (w.total as u64, w.max_unit as u64, 0));
        }
    }

    // The same state again: no call at all.
    proxy.clear_requests();
    let second = reporter
        .report(&input(host_devices()), &persisted.callback())
        .unwrap();
    assert_eq!(second.calls, 0);
    assert_eq!(proxy.requests(), vec![]);

    // A new reporter (an agent restart) with the persisted uuids reads, and writes nothing.
    let mut again = input(host_devices());
    again.known_uuids = persisted.uuids();
    again.root_uuid = persisted.root();
    let mut restarted = Reporter::new(client(proxy.url(), TIMEOUT));
    let third = restarted.report(&again, &persisted.callback()).unwrap();
    assert_eq!(third.changes, 0);
    assert_eq!(third.calls, 2 + 3 * 4, "2 + 3 reads per provider");
    assert_eq!(writes(&proxy), vec![]);
}

#[test]
fn read_tree_gives_generations_inventories_traits_and_usages() {
    let Some((placement, proxy)) =
        start("read_tree_gives_generations_inventories_traits_and_usages")
    else {
        return;
    };
    let c = client(proxy.url(), TIMEOUT);
    assert_eq!(c.read_tree(HOST).unwrap(), None);
    let persisted = Persisted::default();
    Reporter::new(c.clone())
        .report(&input(host_devices()), &persisted.callback())
        .unwrap();
    let rp = persisted.uuids()[&addr("0000:81:00.0")];
    let consumer = Uuid::from_u128(0xc1);
    assert_eq!(allocate(&placement, consumer, rp, RC_154C, 2), 204);

    let tree = c.read_tree(HOST).unwrap().unwrap();
    assert_eq!(tree.providers.len(), 4);
    let p = tree.by_uuid(rp).unwrap();
    let raw = placement.get(&format!("/resource_providers/{rp}"));
    assert_eq!(u64::from(p.generation), raw["generation"].as_u64().unwrap());
    assert!(
        p.generation >= 3,
        "created, inventories, traits, allocation"
    );
    assert_eq!(p.usages[RC_154C], 2);
    assert_eq!(p.inventories[RC_154C].total, 4);
    assert!(p.is_pcitrack_owned());

    let allocations = c.allocations(consumer).unwrap();
    assert_eq!(allocations.len(), 1);
    assert_eq!(allocations[&rp][RC_154C], 2);
    assert!(c.allocations(Uuid::from_u128(0xdead)).unwrap().is_empty());
}

#[test]
fn placements_errors_name_method_path_status_and_code() {
    let Some((_placement, proxy)) = start("placements_errors_name_method_path_status_and_code")
    else {
        return;
    };
    let c = client(proxy.url(), TIMEOUT);
    let missing = Uuid::from_u128(42);
    let path = format!("/resource_providers/{missing}/traits");
    let err = c
        .request(
            "PUT",
            &path,
            Some(&json!({"resource_provider_generation": 0, "traits": []})),
        )
        .unwrap_err();
    let ClientError::Placement {
        method,
        status,
        code,
        detail,
        ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!((method.as_str(), *status), ("PUT", 404));
    assert_eq!(code, "placement.undefined_code");
    assert!(detail.contains(&missing.to_string()), "{detail}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("PUT {path}")) && text.contains("404"),
        "{text}"
    );

    // No Placement there: a transport error naming the URL.
    let nowhere = client("http://127.0.0.1:9", Duration::from_secs(2));
    let err = nowhere.read_tree(HOST).unwrap_err();
    assert!(
        matches!(&err, ClientError::Transport { url, .. } if url.starts_with("http://127.0.0.1:9/resource_providers")),
        "{err:?}"
    );
}

#[test]
fn an_outside_writer_bumping_a_generation_gets_a_409_and_the_report_converges() {
    let Some((placement, proxy)) =
        start("an_outside_writer_bumping_a_generation_gets_a_409_and_the_report_converges")
    else {
        return;
    };
    let persisted = Persisted::default();
    let mut reporter = Reporter::new(client(proxy.url(), TIMEOUT));
    reporter
        .report(&input(host_devices()), &persisted.callback())
        .unwrap();
    let rp = persisted.uuids()[&addr("0000:81:00.0")];
    // Someone else writes the provider between our read and our write: its generation moves.
    let current = placement.get(&format!("/resource_providers/{rp}/traits"));
    let (status, _) = placement.request("PUT", "/traits/CUSTOM_SOMEONE_ELSE", None);
    assert!(status == 201 || status == 204);
    let mut traits = current["traits"].as_array().unwrap().clone();
    traits.push(json!("CUSTOM_SOMEONE_ELSE"));
    let (status, body) = placement.request(
        "PUT",
        &format!("/resource_providers/{rp}/traits"),
        Some(&json!({
            "resource_provider_generation": current["resource_provider_generation"],
            "traits": traits,
        })),
    );
    assert_eq!(status, 200, "{body}");

    // A VF went away: the inventory write names the old generation, gets 409, re-reads.
    let mut devices = host_devices();
    devices.retain(|d| d.address() != addr("0000:81:00.5"));
    proxy.clear_requests();
    let outcome = reporter
        .report(&input(devices), &persisted.callback())
        .unwrap();
    assert_eq!(outcome.conflicts, 1, "{:?}", proxy.requests());
    let held = held(&placement);
    let vfs = &held[&rp_name("0000:81:00.0")];
    assert_eq!(vfs.inventories[RC_154C], (3, 3, 0));
    assert!(
        !vfs.traits.contains("CUSTOM_SOMEONE_ELSE"),
        "pcitrack's provider gets pcitrack's traits back: {:?}",
        vfs.traits
    );
    assert_eq!(held.len(), 4);
}

#[test]
fn a_root_pcitrack_did_not_create_is_refused_unless_adopted() {
    let Some((placement, proxy)) =
        start("a_root_pcitrack_did_not_create_is_refused_unless_adopted")
    else {
        return;
    };
    let nova_root = Uuid::from_u128(0xaaaa);
    let (status, body) = placement.request(
        "POST",
        "/resource_providers",
        Some(&json!({"uuid": nova_root.to_string(), "name": HOST})),
    );
    assert_eq!(status, 200, "{body}");
    let persisted = Persisted::default();
    let mut reporter = Reporter::new(client(proxy.url(), TIMEOUT));
    let err = reporter
        .report(&input(host_devices()), &persisted.callback())
        .unwrap_err();
    assert!(
        matches!(err, ReportError::ForeignRoot { uuid, .. } if uuid == nova_root),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("adopt_root = true") && text.contains(HOST),
        "{text}"
    );
    assert!(!err.is_transient());
    assert_eq!(writes(&proxy), vec![], "nothing written when refused");
    assert_eq!(persisted.root(), None);

    let mut adopt = input(host_devices());
    adopt.adopt_root = true;
    reporter.report(&adopt, &persisted.callback()).unwrap();
    assert_eq!(persisted.root(), Some(nova_root));
    let held = held(&placement);
    assert_eq!(held.len(), 4);
    assert_eq!(held[&rp_name("0000:04:00.0")].parent, Some(nova_root));
}

#[test]
fn pci_providers_nova_owns_are_refused_even_with_adopt_root() {
    let Some((placement, proxy)) =
        start("pci_providers_nova_owns_are_refused_even_with_adopt_root")
    else {
        return;
    };
    let root = Uuid::from_u128(0xaaaa);
    let child = Uuid::from_u128(0xbbbb);
    let name = rp_name("0000:04:00.0");
    for body in [
        json!({"uuid": root.to_string(), "name": HOST}),
        json!({"uuid": child.to_string(), "name": name, "parent_provider_uuid": root.to_string()}),
    ] {
        let (status, answer) = placement.request("POST", "/resource_providers", Some(&body));
        assert_eq!(status, 200, "{answer}");
    }
    let (status, answer) = placement.request(
        "PUT",
        &format!("/resource_providers/{child}/traits"),
        Some(&json!({"resource_provider_generation": 0,
                      "traits": ["COMPUTE_MANAGED_PCI_DEVICE", "OWNER_NOVA"]})),
    );
    assert_eq!(status, 200, "{answer}");

    let mut adopt = input(host_devices());
    adopt.adopt_root = true;
    let mut reporter = Reporter::new(client(proxy.url(), TIMEOUT));
    let err = reporter.report(&adopt, &|_, _| {}).unwrap_err();
    let ReportError::View(ViewError::ForeignPciProviders { providers, .. }) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(providers, &name);
    assert!(err.to_string().contains("nova-compute"), "{err}");
    assert_eq!(writes(&proxy), vec![]);
}

#[test]
fn a_device_gone_while_allocated_keeps_its_provider_until_the_allocation_goes() {
    let Some((placement, proxy)) =
        start("a_device_gone_while_allocated_keeps_its_provider_until_the_allocation_goes")
    else {
        return;
    };
    let persisted = Persisted::default();
    let mut reporter = Reporter::new(client(proxy.url(), TIMEOUT));
    reporter
        .report(&input(host_devices()), &persisted.callback())
        .unwrap();
    let pf_rp = persisted.uuids()[&addr("0000:04:00.0")];
    let vf_rp = persisted.uuids()[&addr("0000:81:00.0")];
    let consumer = Uuid::from_u128(0xc1);
    assert_eq!(allocate(&placement, consumer, pf_rp, RC_1572, 1), 204);
    let consumer2 = Uuid::from_u128(0xc2);
    assert_eq!(allocate(&placement, consumer2, vf_rp, RC_154C, 3), 204);

    // The PF and three VFs vanish from the host (the tracker no longer counts them: in
    // Placement's eyes they were allocated by a scheduler the tracker has not heard of).
    let devices = vec![pf("0000:05:00.0"), vf("0000:81:00.2", "0000:81:00.0")];
    reporter
        .report(&input(devices.clone()), &persisted.callback())
        .unwrap();
    let held_now = held(&placement);
    let gone = &held_now[&rp_name("0000:04:00.0")];
    assert_eq!(gone.inventories[RC_1572], (1, 1, 0), "kept at its usage");
    assert_eq!(
        held_now[&rp_name("0000:81:00.0")].inventories[RC_154C],
        (3, 3, 0)
    );
    for h in held_now.values() {
        for (rc, used) in &h.usages {
            assert!(*used <= h.inventories[rc].0, "usage above inventory: {h:?}");
        }
    }

    // The allocations go; the next report re-reads on its own (an inventory held up by
    // allocations is never skipped as "nothing changed") and the provider goes too.
    for c in [consumer, consumer2] {
        assert_eq!(
            placement
                .request("DELETE", &format!("/allocations/{c}"), None)
                .0,
            204
        );
    }
    reporter
        .report(&input(devices), &persisted.callback())
        .unwrap();
    let held_after = held(&placement);
    assert!(
        !held_after.contains_key(&rp_name("0000:04:00.0")),
        "{held_after:?}"
    );
    assert_eq!(
        held_after[&rp_name("0000:81:00.0")].inventories[RC_154C],
        (1, 1, 0)
    );
}

#[test]
fn keystone_password_auth_finds_placement_in_the_catalog_and_renews_on_401() {
    let test = "keystone_password_auth_finds_placement_in_the_catalog_and_renews_on_401";
    let Some(python) = python(test) else {
        return;
    };
    let Some(ks_python) = pcitrack_placement_harness::keystone_python(test) else {
        return;
    };
    let ks = pcitrack_placement_harness::Keystone::start(&ks_python);
    let placement = Placement::start_sqlite_keystone(&python, &ks);
    let password = KeystonePassword {
        auth_url: ks.auth_url(),
        username: ks.username.clone(),
        password: ks.password.clone(),
        project_name: ks.project_name.clone(),
        user_domain_name: ks.user_domain_name.clone(),
        project_domain_name: ks.project_domain_name.clone(),
        region_name: Some(ks.region.clone()),
        valid_interfaces: KeystonePassword::default_interfaces(),
    };
    let config = |auth: Auth, endpoint: Option<&str>| ClientConfig {
        auth,
        endpoint_override: endpoint.map(str::to_string),
        timeout: TIMEOUT,
    };

    // The endpoint from the catalog; a report through it.
    let c = PlacementClient::new(config(Auth::Password(password.clone()), None));
    let persisted = Persisted::default();
    Reporter::new(c.clone())
        .report(&input(host_devices()), &persisted.callback())
        .unwrap();
    assert_eq!(held(&placement).len(), 4);

    // Placement refuses the token once: renewed, and the call goes through.
    let proxy = FaultProxy::start(placement.url());
    let via_proxy =
        PlacementClient::new(config(Auth::Password(password.clone()), Some(proxy.url())));
    via_proxy.read_tree(HOST).unwrap();
    proxy.set(Fault::Fail {
        status: 401,
        count: 1,
    });
    assert_eq!(
        via_proxy.read_tree(HOST).unwrap().unwrap().providers.len(),
        4
    );
    // Refused again after the renewal: an authentication error naming Keystone and the user.
    proxy.set(Fault::Fail {
        status: 401,
        count: 2,
    });
    let err = via_proxy.read_tree(HOST).unwrap_err();
    assert!(matches!(err, ClientError::Auth { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&ks.auth_url()) && text.contains(&ks.username),
        "{text}"
    );

    // A wrong password: Keystone's refusal, named.
    let wrong = KeystonePassword {
        password: "wrong".into(),
        ..password
    };
    let err = PlacementClient::new(config(Auth::Password(wrong), None))
        .read_tree(HOST)
        .unwrap_err();
    let ClientError::Auth {
        auth_url, detail, ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(auth_url, &ks.auth_url());
    assert!(detail.contains("401"), "{detail}");

    // A fixed token Placement does not take.
    let err = PlacementClient::new(config(Auth::Token("bogus".into()), Some(placement.url())))
        .read_tree(HOST)
        .unwrap_err();
    assert!(matches!(err, ClientError::TokenRefused { .. }), "{err:?}");
}
