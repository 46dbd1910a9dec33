//! `pcitrack policy eval --devices F --format json` reads, parses and writes a large file on
//! several threads (the list cut at guessed element boundaries, the rows serialised in
//! blocks): the output and an error's text must be the bytes one thread gives
//! (`PCITRACK_CLI_THREADS=1`), whatever the file's layout, a guess that falls inside a
//! string, or a bad record in a late part of the file.

use std::path::{Path, PathBuf};
use std::process::Output;

use pcitrack_model::{DevType, Device, PciAddress};
use serde_json::Value;

mod common;

/// Every VF of 8086:154c assignable with tags, the PFs not: rows of both shapes.
const CONFIG: &str = r#"[pci]
device_spec = ['{"vendor_id": "8086", "product_id": "154c", "physical_network": "physnet1", "trusted": "true"}']
"#;

/// `n` devices over several domains (a PF then 63 VFs), as JSON values.
fn devices(n: u32) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let address = PciAddress {
                domain: i / 4096,
                bus: ((i / 64) % 64) as u8,
                slot: ((i / 8) % 8) as u8,
                function: (i % 8) as u8,
            };
            let d = if i % 64 == 0 {
                Device::new(address, 0x8086, 0x1572, DevType::Pf)
            } else {
                let mut vf = Device::new(address, 0x8086, 0x154c, DevType::Vf);
                vf.driver = Some("iavf".into());
                vf
            };
            serde_json::to_value(d).unwrap()
        })
        .collect()
}

/// A fresh directory with the configuration and `file` written from `text`.
fn setup(text: &[u8]) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pcitrack.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let file = dir.path().join("devices.json");
    std::fs::write(&file, text).unwrap();
    (dir, config, file)
}

/// `policy eval --format json --devices FILE` on `threads` threads.
fn eval(dir: &Path, config: &Path, file: &Path, threads: u32) -> Output {
    common::policy_eval_json(dir, config, file)
        .env("PCITRACK_CLI_THREADS", threads.to_string())
        .output()
        .unwrap()
}

/// Runs the file on 1, 2 and 3 threads; asserts the three outputs are the same bytes and
/// returns the one-thread run.
fn same_on_any_number_of_threads(text: &[u8]) -> Output {
    // Several parse parts (256 KiB and up) and output blocks (1024 rows) per thread.
    assert!(text.len() > 4 * (256 << 10), "{} bytes", text.len());
    let (dir, config, file) = setup(text);
    let one = eval(dir.path(), &config, &file, 1);
    for threads in [2, 3] {
        let many = eval(dir.path(), &config, &file, threads);
        assert_eq!(many.status, one.status, "{threads} threads");
        assert_eq!(
            String::from_utf8_lossy(&many.stderr),
            String::from_utf8_lossy(&one.stderr),
            "{threads} threads"
        );
        if many.stdout != one.stdout {
            let line = many
                .stdout
                .split(|&b| b == b'\n')
                .zip(one.stdout.split(|&b| b == b'\n'))
                .position(|(a, b)| a != b);
            panic!(
                "{threads} threads: output differs at line {line:?} ({} vs {} bytes)",
                many.stdout.len(),
                one.stdout.len()
            );
        }
    }
    one
}

#[test]
fn a_large_file_gives_the_same_rows_on_several_threads_compact_or_pretty() {
    let list = devices(6000);
    for text in [
        serde_json::to_vec(&list).unwrap(),
        serde_json::to_vec_pretty(&list).unwrap(),
    ] {
        let out = same_on_any_number_of_threads(&text);
        assert!(out.status.success(), "{out:?}");
        let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(rows.len(), 6000);
        assert_eq!(rows[0]["assignable"], false);
        assert_eq!(rows[1]["tags"]["trusted"], "true");
        assert_eq!(rows[5999]["address"], "0001:1d:05.7");
    }
}

/// Every record carries a note whose text looks like the place between two records
/// (`},{`), so the boundaries guessed in the middle of the file fall inside strings.
#[test]
fn a_guessed_boundary_inside_a_string_gives_the_same_rows() {
    let mut list = devices(4000);
    for d in &mut list {
        d["note"] = Value::String(format!("}},{{\"address\":\"{}\"}}", d["address"]));
    }
    let text = serde_json::to_vec(&list).unwrap();
    let out = same_on_any_number_of_threads(&text);
    assert!(out.status.success(), "{out:?}");
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 4000);
}

/// A bad record near the end (a part another thread parses) and a file cut short are
/// refused with the error one thread gives: the file, then serde_json's line and column.
#[test]
fn a_bad_record_in_a_late_part_is_refused_with_the_same_error() {
    let mut list = devices(6000);
    list[5990]["vendor_id"] = Value::String("80z6".into());
    let bad_record = serde_json::to_vec(&list).unwrap();
    let good = serde_json::to_vec(&devices(6000)).unwrap();
    let cut_short = good[..good.len() - 1].to_vec();
    let mut trailing = good.clone();
    trailing.extend_from_slice(b" x");
    let mut trailing_comma = good[..good.len() - 1].to_vec();
    trailing_comma.extend_from_slice(b",]");
    for (what, text, names) in [
        ("a bad vendor id", bad_record, "\"80z6\""),
        ("a file cut short", cut_short, "EOF"),
        ("text after the list", trailing, "trailing characters"),
        ("a trailing comma", trailing_comma, "trailing comma"),
    ] {
        let out = same_on_any_number_of_threads(&text);
        assert!(!out.status.success(), "{what}: accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("devices.json is not a JSON list of devices")
                && stderr.contains(names)
                && stderr.contains("line 1 column"),
            "{what}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{what}: wrote rows");
    }
}
