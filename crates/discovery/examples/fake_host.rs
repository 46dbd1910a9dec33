//! Writes a fake sysfs tree, laid out as the tests' and benchmarks' (`fixture::FakeSysfs`),
//! and prints its root: a host to point `pcitrack --config` (`[agent] sysfs_root`) or
//! `lspci -A linux-sysfs -O sysfs.path=ROOT` at without SR-IOV hardware.
//!
//! Usage: `cargo run -p pcitrack-discovery --features test-support --example fake_host --
//! PFS VFS_PER_PF PLAIN` (the memory bench's hosts are `1 5 0` and `16 255 16`). The tree is
//! left in the temporary directory; remove it when done.

use pcitrack_discovery::fixture::FakeSysfs;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: fake_host PFS VFS_PER_PF PLAIN (PFS, PLAIN <= 255; VFS_PER_PF <= 65535)";
    let [pfs, vfs, plain] = args.as_slice() else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let (Ok(pfs), Ok(vfs), Ok(plain)) =
        (pfs.parse::<u8>(), vfs.parse::<u16>(), plain.parse::<u8>())
    else {
        eprintln!("{usage}; got {args:?}");
        std::process::exit(2);
    };
    println!(
        "{}",
        FakeSysfs::generate_large(pfs, vfs, plain).keep().display()
    );
}
