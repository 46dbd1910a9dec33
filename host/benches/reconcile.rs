//! Issue 14's reconcile rows, on the 4112-device tree (16 PFs x 255 VFs + 16 plain devices),
//! through the release binary, one run, medians:
//!
//! * one device's uevent -> its change visible in the API (an incremental reconcile: the
//!   device and its PF re-read), beside the full rescan measured in the same run;
//! * `POST /v1/reconcile` with nothing changed (a full rescan, evaluation and sync) against
//!   `lspci -D -nn -vmm -k` over the same tree (`-A linux-sysfs -O sysfs.path=...`, as the
//!   discovery bench runs it), alternating.
//!
//! The device's change is its device id (`0xbe00 + round`), so the API is polled with a
//! filter that returns one row (`/v1/devices?product_id=...`), not 4112. Polling costs
//! ~0.1-0.2 ms per look and is included. The agent runs with its debug line per pass
//! (`reconcile phases`: rescan or scan, evaluate, sync, verdicts...), and the medians of each
//! phase are printed after the figures: where a pass's time goes. Run:
//! `cargo bench --workspace --locked --bench reconcile` (`-- --quick` for 3 rounds).

use std::time::{Duration, Instant};

#[path = "../tests/common/mod.rs"]
mod common;

use common::daemon::Daemon;
use pcitrack_discovery::fixture::FakeSysfs;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(120);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let rounds = if std::env::args().any(|a| a == "--quick") {
        3
    } else {
        15
    };
    let tree = FakeSysfs::generate_large(16, 255, 16);
    // The baseline command reads the same tree, which the agent then owns.
    let mut lspci_cmd = tree.lspci();
    let mut d = Daemon::prepare(tree, "[pci]\ndevice_spec = ['{\"vendor_id\": \"8086\"}']\n");
    // The agent's phase breakdown (one debug line per pass), read back from its log below.
    d.env("RUST_LOG", "info,pcitrack::daemon::agent=debug");
    d.spawn();
    let n = d.get("/v1/health")["last_reconcile"]["discovered"]
        .as_u64()
        .unwrap();
    assert_eq!(n, 4112);

    let (mut full, mut full_agent, mut lspci) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        let r = d.client.post("/v1/reconcile", &json!({})).unwrap();
        full.push(ms(t.elapsed()));
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let summary: Value = r.json().unwrap();
        assert_eq!(summary["updated"], 0, "nothing changed: {summary}");
        full_agent.push(summary["duration_ms"].as_f64().unwrap());
        let t = Instant::now();
        let out = lspci_cmd
            .output()
            .expect("lspci (pciutils) is needed for the baseline");
        lspci.push(ms(t.elapsed()));
        assert!(out.status.success());
    }

    let vf = "0000:17:1f.6"; // the 255th VF of the fourth PF
    let (mut visible, mut in_agent, mut outside) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..rounds {
        let id = format!("{:04x}", 0xbe00 + r);
        // Through the fixture, which keeps the device's `uevent` in step.
        d.sysfs.device(vf).attr("device", &format!("0x{id}"));
        let query = format!("/v1/devices?product_id={id}");
        let before = d.get("/v1/health")["last_reconcile"].clone();
        let t = Instant::now();
        d.uevent("change", vf);
        let seen = d.wait_for(T, |d| {
            d.get(&query).as_array().is_some_and(|rows| rows.len() == 1)
        });
        visible.push(ms(t.elapsed()));
        assert!(seen, "log:\n{}", d.log());
        // The change is visible once committed; the pass's summary follows it.
        let mut last = Value::Null;
        d.wait_for(T, |d| {
            last = d.get("/v1/health")["last_reconcile"].clone();
            last != before
        });
        assert_eq!(last["incremental"], true, "{last}");
        assert_eq!(last["reread"], 2, "{last}");
        in_agent.push(last["duration_ms"].as_f64().unwrap());
        outside.push(visible[visible.len() - 1] - in_agent[in_agent.len() - 1]);
    }

    let log = d.log();
    let (f, fa, l) = (median(full), median(full_agent), median(lspci));
    let (v, va, vo) = (median(visible), median(in_agent), median(outside));
    println!("{n} devices, medians of {rounds} rounds:");
    println!("  uevent for one VF -> change visible in the API   {v:8.2} ms  (target <= 20 ms)");
    println!("    of which the agent's incremental reconcile     {va:8.2} ms  (2 devices re-read)");
    println!(
        "    outside it (quiet window, relay, API reads)    {vo:8.2} ms  (median of the rounds' differences)"
    );
    println!("  full rescan, POST /v1/reconcile, nothing changed {f:8.2} ms  (agent: {fa:.2} ms)");
    println!(
        "    incremental vs full                            {:8.3}x",
        v / f
    );
    println!("  lspci -D -nn -vmm -k, same tree                 {l:8.2} ms");
    println!(
        "    full rescan / lspci                            {:8.2}   (target <= 0.5)",
        f / l
    );
    // The last `rounds` passes of each kind: the start's first pass is not one of them.
    print_phases("incremental", &phases(&log, "\"uevent\""), rounds);
    print_phases("full rescan", &phases(&log, "\"api\""), rounds);
}

/// The agent's `reconcile phases` debug lines for passes started by `trigger` (as the log
/// quotes it): per pass, each phase and its milliseconds.
fn phases(log: &str, trigger: &str) -> Vec<Vec<(String, f64)>> {
    log.lines()
        .map(plain)
        .filter(|l| l.contains("reconcile phases") && l.contains(trigger))
        .filter_map(|l| l.split_once("phases=").map(|(_, rest)| rest.to_string()))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
                .collect()
        })
        .collect()
}

/// A log line without its colours (the agent's log is a file, but tracing colours it).
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ parameters final-byte (a letter).
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The median of each phase over the last `rounds` passes.
fn print_phases(what: &str, passes: &[Vec<(String, f64)>], rounds: usize) {
    let passes = &passes[passes.len().saturating_sub(rounds)..];
    let Some(first) = passes.first() else {
        println!("  {what}: no phase lines in the agent's log");
        return;
    };
    let line: Vec<String> = first
        .iter()
        .enumerate()
        .map(|(i, (name, _))| {
            let ms = median(
                passes
                    .iter()
                    .filter_map(|p| p.get(i).map(|x| x.1))
                    .collect(),
            );
            format!("{name} {ms:.2}")
        })
        .collect();
    println!("  {what} phases (ms, medians): {}", line.join(", "));
}
