//! Issue 14's memory rows, read from outside the release agent (`/proc/PID/status` and
//! `/proc/PID/smaps`), never estimated:
//!
//! * idle agent on a 6-device host (1 PF with 5 VFs), at its first start (empty state
//!   directory) and at a restart (compiled-policy cache warm);
//! * after the first reconcile of a 4112-device host (16 PFs x 255 VFs + 16), first start
//!   and restart, and after three more reconciles (`POST /v1/reconcile`: what a long-running
//!   agent keeps);
//! * idle on the 6-device host restarted with one policy file (the grace-cleanup example)
//!   whose compiled artifact is cached;
//! * baseline in the same run: `sleep`, the floor of any process on this machine (libc,
//!   loader, stack).
//!
//! Each figure is the median of `ROUNDS` fresh agents (one with `--quick`). The resident set
//! is broken down by mapping: the binary's own pages (code and read-only data, file-backed),
//! shared libraries, malloc (the main heap and glibc's 64 MiB-aligned per-thread arenas), wasmtime's
//! linear-memory reservations (the pooling allocator's slots, ≥ 1 GiB regions), compiled
//! policy code (anonymous read-only or executable mappings, and the embedded defaults' code
//! mapped from its `*.precompiled` copy in the state directory), and the rest (thread stacks,
//! large allocations). The per-device cost is (4112-device restart − 6-device restart) / 4106.
//! Run: `cargo bench --workspace --locked --bench memory` (`-- --quick` while developing).

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

#[path = "../tests/common/mod.rs"]
mod common;

use common::daemon::Daemon;
use pcitrack_discovery::fixture::FakeSysfs;
use rustix::process::Signal;
use serde_json::json;

/// The agent's configuration: VFs assignable, so every device goes through the matcher and
/// tagger with tags, as on a real SR-IOV host.
const CONFIG: &str = "[pci]\ndevice_spec = ['{\"vendor_id\": \"8086\", \"product_id\": \
                      \"154c\", \"physical_network\": \"physnet1\"}']\n";
/// Time left to the agent after it answers, so what it does right after start is counted.
const SETTLE: Duration = Duration::from_millis(700);

/// One look at a process's memory, in KiB.
#[derive(Debug, Default, Clone)]
struct Look {
    /// `/proc/PID/status` fields.
    status: BTreeMap<&'static str, u64>,
    /// Resident KiB by kind of mapping (from smaps).
    by_mapping: BTreeMap<&'static str, u64>,
}

const STATUS: [&str; 5] = ["VmRSS", "RssAnon", "RssFile", "VmHWM", "Threads"];
const MAPPINGS: [&str; 6] = [
    "binary (file)",
    "libraries (file)",
    "malloc heap + arenas",
    "wasm linear memories",
    "compiled policy code",
    "stacks, other anon",
];

fn look(pid: u32) -> Look {
    let mut out = Look::default();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    for line in status.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        if let Some(k) = STATUS.iter().find(|k| **k == key) {
            let n = value.split_whitespace().next().unwrap_or("0");
            out.status.insert(k, n.parse().unwrap_or(0));
        }
    }
    out.by_mapping = by_mapping(pid);
    out
}

/// One mapping of `/proc/PID/smaps`.
struct Vma {
    start: u64,
    end: u64,
    perms: String,
    path: String,
    rss: u64,
}

fn by_mapping(pid: u32) -> BTreeMap<&'static str, u64> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("exe");
    let exe = exe.to_string_lossy().into_owned();
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).expect("smaps");
    let mut vmas: Vec<Vma> = Vec::new();
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if let Some((a, b)) = first.split_once('-')
            && !first.ends_with(':')
        {
            let perms = fields.next().unwrap_or_default().to_string();
            let path = fields.nth(3).unwrap_or_default().to_string();
            vmas.push(Vma {
                start: u64::from_str_radix(a, 16).unwrap(),
                end: u64::from_str_radix(b, 16).unwrap(),
                perms,
                path,
                rss: 0,
            });
        } else if first == "Rss:"
            && let Some(v) = vmas.last_mut()
        {
            v.rss = fields.next().unwrap_or("0").parse().unwrap_or(0);
        }
    }
    // A glibc arena is a 64 MiB-aligned reservation whose used part is read-write and the
    // rest inaccessible; the kernel may merge that inaccessible rest with a neighbouring
    // reservation (wasmtime's), so arenas are found first, by their aligned start.
    let arena = |i: usize| {
        let v = &vmas[i];
        v.path.is_empty()
            && v.perms.starts_with("rw")
            && v.start.is_multiple_of(64 << 20)
            && v.end - v.start <= 64 << 20
            && vmas
                .get(i + 1)
                .is_none_or(|n| n.start != v.end || n.perms.starts_with("---"))
    };
    // Other adjacent anonymous mappings form one reservation: its size tells what it is.
    let mut region_size = vec![0u64; vmas.len()];
    let mut i = 0;
    while i < vmas.len() {
        let mut j = i;
        while vmas[i].path.is_empty()
            && j + 1 < vmas.len()
            && vmas[j + 1].path.is_empty()
            && vmas[j + 1].start == vmas[j].end
            && !arena(j + 1)
        {
            j += 1;
        }
        let size = vmas[j].end - vmas[i].start;
        region_size[i..=j].fill(size);
        i = j + 1;
    }
    let mut out: BTreeMap<&'static str, u64> = MAPPINGS.iter().map(|m| (*m, 0)).collect();
    for (i, (v, size)) in vmas.iter().zip(region_size).enumerate() {
        let kind = if v.path == exe {
            MAPPINGS[0]
        } else if v.path == "[heap]" || arena(i) {
            MAPPINGS[2]
        } else if v.path.starts_with('[') {
            MAPPINGS[5]
        } else if v.path.ends_with(".precompiled") {
            // The embedded defaults' code, mapped from its copy in the state directory.
            MAPPINGS[4]
        } else if !v.path.is_empty() {
            MAPPINGS[1]
        } else if size >= 1 << 30 {
            MAPPINGS[3]
        } else if v.perms.starts_with("r-x") || v.perms.starts_with("r--") {
            MAPPINGS[4]
        } else {
            MAPPINGS[5]
        };
        *out.get_mut(kind).unwrap() += v.rss;
    }
    out
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// The field-by-field median of several looks.
fn median_look(looks: &[Look]) -> Look {
    let mut m = Look::default();
    for k in STATUS {
        m.status
            .insert(k, median(looks.iter().map(|l| l.status[k]).collect()));
    }
    for k in MAPPINGS {
        m.by_mapping
            .insert(k, median(looks.iter().map(|l| l.by_mapping[k]).collect()));
    }
    m
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn print(name: &str, l: &Look) {
    println!(
        "{name:<44} VmRSS {:6.2} MiB  (anon {:5.1}, file {:5.1}; peak {:5.1}; {} threads)",
        mib(l.status["VmRSS"]),
        mib(l.status["RssAnon"]),
        mib(l.status["RssFile"]),
        mib(l.status["VmHWM"]),
        l.status["Threads"],
    );
    let parts: Vec<String> = MAPPINGS
        .iter()
        .map(|k| format!("{k} {:.1}", mib(l.by_mapping[k])))
        .collect();
    println!("    {}", parts.join(" | "));
}

/// With `PCITRACK_MEMORY_HOLD=SECS`, keeps the agent `SECS` seconds after a look, to
/// inspect it from outside (gdb's `call malloc_stats()`, /proc/PID/pagemap).
fn hold(pid: u32, what: &str) {
    if let Some(secs) = std::env::var("PCITRACK_MEMORY_HOLD")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        eprintln!("holding the agent (pid {pid}, {what}) for {secs} s");
        std::thread::sleep(Duration::from_secs(secs));
    }
}

/// The agent on `tree` with one policy file (the grace-cleanup example) besides the
/// defaults: a first start (which compiles and caches it), then a restart, whose look is
/// returned: the cached artifact is loaded under a key that needs the engine's fingerprint,
/// which the cache keeps (`ArtifactCache::fingerprint`), so no compiler is built.
fn file_policy_round(tree: FakeSysfs) -> Look {
    let mut d = Daemon::prepare(tree, CONFIG);
    std::fs::copy(
        common::example_policy("pcitrack-example-grace-cleanup"),
        d.policies().join("grace-cleanup.wasm"),
    )
    .unwrap();
    d.spawn();
    // The first start serves the file on its baseline build and caches Cranelift's.
    let cached = d.wait_for(Duration::from_secs(120), |d| {
        std::fs::read_dir(d.db().with_file_name("cache"))
            .map(|it| {
                it.flatten()
                    .any(|e| e.file_name().to_string_lossy().ends_with(".cwasm"))
            })
            .unwrap_or(false)
    });
    assert!(
        cached,
        "the policy file was never cached; log:\n{}",
        d.log()
    );
    restart(&mut d, "restart with a policy file")
}

/// Stops the agent (SIGTERM), starts it again on the same state directory and looks at it
/// once it has settled.
fn restart(d: &mut Daemon, what: &str) -> Look {
    d.signal(Signal::TERM);
    assert!(
        d.wait_exit(Duration::from_secs(60)).is_some(),
        "the agent did not stop; log:\n{}",
        d.log()
    );
    d.spawn();
    std::thread::sleep(SETTLE);
    let look = look(d.pid());
    hold(d.pid(), what);
    look
}

/// The agent on `tree`: a first start on an empty state directory, then a restart on the
/// same one (cache warm), then three more reconciles. Returns the three looks.
fn agent_round(tree: FakeSysfs) -> (Look, Look, Look) {
    let mut d = Daemon::start(tree, CONFIG);
    std::thread::sleep(SETTLE);
    let first = look(d.pid());
    hold(d.pid(), "first start");
    let restart = restart(&mut d, "restart");
    for _ in 0..3 {
        let r = d.client.post("/v1/reconcile", &json!({})).unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    std::thread::sleep(SETTLE);
    let later = look(d.pid());
    (first, restart, later)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 1 } else { 3 };

    let mut floor = Vec::new();
    let (mut small_first, mut small_restart, mut small_later) = (vec![], vec![], vec![]);
    let mut file_policy = Vec::new();
    let (mut big_first, mut big_restart, mut big_later) = (vec![], vec![], vec![]);
    let mut big_devices = 0;
    for _ in 0..rounds {
        let mut sleep = Command::new("sleep")
            .arg("30")
            .stdout(Stdio::null())
            .spawn()
            .expect("sleep, the baseline");
        std::thread::sleep(Duration::from_millis(200));
        floor.push(look(sleep.id()));
        let _ = sleep.kill();
        let _ = sleep.wait();

        let (a, b, c) = agent_round(FakeSysfs::generate_large(1, 5, 0));
        small_first.push(a);
        small_restart.push(b);
        small_later.push(c);

        file_policy.push(file_policy_round(FakeSysfs::generate_large(1, 5, 0)));

        let tree = FakeSysfs::generate_large(16, 255, 16);
        big_devices = std::fs::read_dir(tree.root().join("bus/pci/devices"))
            .unwrap()
            .count();
        let (a, b, c) = agent_round(tree);
        big_first.push(a);
        big_restart.push(b);
        big_later.push(c);
    }
    println!(
        "resident memory of the release agent, from /proc/PID/status and smaps, median of {rounds} \
         (KiB figures as MiB):"
    );
    let floor = median_look(&floor);
    print("baseline: `sleep` (the process floor)", &floor);
    let small_restart = median_look(&small_restart);
    let big_restart = median_look(&big_restart);
    print("idle, 6 devices, first start", &median_look(&small_first));
    print("idle, 6 devices, restart (cache warm)", &small_restart);
    print(
        "idle, 6 devices, after 3 more reconciles",
        &median_look(&small_later),
    );
    print(
        "idle, 6 devices, restart with a cached policy file",
        &median_look(&file_policy),
    );
    print(
        &format!("{big_devices} devices, first reconcile, first start"),
        &median_look(&big_first),
    );
    print(
        &format!("{big_devices} devices, first reconcile, restart"),
        &big_restart,
    );
    print(
        &format!("{big_devices} devices, after 3 more reconciles"),
        &median_look(&big_later),
    );
    let per_device = (big_restart.status["VmRSS"] as f64 - small_restart.status["VmRSS"] as f64)
        / (big_devices - 6) as f64;
    println!(
        "per device: ({big_devices}-device restart - 6-device restart) / {} = {:.2} KiB",
        big_devices - 6,
        per_device
    );
    println!(
        "targets (issue 14): <= 30 MiB after the first reconcile of {big_devices} devices, \
         <= 15 MiB idle with 6"
    );
    println!("{}", link_order());
}

/// How much of `host/symbol-order.txt` the measured binary has: the resident code above
/// depends on it (README, "Memory"). A list made for another build finds few of its names.
fn link_order() -> String {
    let list = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/symbol-order.txt"))
        .unwrap_or_default();
    let functions = list
        .lines()
        .find_map(|l| l.strip_prefix("# functions: "))
        .unwrap_or("?");
    let wanted: std::collections::HashSet<&str> =
        list.lines().filter(|l| !l.starts_with('#')).collect();
    match Command::new("nm")
        .arg("--defined-only")
        .arg(env!("CARGO_BIN_EXE_pcitrack"))
        .output()
    {
        Ok(out) if out.status.success() => {
            let found = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.split_whitespace().nth(2))
                .filter(|name| wanted.contains(name))
                .count();
            format!(
                "link order: {found} of the {} names of host/symbol-order.txt are this \
                 binary's (the list holds {functions} functions in each build's spelling; a \
                 list made for another Cargo.lock or compiler finds few)",
                wanted.len()
            )
        }
        _ => "link order: not checked (no `nm`)".to_string(),
    }
}
