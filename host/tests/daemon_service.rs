//! What a service manager and a metrics scraper see of the agent: systemd's readiness
//! protocol (`READY=1` only once the first reconcile is done and the API answers, watchdog
//! pings, `STOPPING=1` on SIGTERM) and the metrics' declared format.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use pcitrack_discovery::fixture::FakeSysfs;

mod common;

use common::daemon::{Daemon, add_connectx};
use rustix::process::Signal;

/// Receives one notification (a datagram of `KEY=value` lines), waiting up to `timeout`.
fn receive(socket: &UnixDatagram, timeout: Duration) -> Option<String> {
    socket.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Receives notifications until one has the line `line`; returns those before it.
fn until(socket: &UnixDatagram, line: &str, timeout: Duration) -> Vec<String> {
    let started = Instant::now();
    let mut before = Vec::new();
    while let Some(left) = timeout.checked_sub(started.elapsed()) {
        match receive(socket, left.max(Duration::from_millis(1))) {
            Some(m) if m.lines().any(|l| l == line) => return before,
            Some(m) => before.push(m),
            None => break,
        }
    }
    panic!("no {line} within {timeout:?}; received {before:?}");
}

#[test]
fn ready_comes_after_the_first_reconcile_with_the_api_answering_then_watchdog_and_stopping() {
    let sysfs = FakeSysfs::new();
    add_connectx(&sysfs, "0000:81:00.0", 2);
    let mut d = Daemon::prepare(sysfs, "");
    let path = d.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    d.env("NOTIFY_SOCKET", &path);
    d.env("WATCHDOG_USEC", "200000");
    d.spawn_detached();

    let before = until(&socket, "READY=1", Duration::from_secs(120));
    assert!(before.is_empty(), "notified before READY=1: {before:?}");
    // At the moment READY=1 arrives the API already answers, with the first reconcile done.
    let health = d
        .client
        .get("/v1/health")
        .expect("the API answers at READY=1");
    assert_eq!(health.status, 200);
    let health: serde_json::Value = serde_json::from_slice(&health.body).unwrap();
    assert_eq!(health["last_reconcile"]["trigger"], "start", "{health}");
    assert_eq!(health["last_reconcile"]["discovered"], 3, "{health}");

    // WatchdogSec=200ms: pings every 100 ms.
    let started = Instant::now();
    for _ in 0..3 {
        until(&socket, "WATCHDOG=1", Duration::from_secs(5));
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "three pings took {:?}",
        started.elapsed()
    );

    d.signal(Signal::TERM);
    until(&socket, "STOPPING=1", Duration::from_secs(30));
    let status = d.wait_exit(Duration::from_secs(30)).expect("stopped");
    assert!(status.success(), "{status:?}");
}

#[test]
fn without_a_watchdog_the_agent_sends_no_pings() {
    let mut d = Daemon::prepare(FakeSysfs::new(), "");
    let path = d.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    d.env("NOTIFY_SOCKET", &path);
    d.spawn_detached();
    until(&socket, "READY=1", Duration::from_secs(120));
    assert_eq!(receive(&socket, Duration::from_millis(500)), None);
}

#[test]
fn metrics_are_served_as_openmetrics_text_ending_in_eof() {
    let d = Daemon::start(FakeSysfs::new(), "");
    let r = d.client.get("/metrics").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.content_type.as_deref(),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let body = String::from_utf8(r.body).unwrap();
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(
        body.contains("pcitrack_reconciles_total{trigger=\"start\"} 1"),
        "{body}"
    );
}
