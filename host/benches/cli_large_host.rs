//! Issue 14's two command-line figures, each against its baseline in the same run, through
//! the release binary as a whole process (start-up, reading, output included):
//!
//! * `pcitrack policy eval --devices F --format json`: the marginal cost per device, from
//!   files of 40 000 and 200 000 device records ((t(200k) - t(40k)) / 160 000, so the fixed
//!   cost of start-up and loading the policies drops out), against Nova 34's
//!   `Whitelist.device_assignable` in-process (`bench_nova.py`, the same `[pci]
//!   device_spec`; the files repeat its 4112-device inventory over PCI domains). Target:
//!   at least 10x. The command reads, parses and writes on every core; the same figure on
//!   one thread (`PCITRACK_CLI_THREADS=1`) is reported beside it, Nova's being one Python
//!   thread.
//! * `pcitrack discover --format json` on the 4112-device fake tree (16 PFs x 255 VFs + 16;
//!   each device with the attribute files, links and `uevent` file a real one has) against
//!   `lspci -D -nn -vmm -k` on the same tree. Target: at most 0.35.
//!
//! Standard output goes to `/dev/null` for both sides (the JSON is still made and written).
//! The machine is shared, so the sides alternate in legs and each figure is the median of
//! the legs' ratios. `PCITRACK_NOVA_PYTHON` names a Python with `nova==34.0.0` (default
//! `/work/nova-venv/bin/python`); without one only the discover figure is measured.
//!
//! Run: `cargo bench --workspace --locked --bench cli_large_host` (`-- --quick` for a small
//! check while developing: smaller files, fewer legs).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use pcitrack_discovery::fixture::FakeSysfs;
use pcitrack_model::{DevType, Device, PciAddress};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_pcitrack");

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Runs `cmd` with its output thrown away; its wall time in seconds. pcitrack must not warn
/// (a policy that fell back would skew the figure); lspci may (libkmod resources).
fn timed(cmd: &mut Command) -> f64 {
    let t = Instant::now();
    let out = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("spawning");
    let secs = t.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty() || cmd.get_program() != BIN,
        "{cmd:?} warned (a fallback would skew the figure): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    secs
}

fn hex(v: &Value) -> u16 {
    u16::from_str_radix(v.as_str().unwrap(), 16).unwrap()
}

/// A record of `bench_nova.py`'s inventory, moved to PCI domain `domain`.
fn device(v: &Value, domain: u32, iommu_group: u32) -> Device {
    let moved = |a: &str| {
        let a: PciAddress = a.parse().unwrap();
        PciAddress { domain, ..a }
    };
    let dev_type = v["dev_type"].as_str().unwrap().parse::<DevType>().unwrap();
    let mut d = Device::new(
        moved(v["address"].as_str().unwrap()),
        hex(&v["vendor_id"]),
        hex(&v["product_id"]),
        dev_type,
    );
    d.class_code = 0x020000;
    d.revision = Some(1);
    d.iommu_group = Some(iommu_group);
    d.parent_addr = v["parent_addr"].as_str().map(moved);
    d.numa_node = v["numa_node"].as_u64().map(|n| n as u32);
    d.sriov_totalvfs = v["sriov_totalvfs"].as_u64().map(|n| n as u16);
    d.sriov_numvfs = d.sriov_totalvfs;
    d.sriov_vf_device = v.get("vf_product_id").filter(|x| x.is_string()).map(hex);
    d.driver = (dev_type == DevType::Vf).then(|| "iavf".to_string());
    d
}

/// Writes `n` device records (the inventory repeated over domains) as JSON to `path`.
fn write_devices(inventory: &[Value], n: usize, path: &Path) {
    let devices: Vec<Device> = (0..n)
        .map(|i| {
            device(
                &inventory[i % inventory.len()],
                (i / inventory.len()) as u32,
                i as u32,
            )
        })
        .collect();
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    serde_json::to_writer(file, &devices).unwrap();
}

/// One Nova leg: `bench_nova.py`'s median ns/device.
fn nova(python: &str, script: &Path, runs: &str, dump: Option<&Path>) -> Option<Value> {
    let mut cmd = Command::new(python);
    cmd.arg(script).arg("--runs").arg(runs);
    if let Some(dir) = dump {
        cmd.arg("--dump").arg(dir);
    }
    match cmd.stderr(Stdio::null()).output() {
        Ok(out) if out.status.success() => Some(serde_json::from_slice(&out.stdout).unwrap()),
        _ => {
            eprintln!(
                "no Python with Nova at {python}; set PCITRACK_NOVA_PYTHON (eval figure skipped)"
            );
            None
        }
    }
}

fn eval_vs_nova(quick: bool, work: &Path) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let script = root.join("policies/devspec/oracle/bench_nova.py");
    let python = std::env::var("PCITRACK_NOVA_PYTHON")
        .unwrap_or_else(|_| "/work/nova-venv/bin/python".into());
    let (small, large, legs, runs) = if quick {
        (4_000, 20_000, 2, 1)
    } else {
        (40_000, 200_000, 7, 3)
    };
    let dump = work.join("nova");
    let Some(first) = nova(&python, &script, &runs.to_string(), Some(&dump)) else {
        return;
    };
    let read = |name: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(dump.join(name)).unwrap()).unwrap()
    };
    let specs = read("device_spec.json");
    let inv = read("devices.json");
    let inventory: Vec<Value> = inv["pfs"]
        .as_array()
        .unwrap()
        .iter()
        .chain(inv["devices"].as_array().unwrap())
        .cloned()
        .collect();
    let config = work.join("eval.toml");
    // The deadline and memory cap are raised: one call assesses every device of the file.
    std::fs::write(
        &config,
        format!(
            "[pci]\ndevice_spec = {specs}\n[limits]\ndeadline_ms = 600000\nmemory_mib = 2048\n\
             [agent]\nstate_dir = {:?}\n",
            work.join("state").display().to_string()
        ),
    )
    .unwrap();
    let files: Vec<(usize, PathBuf)> = [small, large]
        .into_iter()
        .map(|n| {
            let path = work.join(format!("devices-{n}.json"));
            write_devices(&inventory, n, &path);
            (n, path)
        })
        .collect();
    // `threads`: `PCITRACK_CLI_THREADS` (0: unset, the command's default, every core).
    let eval_on = |file: &Path, threads: usize| {
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(&config)
            .args(["policy", "eval", "--format", "json", "--devices"])
            .arg(file);
        if threads > 0 {
            cmd.env("PCITRACK_CLI_THREADS", threads.to_string());
        }
        timed(&mut cmd)
    };
    let eval = |file: &Path| eval_on(file, 0);
    // The first run compiles the embedded policies into the state directory's cache.
    eval(&files[0].1);
    let mut results: Vec<(f64, f64)> = Vec::new();
    // The same on one thread (Nova's baseline is one Python thread).
    let mut one_thread: Vec<f64> = Vec::new();
    let mut theirs = first["ns_per_device_median"].as_f64().unwrap();
    for leg in 0..legs {
        if leg > 0 {
            let Some(n) = nova(&python, &script, &runs.to_string(), None) else {
                return;
            };
            theirs = n["ns_per_device_median"].as_f64().unwrap();
        }
        let (a, b): (Vec<f64>, Vec<f64>) = (0..3)
            .map(|_| (eval(&files[0].1), eval(&files[1].1)))
            .unzip();
        let ours = (median(b) - median(a)) * 1e9 / (large - small) as f64;
        let (a1, b1): (Vec<f64>, Vec<f64>) = (0..3)
            .map(|_| (eval_on(&files[0].1, 1), eval_on(&files[1].1, 1)))
            .unzip();
        let ours_1 = (median(b1) - median(a1)) * 1e9 / (large - small) as f64;
        eprintln!(
            "  leg {}: Nova {theirs:8.1} ns/device, pcitrack policy eval {ours:7.1} ns/device (marginal), {:.1}x; one thread {ours_1:7.1} ns/device, {:.1}x",
            leg + 1,
            theirs / ours,
            theirs / ours_1
        );
        results.push((theirs, ours));
        one_thread.push(theirs / ours_1);
    }
    let ratio = median(results.iter().map(|(t, o)| t / o).collect());
    println!(
        "policy eval --devices F --format json, marginal per device ({small} vs {large} devices), median of {legs} legs:"
    );
    println!(
        "  Nova {} Whitelist.device_assignable (in-process): {:8.1} ns/device",
        first["nova_version"],
        median(results.iter().map(|r| r.0).collect())
    );
    println!(
        "  pcitrack policy eval (whole process, JSON in and out): {:8.1} ns/device",
        median(results.iter().map(|r| r.1).collect())
    );
    println!("  speed-up: {ratio:.1}x (target: at least 10x)");
    println!(
        "  speed-up on one thread (PCITRACK_CLI_THREADS=1): {:.1}x",
        median(one_thread)
    );
}

fn discover_vs_lspci(quick: bool) {
    let tree = FakeSysfs::generate_large(16, 255, 16);
    let legs = if quick { 3 } else { 9 };
    let discover = || {
        timed(
            Command::new(BIN)
                .args(["discover", "--format", "json", "--sysfs-root"])
                .arg(tree.root()),
        )
    };
    let lspci = || timed(&mut tree.lspci());
    // Where the rest goes: the scan alone, in this process, and the binary's start-up.
    let (mut ours, mut theirs, mut scans, mut starts) = (vec![], vec![], vec![], vec![]);
    discover();
    for _ in 0..legs {
        let (o, t) = (discover(), lspci());
        ours.push(o);
        theirs.push(t);
        let s = Instant::now();
        std::hint::black_box(pcitrack_discovery::scan(tree.root()));
        scans.push(s.elapsed().as_secs_f64());
        starts.push(timed(Command::new(BIN).arg("--version")));
    }
    let ratio = median(ours.iter().zip(&theirs).map(|(o, t)| o / t).collect());
    println!(
        "discover --format json on the 4112-device tree, whole process, median of {legs} legs:"
    );
    println!(
        "  lspci -D -nn -vmm -k:            {:8.1} ms",
        median(theirs) * 1e3
    );
    println!(
        "  pcitrack discover --format json: {:8.1} ms",
        median(ours) * 1e3
    );
    println!(
        "    of which scan() (in-process): {:8.1} ms; pcitrack --version: {:.1} ms",
        median(scans) * 1e3,
        median(starts) * 1e3
    );
    println!("  ratio pcitrack/lspci:            {ratio:8.2} (target: at most 0.35)");
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    // Kept under the target directory (replaced by each run), so the eval's device files can
    // be profiled after the bench: `target/tmp/cli_large_host/devices-200000.json`.
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli_large_host");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    discover_vs_lspci(quick);
    eval_vs_nova(quick, &work);
}
