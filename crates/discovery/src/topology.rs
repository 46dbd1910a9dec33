//! The host's NUMA topology as sysfs shows it: each NUMA node's CPUs
//! (`devices/system/node/nodeN/cpulist`) and the socket they sit in (each CPU's
//! `devices/system/cpu/cpuN/topology/physical_package_id`), read under the same root as the
//! PCI scan. Nova's `socket` PCI NUMA affinity policy needs it (`nova/pci/stats.py`
//! `_filter_pools_for_socket_affinity`), and a claim carries it to the tracker.
//!
//! A node's socket is the one package all its CPUs are in, as Nova's libvirt driver decides
//! it (`nova/virt/libvirt/driver.py` `_get_host_numa_topology`): unknown when its CPUs span
//! several packages (a layout Nova chose not to support) or when it has no CPUs (a
//! memory-only node). A malformed entry is skipped with a warning naming it; a package id
//! that cannot be read leaves its node's socket unknown, never guessed from the other CPUs.

use std::collections::BTreeSet;
use std::path::Path;

use crate::attrs::read_text;
use crate::scan::Skipped;

/// One host NUMA node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumaNode {
    /// The node id (`nodeN`).
    pub id: u32,
    /// Its CPUs, ascending (from `cpulist`).
    pub cpus: Vec<u32>,
    /// The socket (physical package) of all its CPUs; `None` when they span several, when
    /// it has none, or when a CPU's package could not be read.
    pub socket: Option<u32>,
}

/// What reading the topology found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    /// The nodes, by id.
    pub nodes: Vec<NumaNode>,
    /// Entries that could not be read, each with its reason (also logged as warnings).
    pub skipped: Vec<Skipped>,
}

impl Topology {
    /// Whether every node's socket is known (what Nova's `socket` policy needs of every
    /// host cell).
    pub fn sockets_known(&self) -> bool {
        !self.nodes.is_empty() && self.nodes.iter().all(|n| n.socket.is_some())
    }
}

fn skip(skipped: &mut Vec<Skipped>, entry: &Path, reason: String) {
    let entry = entry.display().to_string();
    tracing::warn!(entry = %entry, "skipping a NUMA topology entry: {reason}");
    skipped.push(Skipped { entry, reason });
}

/// Parses a kernel CPU list (`0-3,8,10-11`; empty for a node without CPUs).
///
/// # Errors
///
/// The text, when a part is not a number or a range `a-b` with `a <= b`.
pub fn parse_cpulist(text: &str) -> Result<Vec<u32>, String> {
    let mut cpus = BTreeSet::new();
    let text = text.trim();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    for part in text.split(',') {
        let bad = || format!("{text:?} is not a CPU list (part {part:?})");
        let number = |s: &str| -> Result<u32, String> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            s.parse().map_err(|_| bad())
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (number(a)?, number(b)?);
                if a > b {
                    return Err(bad());
                }
                cpus.extend(a..=b);
            }
            None => {
                cpus.insert(number(part)?);
            }
        }
    }
    Ok(cpus.into_iter().collect())
}

/// A CPU's package: `Ok(None)` when the CPU has no topology directory (an offline CPU, which
/// the kernel does not describe), `Err` when the file is there but unreadable or malformed.
fn package_of(root: &Path, cpu: u32) -> Result<Option<u32>, (std::path::PathBuf, String)> {
    let dir = root.join(format!("devices/system/cpu/cpu{cpu}/topology"));
    if !dir.is_dir() {
        return Ok(None);
    }
    let file = dir.join("physical_package_id");
    let Some(text) = read_text(&file) else {
        return Err((file, "cannot be read".into()));
    };
    // The kernel prints -1 when it does not know the package.
    text.parse::<u32>()
        .map(Some)
        .map_err(|_| (file, format!("{text:?} is not a package id")))
}

/// Reads the NUMA nodes under `<root>/devices/system/node` and their sockets. A host whose
/// kernel has no NUMA directory has no nodes (and no warning: there is nothing wrong).
pub fn numa_topology(root: &Path) -> Topology {
    let mut topology = Topology::default();
    let dir = root.join("devices/system/node");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return topology;
    };
    let mut ids: Vec<u32> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let digits = name.strip_prefix("node")?;
            // `node` followed by digits; other entries (`online`, `has_cpu`...) are not nodes.
            (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
                .then(|| digits.parse().ok())
                .flatten()
        })
        .collect();
    ids.sort_unstable();
    for id in ids {
        let path = dir.join(format!("node{id}/cpulist"));
        let Some(text) = read_text(&path) else {
            skip(&mut topology.skipped, &path, "cannot be read".into());
            continue;
        };
        let cpus = match parse_cpulist(&text) {
            Ok(cpus) => cpus,
            Err(reason) => {
                skip(&mut topology.skipped, &path, reason);
                continue;
            }
        };
        let mut packages = BTreeSet::new();
        let mut unknown = false;
        for &cpu in &cpus {
            match package_of(root, cpu) {
                Ok(Some(p)) => {
                    packages.insert(p);
                }
                Ok(None) => {}
                Err((file, reason)) => {
                    skip(&mut topology.skipped, &file, reason);
                    unknown = true;
                }
            }
        }
        let socket = match (unknown, packages.len()) {
            (false, 1) => packages.first().copied(),
            (false, n) if n > 1 => {
                tracing::warn!(
                    node = id,
                    "NUMA node {id} spans {n} sockets; the socket PCI NUMA affinity policy \
                     cannot be used on this host (as in Nova)"
                );
                None
            }
            _ => None,
        };
        topology.nodes.push(NumaNode { id, cpus, socket });
    }
    topology
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::FakeSysfs;

    #[test]
    fn cpulists_parse_as_the_kernel_writes_them() {
        assert_eq!(
            parse_cpulist("0-3,8,10-11\n").unwrap(),
            [0, 1, 2, 3, 8, 10, 11]
        );
        assert_eq!(parse_cpulist("").unwrap(), Vec::<u32>::new());
        for bad in ["3-1", "a", "1,,2", "-1", "1-", "0x1"] {
            assert!(parse_cpulist(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn two_sockets_two_nodes_each() {
        let tree = FakeSysfs::new();
        for (node, cpus, socket) in [(0, "0-1", 0), (1, "2-3", 0), (2, "4-5", 1), (3, "6-7", 1)] {
            tree.add_numa_node(node, cpus);
            for cpu in parse_cpulist(cpus).unwrap() {
                tree.add_cpu(cpu, &socket.to_string());
            }
        }
        let t = numa_topology(tree.root());
        assert!(t.skipped.is_empty(), "{:?}", t.skipped);
        let sockets: Vec<_> = t.nodes.iter().map(|n| (n.id, n.socket)).collect();
        assert_eq!(
            sockets,
            [(0, Some(0)), (1, Some(0)), (2, Some(1)), (3, Some(1))]
        );
        assert!(t.sockets_known());
    }

    #[test]
    fn malformed_entries_are_skipped_by_name_and_never_guess_a_socket() {
        let tree = FakeSysfs::new();
        tree.add_numa_node(0, "0-1");
        tree.add_cpu(0, "0");
        tree.add_cpu(1, "zero");
        tree.add_numa_node(1, "2-x");
        tree.add_numa_node(2, "4-5");
        tree.add_cpu(4, "0");
        tree.add_cpu(5, "1");
        tree.add_numa_node(3, "");
        let t = numa_topology(tree.root());
        let skipped: Vec<&str> = t.skipped.iter().map(|s| s.entry.as_str()).collect();
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert!(skipped[0].ends_with("cpu/cpu1/topology/physical_package_id"));
        assert!(skipped[1].ends_with("node/node1/cpulist"));
        let sockets: Vec<_> = t.nodes.iter().map(|n| (n.id, n.socket)).collect();
        // node 0: one CPU unreadable; node 2: two sockets; node 3: no CPUs.
        assert_eq!(sockets, [(0, None), (2, None), (3, None)]);
        assert!(!t.sockets_known());
    }

    #[test]
    fn no_numa_directory_is_no_nodes() {
        let tree = FakeSysfs::new();
        let t = numa_topology(tree.root());
        assert!(t.nodes.is_empty() && t.skipped.is_empty());
        assert!(!t.sockets_known());
    }
}
