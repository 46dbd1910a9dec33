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

/// The records of `devices(n)` in the layout `discover` writes (struct order, compact).
fn layout_records(n: u32) -> Vec<Vec<u8>> {
    devices(n)
        .into_iter()
        .map(|v| serde_json::to_vec(&serde_json::from_value::<Device>(v).unwrap()).unwrap())
        .collect()
}

/// `records` with `extra` (a field, raw bytes) put before the closing `}` of record `i`.
fn with_field(records: &mut [Vec<u8>], i: usize, extra: &[u8]) {
    let r = &mut records[i];
    let close = r.len() - 1;
    r.splice(close..close, extra.iter().copied());
}

fn list(records: &[Vec<u8>]) -> Vec<u8> {
    let mut out = b"[".to_vec();
    out.extend_from_slice(&records.join(&b","[..]));
    out.push(b']');
    out
}

/// The encodings near the parse cuts (the part a thread checks for UTF-8 starts at a
/// record's `{`): multi-byte characters right before every cut, a byte that is not UTF-8
/// (or an overlong encoding) only in a late part, in a field serde_json skips (the file is
/// parsed as bytes) or in one it reads (refused), a BOM, and files of 0, 1 and 2 records
/// whose strings hold `},{`: the same bytes, warnings and status on 1, 2 and 3 threads.
#[test]
fn encodings_near_the_parse_cuts_give_what_one_thread_gives() {
    let n = 6000;
    let note = |text: &[u8]| [&b",\"note\":\""[..], text, b"\""].concat();
    // Every record ends in a multi-byte character just before its `}`, every other one
    // also carries one in a field the fast reader reads.
    let mut multibyte = layout_records(n);
    for i in 0..n as usize {
        with_field(&mut multibyte, i, &note("é€😀".as_bytes()));
    }
    let mut cases: Vec<(&str, Vec<u8>, bool)> = vec![("multi-byte", list(&multibyte), true)];
    for (what, at, extra, ok) in [
        ("0xff skipped late", 0.75, note(b"\xff"), true),
        ("overlong skipped late", 0.9, note(b"\xc0\xaf"), true),
        ("surrogate skipped late", 0.9, note(b"\xed\xa0\x80"), true),
        (
            "0xff read late",
            0.8,
            b",\"driver\":\"iav\xff\"".to_vec(),
            false,
        ),
        ("0xff at the cut", 0.5, note(b"\xe2\x82"), true),
    ] {
        let mut records = layout_records(n);
        with_field(&mut records, (n as f64 * at) as usize, &extra);
        cases.push((what, list(&records), ok));
    }
    let mut bom = b"\xef\xbb\xbf".to_vec();
    bom.extend_from_slice(&list(&layout_records(n)));
    cases.push(("a BOM", bom, false));
    let mut empty = b"[".to_vec();
    empty.resize(1_200_000, b' ');
    empty.push(b']');
    cases.push(("0 records", empty, true));
    let big = r#"},{\"address\":\"0000:00:00.0\"},{é"#.repeat(40_000);
    for count in [1, 2] {
        let mut records = layout_records(count);
        for i in 0..count as usize {
            with_field(&mut records, i, &note(big.as_bytes()));
        }
        cases.push((
            ["1 record", "2 records"][count as usize - 1],
            list(&records),
            true,
        ));
    }
    for (what, text, ok) in cases {
        let out = same_on_any_number_of_threads(&text);
        assert_eq!(out.status.success(), ok, "{what}: {out:?}");
    }
}

/// A file out of address order (several hosts' inventories joined, or one edited by hand):
/// the parts parsed on their threads are put in address order as one thread puts the whole
/// list.
#[test]
fn a_file_out_of_address_order_gives_what_one_thread_gives() {
    let sorted = layout_records(6000);
    // 7 is prime to 6000: every record once, scattered over every part.
    let records: Vec<Vec<u8>> = (0..6000).map(|i| sorted[i * 7 % 6000].clone()).collect();
    let out = same_on_any_number_of_threads(&list(&records));
    assert!(out.status.success(), "{out:?}");
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 6000);
    assert!(
        rows.windows(2)
            .all(|w| w[0]["address"].as_str() < w[1]["address"].as_str())
    );
}

/// The same address twice (a file edited by hand, or two hosts' files joined) is refused,
/// naming it, on any number of threads: policies are promised each address once and in
/// order (a debug build asserted it, and a release build gave a policy two PFs at one
/// address). `sync --devices` reads files the same way.
#[test]
fn a_file_that_lists_an_address_twice_is_refused_naming_it() {
    let mut records = layout_records(6000);
    // A record of the first part repeated in the last one.
    records.push(records[10].clone());
    let out = same_on_any_number_of_threads(&list(&records));
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let address = serde_json::from_slice::<Value>(&records[10]).unwrap()["address"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        stderr.contains("devices.json")
            && stderr.contains(&format!("device {address} is listed 2 times")),
        "{stderr}"
    );
}
