//! FaultProxy in front of a real Placement: forwards requests with bodies, fails the next N,
//! delays, refuses, answers 502 when Placement is stopped, and logs what it saw.

use std::time::{Duration, Instant};

use pcitrack_placement_harness::{Fault, FaultProxy, Placement, python};
use serde_json::{Value, json};

fn call(
    url: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), ureq::Error> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let builder = ureq::http::Request::builder()
        .method(method)
        .uri(format!("{url}{path}"))
        .header("X-Auth-Token", "admin")
        .header("OpenStack-API-Version", "placement 1.39");
    let mut response = match body {
        Some(b) => agent.run(
            builder
                .header("Content-Type", "application/json")
                .body(serde_json::to_vec(b).unwrap())
                .unwrap(),
        )?,
        None => agent.run(builder.body(()).unwrap())?,
    };
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string()?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

#[test]
fn fault_proxy_forwards_fails_delays_refuses_and_logs() {
    let Some(python) = python("fault_proxy_forwards_fails_delays_refuses_and_logs") else {
        return;
    };
    let mut placement = Placement::start_sqlite(&python);
    let proxy = FaultProxy::start(placement.url());
    let url = proxy.url().to_string();

    // Forwarded, body included.
    let uuid = "0b9f1c0e-7d3c-4e57-a7a4-2f4f2d0c5a11";
    let (status, created) = call(
        &url,
        "POST",
        "/resource_providers",
        Some(&json!({"name": "through-proxy", "uuid": uuid})),
    )
    .unwrap();
    assert_eq!(status, 200, "{created}");
    assert_eq!(
        placement.get(&format!("/resource_providers/{uuid}"))["name"],
        "through-proxy"
    );

    // The next two requests fail with Placement's error shape, the third goes through.
    proxy.set(Fault::Fail {
        status: 500,
        count: 2,
    });
    for _ in 0..2 {
        let (status, body) = call(&url, "GET", "/resource_providers", None).unwrap();
        assert_eq!(status, 500);
        assert_eq!(body["errors"][0]["status"], 500, "{body}");
        assert_eq!(body["errors"][0]["detail"], "injected", "{body}");
    }
    assert_eq!(proxy.fault(), Fault::None, "a Fail counts down to None");
    let (status, body) = call(&url, "GET", "/resource_providers", None).unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        body["resource_providers"].as_array().unwrap().len(),
        1,
        "{body}"
    );

    proxy.set(Fault::Fail {
        status: 409,
        count: 1,
    });
    let (status, body) = call(&url, "GET", "/", None).unwrap();
    assert_eq!(
        (status, &body["errors"][0]["code"]),
        (409, &json!("placement.concurrent_update"))
    );

    // Delay: the answer comes, no sooner than the delay.
    proxy.set(Fault::Delay(Duration::from_millis(400)));
    let started = Instant::now();
    assert_eq!(call(&url, "GET", "/", None).unwrap().0, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );

    // Refuse: no HTTP answer at all.
    proxy.set(Fault::Refuse);
    assert!(
        call(&url, "GET", "/", None).is_err(),
        "a refused request got an answer"
    );
    proxy.set(Fault::None);
    assert_eq!(call(&url, "GET", "/", None).unwrap().0, 200);

    // Placement stopped: the proxy answers 502, as a gateway in front of it would.
    placement.stop();
    assert_eq!(call(&url, "GET", "/", None).unwrap().0, 502);
    placement.start_again();
    assert_eq!(
        call(&url, "GET", &format!("/resource_providers/{uuid}"), None)
            .unwrap()
            .0,
        200
    );

    let seen = proxy.requests();
    assert_eq!(seen.len(), 10, "{seen:?}");
    assert_eq!(
        seen[0],
        ("POST".to_string(), "/resource_providers".to_string())
    );
    assert_eq!(
        seen[9],
        ("GET".to_string(), format!("/resource_providers/{uuid}"))
    );
    proxy.clear_requests();
    assert!(proxy.requests().is_empty());
}
