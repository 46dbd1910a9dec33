//! Native cost of matching, on the same 4096 devices and specs as `oracle/bench_nova.py`.
//! Ignored by default (timing is not a test); run with
//! `cargo test --release -p pcitrack-devspec --test bench_native -- --ignored --nocapture`.

use std::time::Instant;

use pcitrack_devspec::{DeviceFacts, DeviceInput, HostView, Whitelist};
use pcitrack_model::PciAddress;

const DEVICE_SPEC: &[&str] = &[
    r#"{"address": "0000:20:00.0", "physical_network": "physnet0", "trusted": "true"}"#,
    r#"{"vendor_id": "15b3", "product_id": "101e", "address": {"domain": "0000", "bus": "3[0-9a-f]", "slot": ".*", "function": "[0-7]"}, "physical_network": "physnet2", "remote_managed": "false"}"#,
    r#"{"vendor_id": "8086", "product_id": "154c", "address": "*:23:*.*", "physical_network": "physnet1", "trusted": "true"}"#,
    r#"[{"vendor_id": "8086", "product_id": "154c", "physical_network": "physnet1"}, {"vendor_id": "15b3", "product_id": "101e", "physical_network": "physnet3"}]"#,
    r#"{"vendor_id": "10de", "product_id": "20b5", "managed": "no"}"#,
    r#"{"vendor_id": "144d", "address": ":c1:00."}"#,
    r#"{"vendor_id": "144d", "product_id": "a80a", "address": {"bus": "c[4-7]"}}"#,
];

struct Pfs(Vec<(PciAddress, DeviceFacts)>);

impl HostView for Pfs {
    fn device(&self, address: PciAddress) -> Option<DeviceFacts> {
        self.0.iter().find(|(a, _)| *a == address).map(|(_, f)| *f)
    }
    fn netdev(&self, _: &str) -> Option<PciAddress> {
        None
    }
}

fn a(domain: u32, bus: u8, slot: u8, function: u8) -> PciAddress {
    PciAddress::new(domain, bus, slot, function).unwrap()
}

#[test]
#[ignore = "timing; run explicitly with --release"]
fn native_ns_per_device() {
    let mut pfs = Vec::new();
    let mut devices = Vec::new();
    for i in 0..16u8 {
        let (vendor, pf_product, vf_product) = if i < 8 {
            (0x8086, 0x1572, 0x154c)
        } else {
            (0x15b3, 0x101d, 0x101e)
        };
        let bus = if i < 8 {
            0x20 + 2 * i
        } else {
            0x30 + 2 * (i - 8)
        };
        let pf = a(0, bus, 0, 0);
        pfs.push((
            pf,
            DeviceFacts {
                vendor_id: vendor,
                product_id: pf_product,
                is_pf: true,
                vf_product_id: Some(vf_product),
            },
        ));
        for k in 0..255u8 {
            devices.push(DeviceInput {
                address: a(0, bus + 1, k / 8, k % 8),
                vendor_id: vendor,
                product_id: vf_product,
                parent_addr: Some(pf),
                card_serial_number: None,
            });
        }
    }
    let plain: Vec<(u16, u16, u8)> = (0..4)
        .map(|i| (0x10de, 0x20b5, 0x81 + i))
        .chain((0..2).map(|i| (0x144d, 0xa808, 0xc1 + i)))
        .chain((0..6).map(|i| (0x144d, 0xa80a, 0xc3 + i)))
        .chain([
            (0x8086, 0xa1d2, 0),
            (0x8086, 0xa1ba, 0),
            (0x8086, 0x15b8, 0),
            (0x1a03, 0x2000, 2),
        ])
        .collect();
    for (n, (v, p, bus)) in plain.into_iter().enumerate() {
        let slot = if bus == 0 { 0x14 + n as u8 - 12 } else { 0 };
        devices.push(DeviceInput {
            address: a(0, bus, slot, 0),
            vendor_id: v,
            product_id: p,
            parent_addr: None,
            card_serial_number: None,
        });
    }
    assert_eq!(devices.len(), 4096);
    let host = Pfs(pfs);

    let t = Instant::now();
    let wl = Whitelist::parse(DEVICE_SPEC).unwrap();
    let parse = t.elapsed();
    let t = Instant::now();
    let bound = wl.bind(&host).unwrap();
    let bind = t.elapsed();
    assert_eq!(
        devices.iter().filter(|d| bound.find(d).is_some()).count(),
        4089,
        "same as Nova"
    );
    let mut runs = Vec::new();
    for _ in 0..21 {
        let t = Instant::now();
        let mut hits = 0usize;
        for d in &devices {
            hits += std::hint::black_box(bound.find(std::hint::black_box(d))).map_or(0, |i| i + 1);
        }
        std::hint::black_box(hits);
        runs.push(t.elapsed().as_nanos() as f64 / devices.len() as f64);
    }
    runs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{{\"implementation\": \"pcitrack-devspec native\", \"devices\": 4096, \"specs\": {}, \"parse_us\": {:.1}, \"bind_us\": {:.1}, \"ns_per_device_median\": {:.1}}}",
        wl.len(),
        parse.as_secs_f64() * 1e6,
        bind.as_secs_f64() * 1e6,
        runs[runs.len() / 2]
    );
}

#[test]
#[ignore = "timing; run explicitly with --release"]
fn parse_cost_breakdown() {
    for spec in DEVICE_SPEC {
        let t = Instant::now();
        for _ in 0..20 {
            std::hint::black_box(Whitelist::parse(&[*spec]).unwrap());
        }
        println!("{:>8.1} us  {spec}", t.elapsed().as_secs_f64() * 1e6 / 20.0);
    }
    for p in ["0000", "3[0-9a-f]", "[0-7]", "c[4-7]"] {
        let t = Instant::now();
        for _ in 0..20 {
            std::hint::black_box(regex_lite::Regex::new(&format!("^(?:{p})")).unwrap());
        }
        println!(
            "{:>8.1} us  regex {p}",
            t.elapsed().as_secs_f64() * 1e6 / 20.0
        );
    }
}
