//! Writes a fake sysfs tree, laid out as the tests' and benchmarks' (`fixture::FakeSysfs`),
//! and prints its root: a host to point `pcitrack --config` (`[agent] sysfs_root`) or
//! `lspci -A linux-sysfs -O sysfs.path=ROOT` at without SR-IOV hardware.
//!
//! Usage: `cargo run -p pcitrack-discovery --features test-support --example fake_host --
//! PFS VFS_PER_PF PLAIN` (the memory bench's hosts are `1 5 0` and `16 255 16`). The tree is
//! left in the temporary directory; remove it when done.

use pcitrack_discovery::fixture::FakeSysfs;

/// The largest tree `FakeSysfs::generate_large` lays out: PFs on even buses from 0x10 (to
/// 0xfe), each PF's VFs on the next bus (8 functions in each of 32 devices), plain devices
/// on bus 0 (32 devices).
const MAX: (u32, u32, u32) = (120, 256, 32);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = format!(
        "usage: fake_host PFS VFS_PER_PF PLAIN (at most {} PFs, {} VFs per PF, {} plain devices)",
        MAX.0, MAX.1, MAX.2
    );
    let parsed: Vec<Option<u32>> = args.iter().map(|a| a.parse().ok()).collect();
    let [Some(pfs), Some(vfs), Some(plain)] = parsed[..] else {
        eprintln!("{usage}; got {args:?}");
        std::process::exit(2);
    };
    if pfs > MAX.0 || vfs > MAX.1 || plain > MAX.2 {
        eprintln!("{usage}; got {pfs} {vfs} {plain}");
        std::process::exit(2);
    }
    let tree = FakeSysfs::generate_large(pfs as u8, vfs as u16, plain as u8);
    println!("{}", tree.keep().display());
}
